package lambdatest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"wxbridge/infra/devkit/awstest"
	"wxbridge/infra/devkit/sandbox"
	"wxbridge/infra/devkit/streams"
	"wxbridge/shared/awsenv"
	"wxbridge/shared/backfill"
	"wxbridge/shared/contract"
	"wxbridge/shared/httpapi"
	"wxbridge/shared/identity"
	"wxbridge/shared/notify"
	"wxbridge/shared/tokens"
	"wxbridge/shared/wechat"
	"wxbridge/shared/wechat/push"
)

// TestBootstraps runs every function's bootstrap, in the order a fresh
// deployment meets them: the refresher fills the token secrets, a user logs
// in to the mini program, opens an H5 page (web OAuth) and follows the
// official account (a push), a business system sends them a notification,
// WeChat's delivery report comes back through the push retry queue, and a
// follower backfill runs a page and a chunk. Each bootstrap gets a real
// event of its trigger type through the Runtime API and must answer it as
// Lambda expects. (Their size and init time against the targets are
// BenchmarkInit's, on the bootstraps built exactly as released.)
func TestBootstraps(t *testing.T) {
	if err := build(forTests); err != nil {
		t.Fatal(err)
	}
	d := deploy(t)
	var (
		person = d.sb.CreatePerson(sandbox.PersonSpec{})
		uid    string
		msgid  string
	)
	run := func(logicalID string, triggers string, test func(t *testing.T, p *process)) {
		t.Run(logicalID+"/"+triggers, func(t *testing.T) {
			f := d.fns[logicalID]
			env := d.env(logicalID)
			if logicalID == "FollowEventFunction" {
				// The follow must be linked when the push is answered: on a
				// loaded machine the 3 s default budget could queue it.
				env["WXB_PUSH_BUDGET"] = "1m"
			}
			p := start(t, forTests, logicalID, env, time.Duration(f.Timeout)*time.Second)
			if p.api.initErr != nil {
				t.Fatalf("init error: %s: %s\n%s", p.api.initErr.Type, p.api.initErr.Message, p.out)
			}
			test(t, p)
			checkLogs(t, p)
		})
	}

	run("TokenRefresherFunction", "schedule", func(t *testing.T, p *process) {
		// The ScheduleV2 event's Input, as template.yaml has it.
		input := d.fns["TokenRefresherFunction"].Schedules[0].Input
		var res struct {
			Apps []struct{ AppID, Outcome string }
		}
		decode(t, p.invoke(t, []byte(input)), &res)
		if len(res.Apps) != 2 {
			t.Fatalf("refresher ran for %d apps, want the mini program and the official account: %+v", len(res.Apps), res)
		}
		for _, a := range res.Apps {
			if a.Outcome != "refreshed" {
				t.Errorf("app %s: outcome %q, want refreshed", a.AppID, a.Outcome)
			}
		}
		for _, id := range []string{"MiniProgramTokenSecret", "OfficialAccountTokenSecret"} {
			var st tokens.Stored
			if err := awsenv.SecretJSON(context.Background(), d.secretsmanager(), d.ref(id), &st); err != nil {
				t.Fatal(err)
			}
			if !st.Usable(time.Now()) {
				t.Errorf("%s holds no usable token after the run: %v", id, st)
			}
		}
		wantMetric(t, p, "TokenRefresh", "appid", "*", "outcome", "refreshed")
		wantMetric(t, p, "TokenAge", "appid", "*")
	})

	run("LoginFunction", "http", func(t *testing.T, p *process) {
		code, err := d.sb.WXLogin(person.ID)
		if err != nil {
			t.Fatal(err)
		}
		resp := httpCall(t, p, http.MethodPost, "/mp/login", nil, `{"code":"`+code+`"}`)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST /mp/login: %d %s", resp.StatusCode, resp.Body)
		}
		var login struct {
			Session string
			Person  struct{ UID string }
		}
		decode(t, []byte(resp.Body), &login)
		if login.Session == "" || login.Person.UID == "" {
			t.Fatalf("login answer without session or uid: %s", resp.Body)
		}
		uid = login.Person.UID
		// A second invocation in the same environment: the warm path.
		me := httpCall(t, p, http.MethodGet, "/me", map[string]string{"Authorization": "Bearer " + login.Session}, "")
		if me.StatusCode != http.StatusOK || !strings.Contains(me.Body, uid) {
			t.Fatalf("GET /me: %d %s", me.StatusCode, me.Body)
		}
		wantMetric(t, p, "Logins", "outcome", "created")
	})

	run("OAuthCallbackFunction", "http", func(t *testing.T, p *process) {
		returnTo := h5Origin + "/account"
		auth := httpCall(t, p, http.MethodGet, "/oauth/authorize?scope=snsapi_base&return_to="+url.QueryEscape(returnTo), nil, "")
		loc, err := url.Parse(auth.Headers["Location"])
		if auth.StatusCode != http.StatusFound || err != nil || !strings.HasPrefix(loc.String(), d.sbURL) {
			t.Fatalf("GET /oauth/authorize: %d, Location %q, want a redirect to the (sandbox) authorize page", auth.StatusCode, auth.Headers["Location"])
		}
		redirect, err := url.Parse(loc.Query().Get("redirect_uri"))
		if err != nil || redirect.Host != apiHost || redirect.Path != "/oauth/callback" {
			t.Fatalf("redirect_uri %q, want https://%s/oauth/callback", loc.Query().Get("redirect_uri"), apiHost)
		}
		code, err := d.sb.OAuthCode(sandbox.OAuthConsent{Person: person.ID, Scope: wechat.ScopeBase})
		if err != nil {
			t.Fatal(err)
		}
		q := redirect.Query()
		q.Set("code", code)
		q.Set("state", loc.Query().Get("state"))
		// The browser that started the sign-in sends back its cookie.
		var cookies []string
		for _, c := range auth.Cookies {
			cookies = append(cookies, strings.SplitN(c, ";", 2)[0])
		}
		if len(cookies) == 0 {
			t.Fatal("GET /oauth/authorize set no cookie to tie the sign-in to the browser")
		}
		back := httpCall(t, p, http.MethodGet, "/oauth/callback?"+q.Encode(), map[string]string{"Cookie": strings.Join(cookies, "; ")}, "")
		if back.StatusCode != http.StatusFound || !strings.HasPrefix(back.Headers["Location"], returnTo+"#") || !strings.Contains(back.Headers["Location"], "session=") {
			t.Fatalf("GET /oauth/callback: %d, Location %q, want %s#session=…", back.StatusCode, back.Headers["Location"], returnTo)
		}
	})

	run("FollowEventFunction", "http", func(t *testing.T, p *process) {
		// The sandbox pushes the follow, signed and encrypted, to a
		// listener that hands it to the bootstrap as API Gateway would.
		srv := httptest.NewServer(httpapi.Serve(func(ctx context.Context, req events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
			return httpInvoke(t, p, req), nil
		}))
		defer srv.Close()
		oa := d.apps.OfficialAccount
		if err := d.sb.SetPushTarget(sandbox.PushTarget{URL: srv.URL + "/wechat/push", Token: oa.Token, EncodingAESKey: oa.EncodingAESKey, Mode: push.Safe}); err != nil {
			t.Fatal(err)
		}
		del, err := d.sb.Follow(context.Background(), person.ID, "")
		if err != nil {
			t.Fatal(err)
		}
		if !del.Delivered || len(del.Attempts) != 1 || del.Attempts[0].Status != http.StatusOK || del.Attempts[0].Body != "success" {
			t.Fatalf("push not acknowledged at the first attempt: %+v", del)
		}
		p2, err := identity.NewStore(d.dynamodb(), d.ref("Table")).ByUID(context.Background(), uid)
		if err != nil {
			t.Fatal(err)
		}
		if !p2.Linked() || !p2.FollowsOA() {
			t.Fatalf("after login and follow, person %s is not linked and following: %+v", uid, p2)
		}
		wantMetric(t, p, "PushEvents", "kind", "subscribe")
	})

	run("SendWorkerFunction", "sqs", func(t *testing.T, p *process) {
		job := notify.Job{
			ID: "lambdatest-" + randomHex(4), To: notify.Recipient{UID: uid},
			Template: &notify.TemplateMessage{TemplateID: strings.Repeat("T", 43), Data: map[string]string{"thing1": "order shipped"}},
		}
		if _, err := notify.NewClient(d.sqs(), d.queueURL("SendQueue")).Enqueue(context.Background(), job); err != nil {
			t.Fatal(err)
		}
		ev := receive(t, d, "SendQueue", 1)
		var resp events.SQSEventResponse
		decode(t, p.invoke(t, ev), &resp)
		if len(resp.BatchItemFailures) != 0 {
			t.Fatalf("batch item failures: %+v\n%s", resp.BatchItemFailures, p.out)
		}
		inbox, err := d.sb.Inbox(person.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(inbox) != 1 {
			t.Fatalf("inbox has %d messages, want the job's one: %+v", len(inbox), inbox)
		}
		entry := ledger(t, d, job.ID)
		if entry.Status != notify.Sent || entry.MsgID == "" {
			t.Fatalf("ledger entry %+v, want SENT with a msgid", entry)
		}
		msgid = entry.MsgID
		wantMetric(t, p, "Sends", "outcome", "SENT", "class", "none")
	})

	run("FollowEventFunction", "sqs", func(t *testing.T, p *process) {
		// A delivery report the push path queued for retry.
		follower, _ := d.sb.Person(person.ID)
		report := push.Event{ToUserName: "gh_lambdatest", FromUserName: follower.OAOpenID, CreateTime: time.Now().Unix(),
			MsgType: "event", Event: push.TemplateFinish, MsgID: msgid, Status: "success"}
		b, _ := json.Marshal(report)
		if _, err := d.sqs().SendMessage(context.Background(), &sqs.SendMessageInput{QueueUrl: aws.String(d.queueURL("PushRetryQueue")), MessageBody: aws.String(string(b))}); err != nil {
			t.Fatal(err)
		}
		ev := receive(t, d, "PushRetryQueue", 1)
		var resp events.SQSEventResponse
		decode(t, p.invoke(t, ev), &resp)
		if len(resp.BatchItemFailures) != 0 {
			t.Fatalf("batch item failures: %+v", resp.BatchItemFailures)
		}
	})

	run("OutcomePublisherFunction", "dynamodb", func(t *testing.T, p *process) {
		if msgid == "" {
			t.Skip("no job was sent")
		}
		// The send and its delivery report changed the job's ledger entry
		// twice: the table's stream, through the template's trigger and
		// its filter, becomes two events on the bus.
		ctx := context.Background()
		subscriber := awstest.Subscribe(t, d.ref("OutcomeBus"), `{"source":["wxbridge"]}`)
		desc, err := d.dynamodb().DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(d.ref("Table"))})
		if err != nil {
			t.Fatal(err)
		}
		src := &streams.Source{
			AWS: d.aws, StreamARN: aws.ToString(desc.Table.LatestStreamArn), Trigger: d.fns["OutcomePublisherFunction"].Streams[0], RetryDelay: time.Millisecond,
			Handler: func(_ context.Context, ev events.DynamoDBEvent) (events.DynamoDBEventResponse, error) {
				var resp events.DynamoDBEventResponse
				decode(t, p.invoke(t, ev), &resp)
				if len(resp.BatchItemFailures) != 0 {
					t.Errorf("batch item failures %+v\n%s", resp.BatchItemFailures, p.out)
				}
				return resp, nil
			},
		}
		dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := src.Drain(dctx); err != nil {
			t.Fatal(err)
		}
		out, err := d.sqs().ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(subscriber), MaxNumberOfMessages: 10})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, m := range out.Messages {
			ev, err := contract.DecodeEvent([]byte(aws.ToString(m.Body)))
			if err != nil {
				t.Fatalf("%v: %s", err, aws.ToString(m.Body))
			}
			if ev.Detail.MsgID == msgid {
				got = append(got, string(ev.Detail.Status))
			}
		}
		if !slices.Equal(got, []string{"SENT", "DELIVERED"}) {
			t.Fatalf("events of the job sent: %v, want SENT then DELIVERED", got)
		}
		wantMetric(t, p, "OutcomesPublished", "status", "DELIVERED")
	})

	run("FollowerSyncFunction", "sqs", func(t *testing.T, p *process) {
		db, oa := d.dynamodb(), d.apps.OfficialAccount.AppID
		store := backfill.NewStore(db, d.ref("Table"))
		syncer := &backfill.Syncer{AppID: oa, Store: store, Queue: backfill.Queue{Client: d.sqs(), URL: d.queueURL("SyncQueue")}}
		r, started, err := syncer.Start(context.Background())
		if err != nil || !started {
			t.Fatalf("start backfill: %v (started %v)", err, started)
		}
		// The first page (one follower) queues its chunk and the next
		// page, which user/get answers empty: three jobs, one at a time
		// (the page queues both before the chunk is fetched).
		var kinds []string
		for range 3 {
			ev := receive(t, d, "SyncQueue", 1)
			var j backfill.Job
			decode(t, []byte(ev.Records[0].Body), &j)
			kinds = append(kinds, j.Kind)
			var resp events.SQSEventResponse
			decode(t, p.invoke(t, ev), &resp)
			if len(resp.BatchItemFailures) != 0 {
				t.Fatalf("%s job: batch item failures %+v", j.Kind, resp.BatchItemFailures)
			}
		}
		slices.Sort(kinds)
		if !slices.Equal(kinds, []string{"chunk", "page", "page"}) {
			t.Fatalf("jobs %v, want two pages and a chunk", kinds)
		}
		got, err := store.Run(context.Background(), oa, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Seen != 1 || got.Linked != 1 || got.Active() {
			t.Fatalf("backfill run after its page and chunk: %+v, want 1 follower seen and linked, run over", got)
		}
	})

	if err := checkReport(d, uid, msgid); err != nil {
		t.Error(err)
	}
}

