package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"wxbridge/infra/devkit/cfn"
	"wxbridge/infra/devkit/moto"
	"wxbridge/shared/backfill"
)

var (
	followersMotoOnce sync.Once
	followersMotoURL  string
	followersMotoErr  error
)

// followersEnv points the AWS SDK at moto (started once, or
// AWS_ENDPOINT_URL) and gives the test its own table and sync queue.
func followersEnv(t *testing.T) (table, queue string) {
	t.Helper()
	followersMotoOnce.Do(func() {
		if followersMotoURL = getenv("AWS_ENDPOINT_URL"); followersMotoURL != "" {
			return
		}
		var srv *moto.Server
		if srv, followersMotoErr = moto.Start(); followersMotoErr == nil {
			followersMotoURL = srv.URL
		}
	})
	if followersMotoErr != nil {
		t.Fatal(followersMotoErr)
	}
	for k, v := range map[string]string{"AWS_ENDPOINT_URL": followersMotoURL, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"} {
		t.Setenv(k, v)
	}
	ctx := context.Background()
	creds := credentials.NewStaticCredentialsProvider("testing", "testing", "")
	tpl, err := cfn.LoadNearest()
	if err != nil {
		t.Fatal(err)
	}
	name := strings.NewReplacer("/", "-", "_", "-").Replace(t.Name())
	def, err := tpl.Table("Table", name)
	if err != nil {
		t.Fatal(err)
	}
	db := dynamodb.New(dynamodb.Options{Region: "us-east-1", BaseEndpoint: aws.String(followersMotoURL), Credentials: creds})
	if _, err := db.CreateTable(ctx, def.Create); err != nil {
		t.Fatal(err)
	}
	q := sqs.New(sqs.Options{Region: "us-east-1", BaseEndpoint: aws.String(followersMotoURL), Credentials: creds})
	out, err := q.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	return name, *out.QueueUrl
}

