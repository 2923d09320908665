package handler

import (
	"net/http"
	"strconv"

	"github.com/aws/aws-lambda-go/events"
)

// VerifyPath is the route of WeChat's domain verification files
// (config.VerifyFiles): one path segment at the API's root. API Gateway
// takes a route without a path variable first (GET /me), and the other
// routes have two segments or more, so it shadows none of them.
//
// oauth-callback serves them because the domain WeChat verifies by this
// file is the web authorization domain (网页授权域名), the host of the
// OAuth redirect_uri, which is this function's callback; it already reads
// the configuration secret, so the route costs no new permission.
const VerifyPath = "/{file}"

// verifyFile answers GET or HEAD /<name> with the listed file, byte for
// byte, and 404 for any other name: the name is looked up whole among the
// configured ones, never read as a path.
func (h *Handler) verifyFile(req events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, []any) {
	name := req.PathParameters["file"]
	content, ok := h.files[name]
	if !ok {
		return events.APIGatewayV2HTTPResponse{
			StatusCode: http.StatusNotFound,
			Headers:    map[string]string{"Content-Type": "text/plain; charset=utf-8", "X-Content-Type-Options": "nosniff"},
			Body:       "not found\n",
		}, []any{"outcome", "no_such_file"}
	}
	resp := events.APIGatewayV2HTTPResponse{
		StatusCode: http.StatusOK,
		Headers: map[string]string{
			"Content-Type":           "text/plain; charset=utf-8",
			"Cache-Control":          "no-cache",
			"X-Content-Type-Options": "nosniff",
		},
		Body: content,
	}
	if req.RequestContext.HTTP.Method == http.MethodHead {
		resp.Headers["Content-Length"] = strconv.Itoa(len(content))
		resp.Body = ""
	}
	return resp, []any{"outcome", "verify_file", "file", name}
}
