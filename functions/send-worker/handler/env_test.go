package handler

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	followevent "wxbridge/functions/follow-event/handler"
	"wxbridge/infra/devkit/awsfault"
	"wxbridge/infra/devkit/awstest"
	"wxbridge/infra/devkit/sandbox"
	"wxbridge/infra/devkit/testenv"
	"wxbridge/shared/httpapi"
	"wxbridge/shared/idempotency"
	"wxbridge/shared/identity"
	"wxbridge/shared/notify"
	"wxbridge/shared/observe"
	"wxbridge/shared/pushevent"
	"wxbridge/shared/reach"
	"wxbridge/shared/tokens"
	"wxbridge/shared/wechat"
	"wxbridge/shared/wechat/push"
)

func TestMain(m *testing.M) { awstest.Main(m) }

var (
	oaApp = sandbox.DevOfficialAccount.AppID
	mpApp = sandbox.DevMiniProgram.AppID
	// Template ids shaped like the platform's (43 characters).
	oaTemplate = "oaTemplate" + strings.Repeat("0", 33)
	mpTemplate = "mpTemplate" + strings.Repeat("0", 33)
)

const pushToken = "wxbridgepushtoken"

// env is the whole notification path on one machine: the send queue (with
// its DLQ) and the table in moto, the send-worker, the sandbox as WeChat,
// and the follow-event function as the push target, so that follows link
// people and delivery reports reach the ledger as in production. Each
// function's AWS calls are held to its policy: the worker's (sender, h,
// wc, source) to SendWorkerFunction's, the push target's to
// FollowEventFunction's; ledger, store, client and sqs are the test's,
// unchecked.
type env struct {
	sb       *sandbox.Sandbox
	te       *testenv.Env
	h        *Handler
	sender   *notify.Sender
	ledger   *notify.Ledger
	store    *identity.Store
	client   *notify.Client
	wc       *wechat.Client
	source   *tokens.Source
	secrets  map[string]string // appid -> token secret ARN
	apiURL   string
	sqs      *sqs.Client
	queueURL string
	table    string
	logs     *observe.Capture
	counter  *awstest.Counter // DynamoDB requests of the worker (and the test's)
}

