package handler

import (
	"context"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/events"

	"wxbridge/infra/devkit/testenv"
	"wxbridge/shared/config"
)

// TestAttackVerifyFile: names that look like a listed file to a person but
// are not it, and requests API Gateway could hand the route, get 404 and
// never a file's bytes; names that differ only in case are two files.
func TestAttackVerifyFile(t *testing.T) {
	const upper, lower = "UPPER-content-1", "lower-content-2"
	te := testenv.New(t, testenv.Tokens(), testenv.Parameter("H5Origins", "https://h5.example.com"),
		testenv.Configure(func(c *config.Config) {
			c.VerifyFiles = config.VerifyFiles{"MP_verify_Ab.txt": upper, "mp_verify_ab.txt": lower}
		}))
	h, err := FromEnv(context.Background(), te.FunctionEnv("OAuthCallbackFunction"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, method, file string
		want               string // "" for a 404
	}{
		{"one_case", "GET", "MP_verify_Ab.txt", upper},
		{"the_other_case_is_another_file", "GET", "mp_verify_ab.txt", lower},
		{"a_third_case_is_none", "GET", "MP_VERIFY_AB.TXT", ""},
		{"cyrillic_M", "GET", "\u041cP_verify_Ab.txt", ""},
		{"fullwidth_dot", "GET", "MP_verify_Ab\uff0etxt", ""},
		{"trailing_space", "GET", "MP_verify_Ab.txt ", ""},
		{"trailing_dot", "GET", "MP_verify_Ab.txt.", ""},
		{"trailing_newline", "GET", "MP_verify_Ab.txt\n", ""},
		{"trailing_slash", "GET", "MP_verify_Ab.txt/", ""},
		{"leading_slash", "GET", "/MP_verify_Ab.txt", ""},
		{"a_megabyte_of_name", "GET", strings.Repeat("MP_verify_Ab.txt", 1<<16), ""},
		{"head_of_an_unlisted_name", "HEAD", "MP_verify_zz.txt", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := events.APIGatewayV2HTTPRequest{Version: "2.0", RouteKey: tc.method + " " + VerifyPath, RawPath: "/" + tc.file, PathParameters: map[string]string{"file": tc.file}}
			req.RequestContext.HTTP.Method = tc.method
			resp, err := h.Handle(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == "" {
				if resp.StatusCode != 404 || strings.Contains(resp.Body, upper) || strings.Contains(resp.Body, lower) {
					t.Fatalf("= %d %.80q, want 404 without a file's bytes", resp.StatusCode, resp.Body)
				}
				return
			}
			if resp.StatusCode != 200 || resp.Body != tc.want {
				t.Fatalf("= %d %q, want 200 %q", resp.StatusCode, resp.Body, tc.want)
			}
		})
	}
	t.Run("no_path_parameter", func(t *testing.T) {
		req := events.APIGatewayV2HTTPRequest{Version: "2.0", RouteKey: "GET " + VerifyPath, RawPath: "/"}
		req.RequestContext.HTTP.Method = "GET"
		if resp, err := h.Handle(context.Background(), req); err != nil || resp.StatusCode != 404 {
			t.Fatalf("= %d %v, want 404", resp.StatusCode, err)
		}
	})
	// The log names what was served, never its bytes (a business domain's
	// file is a token), and holds no megabyte of a hostile name.
	logs := te.Logs.String()
	if strings.Contains(logs, upper) || strings.Contains(logs, lower) {
		t.Errorf("a file's content is in the logs:\n%s", logs)
	}
	if len(logs) > 64<<10 {
		t.Errorf("%d bytes of logs for %d requests", len(logs), 14)
	}
}
