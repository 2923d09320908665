package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"wxbridge/shared/notify"
)

// BenchmarkDevstack measures what a developer waits for and what the
// devstack costs: the built command's time to its ready line, and the
// resident memory of the devstack process (and of its moto) idle and after
// 1,000 notifications sent through the queue and the worker.
func BenchmarkDevstack(b *testing.B) {
	bin := filepath.Join(b.TempDir(), "devstack")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	for range b.N {
		start := time.Now()
		cmd := exec.Command(bin)
		cmd.Env = append(os.Environ(), "WXB_DEV_ADDR=127.0.0.1:0")
		stdout, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		api := ""
		sc := bufio.NewScanner(stdout)
		ready := regexp.MustCompile(`^ready in .*: open (http://[0-9.:]+)/_dev/`)
		for sc.Scan() {
			if m := ready.FindStringSubmatch(sc.Text()); m != nil {
				api = m[1]
				break
			}
		}
		toReady := time.Since(start)
		go io.Copy(io.Discard, stdout)
		if api == "" {
			cmd.Process.Kill()
			b.Fatal("no ready line")
		}
		time.Sleep(2 * time.Second) // let it settle
		idle, motoIdle := rss(cmd.Process.Pid), rss(motoOf(cmd.Process.Pid))

		sent := sendMany(b, api, 1000)
		after, motoAfter := rss(cmd.Process.Pid), rss(motoOf(cmd.Process.Pid))
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()

		b.ReportMetric(float64(toReady.Milliseconds()), "ms-to-ready")
		b.ReportMetric(idle, "MiB-rss-idle")
		b.ReportMetric(after, "MiB-rss-after-1000-sends")
		b.ReportMetric(motoIdle, "MiB-moto-rss-idle")
		b.ReportMetric(motoAfter, "MiB-moto-rss-after")
		b.ReportMetric(sent.Seconds(), "s-for-1000-sends")
	}
}

// sendMany makes one follower and sends them n template messages through
// the send queue, returning once every one reached the sandbox inbox.
func sendMany(b *testing.B, api string, n int) time.Duration {
	b.Helper()
	get := func(path string, v any) {
		resp, err := http.Get(api + path)
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		if err := decodeInto(resp.Body, v); err != nil {
			b.Fatal(err)
		}
	}
	var cfg DevConfig
	get("/_dev/config", &cfg)
	post := func(url string, v any) {
		resp, err := http.Post(url, "application/json", strings.NewReader("{}"))
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		if v != nil {
			decodeInto(resp.Body, v)
		}
	}
	var p struct {
		ID string `json:"id"`
	}
	post(cfg.SandboxURL+"/sandbox/people", &p)
	post(cfg.SandboxURL+"/sandbox/people/"+p.ID+"/follow", nil)
	var st struct {
		People []struct {
			Known *struct {
				UID string `json:"uid"`
			} `json:"wxbridge"`
		} `json:"people"`
	}
	get("/_dev/api/state", &st)
	if len(st.People) != 1 || st.People[0].Known == nil {
		b.Fatalf("the follower is not known: %+v", st)
	}
	uid := st.People[0].Known.UID
	client := notify.NewClient(sqs.NewFromConfig(aws.Config{
		Region: cfg.Region, BaseEndpoint: aws.String(cfg.AWSEndpointURL),
		Credentials: credentials.NewStaticCredentialsProvider("bench", "bench", ""),
	}), cfg.SendQueueURL)
	jobs := make([]notify.Job, n)
	for i := range jobs {
		jobs[i] = notify.Job{ID: fmt.Sprintf("bench-%d", i), To: notify.Recipient{UID: uid},
			Template: &notify.TemplateMessage{TemplateID: demoTemplateID, Data: map[string]string{"thing1": "Tea", "character_string2": strconv.Itoa(i)}}}
	}
	start := time.Now()
	if _, err := client.EnqueueBatch(context.Background(), jobs); err != nil {
		b.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Minute); ; time.Sleep(250 * time.Millisecond) {
		var inbox []any
		resp, err := http.Get(cfg.SandboxURL + "/sandbox/people/" + p.ID + "/inbox")
		if err == nil {
			decodeInto(resp.Body, &inbox)
			resp.Body.Close()
		}
		if len(inbox) >= n {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			b.Fatalf("only %d of %d messages arrived", len(inbox), n)
		}
	}
}

// rss is a process's resident memory in MiB (0 if it is gone).
func rss(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.Fields(v)[0])
			return float64(kb) / 1024
		}
	}
	return 0
}

// motoOf finds the moto server a devstack process started.
func motoOf(parent int) int {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || !strings.Contains(string(cmdline), "serial.py") {
			continue
		}
		// Field 4 of /proc/<pid>/stat is the parent pid (after "pid (comm) state").
		fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(fields) > 1 && fields[1] == strconv.Itoa(parent) {
			return pid
		}
	}
	return 0
}

func decodeInto(r io.Reader, v any) error { return json.NewDecoder(r).Decode(v) }
