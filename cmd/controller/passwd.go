package main

import (
	"bufio"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/privata/privata/proxy"
)

func init() {
	commands = append(commands, func() *cobra.Command {
		return &cobra.Command{
			Use:   "passwd",
			Short: "Print a SCRAM-SHA-256 verifier for a password read from stdin",
			Long: "passwd reads a password (one line) from standard input and prints the " +
				"SCRAM-SHA-256 verifier to put in auth.users.<name>.password. The password " +
				"itself is never stored.",
			Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
				if err != nil && line == "" {
					return errors.New("passwd: no password on standard input")
				}
				pw := strings.TrimRight(line, "\r\n")
				if pw == "" {
					return errors.New("passwd: empty password")
				}
				v, err := proxy.NewVerifier(pw)
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), v.String())
				return nil
			},
		}
	})
}
