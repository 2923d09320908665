package handler

import (
	"context"
	"encoding/json"
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
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	loginhandler "wxbridge/functions/login/handler"
	"wxbridge/infra/devkit/awstest"
	"wxbridge/infra/devkit/sandbox"
	"wxbridge/shared/backfill"
	"wxbridge/shared/config"
	"wxbridge/shared/identity"
	"wxbridge/shared/observe"
	"wxbridge/shared/tokens"
	"wxbridge/shared/wechat"
)

func TestMain(m *testing.M) { awstest.Main(m) }

var (
	oaApp = sandbox.DevOfficialAccount.AppID
	mpApp = sandbox.DevMiniProgram.AppID
)

// env is the follower-sync function wired to its own table, sync queue,
// token secret and sandbox, with the mini program's login function next to
// it on the same table.
type env struct {
	sb       *sandbox.Sandbox
	wc       *wechat.Client
	h        *Handler
	syncer   *backfill.Syncer
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

func newEnv(t testing.TB) *env {
	t.Helper()
	ctx := context.Background()
	sb := sandbox.New(sandbox.DefaultConfig())
	api := httptest.NewServer(sb)
	t.Cleanup(api.Close)

	tok, err := wechat.New(wechat.Options{APIBase: api.URL}).StableToken(ctx, oaApp, sandbox.DevOfficialAccount.Secret, false)
	if err != nil {
		t.Fatal(err)
	}
	now := sb.Clock().Now()
	secretID := awstest.Secret(t, tokens.Stored{AccessToken: tok.Token, ExpiresAt: now.Add(tok.ExpiresIn), RefreshedAt: now})
	logs := &observe.Capture{}
	log, metrics := observe.Logger(logs, "follower-sync"), observe.NewMetrics(logs, "follower-sync")
	source := tokens.NewSource(tokens.Options{
		Secrets: map[string]string{oaApp: secretID},
		Reader:  secretsmanager.NewFromConfig(awstest.Config(nil)),
		Now:     sb.Clock().Now,
	})
	wc := wechat.New(wechat.Options{APIBase: api.URL, Tokens: source})

	counter := &awstest.Counter{}
	table := awstest.Table(t)
	db := dynamodb.NewFromConfig(awstest.Config(counter))
	queueURL := awstest.Queue(t, "SyncQueue")
	sqsClient := sqs.NewFromConfig(awstest.Config(nil))
	people := identity.NewStore(db, table)
	runs := backfill.NewStore(db, table)
	syncer := &backfill.Syncer{
		AppID: oaApp, WeChat: wc, People: people, Store: runs,
		Queue: backfill.Queue{Client: sqsClient, URL: queueURL}, Log: log, Metrics: metrics,
	}
	d := &delays{client: sqsClient}
	h := &Handler{Syncer: syncer, Queue: d, QueueURL: queueURL, Concurrency: 10, Log: log, Metrics: metrics}

	lh, err := loginhandler.New(config.Config{
		MiniProgram:     config.App{AppID: mpApp, Secret: sandbox.DevMiniProgram.Secret},
		OfficialAccount: config.OfficialAccount{App: config.App{AppID: oaApp, Secret: sandbox.DevOfficialAccount.Secret}},
		SigningKey:      sessionKey,
	}, wechat.New(wechat.Options{APIBase: api.URL}), people, observe.Logger(logs, "login"), observe.NewMetrics(logs, "login"))
	if err != nil {
		t.Fatal(err)
	}
	return &env{sb: sb, wc: wc, h: h, syncer: syncer, runs: runs, people: people, login: lh, db: db, table: table,
		sqs: sqsClient, queueURL: queueURL, delays: d, logs: logs, counter: counter}
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
	var ev events.SQSEvent
	for _, m := range out.Messages {
		ev.Records = append(ev.Records, events.SQSMessage{
			MessageId: *m.MessageId, ReceiptHandle: *m.ReceiptHandle, Body: *m.Body, EventSource: "aws:sqs",
			Attributes: map[string]string{"ApproximateReceiveCount": m.Attributes[string(sqstypes.MessageSystemAttributeNameApproximateReceiveCount)]},
		})
	}
	return ev, out.Messages
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
	for _, m := range ev.Records {
		if !bad[m.MessageId] {
			e.sqs.DeleteMessage(context.Background(), &sqs.DeleteMessageInput{QueueUrl: &e.queueURL, ReceiptHandle: aws.String(m.ReceiptHandle)})
		}
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
func (e *env) inFlight(t testing.TB) int {
	out, err := e.sqs.GetQueueAttributes(context.Background(), &sqs.GetQueueAttributesInput{QueueUrl: &e.queueURL, AttributeNames: []sqstypes.QueueAttributeName{"ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"}})
	if err != nil {
		t.Error(err)
		return 0
	}
	n := 0
	for _, v := range out.Attributes {
		i, _ := strconv.Atoi(v)
		n += i
	}
	return n
}

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
