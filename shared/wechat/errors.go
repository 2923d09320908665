package wechat

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"strings"
)

// Class is what a caller should do about a failed WeChat call.
type Class int

const (
	// ClassUnknown covers codes this package does not know and errors that
	// are not WeChat's at all. It is not retryable.
	ClassUnknown Class = iota
	// ClassTransient is a busy platform, a per-user rate limit or a transport
	// failure: retry with backoff.
	ClassTransient
	// ClassQuota is an exhausted call quota (45009): defer for hours and alarm.
	ClassQuota
	// ClassToken is a bad, replaced or expired access token: refresh it and
	// retry once.
	ClassToken
	// ClassCode is a bad or already used wx.login / OAuth code: the client
	// must obtain a new code; retrying the same one cannot succeed.
	ClassCode
	// ClassUserState is about the recipient (not following, no consent,
	// blocked, risky): record it, try another channel, no incident.
	ClassUserState
	// ClassSender is the sender's mistake (template, data, page): fail fast
	// and alarm.
	ClassSender
	// ClassConfig is an account or deployment problem (IP whitelist, secret,
	// API permission): alarm loudly, nothing will work until a human acts.
	ClassConfig
)

var classNames = [...]string{
	ClassUnknown:   "unknown",
	ClassTransient: "transient",
	ClassQuota:     "quota",
	ClassToken:     "token",
	ClassCode:      "code",
	ClassUserState: "user_state",
	ClassSender:    "sender",
	ClassConfig:    "config",
}

// String returns the class name used in logs and metrics, such as "user_state".
func (c Class) String() string {
	if c < 0 || int(c) >= len(classNames) {
		return "unknown"
	}
	return classNames[c]
}

// Retryable reports whether the same call may succeed later without anyone
// changing anything: transient failures soon, quota exhaustion after hours.
func (c Class) Retryable() bool {
	return c == ClassTransient || c == ClassQuota
}

// codeClasses maps errcode to class. Codes are global on the platform; the
// one exception (40001 on the token endpoints) is handled in Error.Class.
var codeClasses = map[int]Class{
	// System busy.
	-1: ClassTransient,
	// "api minute-quota reach limit mustslower retry next minute": per user
	// and minute on jscode2session.
	45011: ClassTransient,

	// "reach max api daily quota limit". A few APIs also answer 45009 for a
	// per-minute limit; the code alone cannot tell the two apart, so both are
	// treated as quota: retryable, but only after a long pause.
	45009: ClassQuota,

	// "invalid credential, access_token is invalid or not latest".
	40001: ClassToken,
	// "invalid access_token".
	40014: ClassToken,
	// "access_token expired".
	42001: ClassToken,

	// "invalid code": expired, from another app, or garbled.
	40029: ClassCode,
	// "code been used".
	40163: ClassCode,
	// Web OAuth: "oauth_code expired" (42003); the refresh token is invalid
	// (40030) or past its 30 days (42002). The user must consent again.
	42003: ClassCode,
	40030: ClassCode,
	42002: ClassCode,

	// Recipient does not follow the official account.
	43004: ClassUserState,
	// No (or used-up) subscribe-message consent.
	43101: ClassUserState,
	// "invalid openid": unknown user, or an openid of another app.
	40003: ClassUserState,
	// Recipient has blocked the official account.
	43019: ClassUserState,
	// "code blocked": jscode2session refuses a user of high risk level. A new
	// wx.login code will be blocked too, so this is the user's state, not a
	// bad code.
	40226: ClassUserState,
	// "out of response count limit": customer-service messages to one user
	// are capped until that user interacts again.
	45047: ClassUserState,

	// Invalid template_id.
	40037: ClassSender,
	// Template data rejected; errmsg names the field.
	47003: ClassSender,
	// Invalid page.
	41030: ClassSender,
	// "data format error": the request body is not the JSON the API expects.
	47001: ClassSender,

	// "invalid ip, not in whitelist" on the token endpoints.
	40164: ClassConfig,
	// IP risk: an administrator must confirm calls from this IP (89503),
	// confirmation pending (89501), refused by an administrator (89506,
	// 89507).
	89501: ClassConfig,
	89503: ClassConfig,
	89506: ClassConfig,
	89507: ClassConfig,
	// Invalid appid.
	40013: ClassConfig,
	// Invalid appsecret.
	40125: ClassConfig,
	// AppSecret frozen by the account owner.
	40243: ClassConfig,
	// "api unauthorized": the account lacks the permission for this API.
	48001: ClassConfig,
	// The account is managed by a third-party platform and must get tokens
	// through api_component_token.
	61024: ClassConfig,
}

// tokenEndpoints are the APIs where 40001 means "AppSecret wrong or not of
// this app" rather than a bad access token: refreshing the token cannot help.
var tokenEndpoints = map[string]bool{
	"/cgi-bin/token":        true,
	"/cgi-bin/stable_token": true,
}

