package signin

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Site is where browsers reach the sign-in routes: the public base URL
// when one is configured (WXB_PUBLIC_URL: a custom domain, with or without
// a base path), else wherever each request arrived.
//
// The binding cookie only works if the browser is, when the sign-in
// starts, on the host the callback is served from: a browser keeps a
// cookie for the host that set it. A page may link to another host than
// the public one (the stack's execute-api address, OAuthAuthorizeUrl of
// an older deploy), so a Site says when the browser must first be sent to
// the public base URL.
type Site struct {
	public string // normalized base URL, no trailing slash; "" when unset
	host   string // public's host as browsers compare it
}

// NewSite returns the Site of publicURL, an http(s) base URL without a
// query or fragment ("" when the API is reached at its own address).
func NewSite(publicURL string) (Site, error) {
	if publicURL == "" {
		return Site{}, nil
	}
	u, err := url.Parse(publicURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil ||
		u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return Site{}, fmt.Errorf("signin: public URL %q is not an http(s) base URL", publicURL)
	}
	return Site{public: strings.TrimRight(publicURL, "/"), host: hostOf(u)}, nil
}

// Public is the configured public base URL, or "".
func (s Site) Public() string { return s.public }

// Base returns the base URL under which the browser must reach the
// sign-in routes, for a request that arrived at arrived (scheme://host and
// any path prefix, as far as the HTTP layer can tell; "" when it cannot),
// and whether the browser is elsewhere now and must be sent to base first.
func (s Site) Base(arrived string) (base string, elsewhere bool, err error) {
	if s.public == "" {
		if arrived == "" {
			return "", false, errors.New("signin: no public URL configured (WXB_PUBLIC_URL) and no address in the request")
		}
		return strings.TrimRight(arrived, "/"), false, nil
	}
	if arrived == "" {
		return s.public, false, nil
	}
	u, err := url.Parse(arrived)
	if err != nil || u.Host == "" {
		return "", false, fmt.Errorf("signin: request address %q is not a URL", arrived)
	}
	return s.public, hostOf(u) != s.host, nil
}