func newEnv(t testing.TB, opts ...testenv.Option) *env {
	t.Helper()
	// Every app's token secret, written as the token-refresher writes it.
	te := testenv.New(t, opts...)
	fn := te.As("SendWorkerFunction")
	sb, api, source, secrets := te.Sandbox, te.Server, fn.Tokens, te.TokenSecrets
	// Many sends at once: more idle connections than net/http's default 2.
	hc := &httpClient
	wc := wechat.New(wechat.Options{APIBase: api.URL, Tokens: source, HTTPClient: hc})

	logs := te.Logs
	log, metrics := te.Logger("send-worker"), te.Metrics("send-worker")
	table, counter := te.Table, te.Counter
	ledger := notify.NewLedger(fn.DB, table)
	ledger.Now = sb.Clock().Now
	sender := &notify.Sender{
		People: identity.NewStore(fn.DB, table), Ledger: ledger, Reach: reachStore(fn.DB, table, sb), WeChat: wc, OfficialAccount: oaApp, MiniProgram: mpApp,
		Apps: te.Config, Unrecorded: notify.NewUnrecorded(), Log: log, Metrics: metrics, Now: sb.Clock().Now,
	}
	queueURL := te.Queue("SendQueue")
	h := &Handler{Sender: sender, Queue: fn.SQS, QueueURL: queueURL, Log: log, Metrics: metrics, Now: sb.Clock().Now}

	// follow-event, with its own view of the table (its requests are not
	// the worker's to count) and its own token source: one push URL per
	// official account, each served as /wechat/push of its own handler.
	feAWS := te.FunctionAWS("FollowEventFunction")
	feDB := dynamodb.NewFromConfig(feAWS)
	feTokens := tokens.NewSource(tokens.Options{Secrets: secrets, Reader: secretsmanager.NewFromConfig(feAWS), Now: sb.Clock().Now})
	for _, oa := range te.Config.OfficialAccountList() {
		receiver, err := push.NewReceiver(pushToken, "", oa.AppID, 0)
		if err != nil {
			t.Fatal(err)
		}
		receiver.Now = sb.Clock().Now
		fe := &followevent.Handler{
			Accounts: map[string]followevent.Account{oa.AppID: {Receiver: receiver, Processor: &pushevent.Processor{
				AppID: oa.AppID, WeChat: wechat.New(wechat.Options{APIBase: api.URL, Tokens: feTokens, HTTPClient: hc}),
				People: identity.NewStore(feDB, table), Reports: notify.NewLedger(feDB, table), Reach: reachStore(feDB, table, sb),
				Log: log, Metrics: metrics,
			}}},
			Default:  oa.AppID,
			Claims:   idempotency.NewStore(feDB, table, "push"),
			Queue:    sqs.NewFromConfig(feAWS),
			QueueURL: te.Queue("PushRetryQueue"),
			// Follows must link at once here: on a loaded machine the default
			// 3 s budget would queue some (nothing drains that queue here).
			Budget:  time.Minute,
			Log:     log,
			Metrics: metrics,
		}
		srv := httptest.NewServer(httpapi.Serve(fe.HTTP))
		t.Cleanup(srv.Close)
		target := sandbox.PushTarget{URL: srv.URL + "/wechat/push", Token: pushToken, Mode: push.Plaintext}
		if oa.AppID == oaApp {
			err = sb.SetPushTarget(target)
		} else {
			err = sb.SetPushTargetApp(oa.AppID, target)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	// The test's view of the ledger, on the same clock.
	view := notify.NewLedger(te.DB, table)
	view.Now = sb.Clock().Now
	return &env{
		sb: sb, te: te, h: h, sender: sender, ledger: view, store: identity.NewStore(te.DB, table), client: notify.NewClient(te.SQS, queueURL),
		wc: wc, source: source, secrets: secrets, apiURL: api.URL, sqs: te.SQS, queueURL: queueURL, table: table, logs: logs, counter: counter,
	}
}

// reachStore is the reach store in table on the sandbox's clock.
func reachStore(db reach.DB, table string, sb *sandbox.Sandbox) *reach.Store {
	s := reach.New(db, table)
	s.Now = sb.Clock().Now
	return s
}

// faults puts an AWS fault proxy in front of the IAM check, and returns it
// with the worker's AWS configuration through both.
func (e *env) faults(t testing.TB, rules ...awsfault.Rule) (*awsfault.Proxy, aws.Config) {
	t.Helper()
	p := awsfault.ForTest(t, e.te.IAM().URL(), rules...)
	return p, p.Config(e.te.FunctionAWS("SendWorkerFunction"))
}

// follower is a person who follows the official account and has logged
// in to the mini program: reachable on both channels (subscribe once they
// consent).
func (e *env) follower(t testing.TB) sandbox.Person {
	t.Helper()
	p := e.sb.CreatePerson(sandbox.PersonSpec{})
	if d, err := e.sb.Follow(context.Background(), p.ID, ""); err != nil || !d.Delivered {
		t.Fatalf("follow: %v %+v", err, d)
	}
	e.login(t, p)
	return p
}

// login links the person's mini-program identity, as POST /mp/login does.
func (e *env) login(t testing.TB, p sandbox.Person) identity.Person {
	t.Helper()
	res, err := e.store.Link(context.Background(), identity.Sighting{MP: &identity.MPSighting{AppID: mpApp, OpenID: p.MPOpenID}, UnionID: p.UnionID})
	if err != nil {
		t.Fatal(err)
	}
	return res.Person
}

func (e *env) uid(t testing.TB, p sandbox.Person) string {
	t.Helper()
	got, err := e.store.Lookup(context.Background(), identity.UnionKey(p.UnionID))
	if err != nil {
		t.Fatal(err)
	}
	return got.UID
}

// job is a job for both channels, in the given order.
func job(id string, to notify.Recipient, channels ...notify.Channel) notify.Job {
	return notify.Job{
		ID: id,
		To: to,
		Template: &notify.TemplateMessage{TemplateID: oaTemplate, URL: "https://shop.example.com/orders/8812",
			Data: map[string]string{"thing1": "Blue kettle", "character_string2": "8812"}},
		Subscribe: &notify.SubscribeMessage{TemplateID: mpTemplate, Page: "pages/order/detail?id=8812",
			Data: map[string]string{"thing1": "Blue kettle", "phrase3": "已发货"}},
		Channels: channels,
	}
}

func (e *env) enqueue(t testing.TB, jobs ...notify.Job) {
	t.Helper()
	if _, err := e.client.EnqueueBatch(context.Background(), jobs); err != nil {
		t.Fatal(err)
	}
}

func (e *env) enqueueRaw(t testing.TB, body string) {
	t.Helper()
	if _, err := e.sqs.SendMessage(context.Background(), &sqs.SendMessageInput{QueueUrl: &e.queueURL, MessageBody: &body}); err != nil {
		t.Fatal(err)
	}
}

// round is one receive by the event source mapping and its outcome.
type round struct {
	received int
	failed   []sqstypes.Message // reported as batch item failures
	resp     events.SQSEventResponse
}

// poll plays the Lambda event source mapping once: receive up to 10
// messages, hand them to the function as an SQS event, delete those not
// reported as failures. Failures keep the visibility the worker gave them.
func (e *env) poll(t testing.TB) round {
	t.Helper()
	ctx := context.Background()
	out, err := e.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
		QueueUrl: &e.queueURL, MaxNumberOfMessages: 10, VisibilityTimeout: 360,
		MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameAll},
	})
	if err != nil {
		t.Fatal(err)
	}
	ev := awstest.Event(out.Messages)
	r := round{received: len(out.Messages)}
	if len(ev.Records) == 0 {
		return r
	}
	resp, err := e.h.Handle(ctx, ev)
	if err != nil {
		t.Fatal(err)
	}
	r.resp = resp
	bad := map[string]bool{}
	for _, f := range resp.BatchItemFailures {
		bad[f.ItemIdentifier] = true
	}
	for _, m := range out.Messages {
		if bad[*m.MessageId] {
			r.failed = append(r.failed, m)
			continue
		}
		if _, err := e.sqs.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: &e.queueURL, ReceiptHandle: m.ReceiptHandle}); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// drain polls until the queue has nothing visible, and returns the rounds.
