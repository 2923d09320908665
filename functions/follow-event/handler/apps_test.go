package handler

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"wxbridge/infra/devkit/awstest"
	"wxbridge/infra/devkit/sandbox"
	"wxbridge/infra/devkit/testenv"
	"wxbridge/shared/config"
	"wxbridge/shared/httpapi"
	"wxbridge/shared/idempotency"
	"wxbridge/shared/identity"
	"wxbridge/shared/observe"
	"wxbridge/shared/pushevent"
	"wxbridge/shared/reach"
	"wxbridge/shared/wechat/push"
)

// The second official account: plaintext mode, its own Token.
var oa2 = sandbox.DevOfficialAccount2.AppID

const pushToken2 = "secondaccountpushtoken"

// appsEnv is env with two official accounts: the default in safe mode at
// /wechat/push, the second in plaintext mode at /wechat/push/{appid}, each
// with its own Token, served behind template.yaml's routes.
type appsEnv struct {
	*env
	url   string // the API's base URL
	reach *reach.Store
	dlq   string
}

func newAppsEnv(t *testing.T) *appsEnv {
	t.Helper()
	ctx := context.Background()
	te := testenv.New(t,
		testenv.Sandbox(func(c *sandbox.Config) { c.Apps = sandbox.DefaultApps() }),
		testenv.Configure(func(c *config.Config) {
			c.OfficialAccounts = []config.OfficialAccount{{App: config.App{AppID: oa2, Secret: sandbox.DevOfficialAccount2.Secret}, Token: pushToken2}}
		}),
		testenv.Tokens(oaApp, oa2)) // the second's under the stack's prefix, as the refresher makes it
	fn := te.As("FollowEventFunction")
	logs := &bytes.Buffer{}
	out := &syncWriter{w: logs}
	log, metrics := observe.Logger(out, "follow-event"), observe.NewMetrics(out, "follow-event")
	rs := reach.New(fn.DB, te.Table)
	base := pushevent.Processor{WeChat: fn.WeChat, People: identity.NewStore(fn.DB, te.Table), Reach: rs, Log: log, Metrics: metrics}
	// The accounts as FromEnv makes them from the configuration.
	as, err := accounts(ctx, te.Config.OfficialAccountList(), 0, base, log)
	if err != nil {
		t.Fatal(err)
	}
	if len(as) != 2 || as[oaApp].Receiver.Cipher == nil || as[oa2].Receiver.Cipher != nil {
		t.Fatalf("accounts = %v", as)
	}
	for _, a := range as {
		a.Receiver.Now = te.Sandbox.Clock().Now
	}
	queueURL := te.Queue("PushRetryQueue")
	h := &Handler{
		Accounts: as, Default: oaApp,
		Claims: idempotency.NewStore(fn.DB, te.Table, "push"),
		Queue:  fn.SQS, QueueURL: queueURL, DeadLetterURL: awstest.DeadLetterQueue(t, te.SQS, queueURL),
		Budget: time.Minute, // as newEnv: the queue path is tested with faults
		Log:    log, Metrics: metrics,
	}
	srv := httptest.NewServer(routes(te, h.HTTP))
	t.Cleanup(srv.Close)
	sb := te.Sandbox
	if err := sb.SetPushTarget(sandbox.PushTarget{URL: srv.URL + "/wechat/push", Token: pushToken, EncodingAESKey: aesKey, Mode: push.Safe}); err != nil {
		t.Fatal(err)
	}
	if err := sb.SetPushTargetApp(oa2, sandbox.PushTarget{URL: srv.URL + "/wechat/push/" + oa2, Token: pushToken2, Mode: push.Plaintext}); err != nil {
		t.Fatal(err)
	}
	e := &env{sb: sb, h: h, te: te, fn: fn, wc: te.WeChat, store: identity.NewStore(te.DB, te.Table), db: te.DB, table: te.Table, sqs: te.SQS, queueURL: queueURL,
		logs: logs, counter: te.Counter, mode: push.Safe}
	return &appsEnv{env: e, url: srv.URL, reach: rs, dlq: h.DeadLetterURL}
}