func TestFollowersCommands(t *testing.T) {
	table, queue := followersEnv(t)
	t.Setenv("WXB_TABLE", table)
	t.Setenv("WXB_SYNC_QUEUE", queue)
	wx := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := run(context.Background(), args, stdio{strings.NewReader(""), &out, &errOut})
		return code, out.String(), errOut.String()
	}
	if code, _, errOut := wx("followers", "status", "-appid", "wxoa1"); code != 1 || !strings.Contains(errOut, "no backfill has run yet") {
		t.Errorf("status before any run: %d %q", code, errOut)
	}
	code, out, errOut := wx("followers", "start", "-appid", "wxoa1")
	if code != 0 || !strings.Contains(out, "started run ") || !strings.Contains(out, "running") {
		t.Fatalf("start: %d %q %q", code, out, errOut)
	}
	id := strings.Fields(strings.TrimPrefix(out, "started run "))[0]
	if code, out, _ := wx("followers", "start", "-appid", "wxoa1"); code != 0 || !strings.Contains(out, "run "+id+" is already running") {
		t.Errorf("second start: %d %q", code, out)
	}
	code, out, _ = wx("followers", "status", "-appid", "wxoa1", "-json")
	var r struct {
		backfill.Run
		Pending int `json:"pending"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &r) != nil || r.ID != id || r.Status != "running" || r.AppID != "wxoa1" || r.StartedAt.IsZero() {
		t.Errorf("status -json: %d %q", code, out)
	}
	for _, field := range []string{`"pages":0`, `"seen":0`, `"linked":0`, `"waiting":0`, `"without_unionid":0`, `"failed":0`, `"pending":0`, `"started_at"`} {
		if !strings.Contains(out, field) {
			t.Errorf("status -json lacks %s: %s", field, out)
		}
	}
	// The first page job is queued once by start, and again by resume.
	if code, out, _ := wx("followers", "resume", "-appid", "wxoa1"); code != 0 || !strings.Contains(out, "queued 1 jobs of run "+id) {
		t.Errorf("resume: %d %q", code, out)
	}
	if code, out, _ := wx("followers", "status", "-appid", "wxoa1", "-watch=false"); code != 0 || !strings.Contains(out, "[------------------------------]   0%  running") {
		t.Errorf("status: %d %q", code, out)
	}
	if code, _, _ := wx("followers", "stop"); code != 2 {
		t.Errorf("unknown subcommand: %d", code)
	}
	if code, _, errOut := wx("followers", "start", "-appid", "", "-app-secret", ""); code != 1 || !strings.Contains(errOut, "appid") {
		t.Errorf("without appid: %d %q", code, errOut)
	}
}

func TestProgress(t *testing.T) {
	cases := []struct {
		r    backfill.Run
		want []string
	}{
		{backfill.Run{Status: "running", Total: 1000, Seen: 1000, Pages: 1, Linked: 100, Waiting: 300, WithoutUnionID: 50, Failed: 50},
			[]string{"[###############---------------]  50%  running  500/1000 followers", "pending 500", "failed 50"}},
		{backfill.Run{Status: "running", Total: 10, Seen: 10, Retries: 2, LastError: "chunk 0/0: errcode 45009"},
			[]string{"[------------------------------]   0%", "retries 2", "last error: chunk 0/0: errcode 45009"}},
		{backfill.Run{Status: "done", Total: 3, Seen: 3, Unfollowed: 3},
			[]string{"[##############################] 100%  done  3/3", "unfollowed 3"}},
	}
	for _, c := range cases {
		got := progress(c.r)
		for _, w := range c.want {
			if !strings.Contains(got, w) {
				t.Errorf("progress(%+v) = %q, want %q in it", c.r, got, w)
			}
		}
	}
}

// TestFollowersOfTwoAccounts: each official account of the configuration
// has its own backfills (-appid picks one, the default without it), list
// shows every account's latest, and an appid the configuration does not
// have as an official account is refused.
func TestFollowersOfTwoAccounts(t *testing.T) {
	table, queue := followersEnv(t)
	t.Setenv("WXB_TABLE", table)
	t.Setenv("WXB_SYNC_QUEUE", queue)
	t.Setenv("WXB_OA_APPID", "")
	const oa1, oa2 = "wx00000000000000a1", "wx00000000000000a2"
	sm := secretsmanager.New(secretsmanager.Options{Region: "us-east-1", BaseEndpoint: aws.String(followersMotoURL),
		Credentials: credentials.NewStaticCredentialsProvider("testing", "testing", "")})
	secret, err := sm.CreateSecret(context.Background(), &secretsmanager.CreateSecretInput{
		Name:         aws.String(strings.NewReplacer("/", "-").Replace(t.Name()) + "-config"),
		SecretString: aws.String(`{"official_accounts":[{"appid":"` + oa1 + `","secret":"s1"},{"appid":"` + oa2 + `","secret":"s2"}],"mini_program":{"appid":"wx00000000000000b1","secret":"s3"}}`),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("WXB_APP_SECRET", *secret.ARN)
	wx := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := run(context.Background(), args, stdio{strings.NewReader(""), &out, &errOut})
		return code, out.String(), errOut.String()
	}
	if code, out, _ := wx("followers", "list"); code != 0 || !strings.Contains(out, oa1+" (default)") || strings.Count(out, "no backfill has run yet") != 2 {
		t.Fatalf("list before any run: %d %q", code, out)
	}
	code, out1, _ := wx("followers", "start")
	code2, out2, _ := wx("followers", "start", "-appid", oa2)
	if code != 0 || code2 != 0 || !strings.HasPrefix(out1, "started run ") || !strings.HasPrefix(out2, "started run ") {
		t.Fatalf("starts: %d %q, %d %q", code, out1, code2, out2)
	}
	id1, id2 := strings.Fields(out1)[2], strings.Fields(out2)[2]
	if id1 == id2 {
		t.Fatalf("one run for both accounts: %s", id1)
	}
	for appid, id := range map[string]string{oa1: id1, oa2: id2} {
		code, out, _ := wx("followers", "status", "-appid", appid, "-json")
		var r backfill.Run
		if code != 0 || json.Unmarshal([]byte(out), &r) != nil || r.ID != id || r.AppID != appid {
			t.Errorf("status of %s: %d %q, want run %s", appid, code, out, id)
		}
	}
	code, out, _ := wx("followers", "list", "-json")
	type line struct {
		AppID   string        `json:"appid"`
		Default bool          `json:"default"`
		Run     *backfill.Run `json:"run"`
	}
	var lines []line
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var v line
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatalf("list -json: %q: %v", l, err)
		}
		lines = append(lines, v)
	}
	if code != 0 || len(lines) != 2 || lines[0].AppID != oa1 || !lines[0].Default || lines[0].Run == nil || lines[0].Run.ID != id1 ||
		lines[1].AppID != oa2 || lines[1].Default || lines[1].Run == nil || lines[1].Run.ID != id2 {
		t.Errorf("list -json: %d %q", code, out)
	}
	if code, _, errOut := wx("followers", "start", "-appid", "wx00000000000000b1"); code != 1 || !strings.Contains(errOut, "not an official account of the configuration") {
		t.Errorf("start for the mini program: %d %q", code, errOut)
	}
}
