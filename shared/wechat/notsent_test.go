package wechat_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"wxbridge/infra/devkit/sandbox"
	"wxbridge/shared/wechat"
)

// sandboxTokens hands out the sandbox's stable token of each dev app.
type sandboxTokens struct{ api string }

func (s sandboxTokens) Token(ctx context.Context, appid string) (string, error) {
	secret := sandbox.DevMiniProgram.Secret
	if appid == sandbox.DevOfficialAccount.AppID {
		secret = sandbox.DevOfficialAccount.Secret
	}
	t, err := wechat.New(wechat.Options{APIBase: s.api}).StableToken(ctx, appid, secret, false)
	return t.Token, err
}

func (sandboxTokens) Refused(context.Context, string, string) (string, error) {
	return "", errors.New("no fresher token")
}

// noToken is a token source with nothing to hand out, as shared/tokens is
// before the refresher's first run: its error is transient.
type noToken struct{}

type noTokenError struct{}

func (noTokenError) Error() string                            { return "no usable access token" }
func (noTokenError) Class() wechat.Class                      { return wechat.ClassTransient }
func (noToken) Token(context.Context, string) (string, error) { return "", noTokenError{} }
func (noToken) Refused(context.Context, string, string) (string, error) {
	return "", noTokenError{}
}

// hangingDial is a Transport whose connections never come up: a dial that
// outlives the client's timeout.
var hangingDial = &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}}

// failing is a RoundTripper that is not net/http's: whatever it did with
// the request, the client cannot know it was not sent.
type failing struct{}

func (failing) RoundTrip(*http.Request) (*http.Response, error) {
	return nil, errors.New("connection reset by peer")
}

// TestNotSent: a failure that left the request in this process is marked
// ErrNotSent (nothing can have reached the person), one after which the
// request may have reached WeChat is not, and neither changes the class.
func TestNotSent(t *testing.T) {
	sb := sandbox.New(sandbox.DefaultConfig())
	srv := httptest.NewServer(sb)
	defer srv.Close()
	mp := sandbox.DevMiniProgram.AppID
	tpl := "mpTemplate" + strings.Repeat("0", 33)
	p := sb.CreatePerson(sandbox.PersonSpec{})
	for range 10 {
		sb.GrantConsent(p.ID, tpl)
	}
	msg := wechat.SubscribeMessage{ToUser: p.MPOpenID, TemplateID: tpl, Data: map[string]string{"thing1": "Blue kettle"}}
	refused := func() string { // an address nobody listens on
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l.Close()
		return "http://" + l.Addr().String()
	}()
	const subscribePath = "/cgi-bin/message/subscribe/send"

	for _, tc := range []struct {
		name    string
		opts    wechat.Options
		fault   *sandbox.Fault
		notSent bool
		class   wechat.Class
	}{
		{name: "no_access_token", opts: wechat.Options{APIBase: srv.URL, Tokens: noToken{}}, notSent: true, class: wechat.ClassTransient},
		{name: "no_token_source", opts: wechat.Options{APIBase: srv.URL}, notSent: true, class: wechat.ClassInfra},
		{name: "refused_connection", opts: wechat.Options{APIBase: refused, Tokens: sandboxTokens{srv.URL}}, notSent: true, class: wechat.ClassTransient},
		{name: "deadline_while_dialing", opts: wechat.Options{APIBase: srv.URL, Tokens: sandboxTokens{srv.URL},
			HTTPClient: &http.Client{Transport: hangingDial, Timeout: 100 * time.Millisecond}}, notSent: true, class: wechat.ClassTransient},
		{name: "timeout_after_the_request_was_written", opts: wechat.Options{APIBase: srv.URL, Tokens: sandboxTokens{srv.URL},
			HTTPClient: &http.Client{Timeout: 200 * time.Millisecond}},
			fault: &sandbox.Fault{Path: subscribePath, Count: 1, Latency: 5 * time.Second, LostAnswer: true}, class: wechat.ClassTransient},
		{name: "answer_lost", opts: wechat.Options{APIBase: srv.URL, Tokens: sandboxTokens{srv.URL}},
			fault: &sandbox.Fault{Path: subscribePath, Count: 1, LostAnswer: true}, class: wechat.ClassTransient},
		{name: "errcode_answer", opts: wechat.Options{APIBase: srv.URL, Tokens: sandboxTokens{srv.URL}},
			fault: &sandbox.Fault{Path: subscribePath, Count: 1, ErrCode: -1}, class: wechat.ClassTransient},
		{name: "roundtripper_not_net_http", opts: wechat.Options{APIBase: srv.URL, Tokens: sandboxTokens{srv.URL},
			HTTPClient: &http.Client{Transport: failing{}}}, class: wechat.ClassTransient},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.fault != nil {
				if err := sb.InjectFault(*tc.fault); err != nil {
					t.Fatal(err)
				}
			}
			calls := sb.Calls(subscribePath)
			err := wechat.New(tc.opts).SendSubscribe(context.Background(), mp, msg)
			if err == nil {
				t.Fatal("send succeeded")
			}
			if got := errors.Is(err, wechat.ErrNotSent); got != tc.notSent {
				t.Fatalf("errors.Is(%v, ErrNotSent) = %v, want %v", err, got, tc.notSent)
			}
			if got := wechat.ClassOf(err); got != tc.class {
				t.Fatalf("class of %v = %s, want %s", err, got, tc.class)
			}
			reached := sb.Calls(subscribePath) > calls
			if tc.notSent && reached {
				t.Fatalf("%v is marked not sent, but WeChat got the call", err)
			}
			if tc.fault != nil && !reached {
				t.Fatal("setup: WeChat did not get the call")
			}
		})
	}
	t.Run("keeps_what_the_cause_is", func(t *testing.T) {
		err := wechat.New(wechat.Options{APIBase: srv.URL}).SendSubscribe(context.Background(), mp, msg)
		if !errors.Is(err, wechat.ErrNoTokenSource) || err.Error() != wechat.ErrNoTokenSource.Error() {
			t.Fatalf("%v: want ErrNoTokenSource, as it reads", err)
		}
	})
}
