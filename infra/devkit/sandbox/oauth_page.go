package sandbox

import (
	"errors"
	"html/template"
	"net/http"
	"net/url"
)

// authorizeRequest is a checked link to the authorize page or the
// qrconnect page.
type authorizeRequest struct {
	Page        string // the page's path, which the consent form submits to
	AppID       string
	RedirectURI string
	Scope       string
	State       string
	redirect    *url.URL
}

// QR login is a website app's; the authorize page an official account's.
const (
	authorizePage = "/connect/oauth2/authorize"
	qrconnectPage = "/connect/qrconnect"
)

// authorizeError is the platform's error page for a bad authorize link: a
// code and a reason, no redirect.
type authorizeError struct {
	Code   int
	Reason string
}

// parseAuthorize checks a link to page the way the platform does before it
// shows anything. The codes are those of the platform's error page (10003
// redirect_uri, 10005 scope, 10016 appid); the sandbox accepts any http(s)
// redirect_uri, having no authorised-domain setting.
func (s *Sandbox) parseAuthorize(page string, q url.Values) (authorizeRequest, *authorizeError) {
	req := authorizeRequest{Page: page, AppID: q.Get("appid"), RedirectURI: q.Get("redirect_uri"), Scope: q.Get("scope"), State: q.Get("state")}
	switch {
	case page == authorizePage && s.ofKind(AppOfficialAccount, req.AppID) == nil:
		return req, &authorizeError{10016, "appid is not an official account's"}
	case page == qrconnectPage && s.ofKind(AppWebsite, req.AppID) == nil:
		return req, &authorizeError{10016, "appid is not a website app's"}
	}
	u, err := url.Parse(req.RedirectURI)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return req, &authorizeError{10003, "redirect_uri is not an absolute http(s) URL"}
	}
	req.redirect = u
	if q.Get("response_type") != "code" {
		return req, &authorizeError{10003, "response_type must be code"}
	}
	switch {
	case page == authorizePage && req.Scope != scopeBase && req.Scope != scopeUserInfo:
		return req, &authorizeError{10005, "scope must be snsapi_base or snsapi_userinfo"}
	case page == qrconnectPage && req.Scope != scopeLogin:
		return req, &authorizeError{10005, "scope must be snsapi_login"}
	}
	if len(req.State) > 128 || !isAlnum(req.State) {
		return req, &authorizeError{10003, "state must be at most 128 letters and digits"}
	}
	return req, nil
}

func isAlnum(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}

// handleAuthorize is GET /connect/oauth2/authorize on open.weixin.qq.com,
// an official account's web OAuth. Sandbox-only parameters stand in for the
// person at the phone: person=<id> consents at once, refuse=1 refuses,
// snapshot=1 browses in snapshot mode; with none of them the page asks who
// is visiting.
func (s *Sandbox) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	s.consent(w, r, authorizePage)
}

// handleQRConnect is GET /connect/qrconnect on open.weixin.qq.com, a
// website app's QR login: on the platform the browser shows a QR code that
// the person scans and confirms on the phone. The sandbox shows the same
// consent page as the authorize page (no snapshot mode) and takes the same
// person= and refuse= parameters.
func (s *Sandbox) handleQRConnect(w http.ResponseWriter, r *http.Request) {
	s.consent(w, r, qrconnectPage)
}

func (s *Sandbox) consent(w http.ResponseWriter, r *http.Request, page string) {
	q := r.URL.Query()
	req, perr := s.parseAuthorize(page, q)
	if perr != nil {
		writePage(w, http.StatusBadRequest, errorPage, perr)
		return
	}
	switch {
	case q.Get("refuse") == "1":
		// The platform sends the user back without a code.
		redirectBack(w, req, url.Values{"state": {req.State}})
	case q.Get("person") != "" || q.Get("snapshot") == "1" && page == authorizePage:
		code, err := s.OAuthCode(OAuthConsent{AppID: req.AppID, Person: q.Get("person"), Scope: req.Scope, Snapshot: q.Get("snapshot") == "1"})
		if errors.Is(err, ErrNoPerson) {
			writePage(w, http.StatusNotFound, errorPage, &authorizeError{0, "no such person in the sandbox"})
			return
		}
		redirectBack(w, req, url.Values{"code": {code}, "state": {req.State}})
	default:
		writePage(w, http.StatusOK, consentPage, struct {
			authorizeRequest
			People []Person
		}{req, s.People()})
	}
}

// redirectBack sends the browser to redirect_uri with params added to its
// own query, code first, as the platform does.
func redirectBack(w http.ResponseWriter, req authorizeRequest, params url.Values) {
	u := *req.redirect
	u.Fragment, u.RawFragment = "", ""
	raw := u.RawQuery
	for _, k := range []string{"code", "state"} {
		v, ok := params[k]
		if !ok {
			continue
		}
		if raw != "" {
			raw += "&"
		}
		raw += k + "=" + url.QueryEscape(v[0])
	}
	u.RawQuery = raw
	w.Header().Set("Location", u.String())
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusFound)
}

func writePage(w http.ResponseWriter, status int, t *template.Template, data any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	t.Execute(w, data)
}

var errorPage = template.Must(template.New("error").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>Sandbox: authorization error</title></head>
<body><h1>Oops! Something went wrong</h1>
<p>{{if .Code}}errcode {{.Code}}: {{end}}{{.Reason}}</p></body></html>
`))

// consentPage lets a browser (the dev console, a test) pick the simulated
// person at the phone, then consent or refuse. It submits back to the
// authorize page with the sandbox-only parameters.
var consentPage = template.Must(template.New("consent").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>Sandbox: {{if eq .Scope "snsapi_base"}}who is visiting?{{else}}allow access to your profile?{{end}}</title></head>
<body>
<h1>{{if eq .Scope "snsapi_login"}}Log in to a website with WeChat (scan and confirm){{else if eq .Scope "snsapi_userinfo"}}An official account asks for your nickname and avatar{{else}}Silent authorization (snsapi_base){{end}}</h1>
<p>appid {{.AppID}} will receive a code at {{.RedirectURI}}</p>
<form method="get" action="{{.Page}}">
<input type="hidden" name="appid" value="{{.AppID}}">
<input type="hidden" name="redirect_uri" value="{{.RedirectURI}}">
<input type="hidden" name="response_type" value="code">
<input type="hidden" name="scope" value="{{.Scope}}">
<input type="hidden" name="state" value="{{.State}}">
<label>Person <select name="person">{{range .People}}<option value="{{.ID}}">{{.ID}} {{.Nickname}}</option>{{end}}</select></label>
{{if ne .Scope "snsapi_login"}}<label><input type="checkbox" name="snapshot" value="1"> snapshot mode (virtual visitor)</label>{{end}}
<button type="submit">Allow</button>
<button type="submit" name="refuse" value="1">Refuse</button>
</form>
</body></html>
`))