func (e *env) drain(t testing.TB) []round {
	t.Helper()
	var rs []round
	for {
		r := e.poll(t)
		if r.received == 0 {
			return rs
		}
		rs = append(rs, r)
	}
}

// later makes failed messages visible at once, as if their delay passed.
func (e *env) later(t testing.TB, ms []sqstypes.Message) {
	t.Helper()
	for _, m := range ms {
		if _, err := e.sqs.ChangeMessageVisibility(context.Background(), &sqs.ChangeMessageVisibilityInput{QueueUrl: &e.queueURL, ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: 0}); err != nil {
			t.Fatal(err)
		}
	}
}

// depth is the messages in the queue, visible or not.
func (e *env) depth(t testing.TB, url string) int { return awstest.Depth(t, e.sqs, url) }

// dlq is the URL of the send queue's dead-letter queue.
func (e *env) dlq(t testing.TB) string { return awstest.DeadLetterQueue(t, e.sqs, e.queueURL) }

func (e *env) entry(t testing.TB, id string) notify.Entry {
	t.Helper()
	got, ok, err := e.ledger.Get(context.Background(), id)
	if err != nil || !ok {
		t.Fatalf("ledger %s: ok=%v err=%v", id, ok, err)
	}
	return got
}

func (e *env) inbox(t testing.TB, p sandbox.Person) []sandbox.InboxMessage {
	t.Helper()
	msgs, err := e.sb.Inbox(p.ID)
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

func (e *env) consent(t testing.TB, p sandbox.Person) {
	t.Helper()
	if _, err := e.sb.GrantConsent(p.ID, mpTemplate); err != nil {
		t.Fatal(err)
	}
}

// httpClient allows many parallel connections to the sandbox.
var httpClient = func() http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	return http.Client{Transport: tr, Timeout: 5 * time.Second}
}()

var runtimeGoexit = runtime.Goexit

// crashing is the worker's sender with WeChat calls going through c.
func crashing(e *env, c *crashAfterSend) *notify.Sender {
	s := *e.sender
	s.WeChat = wechat.New(wechat.Options{APIBase: e.apiURL, Tokens: e.source, HTTPClient: &http.Client{Transport: c}})
	return &s
}

// refreshTokens plays the token-refresher after the clock jumped past the
// tokens' lifetime.
func (e *env) refreshTokens(t testing.TB) {
	t.Helper()
	ctx := context.Background()
	sm := secretsmanager.NewFromConfig(awstest.Config(nil))
	now := e.sb.Clock().Now()
	for _, app := range []sandbox.App{sandbox.DevMiniProgram, sandbox.DevOfficialAccount} {
		tok, err := wechat.New(wechat.Options{APIBase: e.apiURL}).StableToken(ctx, app.AppID, app.Secret, false)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(tokens.Stored{AccessToken: tok.Token, ExpiresAt: now.Add(tok.ExpiresIn), RefreshedAt: now})
		if _, err := sm.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String(e.secrets[app.AppID]), SecretString: aws.String(string(b))}); err != nil {
			t.Fatal(err)
		}
	}
}

// logLines counts the log lines (not metric lines) that contain every part.
func (e *env) logLines(parts ...string) int {
	n := 0
	for _, line := range strings.Split(e.logs.String(), "\n") {
		if !strings.Contains(line, `"msg":`) {
			continue
		}
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			n++
		}
	}
	return n
}
