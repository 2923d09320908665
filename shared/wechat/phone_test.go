package wechat

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestPhoneNumber(t *testing.T) {
	var body string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := new(bytes.Buffer)
		b.ReadFrom(r.Body)
		body = b.String()
		switch {
		case strings.Contains(body, `"used"`):
			fmt.Fprint(w, `{"errcode":40029,"errmsg":"invalid code, rid: 6569d9a4-1d2e0b2c-0f7e6a40"}`)
		case strings.Contains(body, `"empty"`):
			fmt.Fprint(w, `{"errcode":0,"errmsg":"ok"}`)
		default:
			fmt.Fprint(w, `{"errcode":0,"errmsg":"ok","phone_info":{"phoneNumber":"13800001234","purePhoneNumber":"13800001234","countryCode":"86","watermark":{"timestamp":1700000000,"appid":"wxmp"}}}`)
		}
	}))
	defer srv.Close()
	c := New(Options{APIBase: srv.URL, Tokens: fixedToken("TOKEN")})
	ctx := context.Background()

	p, err := c.PhoneNumber(ctx, "wxmp", "good")
	if err != nil {
		t.Fatal(err)
	}
	if p.E164() != "+8613800001234" || p.WatermarkAppID != "wxmp" || body != `{"code":"good"}` {
		t.Errorf("got %s / %s, sent %s", p.E164(), p.WatermarkAppID, body)
	}
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("x", "phone", p)
	for _, shown := range []string{p.String(), fmt.Sprintf("%v %+v %#v", p, p, p), logs.String()} {
		if strings.Contains(shown, "13800001234") || !strings.Contains(shown, "****1234") {
			t.Errorf("the number is not masked: %s", shown)
		}
	}

	if _, err := c.PhoneNumber(ctx, "wxmp", "used"); ClassOf(err) != ClassCode || RID(err) == "" {
		t.Errorf("a used code: %v (class %v)", err, ClassOf(err))
	}
	if _, err := c.PhoneNumber(ctx, "wxmp", "empty"); err == nil || errors.Is(err, ErrNotSent) {
		t.Errorf("an answer without phone_info must be an error that may have been served: %v", err)
	}
	if _, err := c.PhoneNumber(ctx, "wxmp", ""); err == nil {
		t.Error("an empty code must be refused before any call")
	}
	for in, want := range map[string]string{"+8613800001234": "+****1234", "123": "****", "13800001234": "****1234"} {
		if got := MaskPhone(in); got != want {
			t.Errorf("MaskPhone(%q) = %q, want %q", in, got, want)
		}
	}
}

// fixedToken hands out one token and never a fresher one.
type fixedToken string

func (f fixedToken) Token(context.Context, string) (string, error) { return string(f), nil }
func (f fixedToken) Refused(context.Context, string, string) (string, error) {
	return "", errors.New("no fresher token")
}
