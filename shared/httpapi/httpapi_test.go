package httpapi

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/events"
)

func TestDecodeJSON(t *testing.T) {
	type body struct {
		Code string `json:"code"`
	}
	cases := []struct {
		name   string
		req    events.APIGatewayV2HTTPRequest
		status int
	}{
		{"plain", events.APIGatewayV2HTTPRequest{Body: `{"code":"x"}`}, 0},
		{"base64", events.APIGatewayV2HTTPRequest{Body: base64.StdEncoding.EncodeToString([]byte(`{"code":"x"}`)), IsBase64Encoded: true}, 0},
		{"empty", events.APIGatewayV2HTTPRequest{}, 400},
		{"not_json", events.APIGatewayV2HTTPRequest{Body: `code=x`}, 400},
		{"unknown_field", events.APIGatewayV2HTTPRequest{Body: `{"js_code":"x"}`}, 400},
		{"wrong_type", events.APIGatewayV2HTTPRequest{Body: `{"code":5}`}, 400},
		{"two_objects", events.APIGatewayV2HTTPRequest{Body: `{"code":"x"}{"code":"y"}`}, 400},
		{"too_large", events.APIGatewayV2HTTPRequest{Body: `{"code":"` + strings.Repeat("x", 100) + `"}`}, 413},
		{"too_large_base64", events.APIGatewayV2HTTPRequest{Body: base64.StdEncoding.EncodeToString([]byte(strings.Repeat("x", 200))), IsBase64Encoded: true}, 413},
		{"bad_base64", events.APIGatewayV2HTTPRequest{Body: "!!!", IsBase64Encoded: true}, 400},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var b body
			err := DecodeJSON(tc.req, 64, &b)
			var he *Error
			switch {
			case tc.status == 0 && err != nil:
				t.Fatalf("err = %v", err)
			case tc.status == 0 && b.Code != "x":
				t.Fatalf("decoded %+v", b)
			case tc.status != 0 && (!errors.As(err, &he) || he.Status != tc.status):
				t.Fatalf("err = %v, want status %d", err, tc.status)
			}
		})
	}
}

func TestBearer(t *testing.T) {
	for h, want := range map[string]string{"Bearer abc": "abc", "bearer  abc ": "abc", "Basic abc": "", "Bearer ": "", "": ""} {
		got, ok := Bearer(events.APIGatewayV2HTTPRequest{Headers: map[string]string{"authorization": h}})
		if got != want || ok != (want != "") {
			t.Errorf("Bearer(%q) = %q, %v", h, got, ok)
		}
	}
}

func TestRespond(t *testing.T) {
	r := Respond(&Error{Status: 503, Code: "wechat_unavailable", Message: "m", RetryAfter: 2})
	if r.StatusCode != 503 || r.Headers["Retry-After"] != "2" || !strings.Contains(r.Body, `"error":"wechat_unavailable"`) {
		t.Fatalf("response = %+v", r)
	}
}

func TestServeBuildsTheLambdaEvent(t *testing.T) {
	var got events.APIGatewayV2HTTPRequest
	h := Serve(func(_ context.Context, req events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
		got = req
		return events.APIGatewayV2HTTPResponse{StatusCode: 201, Headers: map[string]string{"X-A": "b"}, Body: base64.StdEncoding.EncodeToString([]byte{0xff}), IsBase64Encoded: true}, nil
	})
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Post(srv.URL+"/wechat/push?timestamp=1&nonce=n", "text/xml", strings.NewReader("<xml/>"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 201 || resp.Header.Get("X-A") != "b" || len(body) != 1 || body[0] != 0xff {
		t.Fatalf("response %d %v %v", resp.StatusCode, resp.Header, body)
	}
	if got.RouteKey != "POST /wechat/push" || got.QueryStringParameters["nonce"] != "n" || got.Body != "<xml/>" ||
		got.Headers["content-type"] != "text/xml" || got.RequestContext.HTTP.Method != "POST" || got.IsBase64Encoded {
		t.Fatalf("event = %+v", got)
	}
	// A binary body arrives base64-encoded, as API Gateway sends it.
	http.Post(srv.URL+"/x", "application/octet-stream", bytes.NewReader([]byte{0xff, 0xfe}))
	if !got.IsBase64Encoded || got.Body != base64.StdEncoding.EncodeToString([]byte{0xff, 0xfe}) {
		t.Fatalf("binary body = %q base64=%v", got.Body, got.IsBase64Encoded)
	}
}
