package handler

import (
	"html"
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
	return events.APIGatewayV2HTTPResponse{
		StatusCode: e.Status,
		Headers: map[string]string{
			"Content-Type":            "text/html; charset=utf-8",
			"Cache-Control":           "no-store",
			"Referrer-Policy":         "no-referrer",
			"X-Content-Type-Options":  "nosniff",
			"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
		},
		Body: pageReplacer(e).Replace(page),
	}
}

// page is the error page. It is filled by plain replacement, not
// html/template: executing a template makes the linker keep every exported
// method of every type (reflect's MethodByName), which grew this
// function's bootstrap from 11 to 17 MB.
const page = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>Sign-in did not work</title>
<style>body{font-family:sans-serif;margin:2em;max-width:30em}small{color:#888}</style></head>
<body><h1>Sign-in did not work</h1>
<p>{{.Message}}</p>
<p><small>error: {{.Code}}</small></p>
</body></html>
`

func pageReplacer(e *pageError) *strings.Replacer {
	return strings.NewReplacer("{{.Message}}", html.EscapeString(e.Message), "{{.Code}}", html.EscapeString(e.Code))
}
