package wechat_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"sync"
	"testing"

	"wxbridge/infra/devkit/sandbox"
	"wxbridge/shared/wechat"
)

// staticSource is a TokenSource over tokens the test fetched from the
// sandbox itself. It stands in for shared/tokens, whose own tests cover the
// Secrets Manager side; here only the client's retry contract is tested.
type staticSource struct {
	mu      sync.Mutex
	current string
	fresh   string // what Refused hands out; "" means none
	refused []string
}

func (s *staticSource) Token(context.Context, string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.current, nil
}

func (s *staticSource) Refused(_ context.Context, _, tok string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refused = append(s.refused, tok)
	if s.fresh == "" {
		return "", errors.New("no fresher token")
	}
	s.current = s.fresh
	return s.fresh, nil
}

func TestWithTokenRetriesOnceWithAFresherToken(t *testing.T) {
	sb := sandbox.New(sandbox.DefaultConfig())
	srv := httptest.NewServer(sb)
	defer srv.Close()
	ctx := context.Background()
	oa := sandbox.DevOfficialAccount
	plain := wechat.New(wechat.Options{APIBase: srv.URL})
	first, err := plain.Token(ctx, oa.AppID, oa.Secret)
	if err != nil {
		t.Fatal(err)
	}
	second, _ := plain.Token(ctx, oa.AppID, oa.Secret)
	third, _ := plain.Token(ctx, oa.AppID, oa.Secret) // first is now invalid: 40001

	t.Run("stale_token_is_replaced_and_the_call_retried", func(t *testing.T) {
		src := &staticSource{current: first.Token, fresh: third.Token}
		c := wechat.New(wechat.Options{APIBase: srv.URL, Tokens: src})
		ips, err := c.CallbackIPs(ctx, oa.AppID)
		if err != nil || len(ips) == 0 {
			t.Fatalf("CallbackIPs = %v, %v", ips, err)
		}
		if len(src.refused) != 1 || src.refused[0] != first.Token {
			t.Fatalf("refused = %d tokens, want the stale one once", len(src.refused))
		}
	})
	t.Run("no_fresher_token_returns_the_platform_answer", func(t *testing.T) {
		src := &staticSource{current: first.Token}
		c := wechat.New(wechat.Options{APIBase: srv.URL, Tokens: src})
		_, err := c.CallbackIPs(ctx, oa.AppID)
		var we *wechat.Error
		if !errors.As(err, &we) || we.Code != 40001 || wechat.ClassOf(err) != wechat.ClassToken {
			t.Fatalf("err = %v, want the 40001 answer", err)
		}
	})
	t.Run("a_good_token_is_not_refused", func(t *testing.T) {
		src := &staticSource{current: second.Token}
		c := wechat.New(wechat.Options{APIBase: srv.URL, Tokens: src})
		if _, err := c.CallbackIPs(ctx, oa.AppID); err != nil || len(src.refused) != 0 {
			t.Fatalf("err = %v, refused = %d", err, len(src.refused))
		}
	})
	t.Run("no_source", func(t *testing.T) {
		if _, err := plain.CallbackIPs(ctx, oa.AppID); !errors.Is(err, wechat.ErrNoTokenSource) {
			t.Fatalf("err = %v", err)
		}
	})
}
