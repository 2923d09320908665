package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"wxbridge/shared/contract"
	"wxbridge/shared/observe"
)

// startStack runs a devstack on free ports for one test.
func startStack(t *testing.T) *Stack {
	t.Helper()
	return testStack(t, Config{Logs: &observe.Capture{}})
}

// stacks counts the tests' stacks, to name each.
var stacks atomic.Int32

// testStack runs a devstack as cfg says on free ports, on the moto the
// package's tests share (testAWS) unless cfg names another endpoint: a
// moto_server takes seconds to start, a stack's resources a fraction of
// one. Each stack has a name of its own, which every resource's name
// starts with (as two stacks in one AWS account), so no test sees
// another's table, queues, secrets or rules.
func testStack(t *testing.T, cfg Config) *Stack {
	t.Helper()
	if cfg.Addr == "" && cfg.Params["PublicUrl"] == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.AWSEndpoint == "" {
		cfg.AWSEndpoint = *testAWS(t).BaseEndpoint
	}
	cfg.name = fmt.Sprintf("wxbridge-t%d", stacks.Add(1))
	s, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// call makes an HTTP request and decodes a JSON answer.
func call(t *testing.T, method, url string, body any, header map[string]string) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, rd)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(raw) > 0 && json.Unmarshal(raw, &out) != nil {
		t.Fatalf("%s %s: not JSON: %s", method, url, raw)
	}
	return resp.StatusCode, out
}

// TestStory drives the devstack through its HTTP APIs only, as a developer
// would with curl: a person is created in the sandbox, logs in to the mini
// program through wxbridge, follows the official account (the sandbox
// pushes to wxbridge), and unfollows; then another is one person across a
// second mini program, a second official account, a website app and a
// mobile app (apps_test.go).
func TestStory(t *testing.T) {
	s := startStack(t)
	_, cfg := call(t, "GET", s.APIURL+"/_dev/config", nil, nil)
	for _, k := range []string{"api_url", "sandbox_url", "aws_endpoint_url", "region", "table", "apps_secret", "h5_origin", "oa", "outcome_queue_url", "outcome_bus"} {
		if cfg[k] == nil || cfg[k] == "" {
			t.Errorf("/_dev/config lacks %s: %v", k, cfg)
		}
	}
	oa := cfg["oa"].(map[string]any)
	if oa["mode"] != "safe" || oa["token"] == "" || len(oa["encoding_aes_key"].(string)) != 43 {
		t.Errorf("oa config = %v", oa)
	}
	sb := cfg["sandbox_url"].(string)

	status, person := call(t, "POST", sb+"/sandbox/people", map[string]string{"nickname": "Story"}, nil)
	if status != 201 {
		t.Fatalf("create person: %d %v", status, person)
	}
	id := person["id"].(string)
	_, code := call(t, "POST", sb+"/sandbox/people/"+id+"/wx-login", nil, nil)
	status, login := call(t, "POST", s.APIURL+"/mp/login", map[string]any{"code": code["code"]}, nil)
	if status != 200 {
		t.Fatalf("login: %d %v", status, login)
	}
	bearer := map[string]string{"Authorization": "Bearer " + login["session"].(string)}

	status, d := call(t, "POST", sb+"/sandbox/people/"+id+"/follow", nil, nil)
	if status != 200 || d["delivered"] != true {
		t.Fatalf("follow: %d %v", status, d)
	}
	// On a loaded machine the push may go through the retry queue (the
	// devstack keeps the real 3 s budget), so the link can lag the answer.
	var me map[string]any
	eventually(t, "the follower linked", func() bool {
		_, me = call(t, "GET", s.APIURL+"/me", nil, bearer)
		return me["linked"] == true && me["follows_oa"] == true
	})
	if me["uid"] != login["person"].(map[string]any)["uid"] {
		t.Fatalf("after follow, /me = %v", me)
	}

	// A notification, through SQS and the send-worker, reaches the phone.
	status, sent := call(t, "POST", s.APIURL+"/_dev/api/send", map[string]any{
		"uid": me["uid"], "channels": []string{"template", "subscribe"}, "item": "Green tea", "order": "8812-7",
	}, nil)
	if status != 200 || sent["message_id"] == "" {
		t.Fatalf("send: %d %v", status, sent)
	}
	var inbox []map[string]any
	eventually(t, "the message in the sandbox inbox", func() bool {
		resp, err := http.Get(sb + "/sandbox/people/" + id + "/inbox")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		json.NewDecoder(resp.Body).Decode(&inbox)
		return len(inbox) == 1
	})
	if inbox[0]["channel"] != "template" || inbox[0]["data"].(map[string]any)["thing1"] != "Green tea" {
		t.Fatalf("inbox = %v", inbox)
	}
	eventually(t, "the delivery report in the ledger", func() bool {
		_, st := call(t, "GET", s.APIURL+"/_dev/api/state", nil, nil)
		ledger, _ := st["ledger"].([]any)
		return len(ledger) == 1 && ledger[0].(map[string]any)["status"] == "DELIVERED"
	})
	// Its outcome, from the table's stream through the publisher and the
	// outcome bus, on the queue /_dev/config names, read with nothing but
	// what /_dev/config gives: SENT, then DELIVERED.
	dc := devConfig(t, s)
	evs := outcomeEvents(t, businessSQS(dc), dc.OutcomeQueueURL, sent["job_id"].(string), contract.Sent, contract.Delivered)
	sentEv, delivered := evs[0].Detail, evs[1].Detail
	if evs[0].DetailType != contract.DetailType(contract.Sent) || evs[1].DetailType != contract.DetailType(contract.Delivered) ||
		sentEv.EventID == delivered.EventID || sentEv.Channel != contract.Template || sentEv.MsgID == "" || sentEv.Final ||
		delivered.MsgID != sentEv.MsgID || delivered.UID != me["uid"] || !delivered.Final {
		t.Errorf("outcome events: %+v then %+v", sentEv, delivered)
	}

	status, d = call(t, "POST", sb+"/sandbox/people/"+id+"/unfollow", nil, nil)
	if status != 200 || d["delivered"] != true {
		t.Fatalf("unfollow: %d %v", status, d)
	}
	eventually(t, "the unfollow recorded", func() bool {
		_, me = call(t, "GET", s.APIURL+"/me", nil, bearer)
		return me["linked"] == true && me["follows_oa"] == false
	})
	// A token for every mini program and official account /_dev/config
	// lists.
	withTokens := 0
	for _, a := range cfg["apps"].([]any) {
		if k := a.(map[string]any)["kind"]; k == "mini_program" || k == "official_account" {
			withTokens++
		}
	}
	_, state := call(t, "GET", s.APIURL+"/_dev/api/state", nil, nil)
	if len(state["people"].([]any)) != 1 || len(state["tokens"].([]any)) != withTokens || withTokens != 5 {
		t.Fatalf("state = %v", state)
	}

	t.Run("one person across apps", func(t *testing.T) { storyAcrossApps(t, cfg) })
}

