package oauthstate

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"wxbridge/infra/devkit/awstest"
)

func TestMain(m *testing.M) { awstest.Main(m) }

const (
	key     = "session-signing-key-for-tests-0123456789abcdef"
	newKey  = "a-newer-session-key-for-tests-0123456789abcdef"
	page    = "https://h5.example.com/orders/8812?tab=shipped&utm_source=timeline"
	other   = "https://h5.example.com/orders/8813"
	wxState = `^[a-zA-Z0-9]{1,128}$`
	oa      = "wx5a0dbe0c0de00002"
	oa2     = "wx5a0dbe0c0de00012"
)

func keys(t *testing.T, current, previous string, now time.Time) *Keys {
	t.Helper()
	k, err := NewKeys(current, previous)
	if err != nil {
		t.Fatal(err)
	}
	k.Now = func() time.Time { return now }
	return k
}

func TestIssueVerify(t *testing.T) {
	t0 := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	k := keys(t, key, "", t0)
	tok, st, err := k.Issue(oa, ScopeUserInfo, page)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(wxState).MatchString(tok) || len(tok) != Len {
		t.Fatalf("state %q does not fit the platform's 128 letters and digits", tok)
	}
	if st.Scope != ScopeUserInfo || st.ReturnTo != page || len(st.Nonce) != 2*nonceLen || !st.Expires.Equal(t0.Add(TTL)) {
		t.Fatalf("issued %+v", st)
	}
	got, err := k.Verify(tok, oa, page)
	if err != nil || got != st {
		t.Fatalf("Verify = %+v, %v; want %+v", got, err, st)
	}
	tok2, st2, _ := k.Issue(oa, ScopeBase, page)
	if tok2 == tok || st2.Nonce == st.Nonce {
		t.Error("two states share a nonce")
	}
	if got, _ := k.Verify(tok2, oa, page); got.Scope != ScopeBase {
		t.Errorf("scope %q, want snsapi_base", got.Scope)
	}

	t.Run("expires_after_ten_minutes", func(t *testing.T) {
		late := keys(t, key, "", t0.Add(TTL-time.Second))
		if _, err := late.Verify(tok, oa, page); err != nil {
			t.Errorf("a second before expiry: %v", err)
		}
		late.Now = func() time.Time { return t0.Add(TTL) }
		if _, err := late.Verify(tok, oa, page); !errors.Is(err, ErrExpired) {
			t.Errorf("at expiry: %v, want ErrExpired", err)
		}
	})

	t.Run("return_to_is_bound", func(t *testing.T) {
		for _, rt := range []string{other, page + "&x=1", "", strings.ToUpper(page)} {
			if _, err := k.Verify(tok, oa, rt); !errors.Is(err, ErrInvalid) {
				t.Errorf("return_to %q: %v, want ErrInvalid", rt, err)
			}
		}
	})

	t.Run("forgeries", func(t *testing.T) {
		flip := func(i int) string {
			b := []byte(tok)
			if b[i] == '0' {
				b[i] = '1'
			} else {
				b[i] = '0'
			}
			return string(b)
		}
		cases := map[string]string{
			"empty": "", "short": tok[:Len-2], "long": tok + "00", "not_hex": "g" + tok[1:],
			"upper_case": strings.ToUpper(tok),
		}
		// Every byte counts: version, scope, expiry, nonce and MAC.
		for i := 0; i < Len; i += 2 {
			cases[fmt.Sprint("byte_", i/2)] = flip(i)
		}
		for name, forged := range cases {
			if forged == tok {
				continue
			}
			if _, err := k.Verify(forged, oa, page); !errors.Is(err, ErrInvalid) {
				t.Errorf("%s: %v, want ErrInvalid", name, err)
			}
		}
		stranger := keys(t, "someone-elses-key-0123456789abcdef0123", "", t0)
		if _, err := stranger.Verify(tok, oa, page); !errors.Is(err, ErrInvalid) {
			t.Errorf("another key verified it: %v", err)
		}
	})

	t.Run("rotation_keeps_states_in_flight", func(t *testing.T) {
		rotated := keys(t, newKey, key, t0)
		if _, err := rotated.Verify(tok, oa, page); err != nil {
			t.Errorf("previous key: %v", err)
		}
		fresh, _, _ := rotated.Issue(oa, ScopeBase, page)
		if _, err := k.Verify(fresh, oa, page); !errors.Is(err, ErrInvalid) {
			t.Error("the old keys verify a state of the new key alone")
		}
	})

	t.Run("states_and_sessions_use_different_keys", func(t *testing.T) {
		if string(derive(key)) == key {
			t.Error("the session key is used as is")
		}
	})

	t.Run("app_is_bound", func(t *testing.T) {
		if got, _ := k.Verify(tok, oa, page); got.AppID != oa {
			t.Errorf("AppID %q, want %s", got.AppID, oa)
		}
		// A state of one app presented at another app's callback.
		for _, app := range []string{oa2, "", strings.ToUpper(oa), oa + "0"} {
			if _, err := k.Verify(tok, app, page); !errors.Is(err, ErrInvalid) {
				t.Errorf("appid %q: %v, want ErrInvalid", app, err)
			}
		}
		web, st, err := k.Issue(oa2, ScopeLogin, page)
		if err != nil || st.AppID != oa2 || st.Scope != ScopeLogin {
			t.Fatalf("Issue(snsapi_login) = %+v, %v", st, err)
		}
		if got, err := k.Verify(web, oa2, page); err != nil || got != st {
			t.Errorf("Verify = %+v, %v; want %+v", got, err, st)
		}
		if _, err := k.Verify(web, oa, page); !errors.Is(err, ErrInvalid) {
			t.Errorf("website app's state at the OA: %v, want ErrInvalid", err)
		}
		if _, _, err := k.Issue("", ScopeBase, page); err == nil {
			t.Error("state issued for no app")
		}
	})

	// States issued before they named their app are accepted for the one
	// app that could have issued them, named by LegacyAppID, and nowhere
	// else; a state of today never passes as one of them.
	t.Run("legacy_states", func(t *testing.T) {
		old := legacyState(k, ScopeUserInfo, page)
		if _, err := k.Verify(old, oa, page); !errors.Is(err, ErrInvalid) {
			t.Errorf("without LegacyAppID: %v, want ErrInvalid", err)
		}
		lk := keys(t, key, "", t0)
		lk.LegacyAppID = oa
		got, err := lk.Verify(old, oa, page)
		if err != nil || got.AppID != oa || got.Scope != ScopeUserInfo {
			t.Errorf("at the legacy app: %+v, %v", got, err)
		}
		for name, c := range map[string]struct{ tok, appid, rt string }{
			"another_app":       {old, oa2, page},
			"return_to_swapped": {old, oa, other},
			"version_2_as_1":    {"01" + tok[2:], oa, page},
		} {
			if _, err := lk.Verify(c.tok, c.appid, c.rt); !errors.Is(err, ErrInvalid) {
				t.Errorf("%s: %v, want ErrInvalid", name, err)
			}
		}
	})

	if _, _, err := k.Issue(oa, "snsapi_privateinfo", page); err == nil {
		t.Error("unknown scope issued")
	}
	if _, err := NewKeys("", ""); err == nil {
		t.Error("keys without a secret")
	}
}