// routes serves f behind the HttpApi routes template.yaml gives
// follow-event, as API Gateway does (testenv's Route).
func routes(te *testenv.Env, f httpapi.Func) http.Handler {
	mux := http.NewServeMux()
	te.Route(mux, "FollowEventFunction", f)
	return mux
}

// sealedFor is a push of ev as the platform sends it to an account whose
// console holds token and, unless mode is plaintext, the key of cipherFor,
// to the URL of path's appid ("" for /wechat/push).
func (e *appsEnv) sealedFor(t testing.TB, mode push.Mode, token, cipherFor, pathAppID string, ev push.Event) events.APIGatewayV2HTTPRequest {
	t.Helper()
	var c *push.Cipher
	if mode != push.Plaintext {
		c, _ = push.NewCipher(aesKey, cipherFor)
	}
	q, body, err := push.Seal(mode, token, c, ev, strconv.FormatInt(e.sb.Clock().Now().Unix(), 10), "nonce")
	if err != nil {
		t.Fatal(err)
	}
	req := pushRequest(q, string(body))
	if pathAppID != "" {
		req.PathParameters = map[string]string{"appid": pathAppID}
	}
	return req
}

func (e *appsEnv) reachOf(t *testing.T, appid, openid string) reach.State {
	t.Helper()
	k := reach.Key{AppID: appid, OpenID: openid}
	m, err := e.reach.Get(context.Background(), k)
	if err != nil {
		t.Fatal(err)
	}
	return m[k]
}

// outcomes counts the log lines of outcome for official account appid.
func (e *appsEnv) outcomes(outcome, appid string) int {
	n := 0
	for _, l := range strings.Split(e.logs.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["outcome"] == outcome && m["appid"] == appid {
			n++
		}
	}
	return n
}

