// Package signin is the rules of signing a WeChat user in through a
// browser with the platform's web OAuth: an official account's H5 sign-in
// and a website app's QR login. Begin checks what the page asked for
// (scope, return_to on an allowed origin), signs a state that binds the
// app and return_to, ties the sign-in to the browser that started it with
// a cookie of the callback's host (keyed, and __Host- over https, so that
// no other host of the domain can plant it), and names the platform's
// authorize page. Finish checks the state (of this app), the browser and
// single use, exchanges the code, reads the profile when the grant allows,
// links the visitor's identity and says where the browser goes back, with
// a session or an error in the URL fragment.
//
// The HTTP shape (API Gateway events, routes, pages) stays with the
// function; the app, its scopes and the identity it links are inputs
// (OfficialAccount, Website), one Flow per app.
package signin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"wxbridge/shared/config"
	"wxbridge/shared/identity"
	"wxbridge/shared/oauthstate"
	"wxbridge/shared/observe"
	"wxbridge/shared/profiles"
	"wxbridge/shared/session"
	"wxbridge/shared/wechat"
)

// App is the WeChat app a browser signs in to, and what its sign-in may
// ask for and links.
type App struct {
	config.App
	// Scopes are the scopes a sign-in may ask for; the first is the
	// default.
	Scopes []string
	// ProfileScope is the scope whose grant reads the visitor's profile
	// (sns/userinfo) on every sign-in; "" when none does.
	ProfileScope string
	// UnionIDScope is a scope whose grant reads sns/userinfo only when the
	// grant came without the unionid: the call costs time and quota, and
	// a bound app's grant carries the unionid already. "" when none.
	UnionIDScope string
	// Sighting is the identity a signed-in visitor is linked by.
	Sighting func(openid, unionid string) identity.Sighting
	// LegacyStates accepts the states issued before states named their
	// app (oauthstate.Keys.LegacyAppID): set for the default official
	// account only, the one app that issued them.
	LegacyStates bool
}

// OfficialAccount is the H5 sign-in of an official account: snsapi_base
// (the default) is silent and yields the openid; snsapi_userinfo asks for
// consent and yields the unionid and the profile. The visitor is linked by
// the OA openid.
func OfficialAccount(a config.App) App {
	return App{
		App:          a,
		Scopes:       []string{wechat.ScopeBase, wechat.ScopeUserInfo},
		ProfileScope: wechat.ScopeUserInfo,
		Sighting: func(openid, unionid string) identity.Sighting {
			return identity.Sighting{
				OA:      &identity.OASighting{AppID: a.AppID, OpenID: openid},
				UnionID: unionid,
				Source:  identity.SourceOAuth,
			}
		},
	}
}

// Website is the QR login of an open platform website app (网站应用):
// snsapi_login, on the platform's connect page, scanned and confirmed on
// the phone. The visitor is linked by the website app's openid; the grant
// carries the unionid when the app is bound to the open platform, and
// sns/userinfo is read for it (and the profile kept) only when it does
// not.
func Website(a config.App) App {
	return App{
		App:          a,
		Scopes:       []string{wechat.ScopeLogin},
		UnionIDScope: wechat.ScopeLogin,
		Sighting: func(openid, unionid string) identity.Sighting {
			return identity.Sighting{
				Web:     &identity.AppSighting{AppID: a.AppID, OpenID: openid},
				UnionID: unionid,
				Source:  identity.SourceWebLogin,
			}
		},
	}
}

// WeChat is the platform side of web OAuth.
type WeChat interface {
	AuthorizeURL(appid, redirectURI, scope, state string) (string, error)
	OAuthToken(ctx context.Context, appid, secret, code string) (wechat.WebToken, error)
	UserInfo(ctx context.Context, accessToken, openid, lang string) (wechat.UserInfo, error)
}

// People is the identity store as a sign-in uses it.
type People interface {
	Link(ctx context.Context, s identity.Sighting) (identity.Result, error)
}

