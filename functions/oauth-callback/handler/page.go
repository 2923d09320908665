package handler

import (
	"html/template"
	"strings"

	"github.com/aws/aws-lambda-go/events"
)

// pageError is an answer that cannot send the browser back to the H5 page
// (no trusted return_to): an HTML page for the person holding the phone,
// with a stable code for the developer.
type pageError struct {
	Status  int
	Code    string
	Message string
}

func (e *pageError) Error() string { return e.Code + ": " + e.Message }

func (e *pageError) response() events.APIGatewayV2HTTPResponse {
	var b strings.Builder
	page.Execute(&b, e)
	return events.APIGatewayV2HTTPResponse{
		StatusCode: e.Status,
		Headers: map[string]string{
			"Content-Type":            "text/html; charset=utf-8",
			"Cache-Control":           "no-store",
			"Referrer-Policy":         "no-referrer",
			"X-Content-Type-Options":  "nosniff",
			"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
		},
		Body: b.String(),
	}
}

var page = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>Sign-in did not work</title>
<style>body{font-family:sans-serif;margin:2em;max-width:30em}small{color:#888}</style></head>
<body><h1>Sign-in did not work</h1>
<p>{{.Message}}</p>
<p><small>error: {{.Code}}</small></p>
</body></html>
`))
