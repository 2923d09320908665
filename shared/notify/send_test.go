package notify

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"wxbridge/shared/wechat"
)

// fixedToken is a token source with one token that always works.
type fixedToken struct{}

func (fixedToken) Token(context.Context, string) (string, error)           { return "t", nil }
func (fixedToken) Refused(context.Context, string, string) (string, error) { return "t", nil }

// noToken is a token source with none to hand out (the refresher has not
// run): its error is transient, like shared/tokens'.
type noToken struct{}

type noTokenError struct{}

func (noTokenError) Error() string                                      { return "no usable access token" }
func (noTokenError) Class() wechat.Class                                { return wechat.ClassTransient }
func (noToken) Token(context.Context, string) (string, error)           { return "", noTokenError{} }
func (noToken) Refused(context.Context, string, string) (string, error) { return "", noTokenError{} }

// TestOutcomeUnknown: only a request that may have reached WeChat without
// an answer coming back leaves the outcome open; an errcode answer, a
// connection never made or no access token says nothing was sent.
func TestOutcomeUnknown(t *testing.T) {
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	cases := []struct {
		name    string
		handler http.HandlerFunc
		url     string
		unknown bool
		tokens  wechat.TokenSource
	}{
		{"errcode_answer", func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte(`{"errcode":-1,"errmsg":"system error rid: 1-2-3"}`))
		}, "", false, nil},
		{"user_state_answer", func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte(`{"errcode":43101,"errmsg":"user refuse to accept the msg"}`))
		}, "", false, nil},
		{"connection_refused", nil, closed.URL, false, nil},
		{"no_access_token", func(w http.ResponseWriter, r *http.Request) {
			t.Error("a request went out without a token")
		}, "", false, noToken{}},
		{"connection_dropped_after_the_request", func(w http.ResponseWriter, r *http.Request) {
			conn, _, _ := http.NewResponseController(w).Hijack()
			conn.Close()
		}, "", true, nil},
		{"gateway_error", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusBadGateway) }, "", true, nil},
		{"unreadable_answer", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`<html>`)) }, "", true, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			url := tc.url
			if tc.handler != nil {
				srv := httptest.NewServer(tc.handler)
				defer srv.Close()
				url = srv.URL
			}
			var src wechat.TokenSource = fixedToken{}
			if tc.tokens != nil {
				src = tc.tokens
			}
			wc := wechat.New(wechat.Options{APIBase: url, Tokens: src})
			err := wc.SendSubscribe(context.Background(), "wxapp", wechat.SubscribeMessage{ToUser: "o1", TemplateID: "t1"})
			if err == nil {
				t.Fatal("no error")
			}
			if got := outcomeUnknown(err); got != tc.unknown {
				t.Fatalf("outcomeUnknown(%v) = %v, want %v", err, got, tc.unknown)
			}
		})
	}
}
