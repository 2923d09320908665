package wechat

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"time"
)

// Class is what a caller should do about a failed WeChat call.
type Class int

const (
	// ClassNone is no failure at all: ClassOf(nil).
	ClassNone Class = iota
	// ClassUnknown is a platform answer with an errcode this package does
	// not know. Nobody can say it is final, so it is retried within each
	// consumer's patience, and alarmed on.
	ClassUnknown
	// ClassInfra is a failure that is not the platform's answer at all: our
	// own infrastructure (DynamoDB, Secrets Manager, SQS) failed, or a token
	// could not be read. Retry with backoff.
	ClassInfra
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
	ClassNone:      "none",
	ClassUnknown:   "unknown",
	ClassInfra:     "infra",
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

// Retryable reports whether the same request may still succeed later. Only
// an answer that says something final about the request itself is not: its
// code (ClassCode), its recipient (ClassUserState) or its content
// (ClassSender). Everything else may pass: a busy platform or our own
// infrastructure soon, a quota after hours, a token once it is replaced, a
// deployment problem or an unknown answer once a person acts (which is why
// those are alarmed on). Each consumer bounds its own patience.
func (c Class) Retryable() bool {
	switch c {
	case ClassUnknown, ClassInfra, ClassTransient, ClassQuota, ClassToken, ClassConfig:
		return true
	}
	return false
}

// Retryable is the one answer to "may this failure pass if the request is
// tried again?" for every consumer: ClassOf(err).Retryable().
func Retryable(err error) bool {
	return ClassOf(err).Retryable()
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
	// "response out of time limit or subscription is canceled": the
	// customer-service window (48 hours after the user's last interaction)
	// is closed.
	45015: ClassUserState,

	// Invalid template_id.
	40037: ClassSender,
	// Template data rejected; errmsg names the field.
	47003: ClassSender,
	// Invalid page.
	41030: ClassSender,
	// "data format error": the request body is not the JSON the API expects.
	47001: ClassSender,
	// "content size out of limit": a customer-service text too long.
	45002: ClassSender,

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
	if c, ok := codeClasses[e.Code]; ok {
		return c
	}
	return ClassUnknown
}

// Is matches the sentinel answers below by errcode, so that code above the
// WeChat edge asks errors.Is(err, wechat.ErrNotFollowing) instead of
// comparing numbers.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.API == "" && t.Message == "" && t.Code == e.Code
}

// Answers that code above the edge reacts to specifically; compare with
// errors.Is.
var (
	// ErrNotFollowing (43004): the recipient does not follow the official
	// account.
	ErrNotFollowing = &Error{Code: 43004}
	// ErrNoConsent (43101): no subscribe-message consent, or it is used up.
	ErrNoConsent = &Error{Code: 43101}
	// ErrWindowClosed (45015): the customer-service window is closed: the
	// user has not interacted with the account recently enough.
	ErrWindowClosed = &Error{Code: 45015}
	// ErrResponseLimit (45047): the customer-service messages the user's
	// last interaction allows are used up.
	ErrResponseLimit = &Error{Code: 45047}
	// ErrInvalidOpenID (40003): the openid is unknown to this app: an answer
	// about that user itself.
	ErrInvalidOpenID = &Error{Code: 40003}
	// ErrTooFrequent (45011): calls too frequent; back off for minutes.
	ErrTooFrequent = &Error{Code: 45011}
	// ErrQuota (45009): a call quota is used up, usually until the quota day
	// turns (QuotaDayEnd).
	ErrQuota = &Error{Code: 45009}
)

// ErrNotSent marks a failure that happened before the request left this
// process (no access token to send it with, no connection to send it on):
// the platform cannot have acted on it, whatever the failure's class
// (ClassOf still reports the cause's). Compare with errors.Is.
var ErrNotSent = errors.New("wechat: request not sent")

// notSentError is err marked with ErrNotSent.
type notSentError struct{ err error }

func notSent(err error) error                { return &notSentError{err} }
func (e *notSentError) Error() string        { return e.err.Error() }
func (e *notSentError) Unwrap() error        { return e.err }
func (e *notSentError) Is(target error) bool { return target == ErrNotSent }

// Beijing is the zone of WeChat's quota day: quotas reset at midnight
// Beijing time (China has no daylight saving time).
var Beijing = time.FixedZone("CST", 8*60*60)

// QuotaDayEnd is when the platform's quota day that t falls in ends.
func QuotaDayEnd(t time.Time) time.Time {
	l := t.In(Beijing)
	return time.Date(l.Year(), l.Month(), l.Day()+1, 0, 0, 0, 0, Beijing)
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

// ClassOf classifies any error. A platform answer has its own class;
// transport failures (timeouts, refused connections, non-200 HTTP,
// unreadable bodies) and context cancellation or deadline are transient; an
// error with a Class() Class method has that class; nil is ClassNone; and
// every other error, not being the platform's answer, is ClassInfra.
func ClassOf(err error) Class {
	if err == nil {
		return ClassNone
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
	return ClassInfra
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
