package handler

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	loginhandler "wxbridge/functions/login/handler"
	"wxbridge/infra/devkit/awstest"
	"wxbridge/infra/devkit/sandbox"
	"wxbridge/infra/devkit/testenv"
	"wxbridge/shared/backfill"
	"wxbridge/shared/config"
	"wxbridge/shared/identity"
	"wxbridge/shared/observe"
	"wxbridge/shared/pushevent"
	"wxbridge/shared/wechat"
)

func TestMain(m *testing.M) { awstest.Main(m) }

var (
	oaApp = sandbox.DevOfficialAccount.AppID
	mpApp = sandbox.DevMiniProgram.AppID
)

// env is the follower-sync function wired to its own table, sync queue,
// token secret and sandbox, with the mini program's login function next to
// it on the same table. Each function's AWS calls are held to its policy:
// h, syncer and runs to FollowerSyncFunction's (syncer's Start, Status and
// Resume are wxctl's in a deployment, with an operator's rights; the
// function's policy allows them too), login to LoginFunction's, follow
// events (followEvent) to FollowEventFunction's; wc, people, db and sqs
// are the test's, unchecked.
type env struct {
	sb       *sandbox.Sandbox
	te       *testenv.Env
	wc       *wechat.Client
	h        *Handler
	syncer   *backfill.Syncer  // the default official account's
	accounts backfill.Accounts // every configured official account's, syncer among them
	runs     *backfill.Store
	people   *identity.Store
	login    *loginhandler.Handler
	db       *dynamodb.Client
	table    string
	sqs      *sqs.Client
	queueURL string
	delays   *delays
	logs     *observe.Capture
	counter  *awstest.Counter
}

// delays records the backoffs the handler asks for and, playing the clock,
// makes the job visible again at once.
type delays struct {
	mu     sync.Mutex
	client *sqs.Client
	asked  []time.Duration
}

func (d *delays) ChangeMessageVisibility(ctx context.Context, in *sqs.ChangeMessageVisibilityInput, opts ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error) {
	d.mu.Lock()
	d.asked = append(d.asked, time.Duration(in.VisibilityTimeout)*time.Second)
	d.mu.Unlock()
	now := *in
	now.VisibilityTimeout = 0
	return d.client.ChangeMessageVisibility(ctx, &now, opts...)
}

func (d *delays) all() []time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]time.Duration(nil), d.asked...)
}

const sessionKey = "follower-sync-tests-session-key-0123456789abcdef"

// newEnv is the function over a sandbox and configuration that opts may
// change (more official accounts: every configured one is backfilled;
// testenv.Tokens then names those whose tokens the test needs).
func newEnv(t testing.TB, opts ...testenv.Option) *env {
	t.Helper()
	te := testenv.New(t, append([]testenv.Option{testenv.Tokens(oaApp), testenv.Configure(func(c *config.Config) {
		c.SigningKey, c.BindKey = sessionKey, ""
	})}, opts...)...)
	log, metrics := te.Logger("follower-sync"), te.Metrics("follower-sync")
	queueURL := te.Queue("SyncQueue")
	fn := te.As("FollowerSyncFunction")
	people := identity.NewStore(fn.DB, te.Table)
	people.Metrics = metrics
	runs := backfill.NewStore(fn.DB, te.Table)
	var oas []string
	for _, oa := range te.Config.OfficialAccountList() {
		oas = append(oas, oa.AppID)
	}
	accounts := backfill.NewAccounts(backfill.Syncer{
		WeChat: fn.WeChat, People: people, Store: runs,
		Queue: backfill.Queue{Client: fn.SQS, URL: queueURL}, Log: log, Metrics: metrics,
	}, oas...)
	syncer := accounts.Syncers[oaApp]
	d := &delays{client: fn.SQS}
	h := &Handler{Jobs: accounts, Queue: d, QueueURL: queueURL, Concurrency: 10, Log: log, Metrics: metrics}

	loginPeople := identity.NewStore(te.As("LoginFunction").DB, te.Table)
	loginPeople.Metrics = te.Metrics("login")
	lh, err := loginhandler.New(te.Config, wechat.New(wechat.Options{APIBase: te.URL}), loginPeople, te.Logger("login"), te.Metrics("login"))
	if err != nil {
		t.Fatal(err)
	}
	return &env{sb: te.Sandbox, te: te, wc: te.WeChat, h: h, syncer: syncer, accounts: accounts, runs: runs, people: identity.NewStore(te.DB, te.Table), login: lh, db: te.DB, table: te.Table,
		sqs: te.SQS, queueURL: queueURL, delays: d, logs: te.Logs, counter: te.Counter}
}

