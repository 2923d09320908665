// Package oauthstate is the anti-forgery state of WeChat's web OAuth
// (shared/signin). A state is signed (HMAC-SHA256 with a key derived from
// wxbridge's signing key), expires after ten minutes, carries a nonce and
// the scope, and binds the app it was issued for and the return_to URL
// that travels next to it; it is 68 hex digits, inside the platform's
// limit of 128 letters and digits. A Ledger makes each state single-use
// with a conditional write that expires by TTL.
//
// The appid is bound by the MAC rather than spelled out: the callback
// knows which app it serves from its route and verifies for that app, so
// a state issued for another app fails there as a forgery would, and the
// state stays short.
package oauthstate

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"wxbridge/shared/ddb"
)

// TTL is how long a state is accepted after it was issued: the time a
// visitor may spend on the platform's consent page.
const TTL = 10 * time.Minute

// The scopes a state can carry, as the platform spells them.
const (
	ScopeBase     = "snsapi_base"
	ScopeUserInfo = "snsapi_userinfo"
	ScopeLogin    = "snsapi_login" // a website app's QR login
)

// Layout of a state before hex encoding. Version 2 binds the appid;
// version 1 (before issue 14, one official account) did not.
const (
	version  = 2
	legacy   = 1
	nonceLen = 12
	macLen   = 16
	bodyLen  = 1 + 1 + 4 + nonceLen // version, scope, expiry, nonce
	// Len is the length of an encoded state, in hex digits.
	Len = 2 * (bodyLen + macLen)
)

// State is what a verified state says.
type State struct {
	// AppID is the app the state was issued for (a legacy state's: the
	// app it was accepted for, Keys.LegacyAppID).
	AppID    string
	Scope    string
	ReturnTo string
	Nonce    string // hex; names the state in the Ledger
	Expires  time.Time
}

// Errors of Verify and Ledger.Use.
var (
	ErrInvalid  = errors.New("oauthstate: malformed or forged state")
	ErrExpired  = errors.New("oauthstate: expired state")
	ErrReplayed = errors.New("oauthstate: state already used")
)

// Keys issues and verifies states.
type Keys struct {
	signing []byte
	verify  [][]byte
	// Now is the clock; tests replace it.
	Now func() time.Time
	// LegacyAppID is the app that legacy states (version 1, issued before
	// states named their app, when there was one official account) are
	// accepted for: the default official account. "" refuses them. They
	// last ten minutes, so only sign-ins in flight across the deploy that
	// introduced version 2 need it.
	LegacyAppID string
}

// NewKeys returns Keys that sign with a key derived from current and also
// verify with one derived from previous, if set, so that a signing-key
// rotation does not break visitors who are on the consent page.
func NewKeys(current, previous string) (*Keys, error) {
	if current == "" {
		return nil, errors.New("oauthstate: no signing key")
	}
	k := &Keys{signing: derive(current), Now: time.Now}
	k.verify = append(k.verify, k.signing)
	if previous != "" {
		k.verify = append(k.verify, derive(previous))
	}
	return k, nil
}

// derive separates the state key from the sessions signed with the same
// configured secret.
func derive(secret string) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("wxbridge oauth state v1"))
	return m.Sum(nil)
}

// Issue returns a new state of app appid for scope and returnTo.
func (k *Keys) Issue(appid, scope, returnTo string) (string, State, error) {
	sc, ok := scopeByte(scope)
	if !ok {
		return "", State{}, fmt.Errorf("oauthstate: unknown scope %q", scope)
	}
	if appid == "" {
		return "", State{}, errors.New("oauthstate: no appid")
	}
	expires := k.Now().Add(TTL).Truncate(time.Second).UTC()
	body := make([]byte, bodyLen, bodyLen+macLen)
	body[0], body[1] = version, sc
	binary.BigEndian.PutUint32(body[2:6], uint32(expires.Unix()))
	rand.Read(body[6:])
	tok := append(body, mac(k.signing, body, appid, returnTo)...)
	return hex.EncodeToString(tok), State{
		AppID: appid, Scope: scope, ReturnTo: returnTo, Nonce: hex.EncodeToString(body[6:]), Expires: expires,
	}, nil
}