// checkReport checks the delivery report the retry queue carried reached
// the ledger entry of msgid.
func checkReport(d *deployment, uid, msgid string) error {
	if msgid == "" {
		return nil // the send failed and said so
	}
	out, err := d.dynamodb().Query(context.Background(), &dynamodb.QueryInput{
		TableName: aws.String(d.ref("Table")), IndexName: aws.String("MsgKey"),
		KeyConditionExpression:    aws.String("msg_key = :k"),
		ExpressionAttributeValues: map[string]ddbtypes.AttributeValue{":k": &ddbtypes.AttributeValueMemberS{Value: d.apps.OfficialAccount.AppID + "#" + msgid}},
	})
	if err != nil {
		return err
	}
	if len(out.Items) != 1 {
		return fmt.Errorf("msgid %s: %d ledger entries", msgid, len(out.Items))
	}
	pk := out.Items[0]["pk"].(*ddbtypes.AttributeValueMemberS).Value
	e := ledger(d.t, d, strings.TrimPrefix(pk, "SEND#"))
	if e.Status != notify.Delivered {
		return fmt.Errorf("after the delivery report, ledger entry %+v, want DELIVERED", e)
	}
	return nil
}

// TestInitError: a function that cannot start (here: no WXB_TABLE) reports
// why to /runtime/init/error and exits, as Lambda expects of a runtime.
func TestInitError(t *testing.T) {
	d := deploy(t)
	env := d.env("LoginFunction")
	delete(env, "WXB_TABLE")
	p := start(t, forTests, "LoginFunction", env, 10*time.Second)
	select {
	case <-p.api.failed:
	case <-time.After(10 * time.Second):
		t.Fatalf("no init error posted:\n%s", p.out)
	}
	if e := p.api.initErr; !strings.Contains(e.Message, "WXB_TABLE") || e.Type == "" {
		t.Fatalf("init error %+v, want one naming WXB_TABLE, with a type", e)
	}
	select {
	case <-p.exited:
		if p.cmd.ProcessState.ExitCode() == 0 {
			t.Fatal("bootstrap exited 0 after an init error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("bootstrap still running after its init error")
	}
	if !strings.Contains(p.out.String(), `"outcome":"init_error"`) {
		t.Fatalf("init error not logged:\n%s", p.out)
	}
}

// apiHost is the HTTP API's domain name in the events.
const apiHost = "abc123.execute-api.us-east-1.amazonaws.com"

// httpCall sends one HTTP API request to the bootstrap as API Gateway's
// payload-format-2.0 event and returns its answer.
func httpCall(t *testing.T, p *process, method, target string, headers map[string]string, body string) events.APIGatewayV2HTTPResponse {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	r := httptest.NewRequest(method, "https://"+apiHost+target, rd)
	if body != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	for k, v := range headers {
		r.Header.Set(k, v)
	}
	req, err := httpapi.Request(r)
	if err != nil {
		t.Fatal(err)
	}
	return httpInvoke(t, p, req)
}

func httpInvoke(t *testing.T, p *process, req events.APIGatewayV2HTTPRequest) events.APIGatewayV2HTTPResponse {
	req.RequestContext.Stage = "$default"
	req.RequestContext.RequestID = randomHex(8)
	req.RequestContext.APIID = strings.Split(apiHost, ".")[0]
	req.RequestContext.DomainName = apiHost
	req.RequestContext.AccountID = "123456789012"
	var resp events.APIGatewayV2HTTPResponse
	decode(t, p.invoke(t, req), &resp)
	return resp
}

// receive takes n messages off queue logicalID, as the SQS event source
// mapping does, and makes them the SQS event Lambda delivers.
func receive(t *testing.T, d *deployment, logicalID string, n int) events.SQSEvent {
	t.Helper()
	url := d.queueURL(logicalID)
	var ev events.SQSEvent
	deadline := time.Now().Add(10 * time.Second)
	for len(ev.Records) < n && time.Now().Before(deadline) {
		out, err := d.sqs().ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(url), MaxNumberOfMessages: int32(n - len(ev.Records)), WaitTimeSeconds: 1,
			MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameAll},
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range out.Messages {
			ev.Records = append(ev.Records, events.SQSMessage{
				MessageId: aws.ToString(m.MessageId), ReceiptHandle: aws.ToString(m.ReceiptHandle), Body: aws.ToString(m.Body),
				Md5OfBody: aws.ToString(m.MD5OfBody), Attributes: m.Attributes, EventSource: "aws:sqs",
				EventSourceARN: "arn:aws:sqs:us-east-1:123456789012:" + url[strings.LastIndexByte(url, '/')+1:], AWSRegion: "us-east-1",
			})
		}
	}
	if len(ev.Records) != n {
		t.Fatalf("%s: %d messages, want %d", logicalID, len(ev.Records), n)
	}
	return ev
}

// ledger reads job id's send-ledger entry.
func ledger(t testing.TB, d *deployment, id string) notify.Entry {
	t.Helper()
	out, err := d.dynamodb().GetItem(context.Background(), &dynamodb.GetItemInput{
		TableName: aws.String(d.ref("Table")), Key: map[string]ddbtypes.AttributeValue{"pk": &ddbtypes.AttributeValueMemberS{Value: "SEND#" + id}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var e notify.Entry
	if err := attributevalue.UnmarshalMap(out.Item, &e); err != nil {
		t.Fatal(err)
	}
	return e
}

func decode(t testing.TB, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("answer is not the JSON expected (%v): %s", err, b)
	}
}

// checkLogs holds every line the bootstrap wrote to the operations rules:
// one JSON document per line; every log line names the function; every
// line written for an invocation carries that invocation's request id and
// an outcome (ARCHITECTURE.md, "Operations").
func checkLogs(t *testing.T, p *process) {
	t.Helper()
	want := functionDirs[p.name]
	for _, rec := range p.out.records(t) {
		if rec["function"] != want {
			t.Errorf("line without function %q: %v", want, rec)
		}
		if _, emf := rec["_aws"]; emf {
			continue
		}
		if rec["msg"] == "init" {
			continue
		}
		if id, _ := rec["request_id"].(string); id == "" {
			t.Errorf("log line without request_id: %v", rec)
		}
		if _, ok := rec["outcome"]; !ok {
			t.Errorf("log line without outcome: %v", rec)
		}
	}
}

// wantMetric fails unless the bootstrap wrote an EMF record of metric name
// in the wxbridge namespace whose dimension set is exactly function plus
// the keys of dims, with dims' values ("*": any value). template.yaml's
// alarms query exactly these dimension sets.
func wantMetric(t *testing.T, p *process, name string, dims ...string) {
	t.Helper()
	for _, rec := range p.out.records(t) {
		if _, ok := rec[name]; !ok {
			continue
		}
		var meta struct {
			CloudWatchMetrics []struct {
				Namespace  string
				Dimensions [][]string
				Metrics    []struct{ Name string }
			}
		}
		b, _ := json.Marshal(rec["_aws"])
		if json.Unmarshal(b, &meta) != nil || len(meta.CloudWatchMetrics) == 0 {
			continue
		}
		m := meta.CloudWatchMetrics[0]
		keys := []string{"function"}
		match := m.Namespace == "wxbridge" && len(m.Metrics) > 0 && m.Metrics[0].Name == name
		for i := 0; i+1 < len(dims); i += 2 {
			keys = append(keys, dims[i])
			match = match && (rec[dims[i]] == dims[i+1] || dims[i+1] == "*" && rec[dims[i]] != nil)
		}
		if match && len(m.Dimensions) > 0 && slices.Equal(sorted(m.Dimensions[0]), sorted(keys)) {
			return
		}
	}
	t.Errorf("no %s metric with dimensions %v:\n%s", name, dims, p.out)
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// BenchmarkInit builds every bootstrap exactly as the Makefile does for
// Lambda (for this machine's architecture), starts each as a cold Lambda
// environment would, with its template environment (configuration read
// from moto), and measures process start to the first invocation/next:
// init-ms is the init time, MB the binary's size. It prints both beside
// the targets (maxInit, maxSize) and fails on a size over its target; an
// init time over its target is marked (it depends on the machine's load).
func BenchmarkInit(b *testing.B) {
	if err := build(asReleased); err != nil {
		b.Fatal(err)
	}
	d := deploy(b)
	var rows []string
	for _, id := range slices.Sorted(maps.Keys(functionDirs)) {
		env := d.env(id)
		fi, err := os.Stat(bootstrap(b, asReleased, id))
		if err != nil {
			b.Fatal(err)
		}
		if fi.Size() > maxSize {
			b.Errorf("%s: bootstrap is %d bytes, over the %d-byte target", functionDirs[id], fi.Size(), maxSize)
		}
		var perInit time.Duration
		b.Run(functionDirs[id], func(b *testing.B) {
			var total time.Duration
			n := 0
			for b.Loop() {
				p := start(b, asReleased, id, env, 10*time.Second)
				if p.api.initErr != nil {
					b.Fatalf("init error: %s", p.api.initErr.Message)
				}
				total += p.initTime()
				n++
				p.stop()
			}
			perInit = total / time.Duration(n)
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(float64(perInit.Microseconds())/1000, "init-ms")
			b.ReportMetric(float64(fi.Size())/(1<<20), "MB")
		})
		over := ""
		if perInit > maxInit {
			over = " (over the target)"
		}
		rows = append(rows, fmt.Sprintf("| %s | %s MB | %s ms%s |", functionDirs[id],
			strconv.FormatFloat(float64(fi.Size())/(1<<20), 'f', 1, 64), strconv.FormatFloat(float64(perInit.Microseconds())/1000, 'f', 1, 64), over))
	}
	fmt.Printf("\nbootstraps built as released, for %s/%s\n| function | bootstrap (target %d MB) | init, start to first next (target %s) |\n|---|---:|---:|\n%s\n\n",
		runtime.GOOS, runtime.GOARCH, maxSize>>20, maxInit, strings.Join(rows, "\n"))
}
