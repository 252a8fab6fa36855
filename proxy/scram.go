package proxy

import (
	"bytes"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"

	"golang.org/x/text/unicode/norm"
)

// scramIterations is PostgreSQL's default iteration count (scram_iterations).
const scramIterations = 4096

// Verifier is a SCRAM-SHA-256 password verifier as PostgreSQL stores it in
// pg_authid.rolpassword:
// SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>.
type Verifier struct {
	Iterations int
	Salt       []byte
	StoredKey  []byte
	ServerKey  []byte
}

// NewVerifier derives a verifier from a password with a random salt, the
// way PostgreSQL does for password_encryption = scram-sha-256.
func NewVerifier(password string) (*Verifier, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return nil, err
	}
	return deriveVerifier(password, salt, scramIterations)
}

func deriveVerifier(password string, salt []byte, iter int) (*Verifier, error) {
	salted, err := pbkdf2.Key(sha256.New, saslPrep(password), salt, iter, sha256.Size)
	if err != nil {
		return nil, fmt.Errorf("derive scram key: %w", err)
	}
	clientKey := hmacSum(salted, "Client Key")
	stored := sha256.Sum256(clientKey)
	return &Verifier{Iterations: iter, Salt: salt, StoredKey: stored[:],
		ServerKey: hmacSum(salted, "Server Key")}, nil
}

// String formats the verifier as PostgreSQL stores it.
func (v *Verifier) String() string {
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", v.Iterations, b64(v.Salt),
		b64(v.StoredKey), b64(v.ServerKey))
}

// ParseVerifier reads a verifier in PostgreSQL's format. Its errors never
// quote the input.
func ParseVerifier(s string) (*Verifier, error) {
	bad := errors.New("not a SCRAM-SHA-256 verifier " +
		"(want SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>)")
	rest, ok := strings.CutPrefix(s, "SCRAM-SHA-256$")
	if !ok {
		return nil, bad
	}
	params, keys, ok := strings.Cut(rest, "$")
	if !ok {
		return nil, bad
	}
	iterText, saltText, ok1 := strings.Cut(params, ":")
	storedText, serverText, ok2 := strings.Cut(keys, ":")
	if !ok1 || !ok2 {
		return nil, bad
	}
	iter, err := strconv.Atoi(iterText)
	if err != nil || iter < 1 {
		return nil, bad
	}
	dec := base64.StdEncoding.DecodeString
	salt, err1 := dec(saltText)
	stored, err2 := dec(storedText)
	server, err3 := dec(serverText)
	if err1 != nil || err2 != nil || err3 != nil || len(salt) == 0 ||
		len(stored) != sha256.Size || len(server) != sha256.Size {
		return nil, bad
	}
	return &Verifier{Iterations: iter, Salt: salt, StoredKey: stored, ServerKey: server}, nil
}

func hmacSum(key []byte, msg string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(msg))
	return h.Sum(nil)
}

// saslPrep normalises a password as PostgreSQL's pg_saslprep does for the
// common cases: ASCII passwords are used as they are; others have non-ASCII
// spaces mapped to a space, "mapped to nothing" characters removed and NFKC
// applied. When the result holds a prohibited character, PostgreSQL uses the
// raw password, and so do we.
func saslPrep(password string) string {
	ascii := true
	for i := 0; i < len(password); i++ {
		if password[i] >= 0x80 {
			ascii = false
			break
		}
	}
	if ascii {
		return password
	}
	var b strings.Builder
	for _, r := range password {
		switch {
		case r == 0x00AD || r == 0x034F || r == 0x1806 || r == 0x180B || r == 0x180C ||
			r == 0x180D || r == 0x200B || r == 0x200C || r == 0x200D || r == 0x2060 ||
			r >= 0xFE00 && r <= 0xFE0F || r == 0xFEFF:
			// RFC 3454 B.1: mapped to nothing.
		case r != ' ' && unicode.Is(unicode.Zs, r):
			b.WriteByte(' ')
		default:
			b.WriteRune(r)
		}
	}
	out := norm.NFKC.String(b.String())
	for _, r := range out {
		if unicode.IsControl(r) || unicode.Is(unicode.Co, r) || unicode.Is(unicode.Cs, r) ||
			r >= 0xFFFE || r == 0xFFFD || unicode.Is(unicode.Zs, r) && r != ' ' {
			return password
		}
	}
	return out
}

