package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"

	"wxbridge/infra/devkit/cfn"
)

// TestGatewayRoutes holds the devstack's API Gateway to the routing rules
// of an HTTP API, with the repository template's routes. Each function is
// replaced by one that answers the event it was given: what is under test
// is the event and the choice of route, not a function.
func TestGatewayRoutes(t *testing.T) {
	tpl, err := cfn.LoadNearest()
	if err != nil {
		t.Fatal(err)
	}
	defs, err := tpl.Functions()
	if err != nil {
		t.Fatal(err)
	}
	fs := &functions{fns: map[string]*function{}}
	for _, def := range defs {
		id := def.LogicalID
		fs.fns[id] = &function{def: def, handler: lambda.NewHandler(func(ev events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
			b, _ := json.Marshal(map[string]any{"function": id, "route": ev.RouteKey, "context_route": ev.RequestContext.RouteKey, "raw_path": ev.RawPath, "params": ev.PathParameters})
			// In a header: a HEAD answer has no body.
			return events.APIGatewayV2HTTPResponse{StatusCode: 200, Headers: map[string]string{"X-Event": string(b)}}, nil
		})}
	}
	type answer struct {
		Function     string            `json:"function"`
		Route        string            `json:"route"`
		ContextRoute string            `json:"context_route"`
		RawPath      string            `json:"raw_path"`
		Params       map[string]string `json:"params"`
		Message      string            `json:"message"` // API Gateway's own 404
	}
	for _, base := range []string{"", "/wx", "/api/v1"} {
		mux := http.NewServeMux()
		fs.routes(mux, base)
		srv := httptest.NewServer(mux)
		defer srv.Close()
		for _, tc := range []struct {
			method, path string
			function     string // "" for API Gateway's 404
			route        string
			file         string
		}{
			{"POST", "/mp/login", "LoginFunction", "POST /mp/login", ""},
			{"GET", "/me", "LoginFunction", "GET /me", ""}, // a path without a variable first
			{"GET", "/oauth/callback", "OAuthCallbackFunction", "GET /oauth/callback", ""},
			{"POST", "/wechat/push", "FollowEventFunction", "POST /wechat/push", ""},
			{"POST", "/wechat/push/wx5a0dbe0c0de00004", "FollowEventFunction", "POST /wechat/push/{appid}", ""},
			{"GET", "/MP_verify_7JNbT2dLQ3hNtY6s.txt", "OAuthCallbackFunction", "GET /{file}", "MP_verify_7JNbT2dLQ3hNtY6s.txt"},
			{"HEAD", "/MP_verify_7JNbT2dLQ3hNtY6s.txt", "OAuthCallbackFunction", "HEAD /{file}", "MP_verify_7JNbT2dLQ3hNtY6s.txt"},
			{"GET", "/..%2F..%2Fetc%2Fpasswd", "OAuthCallbackFunction", "GET /{file}", "../../etc/passwd"}, // decoded, as API Gateway does
			{"HEAD", "/me", "", "", ""},             // a GET route does not answer HEAD
			{"POST", "/me", "", "", ""},             // nor another method
			{"DELETE", "/x.txt", "", "", ""},        // the file route is GET and HEAD only
			{"GET", "/wechat/push/x/y", "", "", ""}, // no route has four segments
		} {
			req, _ := http.NewRequest(tc.method, srv.URL+base+tc.path, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var got answer
			json.Unmarshal(body, &got)
			json.Unmarshal([]byte(resp.Header.Get("X-Event")), &got)
			where := tc.method + " " + base + tc.path
			if tc.function == "" {
				if resp.StatusCode != 404 || (tc.method != "HEAD" && got.Message != "Not Found") {
					t.Errorf("%s = %d %s, want API Gateway's 404", where, resp.StatusCode, body)
				}
				continue
			}
			if resp.StatusCode != 200 || got.Function != tc.function || got.Route != tc.route || got.ContextRoute != tc.route || got.Params["file"] != tc.file {
				t.Errorf("%s = %d %+v, want %s with route %s and file %q", where, resp.StatusCode, got, tc.function, tc.route, tc.file)
			}
			// Behind an API mapping the route key has no base path and
			// rawPath keeps it.
			if !strings.HasPrefix(got.RawPath, base+"/") {
				t.Errorf("%s: rawPath %q lacks the base path", where, got.RawPath)
			}
		}
		if base != "" {
			// Nothing of the API at the root: that is the site's.
			resp, err := http.Post(srv.URL+"/mp/login", "application/json", nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 404 {
				t.Errorf("POST /mp/login at the root with base %s = %d, want 404", base, resp.StatusCode)
			}
		}
	}
}
