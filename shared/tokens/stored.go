// Package tokens is how wxbridge functions get WeChat access tokens without
// ever calling a token endpoint: the token-refresher keeps one token per app
// in a Secrets Manager secret, and Source reads those secrets for everyone
// else, caching, sharing reads, asking the refresher for a first token when
// there is none yet and for a forced refresh when the platform refuses one.
//
// This package holds the contract between the two sides: the secret's JSON
// (Stored, Load), the refresher's request (RefreshRequest) and how a
// request is delivered (Invoker); and the refresher's rules, which it
// carries out: when a stored token needs refreshing (Decide), the force
// budget (ForceBudget), and the per-app lease and budget items in the table
// (Ledger). Only the token-refresher calls the token endpoints.
package tokens

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"

	"wxbridge/shared/awsenv"
	"wxbridge/shared/wechat"
)

// Stored is the JSON of an app's token secret. Only the token-refresher
// writes it.
type Stored struct {
	AccessToken string    `json:"access_token,omitempty"`
	ExpiresAt   time.Time `json:"expires_at,omitzero"`
	RefreshedAt time.Time `json:"refreshed_at,omitzero"`
	// Failure is the refresher's last failed attempt, kept until a refresh
	// succeeds. Readers look at it only when the token is unusable, to tell
	// callers why (40164 and the rid, rather than "no token").
	Failure *Failure `json:"failure,omitempty"`
}

// Usable reports whether the stored token can still be used at now. A
// token this close to its expiry (expirySkew) would expire in flight.
func (s Stored) Usable(now time.Time) bool {
	return s.AccessToken != "" && now.Before(s.ExpiresAt.Add(-expirySkew))
}

// expirySkew keeps a token from being handed out in its last second.
const expirySkew = time.Second

// String formats the record with the token redacted.
func (s Stored) String() string {
	return fmt.Sprintf("tokens.Stored{AccessToken:%s ExpiresAt:%s RefreshedAt:%s}",
		redacted(s.AccessToken), s.ExpiresAt.Format(time.RFC3339), s.RefreshedAt.Format(time.RFC3339))
}

// GoString keeps %#v from printing the token.
func (s Stored) GoString() string { return s.String() }

// LogValue logs the record with the token replaced by its fingerprint.
func (s Stored) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("token", Fingerprint(s.AccessToken)),
		slog.Time("expires_at", s.ExpiresAt),
		slog.Time("refreshed_at", s.RefreshedAt),
	)
}

func redacted(s string) string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// Load reads the token secret id. A secret the refresher has not written
// yet reads as no token (the zero Stored, nil): one that does not exist (the
// secret of an app beyond the defaults, which the refresher creates on the
// app's first refresh), one created without a value (no AWSCURRENT
// version), with an empty value, or with a placeholder that is not a JSON
// object ("{}", which the stack creates, is an object without a token). The
// value never appears in an error.
func Load(ctx context.Context, secrets awsenv.SecretGetter, id string) (Stored, error) {
	var st Stored
	out, err := secrets.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(id)})
	var nf *smtypes.ResourceNotFoundException
	switch {
	case errors.As(err, &nf):
		// No such secret yet, or no current value yet. A stack secret
		// that was deleted reads the same; the refresher, which cannot
		// recreate it, reports that.
		return st, nil
	case err != nil:
		return st, fmt.Errorf("tokens: read token secret %s: %w", id, err)
	case out.SecretString == nil:
		return st, fmt.Errorf("%w: %s has no string value", awsenv.ErrSecretFormat, id)
	}
	v := strings.TrimSpace(*out.SecretString)
	if !strings.HasPrefix(v, "{") {
		return st, nil // empty, or a placeholder
	}
	if err := json.Unmarshal([]byte(v), &st); err != nil {
		// Not err itself: a syntax error can quote the value.
		return Stored{}, fmt.Errorf("%w: %s is not a token record", awsenv.ErrSecretFormat, id)
	}
	return st, nil
}

// Failure is a failed refresh as the refresher recorded it.
type Failure struct {
	At      time.Time `json:"at"`
	API     string    `json:"api,omitempty"`
	ErrCode int       `json:"errcode,omitempty"`
	ErrMsg  string    `json:"errmsg,omitempty"`
	RID     string    `json:"rid,omitempty"`
	Class   string    `json:"class"` // wechat.Class name
}

// FailureOf records err, a failed token-endpoint call, at at.
func FailureOf(err error, at time.Time) *Failure {
	f := &Failure{At: at, Class: wechat.ClassOf(err).String()}
	var we *wechat.Error
	if errors.As(err, &we) {
		f.API, f.ErrCode, f.ErrMsg, f.RID = we.API, we.Code, we.Message, we.RID
	} else {
		// The wechat package's errors never carry the request URL, so the
		// text is free of credentials.
		f.ErrMsg = err.Error()
	}
	return f
}

// Same reports whether f and g are the same failure, ignoring when it
// happened and its rid.
func (f *Failure) Same(g *Failure) bool {
	if f == nil || g == nil {
		return f == g
	}
	return f.API == g.API && f.ErrCode == g.ErrCode && f.Class == g.Class
}

// err rebuilds the platform's answer, so that callers classify and log it
// like any other WeChat error.
func (f *Failure) err() error {
	if f.ErrCode != 0 {
		return &wechat.Error{API: f.API, Code: f.ErrCode, Message: f.ErrMsg, RID: f.RID}
	}
	return errors.New(f.ErrMsg)
}

func (f *Failure) class() wechat.Class {
	for c := wechat.ClassNone; c < 64; c++ { // past the last class String says "unknown"
		if c.String() == f.Class {
			return c
		}
	}
	return wechat.ClassUnknown
}

// Fingerprint names a token without revealing it: the first 16 bytes of its
// SHA-256, in hex. Requests and logs carry fingerprints, never tokens.
func Fingerprint(token string) string {
	if token == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:16])
}

// RefreshRequest is the token-refresher's event. The zero value, which the
// schedule sends, is a normal run over every app; AppID alone asks for a
// normal run of one app (a function found no usable token); AppID and
// Refused ask for a forced refresh of one app because the platform refused
// the token whose Fingerprint is Refused.
type RefreshRequest struct {
	AppID   string `json:"appid,omitempty"`
	Refused string `json:"refused,omitempty"`
}