// States records used states (oauthstate.Ledger).
type States interface {
	Use(ctx context.Context, s oauthstate.State) error
}

// Profiles keeps the profiles that visitors showed.
type Profiles interface {
	Put(ctx context.Context, appid, openid string, p profiles.Profile) error
}

// Deps are the parts a sign-in talks to. Log lines are written with the
// request's context (observe.With).
type Deps struct {
	WeChat   WeChat
	People   People
	States   States
	Profiles Profiles
	Log      *slog.Logger
	Metrics  *observe.Metrics
}

// Flow signs visitors in to one app.
type Flow struct {
	app      App
	origins  Origins
	states   *oauthstate.Keys
	sessions *session.Keys
	binding  bindingKeys
	d        Deps
}

// New returns the sign-in flow of app. Pages on origins may receive
// sessions. States, binding cookies and sessions are signed with keys
// derived from signingKey (wxbridge's own, config.Config.SigningKey);
// previousKey, if set, still verifies them during a rotation.
func New(app App, origins Origins, signingKey, previousKey string, d Deps) (*Flow, error) {
	if app.AppID == "" || app.Secret == "" || len(app.Scopes) == 0 || app.Sighting == nil {
		return nil, errors.New("signin: the app needs an appid, a secret, scopes and the identity it links")
	}
	if origins.empty() {
		return nil, errors.New("signin: no origins allowed: no page could receive a session")
	}
	sessions, err := session.NewKeys(signingKey, previousKey, 0)
	if err != nil {
		return nil, err
	}
	states, err := oauthstate.NewKeys(signingKey, previousKey)
	if err != nil {
		return nil, err
	}
	if app.LegacyStates {
		states.LegacyAppID = app.AppID
	}
	return &Flow{app: app, origins: origins, states: states, sessions: sessions, binding: newBindingKeys(signingKey, previousKey), d: d}, nil
}

// SetClock replaces the clock that states are issued and checked by.
func (f *Flow) SetClock(now func() time.Time) { f.states.Now = now }

// Refusal is a sign-in step refused with nowhere safe to send the browser
// (no trusted return_to): the HTTP layer shows it as a page.
type Refusal struct {
	// Reason is a stable code for the developer, such as invalid_state.
	Reason string
	// Message is for the person holding the phone.
	Message string
}

func (r *Refusal) Error() string { return "signin: " + r.Reason + ": " + r.Message }

func refuse(reason, message string) error { return &Refusal{Reason: reason, Message: message} }

// Start is a sign-in begun.
type Start struct {
	// Authorize is the platform's page to send the browser to.
	Authorize string
	// Binding is the cookie to set on the browser: the callback accepts
	// the sign-in only from a browser that holds it. It is a __Host-
	// cookie on the callback's host when the callback is https.
	Binding *http.Cookie
	// Scope is the scope asked for, the default filled in.
	Scope string
}

// Begin starts a sign-in that asks for scope ("" for the app's default)
// and comes back to returnTo. callback is the absolute URL the platform
// sends the browser to; the browser must be on its host now (see Site),
// since the binding cookie is set for that host.
func (f *Flow) Begin(ctx context.Context, scope, returnTo, callback string) (Start, error) {
	if scope == "" {
		scope = f.app.Scopes[0]
	}
	if !slices.Contains(f.app.Scopes, scope) {
		return Start{}, refuse("invalid_request", "scope must be "+strings.Join(f.app.Scopes, " or ")+".")
	}
	if err := f.origins.Check(returnTo); err != nil {
		return Start{}, err
	}
	cb, err := url.Parse(callback)
	if err != nil || (cb.Scheme != "https" && cb.Scheme != "http") || cb.Host == "" || cb.RawQuery != "" {
		return Start{}, fmt.Errorf("signin: callback %q is not an absolute http(s) URL without a query", callback)
	}
	token, st, err := f.states.Issue(f.app.AppID, scope, returnTo)
	if err != nil {
		return Start{}, err
	}
	// return_to rides in redirect_uri, which the platform hands back
	// unchanged; the state's MAC binds it, so it cannot be swapped.
	target, err := f.d.WeChat.AuthorizeURL(f.app.AppID, callback+"?return_to="+url.QueryEscape(returnTo), scope, token)
	if err != nil {
		return Start{}, err
	}
	f.d.Metrics.Count("OAuthStarted", "scope", scope)
	return Start{Authorize: target, Binding: f.binding.cookie(st, cb, f.states.Now()), Scope: scope}, nil
}

