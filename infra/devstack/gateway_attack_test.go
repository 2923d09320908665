package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"

	"wxbridge/infra/devkit/cfn"
)

// TestAttackBasePath: PublicUrl paths that make dev could not serve, or
// would serve somewhere the functions do not send browsers, are refused
// at once with the reason, never a panic or an API nobody reaches.
func TestAttackBasePath(t *testing.T) {
	for _, tc := range []struct {
		url, base, refused string
	}{
		{url: "http://127.0.0.1:8080/wx", base: "/wx"},
		{url: "http://127.0.0.1:8080/api/v1", base: "/api/v1"},
		{url: "http://127.0.0.1:8080/a(b)!*'$+-_.", base: "/a(b)!*'$+-_."},
		{url: "http://127.0.0.1:8080/", base: ""},
		// ServeMux panics on /_dev/api/people/mp/login beside the console's
		// POST /_dev/api/people/{id}/login; under /_dev the console would
		// shadow the API anyway.
		{url: "http://127.0.0.1:8080/_dev", refused: "/_dev, the devstack's own console"},
		{url: "http://127.0.0.1:8080/_dev/api/people", refused: "/_dev, the devstack's own console"},
		// Served under /w/x, while the functions send browsers to /w%2Fx.
		{url: "http://127.0.0.1:8080/w%2Fx", refused: "cannot be an API mapping's"},
		{url: "http://127.0.0.1:8080/%77x", refused: "cannot be an API mapping's"},
		// A request for /wx/../mp/login is /mp/login by the time it arrives.
		{url: "http://127.0.0.1:8080/wx/..", refused: "has a .. segment"},
		{url: "http://127.0.0.1:8080/./wx", refused: "has a . segment"},
	} {
		got, err := basePath(tc.url)
		if tc.refused == "" {
			if err != nil || got != tc.base {
				t.Errorf("basePath(%s) = %q, %v; want %q", tc.url, got, err, tc.base)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.refused) {
			t.Errorf("basePath(%s) = %q, %v; want refused: %s", tc.url, got, err, tc.refused)
			continue
		}
		// make dev stops with that reason before it starts anything (and
		// does not panic registering the routes).
		began := time.Now()
		s, err := Start(context.Background(), Config{Addr: "127.0.0.1:0", Params: map[string]string{"PublicUrl": tc.url}})
		if err == nil {
			s.Close()
			t.Errorf("Start with PublicUrl=%s: nil error", tc.url)
		} else if !strings.Contains(err.Error(), tc.refused) {
			t.Errorf("Start with PublicUrl=%s: %v", tc.url, err)
		}
		if d := time.Since(began); d > time.Second {
			t.Errorf("Start with PublicUrl=%s took %s to refuse", tc.url, d)
		}
	}
}

// TestAttackGatewayVerifyFile: the devstack's API Gateway under a base
// path, with the repository template's routes and an oauth-callback that
// answers GET /{file} with a file's bytes (and the event in a header).
// Only the exact path reaches the function, and the bytes arrive exactly.
func TestAttackGatewayVerifyFile(t *testing.T) {
	const name = "MP_verify_7JNbT2dLQ3hNtY6s.txt"
	const content = "7JNbT2dLQ3hNtY6s" // no trailing newline: WeChat compares the bytes
	const odd = "line\r\n<b>校验</b>\x00end"
	tpl, err := cfn.LoadNearest()
	if err != nil {
		t.Fatal(err)
	}
	defs, err := tpl.Functions()
	if err != nil {
		t.Fatal(err)
	}
	var invoked atomic.Int32
	fs := &functions{fns: map[string]*function{}}
	for _, def := range defs {
		fs.fns[def.LogicalID] = &function{def: def, handler: lambda.NewHandler(func(ev events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
			invoked.Add(1)
			files := map[string]string{name: content, "odd.txt": odd}
			body, ok := files[ev.PathParameters["file"]]
			if !ok || !strings.HasSuffix(ev.RouteKey, " /{file}") {
				return events.APIGatewayV2HTTPResponse{StatusCode: 404, Headers: map[string]string{"X-Function": def.LogicalID}, Body: "not found\n"}, nil
			}
			if ev.RequestContext.HTTP.Method == http.MethodHead {
				body = ""
			}
			return events.APIGatewayV2HTTPResponse{StatusCode: 200, Headers: map[string]string{"Content-Type": "text/plain; charset=utf-8", "X-Function": def.LogicalID}, Body: body}, nil
		})}
	}
	mux := http.NewServeMux()
	fs.routes(mux, "/wx")
	srv := httptest.NewServer(mux)
	defer srv.Close()
	// A client that follows redirects, as a browser and WeChat's checker do.
	get := func(method, path string) (int, string, http.Header) {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}
	for _, tc := range []struct {
		method, path string
		status       int
		body         string
		function     bool // whether oauth-callback answers (else API Gateway's 404)
	}{
		{"GET", "/wx/" + name, 200, content, true},
		{"GET", "/wx/odd.txt", 200, odd, true},
		{"HEAD", "/wx/" + name, 200, "", true},
		{"GET", "/wx/" + strings.Replace(name, ".", "%2E", 1), 200, content, true}, // decoded, as API Gateway does
		{"GET", "/" + name, 404, "", false},                                        // the root is not the API's
		{"GET", "/wx/" + name + "/", 404, "", false},                               // a second segment
		{"GET", "/WX/" + name, 404, "", false},                                     // mapping keys are case-sensitive
		{"GET", "/wx" + name, 404, "", false},
		{"GET", "/wx/../" + name, 404, "", false},    // resolved to the root first
		{"GET", "/wx/./" + name, 200, content, true}, // resolved to /wx/<name>
		{"GET", "/wx/..%2F" + name, 404, "", true},   // one segment: the function's 404
		{"POST", "/wx/" + name, 404, "", false},      // GET and HEAD only
		{"GET", "/wx/" + strings.Repeat("A", 64<<10) + ".txt", 404, "", true},
	} {
		before := invoked.Load()
		status, body, h := get(tc.method, tc.path)
		short := tc.path
		if len(short) > 60 {
			short = short[:60] + "…"
		}
		if status != tc.status || (tc.status == 200 && body != tc.body) {
			t.Errorf("%s %s = %d %q, want %d %q", tc.method, short, status, body, tc.status, tc.body)
		}
		if ran := invoked.Load() > before; ran != tc.function || (ran && h.Get("X-Function") != "OAuthCallbackFunction") {
			t.Errorf("%s %s: function ran %v (%s), want %v", tc.method, short, ran, h.Get("X-Function"), tc.function)
		}
		if tc.status == 200 && tc.method == "GET" && h.Get("Content-Length") != "" && h.Get("Content-Length") != strconv.Itoa(len(tc.body)) {
			t.Errorf("%s %s: Content-Length %s for %d bytes", tc.method, short, h.Get("Content-Length"), len(tc.body))
		}
	}
}
