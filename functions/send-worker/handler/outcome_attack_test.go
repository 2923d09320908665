package handler

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/santhosh-tekuri/jsonschema/v6"

	publisher "wxbridge/functions/outcome-publisher/handler"
	"wxbridge/infra/devkit/awstest"
	"wxbridge/infra/devkit/cfn"
	"wxbridge/infra/devkit/sandbox"
	"wxbridge/infra/devkit/streams"
	"wxbridge/shared/contract"
	"wxbridge/shared/identity"
	"wxbridge/shared/notify"
	"wxbridge/shared/tokens"
)

// TestAttackOutcomeEventsOfRealJobs: jobs the send-worker settles in every
// way it can (delivered, blocked, undeliverable with skipped and refused
// channels, expired, invalid, an answer lost on a channel that cannot be
// resent, an errcode) go through the table's stream to the outcome
// publisher and the bus. Every event a subscriber receives is one the
// schema describes and DecodeEvent reads; every final ledger entry has its
// event; and no event carries a secret, an access token, a session key or
// the message's data.
func TestAttackOutcomeEventsOfRealJobs(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	source, subscriber := outcomePipeline(t, e)

	delivered, blocked, nowhere := e.follower(t), e.follower(t), e.sb.CreatePerson(sandbox.PersonSpec{})
	if err := e.sb.RefuseTemplates(blocked.ID, true); err != nil {
		t.Fatal(err)
	}
	// A login with its session key, as POST /mp/login links it: the table
	// holds one, which no event may carry.
	sessionKey := "attack-session-key-" + nowhere.ID
	if _, err := e.store.Link(ctx, identity.Sighting{MP: &identity.MPSighting{AppID: mpApp, OpenID: nowhere.MPOpenID, SessionKey: sessionKey}, UnionID: nowhere.UnionID}); err != nil {
		t.Fatal(err)
	}
	expired := job("e2e-expired", notify.Recipient{UnionID: delivered.UnionID})
	past := e.sb.Clock().Now().Add(-time.Minute)
	expired.ExpiresAt = &past
	e.enqueue(t, job("e2e-delivered", notify.Recipient{UnionID: delivered.UnionID}, notify.Template),
		job("e2e-blocked", notify.Recipient{UnionID: blocked.UnionID}, notify.Template),
		job("e2e-nowhere", notify.Recipient{UnionID: nowhere.UnionID}), expired)
	e.enqueueRaw(t, `{"id":"e2e-invalid","to":{"external_id":"8812"},"subscribe":{"template_id":"t","data":{"thing1":"a secret order note far over twenty characters"}}}`)
	e.settleAll(t)
	if _, err := e.sb.PushTemplateReports(ctx); err != nil {
		t.Fatal(err)
	}
	// A subscribe message whose answer is lost: UNKNOWN, never resent.
	e.consent(t, delivered)
	e.sb.InjectFault(sandbox.Fault{Path: subscribePath, Count: 1, LostAnswer: true})
	e.enqueue(t, job("e2e-unknown", notify.Recipient{UnionID: delivered.UnionID}, notify.Subscribe, notify.Template))
	e.settleAll(t)
	// WeChat refuses the template id (40037, the sender's mistake).
	e.sb.InjectFault(sandbox.Fault{Path: templatePath, Count: 5, ErrCode: 40037})
	e.enqueue(t, job("e2e-refused", notify.Recipient{UnionID: delivered.UnionID}, notify.Template))
	e.settleAll(t)

	drainCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := source.Drain(drainCtx); err != nil {
		t.Fatal(err)
	}

	schema := compileOutcomeSchema(t)
	secrets := outcomeSecrets(t, e)
	if !slices.Contains(secrets, sessionKey) {
		t.Fatal("the session key is not in the table: the test would not catch it leaking")
	}
	forbidden := append(secrets, "Blue kettle", "已发货", "a secret order note")
	byJob := map[string][]contract.Event{}
	for _, body := range receiveAll(t, e.sqs, subscriber) {
		inst, err := jsonschema.UnmarshalJSON(strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if err := schema.Validate(inst); err != nil {
			t.Errorf("a published event the schema refuses: %v\n%s", err, body)
		}
		ev, err := contract.DecodeEvent([]byte(body))
		if err != nil {
			t.Fatalf("DecodeEvent: %v\n%s", err, body)
		}
		plain, _ := json.Marshal(inst) // moto may escape what Go does not
		for _, s := range forbidden {
			if strings.Contains(body, s) || strings.Contains(string(plain), s) {
				t.Errorf("the %s event of %s carries %.12q…", ev.Detail.Status, ev.Detail.JobID, s)
			}
		}
		byJob[ev.Detail.JobID] = append(byJob[ev.Detail.JobID], ev)
	}
	covered := map[contract.Status]bool{}
	for _, id := range []string{"e2e-delivered", "e2e-blocked", "e2e-nowhere", "e2e-expired", "e2e-invalid", "e2e-unknown", "e2e-refused"} {
		entry := e.entry(t, id)
		want := contract.OutcomeEventID(id, entry.CreatedAt, entry.Status)
		evs := byJob[id]
		if !slices.ContainsFunc(evs, func(ev contract.Event) bool { return ev.Detail.EventID == want }) {
			t.Errorf("%s is %s in the ledger; its events: %+v", id, entry.Status, evs)
		}
		for _, ev := range evs {
			covered[ev.Detail.Status] = true
		}
	}
	for _, s := range []contract.Status{notify.Sent, notify.Delivered, notify.Blocked, notify.Failed, notify.Undeliverable, notify.Expired, notify.Unknown} {
		if !covered[s] {
			t.Errorf("no %s event: the schema check did not cover it (%v)", s, covered)
		}
	}
}

// outcomePipeline wires the outcome publisher to e's table as template.yaml
// does: the stream trigger (infra/devkit/streams) feeding the publisher
// built from its environment, and a queue subscribed to the bus as a
// business subscribes.
func outcomePipeline(t *testing.T, e *env) (*streams.Source, string) {
	t.Helper()
	ctx := context.Background()
	fnEnv := e.te.FunctionEnv("OutcomePublisherFunction")
	h, err := publisher.FromEnv(ctx, fnEnv)
	if err != nil {
		t.Fatal(err)
	}
	tpl, err := cfn.LoadNearest()
	if err != nil {
		t.Fatal(err)
	}
	fns, err := tpl.Functions()
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(fns, func(fn cfn.Function) bool { return fn.LogicalID == "OutcomePublisherFunction" })
	if i < 0 || len(fns[i].Streams) != 1 {
		t.Fatal("template.yaml: OutcomePublisherFunction has no stream trigger")
	}
	trigger := fns[i].Streams[0]
	desc, err := e.te.DB.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: &e.table})
	if err != nil {
		t.Fatal(err)
	}
	subscriber := awstest.Subscribe(t, fnEnv.Vars["WXB_OUTCOME_BUS"], `{"source":["wxbridge"]}`)
	src := &streams.Source{
		AWS: awstest.Config(nil), StreamARN: aws.ToString(desc.Table.LatestStreamArn), Trigger: trigger,
		OnFailureURL: e.te.Queue(trigger.OnFailure), Handler: h.Handle, RetryDelay: time.Millisecond,
	}
	return src, subscriber
}

func compileOutcomeSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	wd, _ := os.Getwd()
	p, err := cfn.Find(wd)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(filepath.Dir(p), "schemas", "outcome-event.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource("outcome-event.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("outcome-event.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// outcomeSecrets is every secret the environment holds: the apps' secrets
// and wxbridge's keys, the access tokens in the token secrets, and the
// session keys in the table.
func outcomeSecrets(t *testing.T, e *env) []string {
	t.Helper()
	ctx := context.Background()
	c := e.te.Config
	out := []string{c.MiniProgram.Secret, c.OfficialAccount.Secret, c.SigningKey, c.BindKey, c.OfficialAccount.Token, c.OfficialAccount.EncodingAESKey}
	sm := secretsmanager.NewFromConfig(awstest.Config(nil))
	for _, arn := range e.secrets {
		v, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(arn)})
		if err != nil {
			t.Fatal(err)
		}
		var st tokens.Stored
		if json.Unmarshal([]byte(aws.ToString(v.SecretString)), &st) == nil && st.AccessToken != "" {
			out = append(out, st.AccessToken)
		}
	}
	scan := dynamodb.NewScanPaginator(e.te.DB, &dynamodb.ScanInput{TableName: &e.table})
	for scan.HasMorePages() {
		page, err := scan.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, item := range page.Items {
			var v struct {
				SessionKey string `dynamodbav:"session_key"`
			}
			if attributevalue.UnmarshalMap(item, &v) == nil && v.SessionKey != "" {
				out = append(out, v.SessionKey)
			}
		}
	}
	return slices.DeleteFunc(out, func(s string) bool { return len(s) < 8 })
}

// receiveAll takes every message waiting on url.
func receiveAll(t *testing.T, q *sqs.Client, url string) []string {
	t.Helper()
	var out []string
	for {
		resp, err := q.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: &url, MaxNumberOfMessages: 10, VisibilityTimeout: 600})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Messages) == 0 {
			return out
		}
		for _, m := range resp.Messages {
			out = append(out, aws.ToString(m.Body))
		}
	}
}