// Return is what the platform's redirect brings to the callback.
type Return struct {
	State, Code, ReturnTo string
	// Cookies are the request's cookies, "name=value" each (as API
	// Gateway puts them in the event; "a=1; b=2" is read too).
	Cookies []string
	// Callback is the callback's absolute URL, as Begin was given it: its
	// scheme says which binding cookie to look for. "" reads as https.
	Callback string
}

// Back is where a finished sign-in sends the browser: ReturnTo with the
// outcome in the fragment, where neither servers nor Referer headers see
// it.
type Back struct {
	ReturnTo string
	Fragment url.Values
}

// URL is the address to redirect the browser to.
func (b Back) URL() string { return b.ReturnTo + "#" + b.Fragment.Encode() }

// Outcome names the outcome for logs: "session", "snapshot" or
// "error=<code>"; never the session itself.
func (b Back) Outcome() string {
	switch {
	case b.Fragment.Has("session"):
		return "session"
	case b.Fragment.Has("snapshot"):
		return "snapshot=1"
	}
	return "error=" + b.Fragment.Get("error")
}

func back(returnTo string, kv ...string) Back {
	f := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		f.Set(kv[i], kv[i+1])
	}
	return Back{ReturnTo: returnTo, Fragment: f}
}

// Finish completes a sign-in at the callback. A *Refusal means there is no
// trustworthy return_to; any other error is a failure of ours. Everything
// else, including the visitor's refusal and the platform's failures, is a
// Back.
func (f *Flow) Finish(ctx context.Context, r Return) (Back, error) {
	// A state issued for another app fails here as a forged one does.
	st, err := f.states.Verify(r.State, f.app.AppID, r.ReturnTo)
	switch {
	case errors.Is(err, oauthstate.ErrExpired):
		return Back{}, refuse("expired_state", "This sign-in took more than 10 minutes. Go back to the page and try again.")
	case err != nil || !slices.Contains(f.app.Scopes, st.Scope):
		return Back{}, refuse("invalid_state", "This sign-in link is not valid. Go back to the page and try again.")
	}
	// Signed by us, but the allowlist may have shrunk since.
	if err := f.origins.Check(r.ReturnTo); err != nil {
		return Back{}, err
	}
	// Over plain http no cookie can carry the __Host- prefix; any other
	// callback, or none named, is https.
	secure := true
	if u, err := url.Parse(r.Callback); err == nil && u.Scheme == "http" {
		secure = false
	}
	if !f.binding.bound(r.Cookies, st.Nonce, secure) {
		return Back{}, refuse("foreign_state", "This sign-in was started in another browser. Go back to the page and try again.")
	}
	if err := f.d.States.Use(ctx, st); errors.Is(err, oauthstate.ErrReplayed) {
		return Back{}, refuse("used_state", "This sign-in link has been used already. Go back to the page and try again.")
	} else if err != nil {
		f.d.Log.ErrorContext(ctx, "state ledger", "outcome", "state_ledger_error", "error", err)
		return back(r.ReturnTo, "error", "temporarily_unavailable"), nil
	}
	if r.Code == "" {
		// The platform comes back without a code when the user refuses.
		return back(r.ReturnTo, "error", "access_denied"), nil
	}
	tok, err := f.d.WeChat.OAuthToken(ctx, f.app.AppID, f.app.Secret, r.Code)
	if err != nil {
		return back(r.ReturnTo, "error", f.wechatFailure(ctx, "sns/oauth2/access_token", err)), nil
	}
	if tok.Snapshot {
		// Snapshot mode: a virtual account, not a person. Store nothing.
		f.d.Metrics.Count("OAuthSnapshots")
		return back(r.ReturnTo, "snapshot", "1"), nil
	}
	unionID := tok.UnionID
	var info *wechat.UserInfo
	if f.readsUserInfo(st.Scope, tok) {
		// The user has consented and the code is spent: a failed read costs
		// the profile (and a unionid the grant did not carry), not the
		// sign-in.
		ui, err := f.d.WeChat.UserInfo(ctx, tok.AccessToken, tok.OpenID, "")
		if err != nil {
			f.wechatFailure(ctx, "sns/userinfo", err)
		} else {
			info = &ui
			if unionID == "" {
				unionID = ui.UnionID
			}
		}
	}
	// The store counts merges and conflicts by the sighting's source.
	res, err := f.d.People.Link(ctx, f.app.Sighting(tok.OpenID, unionID))
	var conflict *identity.ConflictError
	switch {
	case errors.As(err, &conflict):
		f.d.Log.ErrorContext(ctx, "link", "outcome", "link_error", "error", err)
		return back(r.ReturnTo, "error", "server_error"), nil
	case errors.Is(err, identity.ErrContention):
		f.d.Log.WarnContext(ctx, "link", "outcome", "link_error", "error", err)
		return back(r.ReturnTo, "error", "temporarily_unavailable"), nil
	case err != nil:
		// The table is busy or down: the visitor may try again shortly.
		f.d.Log.ErrorContext(ctx, "link", "outcome", "link_error", "error", err)
		return back(r.ReturnTo, "error", "temporarily_unavailable"), nil
	}
	f.d.Metrics.Count("OAuthLogins", "scope", st.Scope, "outcome", string(res.Outcome))
	if info != nil {
		p := profiles.Profile{Nickname: info.Nickname, HeadImgURL: info.HeadImgURL, UpdatedAt: time.Now()}
		if err := f.d.Profiles.Put(ctx, f.app.AppID, tok.OpenID, p); err != nil {
			f.d.Log.WarnContext(ctx, "profile", "outcome", "profile_not_saved", "error", err)
		}
	}
	sess, s, err := f.sessions.Issue(session.Session{AppID: f.app.AppID, OpenID: tok.OpenID, UID: res.Person.UID})
	if err != nil {
		return Back{}, err
	}
	f.d.Log.InfoContext(ctx, "oauth", "outcome", "linked", "uid", res.Person.UID, "link", res.Outcome, "scope", st.Scope,
		"unionid_known", unionID != "", "profile", info != nil)
	return back(r.ReturnTo, "session", sess, "expires_at", fmt.Sprint(s.Expires.Unix())), nil
}

// readsUserInfo says whether the sign-in reads sns/userinfo: always for a
// grant of the profile scope asked for, and for a grant of the unionid
// scope only when the unionid did not come with it.
func (f *Flow) readsUserInfo(asked string, tok wechat.WebToken) bool {
	granted := func(scope string) bool { return scope != "" && asked == scope && tok.HasScope(scope) }
	return granted(f.app.ProfileScope) || (tok.UnionID == "" && granted(f.app.UnionIDScope))
}

// wechatFailure logs a failed call and names the fragment error for it.
func (f *Flow) wechatFailure(ctx context.Context, api string, err error) string {
	// The client counts WeChatErrors by api and errcode.
	class := wechat.ClassOf(err)
	level, answer := slog.LevelError, "server_error"
	switch class {
	case wechat.ClassCode:
		level, answer = slog.LevelWarn, "invalid_code"
	case wechat.ClassTransient, wechat.ClassQuota:
		level, answer = slog.LevelWarn, "temporarily_unavailable"
	}
	// Configuration and unknown failures are ours to fix, not the user's.
	f.d.Log.Log(ctx, level, api+" failed", "outcome", "wechat_error", "class", class.String(), "error", err, "rid", wechat.RID(err))
	return answer
}