// Verify checks that token was issued by these keys for app appid and
// returnTo and has not expired. It does not check single use: that is
// Ledger.Use.
func (k *Keys) Verify(token, appid, returnTo string) (State, error) {
	if len(token) != Len || appid == "" {
		return State{}, ErrInvalid
	}
	raw, err := hex.DecodeString(token)
	// One spelling per state: lower-case hex only.
	if err != nil || hex.EncodeToString(raw) != token {
		return State{}, ErrInvalid
	}
	body, sum := raw[:bodyLen], raw[bodyLen:]
	if body[0] != version && (body[0] != legacy || appid != k.LegacyAppID) {
		return State{}, ErrInvalid
	}
	good := false
	for _, key := range k.verify {
		if hmac.Equal(sum, mac(key, body, appid, returnTo)) {
			good = true
		}
	}
	scope := scopeName(body[1])
	if !good || scope == "" {
		return State{}, ErrInvalid
	}
	s := State{
		AppID:    appid,
		Scope:    scope,
		ReturnTo: returnTo,
		Nonce:    hex.EncodeToString(body[6:]),
		Expires:  time.Unix(int64(binary.BigEndian.Uint32(body[2:6])), 0).UTC(),
	}
	if !k.Now().Before(s.Expires) {
		return State{}, ErrExpired
	}
	return s, nil
}

// mac is the state's MAC over its body, the app and return_to. A legacy
// (version 1) body is MACed as it was then, without the app: the version
// byte is under the MAC, so a state of one version never passes as the
// other.
func mac(key, body []byte, appid, returnTo string) []byte {
	m := hmac.New(sha256.New, key)
	if body[0] == legacy {
		m.Write([]byte("wxbridge-oauth-state-v1\n"))
	} else {
		m.Write([]byte("wxbridge-oauth-state-v2\n"))
		m.Write(binary.BigEndian.AppendUint16(nil, uint16(len(appid))))
		m.Write([]byte(appid))
	}
	m.Write(body)
	m.Write([]byte("\n"))
	m.Write([]byte(returnTo))
	return m.Sum(nil)[:macLen]
}

func scopeByte(scope string) (byte, bool) {
	switch scope {
	case ScopeBase:
		return 'b', true
	case ScopeUserInfo:
		return 'u', true
	case ScopeLogin:
		return 'l', true
	}
	return 0, false
}

func scopeName(b byte) string {
	switch b {
	case 'b':
		return ScopeBase
	case 'u':
		return ScopeUserInfo
	case 'l':
		return ScopeLogin
	}
	return ""
}

// DB is the DynamoDB call a Ledger makes.
type DB interface {
	PutItem(context.Context, *dynamodb.PutItemInput, ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
}

// Ledger remembers used states in the table until they expire.
type Ledger struct {
	db    DB
	table string
}

// NewLedger returns a Ledger over table.
func NewLedger(db DB, table string) *Ledger { return &Ledger{db: db, table: table} }

// ttlSlack keeps a used state's record a little past its expiry, for
// clocks that disagree by that much across Lambda hosts.
const ttlSlack = 5 * time.Minute

// Use records s as used. It returns ErrReplayed if s was used before, by
// this or any other caller.
func (l *Ledger) Use(ctx context.Context, s State) error {
	it := ddb.Key("OAUTHSTATE#" + s.Nonce)
	it["ttl"] = ddb.TTL(s.Expires.Add(ttlSlack))
	_, err := l.db.PutItem(ctx, &dynamodb.PutItemInput{
		TableName:           &l.table,
		Item:                it,
		ConditionExpression: aws.String("attribute_not_exists(pk)"),
	})
	if _, lost := ddb.ConditionFailed(err); lost {
		return ErrReplayed
	}
	if err != nil {
		return fmt.Errorf("oauthstate: record use: %w", err)
	}
	return nil
}
