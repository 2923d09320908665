package binding

// Attacks on single-use bind tokens (issue 12, defect 2): the same user
// presenting a token many times at once, strangers racing the rightful
// user, a stranger trying to give a token back, and hostile token strings.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"wxbridge/infra/devkit/awstest"
)

func TestAttackTokenSpentConcurrently(t *testing.T) {
	ctx := context.Background()
	uses := NewUses(dynamodb.NewFromConfig(awstest.Config(nil)), awstest.Table(t))
	tok, err := verifier(key).Check(mustSign(t, key, "8812"))
	if err != nil {
		t.Fatal(err)
	}
	// The rightful user's retried logins and scans all at once, with
	// strangers presenting the same token at the same instant.
	var firsts, owners, strangers atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 30 {
		holder := "UNION#owner"
		if i%3 != 0 {
			holder = fmt.Sprint("UNION#stranger", i)
		}
		wg.Go(func() {
			<-start
			first, err := uses.Spend(ctx, tok, holder)
			switch {
			case err == nil && holder == "UNION#owner":
				owners.Add(1)
			case err == nil:
				strangers.Add(1)
			case !errors.Is(err, ErrSpent):
				t.Errorf("spend by %s: %v", holder, err)
			}
			if first {
				firsts.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	if firsts.Load() != 1 {
		t.Fatalf("%d spends were told they were first, want exactly 1", firsts.Load())
	}
	// Either the owner won (all 10 of its presentations pass, no
	// stranger does) or one stranger did (and the owner is refused).
	if !(owners.Load() == 10 && strangers.Load() == 0) && !(owners.Load() == 0 && strangers.Load() == 1) {
		t.Fatalf("owner passed %d times, strangers %d times: the token bound more than one user", owners.Load(), strangers.Load())
	}
}

func TestAttackStrangerCannotGiveATokenBack(t *testing.T) {
	ctx := context.Background()
	uses := NewUses(dynamodb.NewFromConfig(awstest.Config(nil)), awstest.Table(t))
	tok, _ := verifier(key).Check(mustSign(t, key, "8812"))
	if _, err := uses.Spend(ctx, tok, "UNION#victim"); err != nil {
		t.Fatal(err)
	}
	// Strangers unspend and spend in a tight race: none gets it.
	var wg sync.WaitGroup
	var bound atomic.Int32
	for i := range 10 {
		holder := fmt.Sprint("UNION#stranger", i)
		wg.Go(func() {
			uses.Unspend(ctx, tok, holder)
			if _, err := uses.Spend(ctx, tok, holder); err == nil {
				bound.Add(1)
			}
		})
	}
	wg.Wait()
	if bound.Load() != 0 {
		t.Fatalf("%d strangers bound the victim's token after giving it back themselves", bound.Load())
	}
	// A token that did not come from Check cannot be spent at all.
	if _, err := uses.Spend(ctx, Token{ExternalID: "8812", Expires: now.Add(time.Hour)}, "UNION#x"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("spend of an unchecked token = %v, want ErrInvalid", err)
	}
}

func TestAttackHostileTokenStrings(t *testing.T) {
	good := mustSign(t, key, "8812")
	parts := strings.Split(good, ".")
	id, exp, mac := parts[0], parts[1], parts[2]
	v := verifier(key)
	cases := map[string]string{
		"empty":                     "",
		"dots_only":                 "..",
		"two_parts":                 id + "." + exp,
		"four_parts":                good + ".x",
		"trailing_newline":          good + "\n",
		"leading_space":             " " + good,
		"expiry_with_plus_sign":     id + ".+" + exp + "." + mac,
		"expiry_upper_case":         id + "." + strings.ToUpper(exp) + "." + mac,
		"expiry_negative":           id + ".-1." + mac,
		"expiry_overflow":           id + ".zzzzzzzzzzzzzzzzzzzz." + mac,
		"mac_standard_base64":       id + "." + exp + "." + strings.NewReplacer("-", "+", "_", "/").Replace(mac) + "==",
		"mac_truncated":             id + "." + exp + "." + mac[:21],
		"mac_of_another_id":         "8813." + exp + "." + mac,
		"id_with_unicode":           "８８１２." + exp + "." + mac,
		"id_too_long":               strings.Repeat("a", MaxExternalID+1) + "." + exp + "." + mac,
		"huge":                      strings.Repeat("a", 1<<20),
		"signed_with_another_key":   mustSign(t, "another-business-key-0123456789abcdef", "8812"),
		"expired_a_second_ago":      mustSignAt(t, key, "8812", now.Add(-time.Second)),
		"expires_now":               mustSignAt(t, key, "8812", now),
		"beyond_the_30_day_maximum": mustSignAt(t, key, "8812", now.Add(MaxLifetime+time.Hour)),
	}
	for name, tok := range cases {
		t.Run(name, func(t *testing.T) {
			if got, err := v.Check(tok); !errors.Is(err, ErrInvalid) {
				t.Fatalf("Check = %+v, %v; want ErrInvalid", got, err)
			}
		})
	}
}
