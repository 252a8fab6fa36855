package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/privata/privata/proxy"
)

func command(name string) *cobra.Command {
	for _, add := range commands {
		if c := add(); c.Name() == name {
			return c
		}
	}
	return nil
}

func TestPasswdPrintsAVerifierNeverThePassword(t *testing.T) {
	cmd := command("passwd")
	var out bytes.Buffer
	cmd.SetIn(strings.NewReader("hunter2\n"))
	cmd.SetOut(&out)
	cmd.SetArgs(nil)
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	line := strings.TrimSpace(out.String())
	if _, err := proxy.ParseVerifier(line); err != nil || strings.Contains(line, "hunter2") {
		t.Fatalf("output %q: %v", line, err)
	}
	cmd = command("passwd")
	cmd.SetIn(strings.NewReader("\n"))
	cmd.SetOut(&out)
	if err := cmd.Execute(); err == nil {
		t.Fatal("empty password accepted")
	}
}
