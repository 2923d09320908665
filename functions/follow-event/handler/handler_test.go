package handler

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"net"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"wxbridge/infra/devkit/awsfault"
	"wxbridge/infra/devkit/awstest"
	"wxbridge/infra/devkit/sandbox"
	"wxbridge/infra/devkit/testenv"
	"wxbridge/shared/binding"
	"wxbridge/shared/httpapi"
	"wxbridge/shared/idempotency"
	"wxbridge/shared/identity"
	"wxbridge/shared/observe"
	"wxbridge/shared/pushevent"
	"wxbridge/shared/wechat"
	"wxbridge/shared/wechat/push"
)

func TestMain(m *testing.M) { awstest.Main(m) }

const (
	pushToken = "wxbridgepushtoken"
	aesKey    = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
	bindKey   = "business-bind-key-for-tests-0123456789abcdef"
)

var (
	oaApp = sandbox.DevOfficialAccount.AppID
	mpApp = sandbox.DevMiniProgram.AppID
)

// env is one follow-event function wired to its own table, queue, token
// secret and sandbox, with the sandbox pushing to it over HTTP. The
// function's AWS calls (fn) are held to FollowEventFunction's policy; wc,
// store, db and sqs are the test's, unchecked.
type env struct {
	sb       *sandbox.Sandbox
	h        *Handler
	te       *testenv.Env
	fn       testenv.Clients
	wc       *wechat.Client
	store    *identity.Store
	db       *dynamodb.Client
	table    string
	sqs      *sqs.Client
	queueURL string
	logs     *bytes.Buffer
	counter  *awstest.Counter // the function's DynamoDB requests (and db's)
	mode     push.Mode
}

func newEnv(t testing.TB, mode push.Mode) *env {
	t.Helper()
	// The OA token secret is written as the token-refresher writes it.
	te := testenv.New(t, testenv.Tokens(oaApp))
	fn := te.As("FollowEventFunction")
	sb, counter, table := te.Sandbox, te.Counter, te.Table
	logs := &bytes.Buffer{}
	out := &syncWriter{w: logs} // the logger and the metrics write concurrently
	log, metrics := observe.Logger(out, "follow-event"), observe.NewMetrics(out, "follow-event")
	queueURL := te.Queue("PushRetryQueue")

	key := ""
	if mode != push.Plaintext {
		key = aesKey
	}
	receiver, err := push.NewReceiver(pushToken, key, oaApp, 0)
	if err != nil {
		t.Fatal(err)
	}
	receiver.Now = sb.Clock().Now
	h := &Handler{
		Accounts: map[string]Account{oaApp: {
			Receiver: receiver,
			Processor: &pushevent.Processor{
				AppID: oaApp, WeChat: fn.WeChat, People: identity.NewStore(fn.DB, table), Bindings: binding.NewVerifier(bindKey), Uses: binding.NewUses(fn.DB, table), Log: log, Metrics: metrics,
			},
		}},
		Default:  oaApp,
		Claims:   idempotency.NewStore(fn.DB, table, "push"),
		Queue:    fn.SQS,
		QueueURL: queueURL,
		// These tests are not about WeChat's 5 s: on a loaded machine the
		// default budget would queue events and make "linked at once"
		// assertions flaky. The queue path is tested with injected faults.
		Budget:  time.Minute,
		Log:     log,
		Metrics: metrics,
	}
	srv := httptest.NewServer(httpapi.Serve(h.HTTP))
	t.Cleanup(srv.Close)
	if err := sb.SetPushTarget(sandbox.PushTarget{URL: srv.URL + "/wechat/push", Token: pushToken, EncodingAESKey: key, Mode: mode}); err != nil {
		t.Fatal(err)
	}
	return &env{sb: sb, h: h, te: te, fn: fn, wc: te.WeChat, store: identity.NewStore(te.DB, table), db: te.DB, table: table, sqs: te.SQS, queueURL: queueURL,
		logs: logs, counter: counter, mode: mode}
}

// processor is the default official account's processor.
func (e *env) processor() Processor { return e.h.Accounts[oaApp].Processor }

// setProcessor makes p the default official account's processor.
func (e *env) setProcessor(p Processor) { e.h.Accounts = withProcessor(e.h.Accounts, oaApp, p) }

