package cache

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"sync"
)

// Key is one encryption key: 32 bytes, named by an ID that is stored with
// every value it seals.
type Key struct {
	ID     string
	Secret []byte
}

// Keyring seals values with AES-256-GCM under its newest key and opens
// values sealed under any key it holds. Keys are listed newest first.
//
// Each value is sealed under a key derived from the configured secret and
// the entry's name (HMAC-SHA-256), with a random nonce. Deriving per entry
// keeps the number of random nonces drawn under one AES key to the number of
// times that one entry is refilled, far below GCM's limit of 2^32, however
// long a configured key stays in use.
type Keyring struct {
	keys []*ringKey
}

type ringKey struct {
	id   string
	macs sync.Pool // HMAC-SHA-256 under the secret
}

// ErrUnknownKey means a value was sealed under a key the ring no longer
// holds: the entry is a miss.
var ErrUnknownKey = errors.New("cache: value sealed under a key that is not configured")

// errOpen means a value failed authentication: altered, or sealed for
// another entry.
var errOpen = errors.New("cache: value failed authentication")

const (
	sealFormat = 1
	nonceSize  = 12
)

// NewKeyring checks keys (newest first) and returns a ring over them.
func NewKeyring(keys ...Key) (*Keyring, error) {
	if len(keys) == 0 {
		return nil, errors.New("cache: no encryption keys")
	}
	r := &Keyring{}
	seen := map[string]bool{}
	for _, k := range keys {
		switch {
		case k.ID == "" || len(k.ID) > 64:
			return nil, fmt.Errorf("cache: key id %q: want 1 to 64 bytes", k.ID)
		case seen[k.ID]:
			return nil, fmt.Errorf("cache: key id %q listed twice", k.ID)
		case len(k.Secret) != 32:
			return nil, fmt.Errorf("cache: key %q: secret is %d bytes, want 32", k.ID, len(k.Secret))
		}
		seen[k.ID] = true
		secret := append([]byte(nil), k.Secret...)
		rk := &ringKey{id: k.ID}
		rk.macs.New = func() any { return hmac.New(sha256.New, secret) }
		r.keys = append(r.keys, rk)
	}
	return r, nil
}

// RandomKeyring returns a ring with one fresh random key, for a cache that
// lives and dies with the process.
func RandomKeyring() *Keyring {
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		panic(err)
	}
	r, _ := NewKeyring(Key{ID: "process", Secret: secret})
	return r
}

// Newest is the ID of the key new values are sealed under.
func (r *Keyring) Newest() string { return r.keys[0].id }

// seal encrypts plain for the entry named name, authenticating aad too.
// The result is: format byte, key ID length, key ID, nonce, ciphertext.
func (r *Keyring) seal(name string, plain, aad []byte) ([]byte, error) {
	k := r.keys[0]
	out := make([]byte, 0, 2+len(k.id)+nonceSize+len(plain)+16)
	out = append(out, sealFormat, byte(len(k.id)))
	out = append(out, k.id...)
	header := len(out)
	out = out[:header+nonceSize]
	if _, err := rand.Read(out[header:]); err != nil {
		return nil, fmt.Errorf("cache: nonce: %w", err)
	}
	aead, err := k.aead(name)
	if err != nil {
		return nil, err
	}
	return aead.Seal(out, out[header:], plain, withHeader(aad, out[:header])), nil
}

// open decrypts a value seal produced for the entry named name.
func (r *Keyring) open(name string, sealed, aad []byte) ([]byte, error) {
	if len(sealed) < 2 || sealed[0] != sealFormat || len(sealed) < 2+int(sealed[1])+nonceSize+16 {
		return nil, errOpen
	}
	header := 2 + int(sealed[1])
	id := string(sealed[2:header])
	for _, k := range r.keys {
		if k.id != id {
			continue
		}
		aead, err := k.aead(name)
		if err != nil {
			return nil, err
		}
		nonce := sealed[header : header+nonceSize]
		plain, err := aead.Open(nil, nonce, sealed[header+nonceSize:], withHeader(aad, sealed[:header]))
		if err != nil {
			return nil, errOpen
		}
		return plain, nil
	}
	return nil, ErrUnknownKey
}

// aead derives the entry's own AES-256-GCM key from the secret.
func (k *ringKey) aead(name string) (cipher.AEAD, error) {
	mac := k.macs.Get().(hash.Hash)
	mac.Reset()
	mac.Write([]byte("privata cache value key v1\x00"))
	mac.Write([]byte(name))
	var sum [sha256.Size]byte
	mac.Sum(sum[:0])
	k.macs.Put(mac)
	block, err := aes.NewCipher(sum[:])
	if err != nil {
		return nil, fmt.Errorf("cache: cipher: %w", err)
	}
	return cipher.NewGCM(block)
}

// withHeader binds the format and key ID into the authenticated data, so
// that a value cannot be relabelled with another key's ID.
func withHeader(aad, header []byte) []byte {
	out := make([]byte, 0, len(aad)+len(header))
	return append(append(out, header...), aad...)
}
