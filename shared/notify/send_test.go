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

// TestOutcomeUnknown: only a request that may have reached WeChat without
// an answer coming back leaves the outcome open; an errcode answer or a
// connection never made says nothing was sent.
func TestOutcomeUnknown(t *testing.T) {
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	cases := []struct {
		name    string
		handler http.HandlerFunc
		url     string
		unknown bool
	}{
		{"errcode_answer", func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte(`{"errcode":-1,"errmsg":"system error rid: 1-2-3"}`))
		}, "", false},
		{"user_state_answer", func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte(`{"errcode":43101,"errmsg":"user refuse to accept the msg"}`))
		}, "", false},
		{"connection_refused", nil, closed.URL, false},
		{"connection_dropped_after_the_request", func(w http.ResponseWriter, r *http.Request) {
			conn, _, _ := http.NewResponseController(w).Hijack()
			conn.Close()
		}, "", true},
		{"gateway_error", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusBadGateway) }, "", true},
		{"unreadable_answer", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`<html>`)) }, "", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			url := tc.url
			if tc.handler != nil {
				srv := httptest.NewServer(tc.handler)
				defer srv.Close()
				url = srv.URL
			}
			wc := wechat.New(wechat.Options{APIBase: url, Tokens: fixedToken{}})
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