// followEvent is the follow-event function's processor over the same
// table and sandbox, counting its merges as that function does.
func (e *env) followEvent() *pushevent.Processor {
	fn := e.te.As("FollowEventFunction")
	people := identity.NewStore(fn.DB, e.table)
	people.Metrics = e.te.Metrics("follow-event")
	return &pushevent.Processor{AppID: oaApp, WeChat: fn.WeChat, People: people, Log: observe.Logger(e.logs, "follow-event")}
}

// loginAs logs person id in through the login function, as the mini
// program does after wx.login.
func (e *env) loginAs(t testing.TB, id string) {
	t.Helper()
	code, err := e.sb.WXLogin(id)
	if err != nil {
		t.Error(err)
		return
	}
	body, _ := json.Marshal(map[string]string{"code": code})
	req := events.APIGatewayV2HTTPRequest{RouteKey: "POST /mp/login", RawPath: "/mp/login", Body: string(body), Headers: map[string]string{}}
	req.RequestContext.HTTP.Method = "POST"
	resp, err := e.login.Handle(context.Background(), req)
	if err != nil || resp.StatusCode != 200 {
		t.Errorf("login %s: %v %d %s", id, err, resp.StatusCode, resp.Body)
		// Say why: the handler logs what a 500 hides.
		for _, l := range strings.Split(e.logs.String(), "\n") {
			if strings.Contains(l, "server_error") || strings.Contains(l, "\"level\":\"ERROR\"") {
				t.Errorf("log: %.1500s", l)
			}
		}
	}
}

// receive takes up to 10 jobs off the sync queue as an SQS event, the way
// the event source mapping hands them to the function.
func (e *env) receive(t testing.TB) (events.SQSEvent, []sqstypes.Message) {
	t.Helper()
	out, err := e.sqs.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{
		QueueUrl: &e.queueURL, MaxNumberOfMessages: 10, VisibilityTimeout: 300,
		MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameApproximateReceiveCount},
	})
	if err != nil {
		t.Fatal(err)
	}
	return awstest.Event(out.Messages), out.Messages
}

// handle gives ev to the function and deletes the messages it did not
// report as failed, as the event source mapping does.
func (e *env) handle(t testing.TB, ev events.SQSEvent) (failed int) {
	t.Helper()
	resp, err := e.h.Handle(context.Background(), ev)
	if err != nil {
		t.Fatal(err)
	}
	bad := map[string]bool{}
	for _, f := range resp.BatchItemFailures {
		bad[f.ItemIdentifier] = true
	}
	var done []sqstypes.DeleteMessageBatchRequestEntry
	for _, m := range ev.Records {
		if !bad[m.MessageId] {
			done = append(done, sqstypes.DeleteMessageBatchRequestEntry{Id: aws.String(m.MessageId), ReceiptHandle: aws.String(m.ReceiptHandle)})
		}
	}
	if len(done) > 0 {
		e.sqs.DeleteMessageBatch(context.Background(), &sqs.DeleteMessageBatchInput{QueueUrl: &e.queueURL, Entries: done})
	}
	return len(bad)
}

// drain plays the event source mapping with pollers concurrent pollers
// until no job is left, visible or in a poller's hands, and returns how
// many batches it handed over.
func (e *env) drain(t testing.TB, pollers int) int {
	t.Helper()
	var (
		mu      sync.Mutex
		batches int
		wg      sync.WaitGroup
	)
	for range pollers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				ev, _ := e.receive(t)
				if len(ev.Records) == 0 {
					if e.inFlight(t) == 0 {
						return
					}
					time.Sleep(10 * time.Millisecond)
					continue
				}
				mu.Lock()
				batches++
				mu.Unlock()
				e.handle(t, ev)
			}
		}()
	}
	wg.Wait()
	return batches
}

// inFlight is the jobs on the queue, visible or not.
func (e *env) inFlight(t testing.TB) int { return awstest.Depth(t, e.sqs, e.queueURL) }

func (e *env) status(t testing.TB) backfill.Run {
	t.Helper()
	r, err := e.syncer.Status(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (e *env) start(t testing.TB) backfill.Run {
	t.Helper()
	r, started, err := e.syncer.Start(context.Background())
	if err != nil || !started {
		t.Fatalf("start: %v (started %v)", err, started)
	}
	return r
}

// livePeople scans the table for people (merged ones left out).
func (e *env) livePeople(t testing.TB) []identity.Person {
	t.Helper()
	var out []identity.Person
	p := dynamodb.NewScanPaginator(e.db, &dynamodb.ScanInput{TableName: &e.table})
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range page.Items {
			var item struct {
				PK         string `dynamodbav:"pk"`
				MergedInto string `dynamodbav:"merged_into"`
				identity.Person
			}
			if err := attributevalue.UnmarshalMap(it, &item); err != nil {
				t.Fatal(err)
			}
			if len(item.PK) > 2 && item.PK[:2] == "P#" && item.MergedInto == "" {
				out = append(out, item.Person)
			}
		}
	}
	return out
}