// legacyState is a state as version 1 issued it: no app under the MAC.
func legacyState(k *Keys, scope, returnTo string) string {
	sc, _ := scopeByte(scope)
	body := make([]byte, bodyLen)
	body[0], body[1] = legacy, sc
	binary.BigEndian.PutUint32(body[2:6], uint32(k.Now().Add(TTL).Unix()))
	rand.Read(body[6:])
	return hex.EncodeToString(append(body, mac(k.signing, body, "", returnTo)...))
}

func TestLedger(t *testing.T) {
	table := awstest.Table(t)
	db := dynamodb.NewFromConfig(awstest.Config(nil))
	l := NewLedger(db, table)
	ctx := context.Background()
	k := keys(t, key, "", time.Now())
	_, st, _ := k.Issue(oa, ScopeBase, page)

	if err := l.Use(ctx, st); err != nil {
		t.Fatal(err)
	}
	if err := l.Use(ctx, st); !errors.Is(err, ErrReplayed) {
		t.Fatalf("second use: %v, want ErrReplayed", err)
	}
	_, st2, _ := k.Issue(oa, ScopeBase, page)
	if err := l.Use(ctx, st2); err != nil {
		t.Fatalf("another state: %v", err)
	}

	t.Run("record_expires_by_ttl", func(t *testing.T) {
		out, err := db.Scan(ctx, &dynamodb.ScanInput{TableName: &table})
		if err != nil || len(out.Items) != 2 {
			t.Fatalf("scan: %v, %d items", err, len(out.Items))
		}
		for _, it := range out.Items {
			if _, ok := it["ttl"]; !ok {
				t.Errorf("item %v has no ttl", it["pk"])
			}
		}
	})

	t.Run("concurrent_uses_one_wins", func(t *testing.T) {
		_, st, _ := k.Issue(oa, ScopeUserInfo, page)
		const n = 16
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for range n {
			wg.Go(func() { errs <- l.Use(ctx, st) })
		}
		wg.Wait()
		close(errs)
		won := 0
		for err := range errs {
			switch {
			case err == nil:
				won++
			case !errors.Is(err, ErrReplayed):
				t.Errorf("unexpected: %v", err)
			}
		}
		if won != 1 {
			t.Errorf("%d of %d concurrent uses won, want 1", won, n)
		}
	})
}