// Error is an error answer from the WeChat platform: HTTP 200 with a nonzero
// errcode.
type Error struct {
	API     string // request path, such as "/sns/jscode2session"
	Code    int    // errcode
	Message string // errmsg without the rid suffix
	RID     string // request id platform support asks for; may be empty
}

// newError builds an Error from an errcode answer, splitting the rid out of
// errmsg.
func newError(api string, code int, errmsg string) *Error {
	msg, rid := splitRID(errmsg)
	return &Error{API: api, Code: code, Message: msg, RID: rid}
}

// Error formats the answer as
// "wechat /sns/jscode2session: errcode 40029: invalid code (rid 6569d9a4-...)".
func (e *Error) Error() string {
	msg, rid := splitRID(e.Message)
	if e.RID != "" {
		rid = e.RID
	}
	var b strings.Builder
	fmt.Fprintf(&b, "wechat %s: errcode %d", e.API, e.Code)
	if msg != "" {
		b.WriteString(": ")
		b.WriteString(msg)
	}
	if rid != "" {
		fmt.Fprintf(&b, " (rid %s)", rid)
	}
	return b.String()
}

// Class tells what to do about the answer.
func (e *Error) Class() Class {
	if e.Code == 40001 && tokenEndpoints[e.API] {
		return ClassConfig
	}
	return codeClasses[e.Code] // absent: ClassUnknown
}

// LogValue logs the answer as a group that log queries can filter on.
func (e *Error) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("api", e.API),
		slog.Int("errcode", e.Code),
		slog.String("errmsg", e.Message),
		slog.String("rid", e.RID),
		slog.String("class", e.Class().String()),
	)
}

// ClassOf classifies any error returned by this package. A platform answer
// has its own class; transport failures (timeouts, refused connections,
// non-200 HTTP, unreadable bodies) and context cancellation or deadline are
// transient; an error with a Class() Class method has that class; nil and
// everything else are unknown.
func ClassOf(err error) Class {
	if err == nil {
		return ClassUnknown
	}
	var we *Error
	if errors.As(err, &we) {
		return we.Class()
	}
	// Errors from outside this package that know their class, such as
	// shared/tokens' "no usable access token", carry a Class method.
	var ce interface{ Class() Class }
	if errors.As(err, &ce) {
		return ce.Class()
	}
	var te *transportError
	if errors.As(err, &te) {
		return ClassTransient
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return ClassTransient
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return ClassTransient
	}
	return ClassUnknown
}

// RID returns the platform's request id carried by err, or "".
func RID(err error) string {
	var we *Error
	if !errors.As(err, &we) {
		return ""
	}
	if we.RID != "" {
		return we.RID
	}
	_, rid := splitRID(we.Message)
	return rid
}

// The platform appends the request id to errmsg in several spellings:
//
//	"invalid code, rid: 6569d9a4-1d2e0b2c-0f7e6a40"
//	"reach max api daily quota limit rid: 66a30b97-7f228fed-49c8beb1"
//	"invalid ip 1.2.3.4, not in whitelist hint: [i50PvA0089sha6]"   (older)
//	"code blocked, hints: [ req_id: qEjdmsNre-EYNDhA ]"             (older)
var (
	ridPattern  = regexp.MustCompile(`(?i)[\s,;]*\brid\s*[:：=]\s*([0-9a-z][0-9a-z-]*)`)
	hintPattern = regexp.MustCompile(`(?i)[\s,;]*\bhints?\s*[:：]\s*\[\s*(?:req_id\s*[:：]\s*)?([^\]\s]+)\s*\]`)
)

// splitRID returns errmsg without its request-id part, and the request id.
func splitRID(errmsg string) (msg, rid string) {
	for _, p := range []*regexp.Regexp{ridPattern, hintPattern} {
		all := p.FindAllStringSubmatchIndex(errmsg, -1)
		if len(all) == 0 {
			continue
		}
		m := all[len(all)-1] // the platform's suffix comes last
		rid = errmsg[m[2]:m[3]]
		errmsg = errmsg[:m[0]] + errmsg[m[1]:]
		break
	}
	return strings.TrimRight(strings.TrimSpace(errmsg), ",; "), rid
}

// transportError is a call that got no usable answer from the platform. It
// keeps the API path only: the request URL carries appid and secret,
// access_token or js_code, and *url.Error would print all of it.
type transportError struct {
	api   string
	what  string // what went wrong, already free of credentials
	cause error  // for errors.Is/As (net.Error timeouts, context errors); may be nil
}

func (e *transportError) Error() string {
	return "wechat " + e.api + ": " + e.what
}

func (e *transportError) Unwrap() error { return e.cause }
