package handler

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/events"

	"wxbridge/infra/devkit/testenv"
	"wxbridge/shared/config"
)

// verifyRequest is the event API Gateway sends for the route
// VerifyPath: rawPath as requested, the one segment decoded into
// pathParameters.file (API Gateway decodes path parameters).
func verifyRequest(t *testing.T, method, rawPath string) events.APIGatewayV2HTTPRequest {
	t.Helper()
	file, err := url.PathUnescape(strings.TrimPrefix(rawPath, "/"))
	if err != nil {
		t.Fatal(err)
	}
	req := events.APIGatewayV2HTTPRequest{
		Version:        "2.0",
		RouteKey:       method + " " + VerifyPath,
		RawPath:        rawPath,
		PathParameters: map[string]string{"file": file},
	}
	req.RequestContext.HTTP.Method = method
	req.RequestContext.DomainName = "wx.example.com"
	return req
}

// TestVerifyFile loads the function from a configuration secret that
// lists two verification files, as Lambda does, and asks for them the
// ways WeChat's console and anyone else can.
func TestVerifyFile(t *testing.T) {
	// The content as WeChat's download has it, and one that would show
	// any re-encoding: a trailing newline, non-ASCII, HTML.
	const mp = "7JNbT2dLQ3hNtY6s"
	const odd = "line one\r\n<b>verify</b> 校验\n"
	te := testenv.New(t, testenv.Tokens(), testenv.Parameter("H5Origins", "https://h5.example.com"),
		testenv.Configure(func(c *config.Config) {
			c.VerifyFiles = config.VerifyFiles{"MP_verify_7JNbT2dLQ3hNtY6s.txt": mp, "6ynZPDvfTF.txt": odd}
		}))
	h, err := FromEnv(context.Background(), te.FunctionEnv("OAuthCallbackFunction"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, method, path string
		status             int
		body               string
	}{
		{"listed_file_served_byte_exact", "GET", "/MP_verify_7JNbT2dLQ3hNtY6s.txt", 200, mp},
		{"every_byte_kept", "GET", "/6ynZPDvfTF.txt", 200, odd},
		{"name_percent_encoded", "GET", "/MP_verify_7JNbT2dLQ3hNtY6s%2Etxt", 200, mp},
		{"head_has_no_body", "HEAD", "/MP_verify_7JNbT2dLQ3hNtY6s.txt", 200, ""},
		{"unlisted", "GET", "/MP_verify_AAAAAAAAAAAAAAAA.txt", 404, ""},
		{"name_without_extension", "GET", "/MP_verify_7JNbT2dLQ3hNtY6s", 404, ""},
		{"other_case", "GET", "/mp_verify_7jnbt2dlq3hnty6s.txt", 404, ""},
		{"traversal_encoded_slash", "GET", "/..%2FMP_verify_7JNbT2dLQ3hNtY6s.txt", 404, ""},
		{"traversal_to_etc", "GET", "/..%2F..%2Fetc%2Fpasswd", 404, ""},
		{"dot_dot", "GET", "/%2E%2E", 404, ""},
		{"listed_name_then_more", "GET", "/MP_verify_7JNbT2dLQ3hNtY6s.txt%2F..", 404, ""},
		{"nul", "GET", "/MP_verify_7JNbT2dLQ3hNtY6s.txt%00", 404, ""},
		{"empty", "GET", "/", 404, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := h.Handle(context.Background(), verifyRequest(t, tc.method, tc.path))
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.status {
				t.Fatalf("%s %s = %d %q, want %d", tc.method, tc.path, resp.StatusCode, resp.Body, tc.status)
			}
			if ct := resp.Headers["Content-Type"]; !strings.HasPrefix(ct, "text/plain") {
				t.Errorf("Content-Type = %q, want text/plain", ct)
			}
			if tc.status == 200 && (resp.Body != tc.body || resp.IsBase64Encoded) {
				t.Errorf("body = %q (base64 %v), want %q", resp.Body, resp.IsBase64Encoded, tc.body)
			}
			if tc.method == "HEAD" && resp.Headers["Content-Length"] != "16" {
				t.Errorf("HEAD Content-Length = %q, want 16", resp.Headers["Content-Length"])
			}
			if tc.status == 404 && strings.Contains(resp.Body, mp) {
				t.Errorf("a 404 shows a file's content: %q", resp.Body)
			}
		})
	}
	// The OAuth routes are where they were: the new route takes one
	// segment only, and a request API Gateway routed elsewhere is not a
	// file.
	authorize := events.APIGatewayV2HTTPRequest{RouteKey: "GET " + AuthorizePath, RawPath: AuthorizePath, RawQueryString: "return_to=https%3A%2F%2Fevil.example.com%2F"}
	authorize.RequestContext.DomainName = "wx.example.com"
	if resp, _ := h.Handle(context.Background(), authorize); resp.StatusCode != http.StatusBadRequest || !strings.Contains(resp.Body, "return_to") {
		t.Errorf("GET %s = %d %s, want the sign-in's 400 for return_to", AuthorizePath, resp.StatusCode, resp.Body)
	}
	if logs := te.Logs.String(); !strings.Contains(logs, `"outcome":"verify_file"`) || !strings.Contains(logs, `"outcome":"no_such_file"`) {
		t.Errorf("no log line per verify request:\n%s", logs)
	}
}

// TestVerifyFileBadNameRefusedAtLoad: a configuration secret listing a
// file that could never be served (a path, another extension) stops the
// function at start with an error naming the entry, not at the first
// request, and without printing any file's content.
func TestVerifyFileBadNameRefusedAtLoad(t *testing.T) {
	te := testenv.New(t, testenv.Tokens(), testenv.Parameter("H5Origins", "https://h5.example.com"),
		testenv.Configure(func(c *config.Config) {
			c.VerifyFiles = config.VerifyFiles{"../MP_verify_x.txt": "secret-looking-content", "ok.txt": "fine"}
		}))
	_, err := FromEnv(context.Background(), te.FunctionEnv("OAuthCallbackFunction"))
	if !errors.Is(err, config.ErrVerifyFile) {
		t.Fatalf("FromEnv = %v, want config.ErrVerifyFile", err)
	}
	if msg := err.Error(); !strings.Contains(msg, `"../MP_verify_x.txt"`) || !strings.Contains(msg, "verify_files") || strings.Contains(msg, "secret-looking-content") {
		t.Errorf("error = %q, want it to name verify_files and the entry, and not the content", msg)
	}
}
