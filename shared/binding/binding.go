// Package binding is how a business backend vouches "this WeChat user is my
// user X": a short-lived token it signs with the bind key it shares with
// wxbridge, which the mini program passes along at login (or which rides in
// a parametric QR code's scene). Verifying it lets wxbridge attach the
// business's external_id to the person. A token is single-use: the first
// WeChat user it binds spends it (Uses), and it binds nobody else, so that a
// QR code photographed off a victim's screen binds no stranger.
//
// The token is compact so that it fits a QR scene string (64 characters):
//
//	<external_id>.<expiry>.<mac>
//
// external_id is 1-32 characters of [A-Za-z0-9_-]; expiry is the Unix time
// in seconds, base 36; mac is the first 16 bytes of
// HMAC-SHA256(bind_key, "wxbridge-bind-v1\n" + external_id + "\n" + expiry),
// base64url without padding (22 characters). Any language can produce it;
// Sign is the reference.
package binding

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

const (
	// MaxExternalID is the longest external_id a token can carry.
	MaxExternalID = 32
	// MaxLifetime is the furthest in the future a token may expire: a
	// temporary parametric QR code lives at most 30 days.
	MaxLifetime = 30 * 24 * time.Hour
	macLen      = 16
	macContext  = "wxbridge-bind-v1\n"
)

// ErrInvalid reports a malformed, forged or expired binding token.
var ErrInvalid = errors.New("binding: invalid or expired binding token")

// ValidExternalID reports whether id can be carried by a binding token.
func ValidExternalID(id string) bool {
	if id == "" || len(id) > MaxExternalID {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// Sign returns a token binding externalID until expires.
func Sign(key, externalID string, expires time.Time) (string, error) {
	if !ValidExternalID(externalID) {
		return "", fmt.Errorf("binding: external_id must be 1-%d characters of [A-Za-z0-9_-]", MaxExternalID)
	}
	if key == "" {
		return "", errors.New("binding: no bind key")
	}
	exp := strconv.FormatInt(expires.Unix(), 36)
	return externalID + "." + exp + "." + mac(key, externalID, exp), nil
}

func mac(key, externalID, exp string) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(macContext + externalID + "\n" + exp))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:macLen])
}

// Verifier checks binding tokens against the current bind key and, during a
// rotation, the previous one.
type Verifier struct {
	keys []string
	Now  func() time.Time
}

// NewVerifier returns a Verifier; empty keys are ignored.
func NewVerifier(keys ...string) *Verifier {
	v := &Verifier{Now: time.Now}
	for _, k := range keys {
		if k != "" {
			v.keys = append(v.keys, k)
		}
	}
	return v
}

// Token is a verified binding token: what it binds and until when. It is
// spent (Uses.Spend) by the first WeChat user it binds.
type Token struct {
	ExternalID string
	Expires    time.Time
	mac        string // identifies the token in the store; the token is never stored
}

// Verify returns the external_id a valid token binds.
func (v *Verifier) Verify(token string) (string, error) {
	t, err := v.Check(token)
	return t.ExternalID, err
}

// Check verifies token and returns it, or ErrInvalid.
func (v *Verifier) Check(token string) (Token, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 || !ValidExternalID(parts[0]) {
		return Token{}, ErrInvalid
	}
	id, exp, sig := parts[0], parts[1], parts[2]
	secs, err := strconv.ParseInt(exp, 36, 64)
	if err != nil {
		return Token{}, ErrInvalid
	}
	now := v.Now()
	expires := time.Unix(secs, 0)
	if !now.Before(expires) || expires.Sub(now) > MaxLifetime {
		return Token{}, ErrInvalid
	}
	for _, k := range v.keys {
		if hmac.Equal([]byte(sig), []byte(mac(k, id, exp))) {
			return Token{ExternalID: id, Expires: expires, mac: sig}, nil
		}
	}
	return Token{}, ErrInvalid
}