// TestPushPerOfficialAccount: each official account's pushes arrive at its
// own URL, are checked with its own Token and key, and are recorded under
// its own appid, the retry queue included.
func TestPushPerOfficialAccount(t *testing.T) {
	e := newAppsEnv(t)
	ctx := context.Background()

	t.Run("follow_scan_and_unfollow_on_each_link_one_person", func(t *testing.T) {
		p := e.sb.CreatePerson(sandbox.PersonSpec{})
		open2, ok := e.sb.OpenID(p.ID, oa2)
		if !ok || open2 == p.OAOpenID {
			t.Fatalf("openid in %s: %q", oa2, open2)
		}
		login := e.login(t, p)
		e.follow(t, p.ID, "")
		// Not yet a follower of the second: the scan follows it.
		delivered(t)(e.sb.ScanApp(ctx, p.ID, oa2, "poster", ""))
		first, second := e.person(t, identity.OAKey(oaApp, p.OAOpenID)), e.person(t, identity.OAKey(oa2, open2))
		if first.UID != login.Person.UID || second.UID != login.Person.UID {
			t.Fatalf("people: login %s, %s follower %s, %s follower %s", login.Person.UID, oaApp, first.UID, oa2, second.UID)
		}
		if !second.OA[oaApp].Subscribed || !second.OA[oa2].Subscribed || second.OA[oa2].Scene != "ADD_SCENE_QR_CODE" {
			t.Fatalf("follows = %+v", second.OA)
		}
		delivered(t)(e.sb.UnfollowApp(ctx, p.ID, oa2))
		if got := e.person(t, identity.OAKey(oa2, open2)); !got.OA[oaApp].Subscribed || got.OA[oa2].Subscribed || got.UID != login.Person.UID {
			t.Fatalf("after unfollowing %s: %s %+v", oa2, got.UID, got.OA)
		}
		// Each account's openid under its own appid only.
		if _, err := e.store.Lookup(ctx, identity.OAKey(oaApp, open2)); !errors.Is(err, identity.ErrNotFound) {
			t.Fatalf("%s's openid under %s: %v", oa2, oaApp, err)
		}
		if !e.reachOf(t, oa2, open2).Known || !e.reachOf(t, oaApp, p.OAOpenID).Known || e.reachOf(t, oaApp, open2).Known {
			t.Fatal("interactions not recorded under each account's own appid")
		}
	})

	t.Run("url_check_with_each_account_token", func(t *testing.T) {
		for _, c := range []struct {
			token  string
			status int
		}{{pushToken2, http.StatusOK}, {pushToken, http.StatusForbidden}} {
			ts := strconv.FormatInt(e.sb.Clock().Now().Unix(), 10)
			resp, err := http.Get(e.url + "/wechat/push/" + oa2 + "?signature=" + push.Signature(c.token, ts, "n") + "&timestamp=" + ts + "&nonce=n&echostr=e42")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != c.status {
				t.Errorf("URL check signed with %s: %d, want %d", c.token, resp.StatusCode, c.status)
			}
		}
	})

	t.Run("push_of_one_account_refused_at_another", func(t *testing.T) {
		ev := push.Event{ToUserName: "gh_test", FromUserName: "oReplayed", CreateTime: e.sb.Clock().Now().Unix(), MsgType: "event", Event: push.Subscribe}
		for _, c := range []struct {
			name   string
			req    events.APIGatewayV2HTTPRequest
			status int
		}{
			{"the_default_token_at_the_second_url", e.sealedFor(t, push.Plaintext, pushToken, "", oa2, ev), http.StatusUnauthorized},
			{"the_second_push_at_the_default_url", e.sealedFor(t, push.Plaintext, pushToken2, "", "", ev), http.StatusBadRequest},
			{"the_default_push_at_the_second_url", e.sealedFor(t, push.Safe, pushToken, oaApp, oa2, ev), http.StatusBadRequest},
			{"sealed_for_the_second_at_the_default_url", e.sealedFor(t, push.Safe, pushToken, oa2, oaApp, ev), http.StatusBadRequest},
		} {
			t.Run(c.name, func(t *testing.T) {
				e.counter.Counts()
				resp, _ := e.h.HTTP(ctx, c.req)
				if resp.StatusCode != c.status {
					t.Errorf("answered %d %q, want %d", resp.StatusCode, resp.Body, c.status)
				}
				if n := len(e.counter.Counts()); n != 0 || e.queued(t) != 0 {
					t.Errorf("a refused push made %d kinds of DynamoDB request, queued %d", n, e.queued(t))
				}
			})
		}
	})

	t.Run("dedup_is_per_account", func(t *testing.T) {
		// The same message id, sender and second on both accounts (openids
		// are per account on the platform; a forger could pick any).
		msg := push.Event{ToUserName: "gh_test", FromUserName: "oSameOnBoth", CreateTime: e.sb.Clock().Now().Unix(), MsgType: "text", MsgID: "7000000000000000042"}
		for _, req := range []events.APIGatewayV2HTTPRequest{
			e.sealedFor(t, push.Safe, pushToken, oaApp, "", msg),
			e.sealedFor(t, push.Plaintext, pushToken2, "", oa2, msg),
			e.sealedFor(t, push.Plaintext, pushToken2, "", oa2, msg), // WeChat's retry
		} {
			if resp, _ := e.h.HTTP(ctx, req); resp.StatusCode != http.StatusOK || resp.Body != "success" {
				t.Fatalf("answered %d %q", resp.StatusCode, resp.Body)
			}
		}
		for _, appid := range []string{oaApp, oa2} {
			if got := e.reachOf(t, appid, msg.FromUserName).LastInteraction; !got.Equal(msg.At()) {
				t.Errorf("%s: last interaction %v, want %v", appid, got, msg.At())
			}
		}
		if d1, d2 := e.outcomes("duplicate", oaApp), e.outcomes("duplicate", oa2); d1 != 0 || d2 != 1 {
			t.Errorf("duplicates: %s %d, %s %d; want 0 and 1", oaApp, d1, oa2, d2)
		}
	})

	t.Run("a_retried_push_is_applied_for_its_account", func(t *testing.T) {
		p := e.sb.CreatePerson(sandbox.PersonSpec{})
		open2, _ := e.sb.OpenID(p.ID, oa2)
		// user/info is busy (-1) when the follow arrives: it is queued.
		if err := e.sb.InjectFault(sandbox.Fault{Path: "/cgi-bin/user/info", ErrCode: -1, Count: 1}); err != nil {
			t.Fatal(err)
		}
		delivered(t)(e.sb.FollowApp(ctx, p.ID, oa2, ""))
		out, err := e.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &e.queueURL})
		if err != nil || len(out.Messages) != 1 {
			t.Fatalf("queued: %v, %v", out, err)
		}
		// Only looked at: visible again for the consumer.
		if _, err := e.sqs.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: &e.queueURL, ReceiptHandle: out.Messages[0].ReceiptHandle, VisibilityTimeout: 0}); err != nil {
			t.Fatal(err)
		}
		var q queued
		if err := json.Unmarshal([]byte(*out.Messages[0].Body), &q); err != nil || q.AppID != oa2 || q.FromUserName != open2 {
			t.Fatalf("queued %s for %q, want %s", *out.Messages[0].Body, q.AppID, oa2)
		}
		// Queued by an older version, without an appid: the default's.
		old := push.Event{ToUserName: "gh_test", FromUserName: p.OAOpenID, CreateTime: e.sb.Clock().Now().Unix(), MsgType: "event", Event: push.Unsubscribe}
		// Of an account no longer configured: to the dead-letter queue.
		gone := queued{AppID: "wx00000000000000ff", Event: old}
		for _, v := range []any{old, gone} {
			b, _ := json.Marshal(v)
			if _, err := e.sqs.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: &e.queueURL, MessageBody: aws.String(string(b))}); err != nil {
				t.Fatal(err)
			}
		}
		if handled, failed := e.drain(t); handled != 3 || failed != 0 {
			t.Fatalf("drain: handled %d, failed %d", handled, failed)
		}
		if got := e.person(t, identity.OAKey(oa2, open2)); got.UnionID != p.UnionID || !got.OA[oa2].Subscribed {
			t.Fatalf("%s follower = %+v", oa2, got)
		}
		for _, k := range []identity.Key{identity.OAKey(oaApp, open2), identity.OAKey("wx00000000000000ff", p.OAOpenID)} {
			if _, err := e.store.Lookup(ctx, k); !errors.Is(err, identity.ErrNotFound) {
				t.Errorf("%s: %v, want nobody", k, err)
			}
		}
		if _, err := e.store.Lookup(ctx, identity.OAKey(oaApp, p.OAOpenID)); err != nil {
			t.Errorf("the message without an appid was not applied for the default: %v", err)
		}
		if n := awstest.Depth(t, e.sqs, e.dlq); n != 1 {
			t.Errorf("dead-letter queue holds %d, want the unknown account's event", n)
		}
	})

	t.Run("an_appid_not_an_official_account_is_404", func(t *testing.T) {
		for _, appid := range []string{mpApp, sandbox.DevWebsite.AppID, "wx00000000000000ff"} {
			for _, method := range []string{http.MethodGet, http.MethodPost} {
				e.counter.Counts()
				req, _ := http.NewRequest(method, e.url+"/wechat/push/"+appid+"?signature=x&timestamp=1&nonce=n", strings.NewReader("<xml/>"))
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusNotFound || len(e.counter.Counts()) != 0 {
					t.Errorf("%s /wechat/push/%s: %d", method, appid, resp.StatusCode)
				}
			}
		}
		if n := e.queued(t); n != 0 {
			t.Errorf("queued %d", n)
		}
	})
}

