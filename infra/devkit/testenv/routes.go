package testenv

import (
	"context"
	"net/http"
	"strings"

	"github.com/aws/aws-lambda-go/events"

	"wxbridge/shared/httpapi"
)

// Route adds to mux the HttpApi routes template.yaml gives function
// logicalID, serving f as API Gateway does behind them: with the route key
// and the path parameters, and any other path left unrouted.
func (e *Env) Route(mux *http.ServeMux, logicalID string, f httpapi.Func) {
	e.t.Helper()
	fns, err := e.tpl.Functions()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, fn := range fns {
		if fn.LogicalID != logicalID {
			continue
		}
		for _, r := range fn.Routes {
			key := r.Method + " " + r.Path
			mux.HandleFunc(key, func(w http.ResponseWriter, req *http.Request) {
				params := map[string]string{}
				for _, seg := range strings.Split(r.Path, "/") {
					if name, ok := strings.CutPrefix(seg, "{"); ok {
						name = strings.TrimSuffix(name, "}")
						params[name] = req.PathValue(name)
					}
				}
				if len(params) == 0 {
					params = nil
				}
				httpapi.Serve(func(ctx context.Context, ev events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
					ev.RouteKey, ev.PathParameters = key, params
					return f(ctx, ev)
				}).ServeHTTP(w, req)
			})
		}
	}
}