// scramServer runs the server side of one SCRAM-SHA-256 exchange (RFC 5802
// and 7677, without channel binding).
type scramServer struct {
	v *Verifier
	// fake is set for an unknown user: the exchange runs to its end with a
	// made-up verifier and fails, so that a client cannot tell unknown
	// users from wrong passwords.
	fake bool

	gs2Header       string
	clientFirstBare string
	serverFirst     string
	nonce           string
}

// errSCRAM is a malformed SCRAM message: a protocol violation.
type errSCRAM string

func (e errSCRAM) Error() string { return "malformed SCRAM message: " + string(e) }

// errBadPassword means the proof did not match: a wrong password or an
// unknown user.
var errBadPassword = errors.New("password authentication failed")

// first reads client-first-message and returns server-first-message.
func (s *scramServer) first(msg []byte) ([]byte, error) {
	m := string(msg)
	var cbind string
	switch {
	case strings.HasPrefix(m, "n,"), strings.HasPrefix(m, "y,"):
		cbind, m = m[:1], m[2:]
	case strings.HasPrefix(m, "p="):
		return nil, errSCRAM("channel binding is not supported; connect with channel_binding=disable " +
			"or prefer")
	default:
		return nil, errSCRAM("bad gs2 header")
	}
	authzid, bare, ok := strings.Cut(m, ",")
	if !ok || authzid != "" && !strings.HasPrefix(authzid, "a=") {
		return nil, errSCRAM("bad gs2 header")
	}
	s.gs2Header = cbind + "," + authzid + ","
	s.clientFirstBare = bare
	user, rest, ok := strings.Cut(bare, ",")
	if !ok || !strings.HasPrefix(user, "n=") || !strings.HasPrefix(rest, "r=") {
		return nil, errSCRAM("client-first-message needs n= and r=")
	}
	cnonce, _, _ := strings.Cut(rest[2:], ",")
	unprintable := func(r rune) bool { return r < 0x21 || r > 0x7e }
	if cnonce == "" || strings.ContainsFunc(cnonce, unprintable) {
		return nil, errSCRAM("bad client nonce")
	}
	snonce := make([]byte, 18)
	if _, err := rand.Read(snonce); err != nil {
		return nil, err
	}
	s.nonce = cnonce + base64.StdEncoding.EncodeToString(snonce)
	s.serverFirst = fmt.Sprintf("r=%s,s=%s,i=%d", s.nonce,
		base64.StdEncoding.EncodeToString(s.v.Salt), s.v.Iterations)
	return []byte(s.serverFirst), nil
}

// final checks client-final-message and returns server-final-message.
func (s *scramServer) final(msg []byte) ([]byte, error) {
	m := string(msg)
	i := strings.LastIndex(m, ",p=")
	if i < 0 {
		return nil, errSCRAM("client-final-message has no proof")
	}
	withoutProof, proofText := m[:i], m[i+3:]
	cb, rest, ok := strings.Cut(withoutProof, ",")
	if !ok || !strings.HasPrefix(cb, "c=") {
		return nil, errSCRAM("client-final-message has no channel binding")
	}
	if got, err := base64.StdEncoding.DecodeString(cb[2:]); err != nil || string(got) != s.gs2Header {
		return nil, errSCRAM("channel binding does not match")
	}
	nonce, _, _ := strings.Cut(rest, ",")
	if nonce != "r="+s.nonce {
		return nil, errSCRAM("nonce does not match")
	}
	proof, err := base64.StdEncoding.DecodeString(proofText)
	if err != nil || len(proof) != sha256.Size {
		return nil, errSCRAM("bad proof")
	}
	authMessage := s.clientFirstBare + "," + s.serverFirst + "," + withoutProof
	sig := hmacSum(s.v.StoredKey, authMessage)
	clientKey := make([]byte, len(proof))
	subtle.XORBytes(clientKey, proof, sig)
	stored := sha256.Sum256(clientKey)
	if subtle.ConstantTimeCompare(stored[:], s.v.StoredKey) != 1 || s.fake {
		return nil, errBadPassword
	}
	serverSig := hmacSum(s.v.ServerKey, authMessage)
	return []byte("v=" + base64.StdEncoding.EncodeToString(serverSig)), nil
}

// fakeVerifier returns a verifier for an unknown user, stable for the
// process's lifetime so that repeated attempts see the same salt.
func fakeVerifier(secret []byte, user string) *Verifier {
	h := hmacSum(secret, user)
	return &Verifier{Iterations: scramIterations, Salt: h[:16], StoredKey: bytes.Repeat([]byte{0}, 32),
		ServerKey: bytes.Repeat([]byte{0}, 32)}
}