// TestSingleAccountConfigurationKeepsItsURL: the old configuration (one
// official_account) serves /wechat/push as before, and its own appid's URL
// too; no other appid has one.
func TestSingleAccountConfigurationKeepsItsURL(t *testing.T) {
	te := testenv.New(t, testenv.Tokens(oaApp))
	h, err := FromEnv(context.Background(), te.FunctionEnv("FollowEventFunction"))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range h.Accounts {
		a.Receiver.Now = te.Sandbox.Clock().Now
	}
	srv := httptest.NewServer(routes(te, h.HTTP))
	t.Cleanup(srv.Close)
	ts := strconv.FormatInt(te.Now().Unix(), 10)
	query := "?signature=" + push.Signature(testenv.PushToken, ts, "n") + "&timestamp=" + ts + "&nonce=n&echostr=e42"
	for path, status := range map[string]int{"/wechat/push": 200, "/wechat/push/" + oaApp: 200, "/wechat/push/" + oa2: 404} {
		resp, err := http.Get(srv.URL + path + query)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != status {
			t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, status)
		}
	}
}

// TestAccountsFromTheConfiguration: every official account with a Token
// gets its push URL; one whose push settings are unusable is left out
// (its URL answers 404) rather than stopping the others, except the
// default, whose URL has always been the function's purpose.
func TestAccountsFromTheConfiguration(t *testing.T) {
	oa := func(appid, token, key string) config.OfficialAccount {
		return config.OfficialAccount{App: config.App{AppID: appid, Secret: "s"}, Token: token, EncodingAESKey: key}
	}
	for _, c := range []struct {
		name    string
		oas     []config.OfficialAccount
		want    []string
		fails   bool
		outcome string // logged at cold start
	}{
		{"two_accounts", []config.OfficialAccount{oa(oaApp, "tokenone", aesKey), oa(oa2, "tokentwo", "")}, []string{oaApp, oa2}, false, ""},
		{"second_without_token", []config.OfficialAccount{oa(oaApp, "tokenone", ""), oa(oa2, "", "")}, []string{oaApp}, false, "push_disabled"},
		{"second_with_a_bad_key", []config.OfficialAccount{oa(oaApp, "tokenone", ""), oa(oa2, "tokentwo", "short")}, []string{oaApp}, false, "push_disabled"},
		{"default_without_token", []config.OfficialAccount{oa(oaApp, "", ""), oa(oa2, "tokentwo", "")}, nil, true, ""},
		{"one_plaintext_token_for_two", []config.OfficialAccount{oa(oaApp, "tokenone", ""), oa(oa2, "tokenone", "")}, []string{oaApp, oa2}, false, "push_token_shared"},
		{"one_token_for_two_with_ciphertext", []config.OfficialAccount{oa(oaApp, "tokenone", aesKey), oa(oa2, "tokenone", "")}, []string{oaApp, oa2}, false, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			var logs bytes.Buffer
			as, err := accounts(context.Background(), c.oas, 0, pushevent.Processor{}, observe.Logger(&logs, "follow-event"))
			if (err != nil) != c.fails {
				t.Fatalf("err = %v", err)
			}
			if len(as) != len(c.want) {
				t.Fatalf("accounts = %v, want %v", as, c.want)
			}
			for _, appid := range c.want {
				if p, ok := as[appid].Processor.(*pushevent.Processor); !ok || p.AppID != appid {
					t.Errorf("%s: processor %+v", appid, as[appid].Processor)
				}
			}
			if got := logs.String(); (c.outcome == "") != (got == "") || !strings.Contains(got, c.outcome) || strings.Contains(got, "tokenone") {
				t.Errorf("logged %q, want outcome %q and no Token", got, c.outcome)
			}
		})
	}
}
