package httpapi

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-lambda-go/events"
)

// Func is a Lambda handler for HTTP API events.
type Func func(context.Context, events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error)

// maxServeBody bounds what Serve reads of a request, like API Gateway's
// 10 MB payload limit.
const maxServeBody = 10 << 20

// Request builds the payload-version-2.0 event API Gateway would send for
// r, reading its body.
func Request(r *http.Request) (events.APIGatewayV2HTTPRequest, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxServeBody+1))
	if err != nil {
		return events.APIGatewayV2HTTPRequest{}, err
	}
	if len(body) > maxServeBody {
		return events.APIGatewayV2HTTPRequest{}, fmt.Errorf("httpapi: body over %d bytes", maxServeBody)
	}
	req := events.APIGatewayV2HTTPRequest{
		Version:        "2.0",
		RouteKey:       r.Method + " " + r.URL.Path,
		RawPath:        r.URL.Path,
		RawQueryString: r.URL.RawQuery,
		Headers:        map[string]string{},
	}
	for k, v := range r.Header {
		req.Headers[strings.ToLower(k)] = strings.Join(v, ",")
	}
	for _, c := range r.Cookies() {
		req.Cookies = append(req.Cookies, c.Name+"="+c.Value)
	}
	if q := r.URL.Query(); len(q) > 0 {
		// API Gateway joins repeated parameters with commas.
		req.QueryStringParameters = map[string]string{}
		for k, v := range q {
			req.QueryStringParameters[k] = strings.Join(v, ",")
		}
	}
	if len(body) > 0 {
		if utf8.Valid(body) {
			req.Body = string(body)
		} else {
			req.Body, req.IsBase64Encoded = base64.StdEncoding.EncodeToString(body), true
		}
	}
	req.RequestContext.HTTP.Method = r.Method
	req.RequestContext.HTTP.Path = r.URL.Path
	req.RequestContext.HTTP.SourceIP, _, _ = strings.Cut(r.RemoteAddr, ":")
	req.RequestContext.HTTP.UserAgent = r.UserAgent()
	req.RequestContext.DomainName = r.Host
	req.RequestContext.TimeEpoch = time.Now().UnixMilli()
	return req, nil
}

// Serve turns a Lambda HTTP API handler into an http.Handler, giving it
// the event Request builds: lower-case headers, the query as a map, a text
// body as is and any other body in base64. The route key is "METHOD /path",
// as behind explicit routes. Tests and the devstack serve functions with
// it.
func Serve(f Func) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, err := Request(r)
		if err != nil {
			http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
			return
		}
		resp, err := f(r.Context(), req)
		if err != nil {
			// Lambda answers an invocation error with a bare 500.
			http.Error(w, "Internal Server Error", http.StatusInternalServerError)
			return
		}
		for k, v := range resp.Headers {
			w.Header().Set(k, v)
		}
		for k, vs := range resp.MultiValueHeaders {
			for _, v := range vs {
				w.Header().Add(k, v)
			}
		}
		for _, c := range resp.Cookies {
			w.Header().Add("Set-Cookie", c)
		}
		status := resp.StatusCode
		if status == 0 {
			status = http.StatusOK
		}
		out := []byte(resp.Body)
		if resp.IsBase64Encoded {
			if out, err = base64.StdEncoding.DecodeString(resp.Body); err != nil {
				http.Error(w, "handler returned invalid base64", http.StatusBadGateway)
				return
			}
		}
		w.WriteHeader(status)
		w.Write(out)
	})
}
