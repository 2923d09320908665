package observe

// Metric is one metric the functions write: a catalogue entry.
type Metric struct {
	// Name is the CloudWatch metric name, as passed to Metrics.Count or
	// Metrics.Value.
	Name string
	// Unit is "Count" for Metrics.Count, or the CloudWatch unit every
	// Metrics.Value call passes.
	Unit string
	// Dimensions are the dimension sets the writes carry besides
	// "function", each in the order the calls pass them. CloudWatch keeps
	// each set as a metric of its own (an alarm or a Metrics Insights
	// query sees exactly one), so a metric should have one set; nil is
	// one set with no dimension but function.
	Dimensions [][]string
	// Writers are the functions whose code writes it.
	Writers []string
	// Counts says what one data point means, with the dimension values
	// the code writes (Markdown: it becomes a cell of docs/operations.md).
	Counts string
}

// The function names, as Logger and NewMetrics are given them.
const (
	fnLogin            = "login"
	fnOAuthCallback    = "oauth-callback"
	fnFollowEvent      = "follow-event"
	fnSendWorker       = "send-worker"
	fnTokenRefresher   = "token-refresher"
	fnFollowerSync     = "follower-sync"
	fnOutcomePublisher = "outcome-publisher"
)

// Functions are the Lambda functions, in the order docs list them.
var Functions = []string{fnLogin, fnOAuthCallback, fnFollowEvent, fnSendWorker, fnTokenRefresher, fnFollowerSync, fnOutcomePublisher}

// wechatCallers are the functions that call WeChat's API.
var wechatCallers = []string{fnLogin, fnOAuthCallback, fnFollowEvent, fnSendWorker, fnTokenRefresher, fnFollowerSync}

// linkers are the functions that link identities (shared/identity's Link).
var linkers = []string{fnLogin, fnOAuthCallback, fnFollowEvent, fnFollowerSync}

// dims is one dimension set; none is the set without dimensions.
func dims(names ...string) [][]string { return [][]string{names} }

var none [][]string

