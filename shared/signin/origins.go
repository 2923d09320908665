package signin

import (
	"fmt"
	"net/url"
	"strings"
)

// maxReturnTo bounds return_to: it travels inside redirect_uri.
const maxReturnTo = 2048

// Origins are the origins of the pages allowed to receive sessions: a
// sign-in comes back only to a return_to on one of them.
type Origins struct{ allowed map[string]bool }

// NewOrigins returns the allowed origins, each like
// https://h5.example.com.
func NewOrigins(origins ...string) (Origins, error) {
	o := Origins{allowed: map[string]bool{}}
	for _, s := range origins {
		n, err := origin(s)
		if err != nil {
			return Origins{}, err
		}
		o.allowed[n] = true
	}
	return o, nil
}

// ParseOrigins reads a comma-separated list of origins such as
// "https://h5.example.com,https://m.example.com" (WXB_H5_ORIGINS) and
// returns them normalized.
func ParseOrigins(list string) ([]string, error) {
	var out []string
	for o := range strings.SplitSeq(list, ",") {
		o = strings.TrimSpace(o)
		if o == "" {
			continue
		}
		n, err := origin(o)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

func (o Origins) empty() bool { return len(o.allowed) == 0 }

// Check accepts an absolute URL on an allowed origin, without credentials
// or a fragment (the outcome is put in the fragment). It answers a
// *Refusal with reason invalid_return_to otherwise.
func (o Origins) Check(returnTo string) error {
	bad := func(msg string) error { return refuse("invalid_return_to", msg) }
	if returnTo == "" {
		return bad("return_to is required: the address of the page to come back to.")
	}
	if len(returnTo) > maxReturnTo {
		return bad(fmt.Sprintf("return_to is longer than %d bytes.", maxReturnTo))
	}
	// Browsers read a backslash as a slash and drop tabs and newlines, so a
	// URL holding them may not go where Go's parser says it goes.
	if strings.ContainsAny(returnTo, "\\#") || strings.IndexFunc(returnTo, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0 {
		return bad("return_to may not contain a fragment, backslashes, spaces or control characters.")
	}
	u, err := url.Parse(returnTo)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Opaque != "" || u.User != nil {
		return bad("return_to must be an absolute http(s) URL without credentials.")
	}
	if !o.allowed[originOf(u)] {
		return bad("return_to is not on an allowed origin (WXB_H5_ORIGINS).")
	}
	return nil
}

// origin normalizes a configured origin: scheme and host in lower case,
// the scheme's default port dropped, no path.
func origin(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("signin: %q is not an origin like https://h5.example.com", s)
	}
	return originOf(u), nil
}

func originOf(u *url.URL) string {
	return strings.ToLower(u.Scheme) + "://" + hostOf(u)
}

// hostOf is u's host as a browser compares it: lower case, the scheme's
// default port dropped, IPv6 literals in brackets.
func hostOf(u *url.URL) string {
	scheme, host := strings.ToLower(u.Scheme), strings.ToLower(u.Hostname())
	port := u.Port()
	if (scheme == "https" && port == "443") || (scheme == "http" && port == "80") {
		port = ""
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port != "" {
		host += ":" + port
	}
	return host
}
