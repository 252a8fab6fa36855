package fdw

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/privata/privata/policy"
	"github.com/privata/privata/storage"
)

// The export roles are login roles other clusters connect as. Their
// passwords are set as SCRAM-SHA-256 verifiers computed here, so that the
// password itself never reaches the server (nor its statement log).

// scramIterations is the iteration count of the verifiers Privata makes,
// PostgreSQL's default.
const scramIterations = 4096

// scramVerifier returns a SCRAM-SHA-256 verifier of password, as
// PostgreSQL stores it.
func scramVerifier(password string) (string, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	stored, server, err := scramKeys(password, salt, scramIterations)
	if err != nil {
		return "", err
	}
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", scramIterations, b64(salt), b64(stored),
		b64(server)), nil
}

func scramKeys(password string, salt []byte, iterations int) (stored, server []byte, err error) {
	salted, err := pbkdf2.Key(sha256.New, password, salt, iterations, sha256.Size)
	if err != nil {
		return nil, nil, err
	}
	mac := func(key []byte, msg string) []byte {
		h := hmac.New(sha256.New, key)
		h.Write([]byte(msg))
		return h.Sum(nil)
	}
	sum := sha256.Sum256(mac(salted, "Client Key"))
	return sum[:], mac(salted, "Server Key"), nil
}

// verifies reports whether verifier, as PostgreSQL stores it, is one of
// password.
func verifies(verifier, password string) bool {
	rest, ok := strings.CutPrefix(verifier, "SCRAM-SHA-256$")
	if !ok {
		return false
	}
	params, keys, ok := strings.Cut(rest, "$")
	if !ok {
		return false
	}
	iterText, saltText, ok1 := strings.Cut(params, ":")
	storedText, serverText, ok2 := strings.Cut(keys, ":")
	iterations, err := strconv.Atoi(iterText)
	if !ok1 || !ok2 || err != nil || iterations < 1 || iterations > 1<<24 {
		return false
	}
	dec := base64.StdEncoding.DecodeString
	salt, err1 := dec(saltText)
	wantStored, err2 := dec(storedText)
	wantServer, err3 := dec(serverText)
	if err1 != nil || err2 != nil || err3 != nil {
		return false
	}
	stored, server, err := scramKeys(password, salt, iterations)
	return err == nil && hmac.Equal(stored, wantStored) && hmac.Equal(server, wantServer)
}

// groupsOf returns the group roles an export role is a member of.
func groupsOf(role string) []string {
	var out []string
	for _, id := range []policy.Access{policy.Full, policy.Masked, policy.None} {
		for _, cl := range []policy.Access{policy.Full, policy.Masked, policy.None} {
			if ExportRole(id, cl) != role {
				continue
			}
			if id != policy.None {
				out = append(out, storage.GroupRole(policy.Identity, id))
			}
			if cl != policy.None {
				out = append(out, storage.GroupRole(policy.Clinical, cl))
			}
		}
	}
	return out
}

// allGroups are the group roles of the split layout.
var allGroups = []string{
	storage.GroupRole(policy.Identity, policy.Full), storage.GroupRole(policy.Identity, policy.Masked),
	storage.GroupRole(policy.Clinical, policy.Full), storage.GroupRole(policy.Clinical, policy.Masked),
}

// readOnly is the setting export roles log in with: postgres_fdw's reads
// need no writes. It is a safeguard against mistakes, not a boundary: a
// session may change it.
const readOnly = "default_transaction_read_only=on"

// rolesStep creates and repairs the export roles other clusters read this
// one as. It is planned precisely (not rebuilt): roles are shared by the
// cluster's databases, so that roles no transfer of this database needs
// are left alone.
func (pl *planner) rolesStep() (Step, []string, error) {
	want := pl.topo.ExportRoles(pl.local)
	var s script
	var why []string
	if len(want) > 0 && pl.local.Password == "" {
		return Step{}, nil, fmt.Errorf("transfers let other regions read cluster %s, and privata.yaml "+
			"gives it no fdw password\n\thint: set clusters.<name>.fdw.password for it",
			pl.local.Target.Name)
	}
	for _, name := range want {
		r := pl.cat.roles[name]
		verifier := func() error {
			v, err := scramVerifier(pl.local.Password)
			if err != nil {
				return fmt.Errorf("make a password verifier: %w", err)
			}
			s.secret(v)
			return nil
		}
		switch {
		case r == nil:
			s.f("CREATE ROLE %s LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD ", ident(name))
			if err := verifier(); err != nil {
				return Step{}, nil, err
			}
			s.f(";\n")
			why = append(why, "role "+name+" is missing")
		case !r.login || !r.inherit || r.super:
			s.f("ALTER ROLE %s LOGIN INHERIT NOSUPERUSER;\n", ident(name))
			why = append(why, "role "+name+" was changed")
		}
		if r == nil || !slices.Contains(r.config, readOnly) {
			s.f("ALTER ROLE %s SET default_transaction_read_only = on;\n", ident(name))
		}
		if r != nil && pl.cat.superuser && !verifies(r.verifier, pl.local.Password) {
			s.f("ALTER ROLE %s PASSWORD ", ident(name))
			if err := verifier(); err != nil {
				return Step{}, nil, err
			}
			s.f(";\n")
			why = append(why, "the password of "+name+" differs from privata.yaml's")
		}
		var have []string
		if r != nil {
			have = r.memberOf
		}
		for _, g := range allGroups {
			in, should := slices.Contains(have, g), slices.Contains(groupsOf(name), g)
			switch {
			case should && !in:
				s.f("GRANT %s TO %s;\n", ident(g), ident(name))
			case in && !should:
				s.f("REVOKE %s FROM %s;\n", ident(g), ident(name))
			}
		}
	}
	if s.empty() {
		return Step{}, nil, nil
	}
	return s.step("Export roles: the login roles other clusters read this one as, one per " +
		"combination of access (privata_export_<identity>_<clinical>), members of the group " +
		"roles that give that access. Their password is privata.yaml's fdw password of this " +
		"cluster, set as a SCRAM-SHA-256 verifier (not shown). They log in read-only."), why, nil
}