// withProcessor is as with the processor of appid replaced by p.
func withProcessor(as map[string]Account, appid string, p Processor) map[string]Account {
	out := maps.Clone(as)
	a := out[appid]
	a.Processor = p
	out[appid] = a
	return out
}

// faults puts an AWS fault proxy in front of the IAM check, and returns it
// with the function's AWS configuration through both.
func (e *env) faults(t testing.TB, rules ...awsfault.Rule) (*awsfault.Proxy, aws.Config) {
	t.Helper()
	p := awsfault.ForTest(t, e.te.IAM().URL(), rules...)
	return p, p.Config(e.fn.AWS)
}

// follow plays a follow through the sandbox and requires WeChat to have
// been answered on the first attempt.
func (e *env) follow(t testing.TB, id, scene string) sandbox.Delivery {
	t.Helper()
	d, err := e.sb.Follow(context.Background(), id, scene)
	if err != nil {
		t.Fatal(err)
	}
	if !d.Delivered || len(d.Attempts) != 1 {
		t.Fatalf("follow push: delivered=%v after %d attempts: %+v", d.Delivered, len(d.Attempts), d.Attempts)
	}
	return d
}

func (e *env) person(t testing.TB, k identity.Key) identity.Person {
	t.Helper()
	p, err := e.store.Lookup(context.Background(), k)
	if err != nil {
		t.Fatalf("lookup %s: %v", k, err)
	}
	return p
}

func (e *env) login(t testing.TB, p sandbox.Person) identity.Result {
	t.Helper()
	res, err := e.store.Link(context.Background(), identity.Sighting{MP: &identity.MPSighting{AppID: mpApp, OpenID: p.MPOpenID}, UnionID: p.UnionID})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func (e *env) items(t testing.TB) int {
	t.Helper()
	out, err := e.db.Scan(context.Background(), &dynamodb.ScanInput{TableName: &e.table})
	if err != nil {
		t.Fatal(err)
	}
	return len(out.Items)
}

// queued is the depth of the retry queue.
func (e *env) queued(t testing.TB) int { return awstest.Depth(t, e.sqs, e.queueURL) }

// drain plays the SQS event source mapping: it feeds queued messages to the
// function as SQS batches and deletes the ones not reported as failed.
func (e *env) drain(t testing.TB) (handled, failed int) {
	t.Helper()
	ctx := context.Background()
	for {
		out, err := e.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &e.queueURL, MaxNumberOfMessages: 10, VisibilityTimeout: 60})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Messages) == 0 {
			return handled, failed
		}
		raw, _ := json.Marshal(awstest.Event(out.Messages))
		resp, err := e.h.Handle(ctx, raw)
		if err != nil {
			t.Fatal(err)
		}
		bad := map[string]bool{}
		for _, f := range resp.(events.SQSEventResponse).BatchItemFailures {
			bad[f.ItemIdentifier] = true
		}
		for _, m := range out.Messages {
			if bad[*m.MessageId] {
				// Visible again at once, as after its visibility timeout.
				failed++
				e.sqs.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: &e.queueURL, ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: 0})
				continue
			}
			handled++
			e.sqs.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: &e.queueURL, ReceiptHandle: m.ReceiptHandle})
		}
		if failed > 0 {
			return handled, failed
		}
	}
}

var modes = []push.Mode{push.Plaintext, push.Compatible, push.Safe}

func TestFollowLinksInEveryMode(t *testing.T) {
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			t.Run("follow_then_login", func(t *testing.T) {
				e := newEnv(t, mode)
				p := e.sb.CreatePerson(sandbox.PersonSpec{})
				e.follow(t, p.ID, "")
				follower := e.person(t, identity.OAKey(oaApp, p.OAOpenID))
				if follower.UnionID != p.UnionID || !follower.FollowsOA() || follower.OA[oaApp].Scene != "ADD_SCENE_SEARCH" {
					t.Fatalf("follower = %+v", follower)
				}
				if res := e.login(t, p); res.Person.UID != follower.UID || !res.Person.Linked() {
					t.Fatalf("login made %s (%s), want the follower %s", res.Person.UID, res.Outcome, follower.UID)
				}
			})
			t.Run("login_then_follow", func(t *testing.T) {
				e := newEnv(t, mode)
				p := e.sb.CreatePerson(sandbox.PersonSpec{})
				first := e.login(t, p)
				e.follow(t, p.ID, "")
				got := e.person(t, identity.OAKey(oaApp, p.OAOpenID))
				if got.UID != first.Person.UID || !got.Linked() || !got.FollowsOA() {
					t.Fatalf("follower = %+v, want linked to %s", got, first.Person.UID)
				}
			})
		})
	}
}

