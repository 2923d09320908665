// Package httpapi is the HTTP shape shared by the functions behind the API
// Gateway HTTP API: reading bounded JSON bodies and bearer tokens from
// events.APIGatewayV2HTTPRequest, and answering JSON with stable error codes
// that clients can branch on.
package httpapi

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/aws/aws-lambda-go/events"
)

// Error is an answer to a request that failed: an HTTP status, a stable
// machine-readable code and a message for the developer.
type Error struct {
	Status     int
	Code       string
	Message    string
	RetryAfter int // seconds; set on 503
}

func (e *Error) Error() string { return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message) }

// Fail returns an *Error.
func Fail(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// Route is the request's route key, "METHOD /path", as API Gateway sets it
// for explicit routes; the raw method and path otherwise.
func Route(req events.APIGatewayV2HTTPRequest) string {
	if req.RouteKey != "" && req.RouteKey != "$default" {
		return req.RouteKey
	}
	return req.RequestContext.HTTP.Method + " " + req.RawPath
}

// Body returns the request body, decoded from base64 when API Gateway
// encoded it, refusing bodies over max bytes.
func Body(req events.APIGatewayV2HTTPRequest, max int) ([]byte, error) {
	raw := []byte(req.Body)
	if req.IsBase64Encoded {
		// The encoded length bounds the decoded one: check before decoding.
		if base64.StdEncoding.DecodedLen(len(raw)) > max+3 {
			return nil, tooLarge(max)
		}
		var err error
		if raw, err = base64.StdEncoding.DecodeString(req.Body); err != nil {
			return nil, Fail(http.StatusBadRequest, "invalid_request", "body is not valid base64")
		}
	}
	if len(raw) > max {
		return nil, tooLarge(max)
	}
	return raw, nil
}

func tooLarge(max int) *Error {
	return Fail(http.StatusRequestEntityTooLarge, "body_too_large", "body is larger than %d bytes", max)
}

// DecodeJSON decodes the body into v: one JSON object, no unknown fields,
// at most max bytes.
func DecodeJSON(req events.APIGatewayV2HTTPRequest, max int, v any) error {
	raw, err := Body(req, max)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		return Fail(http.StatusBadRequest, "invalid_request", "body must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &te):
			return Fail(http.StatusBadRequest, "invalid_request", "field %q must be a %s", te.Field, te.Type)
		case strings.HasPrefix(err.Error(), "json: unknown field"):
			return Fail(http.StatusBadRequest, "invalid_request", "%s", strings.TrimPrefix(err.Error(), "json: "))
		}
		return Fail(http.StatusBadRequest, "invalid_request", "body is not valid JSON")
	}
	if _, err := dec.Token(); err != io.EOF {
		return Fail(http.StatusBadRequest, "invalid_request", "body must hold one JSON object")
	}
	return nil
}

// Bearer returns the token of an "Authorization: Bearer <token>" header.
func Bearer(req events.APIGatewayV2HTTPRequest) (string, bool) {
	for k, v := range req.Headers {
		if strings.EqualFold(k, "authorization") {
			scheme, tok, ok := strings.Cut(strings.TrimSpace(v), " ")
			if ok && strings.EqualFold(scheme, "bearer") && strings.TrimSpace(tok) != "" {
				return strings.TrimSpace(tok), true
			}
		}
	}
	return "", false
}

// JSON answers status with v as the JSON body.
func JSON(status int, v any) events.APIGatewayV2HTTPResponse {
	b, err := json.Marshal(v)
	if err != nil {
		return Respond(&Error{Status: http.StatusInternalServerError, Code: "server_error", Message: "could not encode the answer"})
	}
	return events.APIGatewayV2HTTPResponse{
		StatusCode: status,
		Headers:    map[string]string{"Content-Type": "application/json", "Cache-Control": "no-store"},
		Body:       string(b),
	}
}

// Respond answers an *Error as {"error": code, "message": message}, with
// Retry-After when set.
func Respond(e *Error) events.APIGatewayV2HTTPResponse {
	r := JSON(e.Status, map[string]string{"error": e.Code, "message": e.Message})
	if e.RetryAfter > 0 {
		r.Headers["Retry-After"] = fmt.Sprint(e.RetryAfter)
	}
	if e.Status == http.StatusUnauthorized {
		r.Headers["WWW-Authenticate"] = `Bearer realm="wxbridge"`
	}
	return r
}
