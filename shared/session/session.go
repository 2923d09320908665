// Package session issues and verifies wxbridge's bearer tokens: the ones a
// mini program gets from POST /mp/login and an H5 page from the web OAuth
// sign-in (shared/signin). They are HS256 JWTs naming one app identity
// (appid and openid), signed with a key derived from wxbridge's own signing
// key (config.Config.SigningKey; not WeChat's per-user session_key). Tokens
// carry the id of their key, so a rotation (new key signs, previous key
// still verifies) logs nobody out.
package session

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const (
	issuer   = "wxbridge"
	audience = "wxbridge-mp"
	// DefaultTTL is how long a session lasts.
	DefaultTTL = 7 * 24 * time.Hour
)

// Session is who a token speaks for.
type Session struct {
	AppID  string // the mini program, or the official account of an H5 sign-in
	OpenID string // the user's openid in it
	// UID is the person at issue time; merges may change it, so handlers
	// resolve the person from the openid.
	UID     string
	Expires time.Time
}

// ErrInvalid reports a token that is malformed, forged, signed with an
// unknown key or expired.
var ErrInvalid = errors.New("session: invalid or expired session")

// Keys signs and verifies sessions.
type Keys struct {
	signing key
	verify  map[string]key
	ttl     time.Duration
	now     func() time.Time
}

type key struct {
	id     string
	secret []byte
}

// NewKeys returns Keys that sign with current and also verify with
// previous, if set. ttl 0 means DefaultTTL.
func NewKeys(current, previous string, ttl time.Duration) (*Keys, error) {
	if current == "" {
		return nil, errors.New("session: no signing key")
	}
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	k := &Keys{signing: derive(current), verify: map[string]key{}, ttl: ttl, now: time.Now}
	k.verify[k.signing.id] = k.signing
	if previous != "" {
		p := derive(previous)
		k.verify[p.id] = p
	}
	return k, nil
}

// derive separates the sessions' key from anything else the configured
// secret may be used for, and names it by a hash that reveals nothing.
func derive(secret string) key {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("wxbridge session v1"))
	k := m.Sum(nil)
	id := sha256.Sum256(k)
	return key{id: hex.EncodeToString(id[:4]), secret: k}
}

type claims struct {
	AppID string `json:"app"`
	UID   string `json:"uid,omitempty"`
	jwt.RegisteredClaims
}

// Issue signs a session for s; s.Expires is ignored and set from the TTL.
func (k *Keys) Issue(s Session) (string, Session, error) {
	now := k.now()
	s.Expires = now.Add(k.ttl).Truncate(time.Second)
	c := claims{AppID: s.AppID, UID: s.UID, RegisteredClaims: jwt.RegisteredClaims{
		Issuer:    issuer,
		Audience:  jwt.ClaimStrings{audience},
		Subject:   s.OpenID,
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(s.Expires),
	}}
	t := jwt.NewWithClaims(jwt.SigningMethodHS256, c)
	t.Header["kid"] = k.signing.id
	signed, err := t.SignedString(k.signing.secret)
	if err != nil {
		return "", Session{}, fmt.Errorf("session: sign: %w", err)
	}
	return signed, s, nil
}

// Verify checks a token's signature, key, issuer, audience and expiry.
func (k *Keys) Verify(token string) (Session, error) {
	var c claims
	_, err := jwt.ParseWithClaims(token, &c, func(t *jwt.Token) (any, error) {
		id, _ := t.Header["kid"].(string)
		key, ok := k.verify[id]
		if !ok {
			return nil, errors.New("unknown key")
		}
		return key.secret, nil
	},
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithIssuer(issuer),
		jwt.WithAudience(audience),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(k.now),
	)
	if err != nil || c.Subject == "" || c.AppID == "" {
		return Session{}, ErrInvalid
	}
	return Session{AppID: c.AppID, OpenID: c.Subject, UID: c.UID, Expires: c.ExpiresAt.Time}, nil
}