// TestFollowAndLoginAtTheSameMoment races a follow push against a
// mini-program login for each of many people.
func TestFollowAndLoginAtTheSameMoment(t *testing.T) {
	e := newEnv(t, push.Safe)
	const n = 12
	people := make([]sandbox.Person, n)
	for i := range people {
		people[i] = e.sb.CreatePerson(sandbox.PersonSpec{})
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for _, p := range people {
		wg.Add(3)
		go func() { defer wg.Done(); <-start; e.follow(t, p.ID, "") }()
		go func() { defer wg.Done(); <-start; e.login(t, p) }()
		go func() { defer wg.Done(); <-start; e.login(t, p) }()
	}
	close(start)
	wg.Wait()
	for _, p := range people {
		a := e.person(t, identity.UnionKey(p.UnionID))
		b := e.person(t, identity.MPKey(mpApp, p.MPOpenID))
		c := e.person(t, identity.OAKey(oaApp, p.OAOpenID))
		if a.UID != b.UID || b.UID != c.UID || !a.Linked() || !a.FollowsOA() {
			t.Errorf("%s: union %s, mp %s, oa %s (linked=%v follows=%v)", p.ID, a.UID, b.UID, c.UID, a.Linked(), a.FollowsOA())
		}
	}
}

func TestUnfollowKeepsTheLinkAndFollowingAgainFlipsBack(t *testing.T) {
	e := newEnv(t, push.Safe)
	p := e.sb.CreatePerson(sandbox.PersonSpec{})
	e.login(t, p)
	e.follow(t, p.ID, "")
	e.sb.Clock().Advance(time.Minute)
	if d, err := e.sb.Unfollow(context.Background(), p.ID); err != nil || !d.Delivered {
		t.Fatalf("unfollow: %v %+v", err, d)
	}
	gone := e.person(t, identity.OAKey(oaApp, p.OAOpenID))
	if gone.FollowsOA() || !gone.Linked() || gone.OA[oaApp].UnsubscribedAt == nil {
		t.Fatalf("after unfollow: %+v", gone)
	}
	e.sb.Clock().Advance(time.Minute)
	e.follow(t, p.ID, "")
	back := e.person(t, identity.MPKey(mpApp, p.MPOpenID))
	if !back.FollowsOA() || back.UID != gone.UID {
		t.Fatalf("after following again: %+v", back)
	}
}

// sealed is one push as WeChat would send it, to replay.
func (e *env) sealed(t testing.TB, ev push.Event) events.APIGatewayV2HTTPRequest {
	t.Helper()
	var c *push.Cipher
	if e.mode != push.Plaintext {
		c, _ = push.NewCipher(aesKey, oaApp)
	}
	q, body, err := push.Seal(e.mode, pushToken, c, ev, strconv.FormatInt(e.sb.Clock().Now().Unix(), 10), "nonce")
	if err != nil {
		t.Fatal(err)
	}
	return pushRequest(q, string(body))
}

func pushRequest(q push.Query, body string) events.APIGatewayV2HTTPRequest {
	req := events.APIGatewayV2HTTPRequest{RouteKey: "POST /wechat/push", RawPath: "/wechat/push", Body: body, QueryStringParameters: map[string]string{
		"signature": q.Signature, "timestamp": q.Timestamp, "nonce": q.Nonce, "encrypt_type": q.EncryptType, "msg_signature": q.MsgSignature,
	}}
	req.RequestContext.HTTP.Method = "POST"
	return req
}

func (e *env) subscribeEvent(p sandbox.Person) push.Event {
	return push.Event{ToUserName: "gh_test", FromUserName: p.OAOpenID, CreateTime: e.sb.Clock().Now().Unix(), MsgType: "event", Event: push.Subscribe}
}

// TestRetriedPushCostsOneConditionalWrite replays a handled push, as WeChat
// does when our answer was lost: it must change nothing and cost exactly
// one conditional write.
func TestRetriedPushCostsOneConditionalWrite(t *testing.T) {
	e := newEnv(t, push.Safe)
	p := e.sb.CreatePerson(sandbox.PersonSpec{})
	if _, err := e.sb.Follow(context.Background(), p.ID, ""); err != nil { // the platform's own follow state
		t.Fatal(err)
	}
	req := e.sealed(t, e.subscribeEvent(p))
	for i := range 2 {
		before := e.items(t)
		e.counter.Counts()
		calls := e.sb.Calls("/cgi-bin/user/info")
		resp, _ := e.h.HTTP(context.Background(), req)
		if resp.StatusCode != 200 || resp.Body != "success" {
			t.Fatalf("delivery %d: %d %q", i, resp.StatusCode, resp.Body)
		}
		counts := e.counter.Counts()
		if i == 1 {
			if len(counts) != 1 || counts["UpdateItem"] != 1 || e.sb.Calls("/cgi-bin/user/info") != calls {
				t.Fatalf("a duplicate cost %v and %d user/info calls, want one conditional UpdateItem", counts, e.sb.Calls("/cgi-bin/user/info")-calls)
			}
			if e.items(t) != before {
				t.Fatal("a duplicate wrote")
			}
		}
	}
}

// TestUserInfoDownIsQueuedAndLinkedLater: user/info fails when the push
// arrives; WeChat still gets "success" at once (no WeChat retry) and the
// event is linked from the retry queue.
func TestUserInfoDownIsQueuedAndLinkedLater(t *testing.T) {
	e := newEnv(t, push.Safe)
	p := e.sb.CreatePerson(sandbox.PersonSpec{})
	if err := e.sb.InjectFault(sandbox.Fault{Path: "/cgi-bin/user/info", ErrCode: -1}); err != nil {
		t.Fatal(err)
	}
	e.follow(t, p.ID, "") // delivered on the first attempt
	if _, err := e.store.Lookup(context.Background(), identity.OAKey(oaApp, p.OAOpenID)); err == nil {
		t.Fatal("linked although user/info was down")
	}
	if n := e.queued(t); n != 1 {
		t.Fatalf("queued = %d, want 1", n)
	}
	// Still down: the retry consumer reports the failure so SQS keeps it.
	if handled, failed := e.drain(t); handled != 0 || failed != 1 {
		t.Fatalf("drain while down: handled %d, failed %d", handled, failed)
	}
	e.sb.ClearFaults()
	if handled, failed := e.drain(t); handled != 1 || failed != 0 {
		t.Fatalf("drain: handled %d, failed %d", handled, failed)
	}
	got := e.person(t, identity.OAKey(oaApp, p.OAOpenID))
	if got.UnionID != p.UnionID || !got.FollowsOA() {
		t.Fatalf("follower after retry = %+v", got)
	}
}

// deadEndpoint is a loopback address nothing listens on: calls to it fail
// the way an unreachable AWS service does.
func deadEndpoint(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

func deadConfig(t testing.TB) aws.Config {
	cfg := awstest.Config(nil)
	cfg.BaseEndpoint = aws.String(deadEndpoint(t))
	cfg.RetryMaxAttempts = 1 // nothing answers however often it is asked
	return cfg
}

// TestDynamoDBDownIsQueued: the table is unreachable when the push
// arrives, so neither dedup nor linking works; the event is queued, WeChat
// gets "success", and the retry consumer links it once the table is back.
func TestDynamoDBDownIsQueued(t *testing.T) {
	e := newEnv(t, push.Safe)
	healthy := e.processor()
	down := dynamodb.NewFromConfig(deadConfig(t))
	e.h.Claims = idempotency.NewStore(down, e.table, "push")
	e.setProcessor(&pushevent.Processor{AppID: oaApp, WeChat: e.fn.WeChat, People: identity.NewStore(down, e.table), Log: e.h.Log, Metrics: e.h.Metrics})
	p := e.sb.CreatePerson(sandbox.PersonSpec{})
	e.follow(t, p.ID, "")
	if n := e.queued(t); n != 1 {
		t.Fatalf("queued = %d, want 1", n)
	}
	e.setProcessor(healthy)
	if handled, failed := e.drain(t); handled != 1 || failed != 0 {
		t.Fatalf("drain: handled %d, failed %d", handled, failed)
	}
	if got := e.person(t, identity.OAKey(oaApp, p.OAOpenID)); !got.FollowsOA() || got.UnionID != p.UnionID {
		t.Fatalf("follower = %+v", got)
	}
}

// TestNothingAcceptedMeansWeChatRetries: with user/info and the retry queue
// both down, the push is not acknowledged, so WeChat retries (three times),
// and the claim is released so that a retry after recovery is handled.
func TestNothingAcceptedMeansWeChatRetries(t *testing.T) {
	e := newEnv(t, push.Safe)
	e.sb.InjectFault(sandbox.Fault{Path: "/cgi-bin/user/info", ErrCode: -1})
	e.h.Queue = sqs.NewFromConfig(deadConfig(t))
	p := e.sb.CreatePerson(sandbox.PersonSpec{})
	d, err := e.sb.Follow(context.Background(), p.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	if d.Delivered || len(d.Attempts) != 4 {
		t.Fatalf("delivered=%v after %d attempts, want 4 refused attempts", d.Delivered, len(d.Attempts))
	}
	for _, a := range d.Attempts {
		if a.Status != 503 {
			t.Errorf("attempt answered %d %q, want 503", a.Status, a.Body)
		}
	}
	// Recovery: WeChat's next retry of the same event is handled.
	e.sb.ClearFaults()
	resp, _ := e.h.HTTP(context.Background(), e.sealed(t, d.Event))
	if resp.StatusCode != 200 || resp.Body != "success" {
		t.Fatalf("retry after recovery: %d %q", resp.StatusCode, resp.Body)
	}
	if got := e.person(t, identity.OAKey(oaApp, p.OAOpenID)); !got.FollowsOA() {
		t.Fatalf("follower = %+v", got)
	}
}

func TestQRSceneBindsExternalID(t *testing.T) {
	e := newEnv(t, push.Safe)
	ctx := context.Background()
	tok, _ := binding.Sign(bindKey, "8812", e.sb.Clock().Now().Add(time.Hour))
	qr, err := e.wc.CreateQRCode(ctx, oaApp, tok, 3600)
	if err != nil {
		t.Fatal(err)
	}
	newcomer := e.sb.CreatePerson(sandbox.PersonSpec{})
	if d, err := e.sb.Scan(ctx, newcomer.ID, "", qr.Ticket); err != nil || !d.Delivered || d.Event.Event != push.Subscribe {
		t.Fatalf("scan to follow: %v %+v", err, d)
	}
	if got := e.person(t, identity.ExternalKey("8812")); got.UnionID != newcomer.UnionID || !got.FollowsOA() {
		t.Fatalf("bound person = %+v", got)
	}
	// An existing follower scanning a binding code (SCAN) is bound too.
	follower := e.sb.CreatePerson(sandbox.PersonSpec{})
	e.follow(t, follower.ID, "")
	tok2, _ := binding.Sign(bindKey, "9001", e.sb.Clock().Now().Add(time.Hour))
	if d, err := e.sb.Scan(ctx, follower.ID, tok2, ""); err != nil || !d.Delivered || d.Event.Event != push.Scan {
		t.Fatalf("scan: %v %+v", err, d)
	}
	if got := e.person(t, identity.ExternalKey("9001")); got.UnionID != follower.UnionID {
		t.Fatalf("scan-bound person = %+v", got)
	}
	// A marketing scene binds nothing; a binding that conflicts (a new
	// token for an account bound to someone else) is dropped and the
	// follow still recorded.
	other := e.sb.CreatePerson(sandbox.PersonSpec{})
	tok3, _ := binding.Sign(bindKey, "8812", e.sb.Clock().Now().Add(2*time.Hour))
	if d, _ := e.sb.Follow(ctx, other.ID, tok3); !d.Delivered {
		t.Fatalf("conflicting binding not acknowledged: %+v", d)
	}
	got := e.person(t, identity.OAKey(oaApp, other.OAOpenID))
	if got.ExternalID != "" || !got.FollowsOA() {
		t.Fatalf("conflicting binding: %+v", got)
	}
	if !strings.Contains(e.logs.String(), `"reason":"conflict"`) {
		t.Errorf("the conflicting binding was not logged: %s", e.logs.String())
	}
	promo := e.sb.CreatePerson(sandbox.PersonSpec{})
	e.follow(t, promo.ID, "promo-2026")
	if got := e.person(t, identity.OAKey(oaApp, promo.OAOpenID)); got.ExternalID != "" || got.OA[oaApp].Scene != "ADD_SCENE_QR_CODE" {
		t.Fatalf("promo follower = %+v", got)
	}
}

func TestOtherEventsAreAcknowledgedAndIgnored(t *testing.T) {
	e := newEnv(t, push.Safe)
	now := e.sb.Clock().Now().Unix()
	for _, ev := range []push.Event{
		{ToUserName: "gh", FromUserName: "o1", CreateTime: now, MsgType: "text", MsgID: "1234567890123456"},
		{ToUserName: "gh", FromUserName: "o1", CreateTime: now, MsgType: "event", Event: push.TemplateFinish, MsgID: "200163836", Status: "success"},
		{ToUserName: "gh", FromUserName: "o1", CreateTime: now, MsgType: "event", Event: "CLICK", EventKey: "menu"},
		{ToUserName: "gh", FromUserName: "o1", CreateTime: now, MsgType: "event", Event: push.Scan, EventKey: "not-a-binding"},
	} {
		resp, _ := e.h.HTTP(context.Background(), e.sealed(t, ev))
		if resp.StatusCode != 200 || resp.Body != "success" {
			t.Fatalf("%s: %d %q", ev.Kind(), resp.StatusCode, resp.Body)
		}
	}
	// Only the dedup records were written.
	out, _ := e.db.Scan(context.Background(), &dynamodb.ScanInput{TableName: &e.table})
	for _, it := range out.Items {
		var head struct {
			PK string `dynamodbav:"pk"`
		}
		attributevalue.UnmarshalMap(it, &head)
		if !strings.HasPrefix(head.PK, "IDEM#push#") {
			t.Errorf("an ignored event wrote %s", head.PK)
		}
	}
}

func TestRefusedPushesChangeNothing(t *testing.T) {
	e := newEnv(t, push.Safe)
	p := e.sb.CreatePerson(sandbox.PersonSpec{})
	ev := e.subscribeEvent(p)
	good := e.sealed(t, ev)
	ts := good.QueryStringParameters["timestamp"]
	withQuery := func(k, v string) events.APIGatewayV2HTTPRequest {
		r := e.sealed(t, ev)
		r.QueryStringParameters[k] = v
		return r
	}
	cipherOther, _ := push.NewCipher(aesKey, "wxsomeoneelse00000")
	enc := func(body string) events.APIGatewayV2HTTPRequest {
		return pushRequest(push.Query{Timestamp: ts, Nonce: "n", EncryptType: "aes", MsgSignature: push.Signature(pushToken, ts, "n", body)}, "<xml><Encrypt>"+body+"</Encrypt></xml>")
	}
	realEnc := strings.TrimSuffix(strings.SplitN(good.Body, "<![CDATA[", 2)[1], "]]></Encrypt></xml>")
	plain, body, _ := push.Seal(push.Plaintext, pushToken, nil, ev, ts, "n")
	stale, staleBody, _ := push.Seal(push.Safe, pushToken, mustCipher(t), ev, strconv.FormatInt(e.sb.Clock().Now().Add(-10*time.Minute).Unix(), 10), "n")
	cases := map[string]struct {
		req    events.APIGatewayV2HTTPRequest
		status int
	}{
		"forged_signature_plaintext":   {pushRequest(push.Query{Timestamp: ts, Nonce: "n", Signature: push.Signature("guess", ts, "n")}, string(body)), 400},
		"wrong_msg_signature":          {withQuery("msg_signature", push.Signature("guess")), 401},
		"stale_timestamp":              {pushRequest(stale, string(staleBody)), 401},
		"truncated_encrypt":            {enc(realEnc[:len(realEnc)-10]), 400},
		"non_base64_encrypt":           {enc("%%%not-base64%%%"), 400},
		"another_appid_inside":         {enc(cipherOther.Encrypt(push.Marshal(ev))), 400},
		"malformed_xml":                {pushRequest(push.Query{Timestamp: ts, Nonce: "n", EncryptType: "aes"}, "<xml><Encrypt>"), 400},
		"one_mebibyte_body":            {pushRequest(push.Query{Timestamp: ts}, strings.Repeat("x", 1<<20)), 413},
		"plaintext_when_aes_is_set_up": {pushRequest(plain, string(body)), 400},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			e.logs.Reset()
			resp, _ := e.h.HTTP(context.Background(), tc.req)
			if resp.StatusCode != tc.status {
				t.Fatalf("status = %d %q, want %d", resp.StatusCode, resp.Body, tc.status)
			}
			if n := e.items(t); n != 0 {
				t.Fatalf("a refused push wrote %d items", n)
			}
			if n := e.queued(t); n != 0 {
				t.Fatalf("a refused push queued %d", n)
			}
			if !strings.Contains(e.logs.String(), `"reason"`) {
				t.Errorf("the refusal was not logged with a reason: %s", e.logs.String())
			}
		})
	}
}

func mustCipher(t testing.TB) *push.Cipher {
	c, err := push.NewCipher(aesKey, oaApp)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestURLCheck(t *testing.T) {
	e := newEnv(t, push.Safe)
	get := func(sig, ts string) events.APIGatewayV2HTTPResponse {
		req := events.APIGatewayV2HTTPRequest{RouteKey: "GET /wechat/push", QueryStringParameters: map[string]string{"signature": sig, "timestamp": ts, "nonce": "n", "echostr": "7439872398"}}
		req.RequestContext.HTTP.Method = "GET"
		resp, _ := e.h.HTTP(context.Background(), req)
		return resp
	}
	now := strconv.FormatInt(e.sb.Clock().Now().Unix(), 10)
	if r := get(push.Signature(pushToken, now, "n"), now); r.StatusCode != 200 || r.Body != "7439872398" {
		t.Fatalf("URL check = %d %q", r.StatusCode, r.Body)
	}
	if r := get(push.Signature("guess", now, "n"), now); r.StatusCode != 403 || strings.Contains(r.Body, "7439872398") {
		t.Fatalf("forged URL check = %d %q", r.StatusCode, r.Body)
	}
	// Every push's query carries a valid signature, timestamp and nonce:
	// replayed later as a URL check, it must not echo an echostr of the
	// replayer's choosing. The pushes' window applies.
	old := strconv.FormatInt(e.sb.Clock().Now().Add(-push.DefaultWindow-time.Minute).Unix(), 10)
	for _, ts := range []string{"1", old} {
		e.logs.Reset()
		if r := get(push.Signature(pushToken, ts, "n"), ts); r.StatusCode != 403 || strings.Contains(r.Body, "7439872398") {
			t.Fatalf("URL check with timestamp %s = %d %q, want 403", ts, r.StatusCode, r.Body)
		}
		if !strings.Contains(e.logs.String(), "timestamp outside the accepted window") {
			t.Errorf("the stale URL check was not logged with its reason: %s", e.logs.String())
		}
	}
}

func TestLogsKeepSecrets(t *testing.T) {
	e := newEnv(t, push.Safe)
	p := e.sb.CreatePerson(sandbox.PersonSpec{})
	tok, _ := binding.Sign(bindKey, "8812", e.sb.Clock().Now().Add(time.Hour))
	e.follow(t, p.ID, tok)
	req := e.sealed(t, e.subscribeEvent(p))
	e.h.HTTP(context.Background(), req)
	logs := e.logs.String()
	if !strings.Contains(logs, `"outcome":"bound"`) {
		t.Fatalf("expected the bound follow in the logs: %s", logs)
	}
	enc := strings.SplitN(req.Body, "<![CDATA[", 2)[1][:40]
	for name, secret := range map[string]string{"aes key": aesKey, "push token": pushToken, "encrypted payload": enc, "binding token": tok, "nickname": p.Nickname} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs contain the %s", name)
		}
	}
}

// TestUserInfoRefusingTheOpenIDStillRecordsTheFollow: when user/info
// answers about the openid itself (40003), asking again cannot help; the
// follow is recorded without the unionid instead of being lost.
func TestUserInfoRefusingTheOpenIDStillRecordsTheFollow(t *testing.T) {
	e := newEnv(t, push.Safe)
	if err := e.sb.InjectFault(sandbox.Fault{Path: "/cgi-bin/user/info", ErrCode: 40003}); err != nil {
		t.Fatal(err)
	}
	p := e.sb.CreatePerson(sandbox.PersonSpec{})
	e.follow(t, p.ID, "")
	got := e.person(t, identity.OAKey(oaApp, p.OAOpenID))
	if !got.FollowsOA() || got.UnionID != "" {
		t.Fatalf("follower = %+v, want followed without unionid", got)
	}
	if n := e.queued(t); n != 0 {
		t.Fatalf("queued = %d: an answer about the openid itself was retried", n)
	}
	if !strings.Contains(e.logs.String(), `"outcome":"degraded"`) {
		t.Errorf("the degraded follow was not logged: %s", e.logs.String())
	}
}