// Catalogue is every metric wxbridge writes, in namespace Namespace. A
// test (catalogue_test.go) walks the repository's code and fails on a
// Count or Value call whose name, unit or dimensions are not here, and on
// an entry no code writes; docs/operations.md's metrics table is
// generated from it (go test ./shared/observe -run TestOperationsMetricsTable -update).
var Catalogue = []Metric{
	// Sign-in and identity.
	{Name: "Logins", Unit: "Count", Dimensions: dims("outcome"), Writers: []string{fnLogin},
		Counts: "mini-program logins by link outcome (`created`, `attached`, `merged`, `unchanged`)"},
	{Name: "UnionIDReveals", Unit: "Count", Dimensions: dims("outcome"), Writers: []string{fnLogin},
		Counts: "unionids learnt from open data (`encryptedData`), by link outcome"},
	{Name: "AppLogins", Unit: "Count", Dimensions: dims("outcome"), Writers: []string{fnLogin},
		Counts: "mobile-app logins (the WeChat SDK's code) by link outcome (`created`, `attached`, `merged`, `unchanged`)"},
	{Name: "PhoneVerifications", Unit: "Count", Dimensions: dims("outcome"), Writers: []string{fnLogin},
		Counts: "getPhoneNumber codes posted to `/mp/phone`, by outcome: `verified` (the number recorded), `invalid_code` (used, expired or another mini program's), `foreign_app` (a number vouched for in another mini program), `wechat_unavailable`, `superseded` (a more recent verification came first: another person's of the number, or the caller's own of another), `failed` (storage, our own error, or WeChat refusing the user: `login_blocked`)"},
	{Name: "OAuthStarted", Unit: "Count", Dimensions: dims("scope"), Writers: []string{fnOAuthCallback},
		Counts: "H5 sign-ins and website QR logins sent to WeChat's authorize or QR page, by scope (`snsapi_base`, `snsapi_userinfo`, `snsapi_login`)"},
	{Name: "OAuthLogins", Unit: "Count", Dimensions: dims("scope", "outcome"), Writers: []string{fnOAuthCallback},
		Counts: "H5 sign-ins and website QR logins completed, by scope and link outcome"},
	{Name: "OAuthRefused", Unit: "Count", Dimensions: dims("reason"), Writers: []string{fnOAuthCallback},
		Counts: "H5 sign-ins and website QR logins refused, by the error code answered (`invalid_request`, `invalid_return_to`, `invalid_state`, `expired_state`, `used_state`, `foreign_state`, `unknown_app`, `not_found`, …)"},
	{Name: "OAuthSnapshots", Unit: "Count", Writers: []string{fnOAuthCallback},
		Counts: "H5 visits in WeChat's snapshot mode (`is_snapshotuser`): a virtual visitor, nothing stored"},
	{Name: "Merges", Unit: "Count", Dimensions: dims("source"), Writers: linkers,
		Counts: "two people merged into one because a unionid showed they are one, by the sighting that showed it (`login`, `open_data`, `oauth`, `push`, `backfill`, `web_login`, `app_login`)"},
	{Name: "LinkConflicts", Unit: "Count", Dimensions: dims("source", "field"), Writers: linkers,
		Counts: "links refused because an identity already belongs to someone else, by source and the conflicting `field` (`external_id`: a business binding refused; `unionid`, `mp_openid`, `oa_openid`, `web_openid`, `app_openid`)"},
	{Name: "PhoneMoves", Unit: "Count", Writers: []string{fnLogin},
		Counts: "verified phone numbers taken from one person by another's later verification (a reassigned or shared number)"},
	{Name: "BindingsRefused", Unit: "Count", Dimensions: dims("source", "reason"), Writers: []string{fnLogin, fnFollowEvent},
		Counts: "business bindings refused, by where the bind token came (`login`, `qrscene`) and why: `token_used` (a single-use token that already bound someone else), `unionid_unknown` (a QR scan by a follower whose unionid is unknown)"},
	{Name: "Links", Unit: "Count", Dimensions: dims("source", "outcome"), Writers: []string{fnFollowEvent, fnFollowerSync},
		Counts: "followers linked, by `source` (`push`, `backfill`) and link outcome"},

	// The official account's server push.
	{Name: "PushEvents", Unit: "Count", Dimensions: dims("kind"), Writers: []string{fnFollowEvent},
		Counts: "pushes handled, by type (`subscribe`, `unsubscribe`, `SCAN`, `TEMPLATESENDJOBFINISH`, …)"},
	{Name: "PushIgnored", Unit: "Count", Dimensions: dims("kind"), Writers: []string{fnFollowEvent},
		Counts: "pushes acknowledged with nothing to do (messages and menu events, a scan without a binding scene, a delivery report for no job of ours), by type"},
	{Name: "PushRefused", Unit: "Count", Dimensions: dims("reason"), Writers: []string{fnFollowEvent},
		Counts: "pushes refused before handling: `too_large`, or the HTTP status answered (`401` bad signature or stale timestamp, `400` unreadable or sealed for another appid, `404` an appid that is no configured official account)"},
	{Name: "PushDeferred", Unit: "Count", Dimensions: dims("class"), Writers: []string{fnFollowEvent},
		Counts: "events put off (queued, or back to the queue) by a retryable failure, by WeChat error class (`config`, `quota`, `unknown` alarm; `transient`, `token`, `infra` pass)"},
	{Name: "PushDegraded", Unit: "Count", Dimensions: dims("kind"), Writers: []string{fnFollowEvent},
		Counts: "follow-state events applied without `user/info` because it refused the openid itself (40003), by type"},
	{Name: "PushHandedBack", Unit: "Count", Writers: []string{fnFollowEvent},
		Counts: "retry-queue events handed back untried as new messages (no time left in the invocation), without spending an attempt"},
	{Name: "PushDuplicates", Unit: "Count", Writers: []string{fnFollowEvent},
		Counts: "WeChat's retries of a push already handled"},
	{Name: "PushQueued", Unit: "Count", Writers: []string{fnFollowEvent},
		Counts: "pushes not handled within the push budget, put on `PushRetryQueue` and acknowledged"},
	{Name: "PushFailed", Unit: "Count", Writers: []string{fnFollowEvent},
		Counts: "pushes that failed for good (not retryable) and were acknowledged"},
	{Name: "PushNotAccepted", Unit: "Count", Writers: []string{fnFollowEvent},
		Counts: "pushes neither handled nor queued: not acknowledged, so WeChat retries them"},
	{Name: "DeliveryReports", Unit: "Count", Dimensions: dims("status"), Writers: []string{fnFollowEvent},
		Counts: "template delivery reports (`TEMPLATESENDJOBFINISH`), by WeChat's `Status` (`success`, `failed:user block`, `failed: system failed`)"},

	// Notifications.
	{Name: "Sends", Unit: "Count", Dimensions: dims("outcome", "class"), Writers: []string{fnSendWorker},
		Counts: "jobs by outcome (`SENT`, `UNDELIVERABLE`, `FAILED`, `EXPIRED`, `UNKNOWN`, `duplicate`, `retry`, `dropped`) and failure class (`none`, a `wechat.Class` name, `store`, `invalid`, `expired`)"},
	{Name: "SendAlarm", Unit: "Count", Dimensions: dims("reason"), Writers: []string{fnSendWorker},
		Counts: "send failures someone has to act on, by class (`sender`, `unknown`, `config`, `quota`)"},
	{Name: "SendCrashes", Unit: "Count", Writers: []string{fnSendWorker},
		Counts: "jobs that crashed the worker (a panic, reported as a batch item failure)"},
	{Name: "LedgerWriteFailed", Unit: "Count", Dimensions: dims("status"), Writers: []string{fnSendWorker},
		Counts: "send outcomes that could not be written to the ledger, by the status being written"},
	{Name: "FollowStateCorrected", Unit: "Count", Dimensions: dims("source"), Writers: []string{fnSendWorker},
		Counts: "people marked unfollowed because a send learnt it (`source`=`43004`)"},

	// Outcome events.
	{Name: "OutcomesPublished", Unit: "Count", Dimensions: dims("status"), Writers: []string{fnOutcomePublisher},
		Counts: "outcome events the outcome bus accepted, by status (`SENT`, `DELIVERED`, `BLOCKED`, `FAILED`, `UNDELIVERABLE`, `EXPIRED`, `UNKNOWN`); an event published again after a failure counts again"},
	{Name: "OutcomePublishFailed", Unit: "Count", Dimensions: dims("reason"), Writers: []string{fnOutcomePublisher},
		Counts: "stream records reported back for Lambda to retry (they and the records after them), by reason: `throttled`, `error` (PutEvents failed or refused the entry), `unreadable` (a ledger item the code cannot read), `too_large`, `deadline`"},

	// WeChat and access tokens.
	{Name: "WeChatErrors", Unit: "Count", Dimensions: dims("api", "errcode"), Writers: wechatCallers,
		Counts: "WeChat answers with an errcode, by API path and code"},
	{Name: "TokenRefresh", Unit: "Count", Dimensions: dims("appid", "outcome"), Writers: []string{fnTokenRefresher},
		Counts: "refresher runs per app: `fresh`, `refreshed`, `forced`, `unchanged`, `already_replaced`, `busy`, `force_refused`, `failed`, `error`"},
	{Name: "TokenAge", Unit: "Seconds", Dimensions: dims("appid"), Writers: []string{fnTokenRefresher},
		Counts: "seconds since the stored token was obtained, after each run (a token lives 7200 s)"},
	{Name: "TokenConfigAlarm", Unit: "Count", Dimensions: dims("appid", "errcode"), Writers: []string{fnTokenRefresher},
		Counts: "token refusals only a person can fix (40164, 40125, 89503, …)"},
	{Name: "TokenForceRefused", Unit: "Count", Dimensions: dims("appid", "reason"), Writers: []string{fnTokenRefresher},
		Counts: "forced refreshes refused by the budget, by reason (`daily`: 20 this quota day; `spacing`: less than 30 s after the previous)"},
	{Name: "TokenRefused", Unit: "Count", Dimensions: dims("appid"), Writers: []string{fnFollowEvent, fnSendWorker, fnFollowerSync},
		Counts: "tokens WeChat refused (40001, 40014, 42001) to a caller"},
	{Name: "TokenRecoveryFailed", Unit: "Count", Dimensions: dims("appid"), Writers: []string{fnFollowEvent, fnSendWorker, fnFollowerSync},
		Counts: "refused tokens with no replacement, or no first token, in time"},
	{Name: "TokenRefreshRequestFailed", Unit: "Count", Dimensions: dims("appid"), Writers: []string{fnFollowEvent, fnSendWorker, fnFollowerSync},
		Counts: "forced-refresh requests to the refresher that could not be made"},
	{Name: "TokenSecretReadFailed", Unit: "Count", Dimensions: dims("appid"), Writers: []string{fnFollowEvent, fnSendWorker, fnFollowerSync},
		Counts: "token secret reads that failed"},

	// The follower backfill.
	{Name: "FollowerSyncRuns", Unit: "Count", Dimensions: dims("outcome"), Writers: []string{fnFollowerSync},
		Counts: "backfill runs `started`, `done`, `failed`"},
	{Name: "FollowerSyncChunks", Unit: "Count", Dimensions: dims("outcome"), Writers: []string{fnFollowerSync},
		Counts: "chunks of up to 100 followers done: `linked`, or `failures` when some were not"},
	{Name: "FollowerSyncRetries", Unit: "Count", Dimensions: dims("kind", "class"), Writers: []string{fnFollowerSync},
		Counts: "jobs put back on the queue for later, by kind (`page`, `chunk`) and class"},
	{Name: "FollowerSyncAlarm", Unit: "Count", Dimensions: dims("reason"), Writers: []string{fnFollowerSync},
		Counts: "backfill jobs put off for a reason someone has to act on, by class (`config`, `quota`, `unknown`)"},
	{Name: "FollowerSyncDropped", Unit: "Count", Writers: []string{fnFollowerSync},
		Counts: "jobs dropped: unreadable, or past their attempts"},
}

// Lookup returns the catalogue entry of name.
func Lookup(name string) (Metric, bool) {
	for _, m := range Catalogue {
		if m.Name == name {
			return m, true
		}
	}
	return Metric{}, false
}
