package main

import (
	"fmt"
	"maps"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"wxbridge/infra/samconfig"
)

// defaultAddr is where the devstack listens unless told otherwise.
const defaultAddr = "127.0.0.1:8080"

// mappingPath is what an API Gateway API mapping key may be (letters,
// digits and $-_.+!*'(), in one or more segments): the only base paths a
// deployed PublicUrl can have in front of the HTTP API.
var mappingPath = regexp.MustCompile(`^(/[A-Za-z0-9$\-_.+!*'()]+)+$`)

// basePath is the path of a PublicUrl ("" for none, or for no path): the
// API mapping under which the devstack serves the API, as a custom domain
// with that mapping serves it.
func basePath(publicURL string) (string, error) {
	if publicURL == "" {
		return "", nil
	}
	u, err := url.Parse(publicURL)
	if err != nil {
		return "", fmt.Errorf("PublicUrl %q: %w", publicURL, err)
	}
	if u.Path == "" || u.Path == "/" {
		return "", nil
	}
	// The path as written: a percent-encoded one (/w%2Fx) would be served
	// under its decoded form while the functions build URLs with the
	// encoded one.
	p := u.EscapedPath()
	if !mappingPath.MatchString(p) {
		return "", fmt.Errorf("PublicUrl %q: the path %s cannot be an API mapping's (letters, digits and $-_.+!*'() in each segment)", publicURL, p)
	}
	first, _, _ := strings.Cut(p[1:], "/")
	for seg := range strings.SplitSeq(p[1:], "/") {
		if seg == "." || seg == ".." {
			// Browsers and ServeMux resolve these: nothing could reach it.
			return "", fmt.Errorf("PublicUrl %q: the path %s has a %s segment, which no request keeps", publicURL, p, seg)
		}
	}
	if first == "_dev" {
		return "", fmt.Errorf("PublicUrl %q: the path %s is under /_dev, the devstack's own console and API", publicURL, p)
	}
	return p, nil
}

// listenAddr is where a devstack without an address of its own listens:
// the host and port of a PublicUrl on this machine over http
// (PublicUrl=http://127.0.0.1:9090/wx listens on 127.0.0.1:9090), else
// 127.0.0.1:8080. A PublicUrl elsewhere (a tunnel's https address) is the
// address the browser and WeChat are sent to; the devstack still listens
// locally, under its path.
func listenAddr(publicURL string) string {
	u, err := url.Parse(publicURL)
	if err != nil || u.Scheme != "http" || u.Port() == "" {
		return defaultAddr
	}
	host := u.Hostname()
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return defaultAddr
	}
	return u.Host
}

// devParams reads WXB_DEV_PARAMS, written as sam deploy
// --parameter-overrides takes it (PublicUrl=http://127.0.0.1:8080/wx
// H5Origins="https://h5.example.com"); Start checks the values against
// the template.
func devParams(s string) (map[string]string, error) {
	kv, err := samconfig.ParseOverrides(s)
	if err != nil {
		return nil, err
	}
	params := map[string]string{}
	for _, p := range kv {
		params[p.Key] = p.Value
	}
	return params, nil
}

// describeParams is the banner's line of the parameters given.
func describeParams(params map[string]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(params)) {
		fmt.Fprintf(&b, " %s=%q", k, params[k])
	}
	return strings.TrimSpace(b.String())
}
