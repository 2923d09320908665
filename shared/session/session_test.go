package session

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const (
	keyA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	keyB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

func at(k *Keys, t time.Time) *Keys { k.now = func() time.Time { return t }; return k }

func mustKeys(t *testing.T, cur, prev string) *Keys {
	t.Helper()
	k, err := NewKeys(cur, prev, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestIssueAndVerify(t *testing.T) {
	now := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	k := at(mustKeys(t, keyA, ""), now)
	tok, s, err := k.Issue(Session{AppID: "wxmp", OpenID: "o1", UID: "U1"})
	if err != nil {
		t.Fatal(err)
	}
	if !s.Expires.Equal(now.Add(time.Hour)) {
		t.Errorf("expires = %v", s.Expires)
	}
	got, err := k.Verify(tok)
	if err != nil || got.OpenID != "o1" || got.AppID != "wxmp" || got.UID != "U1" {
		t.Fatalf("Verify = %+v, %v", got, err)
	}
	if strings.Contains(tok, keyA) {
		t.Fatal("token contains the key")
	}
}

func TestVerifyRejects(t *testing.T) {
	now := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	a := at(mustKeys(t, keyA, ""), now)
	good, _, _ := a.Issue(Session{AppID: "wxmp", OpenID: "o1"})

	none := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"sub": "o1", "app": "wxmp", "iss": issuer, "aud": audience, "exp": now.Add(time.Hour).Unix()})
	unsigned, _ := none.SignedString(jwt.UnsafeAllowNoneSignatureType)

	noExp := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "o1", "app": "wxmp", "iss": issuer, "aud": audience})
	noExp.Header["kid"] = a.signing.id
	noExpTok, _ := noExp.SignedString(a.signing.secret)

	cases := map[string]struct {
		keys  *Keys
		token string
	}{
		"expired":               {at(mustKeys(t, keyA, ""), now.Add(2*time.Hour)), good},
		"other_key":             {at(mustKeys(t, keyB, ""), now), good},
		"tampered":              {a, good[:len(good)-3] + "AAA"},
		"alg_none":              {a, unsigned},
		"no_expiry":             {a, noExpTok},
		"garbage":               {a, "not.a.token"},
		"empty":                 {a, ""},
		"raw_key_not_derived_1": {a, rawSigned(t, keyA, a.signing.id, now)},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := tc.keys.Verify(tc.token); !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
		})
	}
}

// rawSigned signs with the configured string itself rather than the key
// derived from it: such a token must not verify.
func rawSigned(t *testing.T, secret, kid string, now time.Time) string {
	tk := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "o1", "app": "wxmp", "iss": issuer, "aud": audience, "exp": now.Add(time.Hour).Unix()})
	tk.Header["kid"] = kid
	s, err := tk.SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRotation(t *testing.T) {
	now := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	old := at(mustKeys(t, keyA, ""), now)
	tok, _, _ := old.Issue(Session{AppID: "wxmp", OpenID: "o1"})

	rotated := at(mustKeys(t, keyB, keyA), now)
	if _, err := rotated.Verify(tok); err != nil {
		t.Fatalf("a session signed before the rotation must still verify: %v", err)
	}
	newTok, _, _ := rotated.Issue(Session{AppID: "wxmp", OpenID: "o1"})
	if _, err := old.Verify(newTok); err == nil {
		t.Fatal("the old key alone must not verify sessions signed with the new one")
	}
	done := at(mustKeys(t, keyB, ""), now)
	if _, err := done.Verify(tok); err == nil {
		t.Fatal("once the previous key is dropped its sessions must fail")
	}
}
