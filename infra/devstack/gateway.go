package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/aws/aws-lambda-go/events"

	"wxbridge/shared/httpapi"
)

// route is one HttpApi event of a template function.
type route struct {
	key string // the event's routeKey, "GET /{file}"
	f   *function
}

// routes serves the functions' HttpApi events as API Gateway routes an
// HTTP API, under base, the path of PublicUrl ("" for none), where an API
// mapping of a custom domain would put them:
//   - a path without a variable wins over one with ({file}, then
//     {proxy+}): ServeMux's precedence is the same;
//   - the method must be the route's (or ANY): a GET route does not answer
//     HEAD, which ServeMux would do for a "GET /x" pattern;
//   - the event has the template's route key, pathParameters decoded, and
//     rawPath as requested, base path included, as behind an API mapping;
//   - a request no route takes, under base, is API Gateway's
//     404 {"message":"Not Found"}.
func (fs *functions) routes(mux *http.ServeMux, base string) {
	byPath := map[string]map[string]route{}
	for _, f := range fs.fns {
		for _, r := range f.def.Routes {
			if byPath[r.Path] == nil {
				byPath[r.Path] = map[string]route{}
			}
			byPath[r.Path][r.Method] = route{key: r.Method + " " + r.Path, f: f}
		}
	}
	for path, methods := range byPath {
		mux.HandleFunc(base+muxPath(path), func(w http.ResponseWriter, req *http.Request) {
			rt, ok := methods[req.Method]
			if !ok {
				rt, ok = methods["ANY"]
			}
			if !ok {
				gatewayNotFound(w, req)
				return
			}
			httpapi.Serve(func(ctx context.Context, ev events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
				ev.RouteKey, ev.RequestContext.RouteKey, ev.RequestContext.Stage = rt.key, rt.key, "$default"
				ev.PathParameters = pathParameters(path, req)
				payload, _ := json.Marshal(ev)
				out, err := rt.f.invoke(ctx, payload)
				if err != nil {
					return events.APIGatewayV2HTTPResponse{}, err
				}
				var resp events.APIGatewayV2HTTPResponse
				err = json.Unmarshal(out, &resp)
				return resp, err
			}).ServeHTTP(w, req)
		})
	}
	mux.HandleFunc(base+"/", gatewayNotFound)
}

func gatewayNotFound(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusNotFound)
	w.Write([]byte(`{"message":"Not Found"}`))
}

// muxPath is a route path as a ServeMux pattern: API Gateway's greedy
// {name+} is ServeMux's {name...}.
func muxPath(path string) string {
	segs := strings.Split(path, "/")
	for i, s := range segs {
		if name, ok := pathVariable(s); ok && strings.HasSuffix(name, "+") {
			segs[i] = "{" + strings.TrimSuffix(name, "+") + "...}"
		}
	}
	return strings.Join(segs, "/")
}

// pathParameters are the values of the route's path variables in req,
// decoded, as API Gateway passes them.
func pathParameters(path string, req *http.Request) map[string]string {
	var out map[string]string
	for _, s := range strings.Split(path, "/") {
		if name, ok := pathVariable(s); ok {
			name = strings.TrimSuffix(name, "+")
			if out == nil {
				out = map[string]string{}
			}
			out[name] = req.PathValue(name)
		}
	}
	return out
}

func pathVariable(segment string) (string, bool) {
	if len(segment) > 2 && segment[0] == '{' && segment[len(segment)-1] == '}' {
		return segment[1 : len(segment)-1], true
	}
	return "", false
}
