package binding

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"wxbridge/infra/devkit/awstest"
)

func TestMain(m *testing.M) { awstest.Main(m) }

const (
	key  = "business-shared-bind-key-0123456789abcdef"
	key2 = "business-shared-bind-key-rotated-987654321"
)

var now = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

func verifier(keys ...string) *Verifier {
	v := NewVerifier(keys...)
	v.Now = func() time.Time { return now }
	return v
}

func TestSignVerify(t *testing.T) {
	tok, err := Sign(key, "8812", now.Add(10*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if id, err := verifier(key).Verify(tok); err != nil || id != "8812" {
		t.Fatalf("Verify = %q, %v", id, err)
	}
	// The longest token still fits a QR scene string with its qrscene_
	// prefix stripped (64 characters).
	long, _ := Sign(key, strings.Repeat("x", MaxExternalID), now.Add(MaxLifetime))
	if len(long) > 64 {
		t.Errorf("longest token is %d characters", len(long))
	}
}

// TestKnownToken pins the format so that business backends in other
// languages can check their implementation against it.
func TestKnownToken(t *testing.T) {
	tok, _ := Sign(key, "8812", time.Unix(1795000000, 0))
	// Computed independently with Python's hmac module from the package doc.
	const want = "8812.top2v4.-7gNVJ-MF0zwBQDNCyAD4w"
	if tok != want {
		t.Fatalf("Sign = %q, want %q", tok, want)
	}
}

func TestVerifyRejects(t *testing.T) {
	good, _ := Sign(key, "8812", now.Add(10*time.Minute))
	expired, _ := Sign(key, "8812", now.Add(-time.Second))
	tooLong, _ := Sign(key, "8812", now.Add(MaxLifetime+time.Hour))
	parts := strings.Split(good, ".")
	cases := map[string]string{
		"other_key":          mustSign(t, key2, "8812"),
		"swapped_id":         "8813." + parts[1] + "." + parts[2],
		"extended_expiry":    parts[0] + ".zzzzzz." + parts[2],
		"expired":            expired,
		"lifetime_too_long":  tooLong,
		"missing_part":       parts[0] + "." + parts[1],
		"bad_external_id":    "88 12." + parts[1] + "." + parts[2],
		"empty":              "",
		"extra_part":         good + ".x",
		"non_base36_expiry!": parts[0] + ".!!." + parts[2],
	}
	for name, tok := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := verifier(key).Verify(tok); !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
		})
	}
}

func TestRotation(t *testing.T) {
	old := mustSign(t, key, "8812")
	if _, err := verifier(key2, key).Verify(old); err != nil {
		t.Fatalf("token signed with the previous key: %v", err)
	}
	if _, err := verifier(key2).Verify(old); err == nil {
		t.Fatal("token signed with a dropped key verified")
	}
}

func TestSignRejectsBadExternalIDs(t *testing.T) {
	for _, id := range []string{"", "a.b", "用户", strings.Repeat("x", MaxExternalID+1)} {
		if _, err := Sign(key, id, now.Add(time.Minute)); err == nil {
			t.Errorf("Sign(%q) succeeded", id)
		}
	}
}

func mustSign(t *testing.T, k, id string) string {
	t.Helper()
	tok, err := Sign(k, id, now.Add(10*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestTokenBindsOneUser: the first WeChat user a token binds spends it; the
// same user may present it again, anyone else is refused, whichever comes
// first among concurrent strangers.
func TestTokenBindsOneUser(t *testing.T) {
	ctx := context.Background()
	uses := NewUses(dynamodb.NewFromConfig(awstest.Config(nil)), awstest.Table(t))
	tok, err := verifier(key).Check(mustSign(t, key, "8812"))
	if err != nil || tok.ExternalID != "8812" || !tok.Expires.Equal(now.Add(10*time.Minute).Truncate(time.Second)) {
		t.Fatalf("Check = %+v, %v", tok, err)
	}
	if first, err := uses.Spend(ctx, tok, "UNION#victim"); err != nil || !first {
		t.Fatalf("first spend: %v, %v", first, err)
	}
	if first, err := uses.Spend(ctx, tok, "UNION#victim"); err != nil || first {
		t.Fatalf("the same user presenting the token again: %v, %v", first, err)
	}
	if _, err := uses.Spend(ctx, tok, "UNION#stranger"); !errors.Is(err, ErrSpent) {
		t.Fatalf("a stranger presenting a spent token: %v, want ErrSpent", err)
	}
	// Only the holder can give it back; then it is free again.
	if err := uses.Unspend(ctx, tok, "UNION#stranger"); err != nil {
		t.Fatal(err)
	}
	if _, err := uses.Spend(ctx, tok, "UNION#stranger"); !errors.Is(err, ErrSpent) {
		t.Fatalf("a stranger unspent the victim's token: %v", err)
	}
	if err := uses.Unspend(ctx, tok, "UNION#victim"); err != nil {
		t.Fatal(err)
	}
	if first, err := uses.Spend(ctx, tok, "UNION#stranger"); err != nil || !first {
		t.Fatalf("a token given back: %v, %v", first, err)
	}
	// Another token for the same account is a token of its own.
	other, _ := verifier(key).Check(mustSignAt(t, key, "8812", now.Add(20*time.Minute)))
	if _, err := uses.Spend(ctx, other, "UNION#someone"); err != nil {
		t.Fatalf("a second token: %v", err)
	}

	fresh, _ := verifier(key).Check(mustSignAt(t, key, "9001", now.Add(time.Hour)))
	var wg sync.WaitGroup
	var mu sync.Mutex
	won := 0
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := uses.Spend(ctx, fresh, fmt.Sprint("UNION#racer", i))
			if err != nil && !errors.Is(err, ErrSpent) {
				t.Error(err)
			}
			if err == nil {
				mu.Lock()
				won++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if won != 1 {
		t.Fatalf("%d racers bound with one token, want 1", won)
	}
}

func mustSignAt(t *testing.T, k, id string, exp time.Time) string {
	t.Helper()
	tok, err := Sign(k, id, exp)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