// TestMain runs the devstack command itself, main and all, when a test
// starts the test binary again with runMain set
// (TestCommandStartsAndStopsCleanly): the command without a go build and
// link of its own, which cost that test most of its time.
func TestMain(m *testing.M) {
	if os.Getenv(runMain) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runMain makes the test binary the devstack command (TestMain).
const runMain = "WXB_DEVSTACK_TEST_RUN_MAIN"

// TestCommandStartsAndStopsCleanly runs the real command: it must print
// its ready line, serve the console, and on SIGTERM exit and take moto with
// it.
func TestCommandStartsAndStopsCleanly(t *testing.T) {
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "WXB_DEV_ADDR=127.0.0.1:0", runMain+"=1")
	stdout, _ := cmd.StdoutPipe()
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	ready := regexp.MustCompile(`^ready in .*: open (http://[0-9.:]+)/_dev/`)
	awsLine := regexp.MustCompile(`AWS\s+(http://[0-9.:]+)`)
	var api, awsURL string
	sc := bufio.NewScanner(stdout)
	deadline := time.AfterFunc(60*time.Second, func() { cmd.Process.Kill() })
	for sc.Scan() {
		if m := awsLine.FindStringSubmatch(sc.Text()); m != nil {
			awsURL = m[1]
		}
		if m := ready.FindStringSubmatch(sc.Text()); m != nil {
			api = m[1]
			break
		}
	}
	deadline.Stop()
	if api == "" || awsURL == "" {
		t.Fatalf("no ready line (or no AWS line) on stdout; stderr:\n%s", stderr.String())
	}
	go io.Copy(io.Discard, stdout)
	resp, err := http.Get(api + "/_dev/")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("console: %v %v", resp, err)
	}
	resp.Body.Close()
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("devstack did not stop within 20s of SIGTERM")
	}
	if _, err := http.Get(awsURL + "/moto-api/"); err == nil {
		t.Fatal("moto still answers after the devstack stopped")
	}
	if _, err := http.Get(api + "/_dev/config"); err == nil {
		t.Fatal("the API still answers after the devstack stopped")
	}
}

func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !ok(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// lockedBuffer collects a child's stderr, written from the exec package's
// copying goroutine and read by the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
