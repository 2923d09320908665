package lambdatest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"wxbridge/infra/devkit/awstest"
	"wxbridge/infra/devkit/cfn"
)

// functionDirs maps each template function to its directory under
// functions/, as the Makefile's build-<LogicalId> rule does.
var functionDirs = map[string]string{
	"LoginFunction":            "login",
	"OAuthCallbackFunction":    "oauth-callback",
	"FollowEventFunction":      "follow-event",
	"TokenRefresherFunction":   "token-refresher",
	"SendWorkerFunction":       "send-worker",
	"FollowerSyncFunction":     "follower-sync",
	"OutcomePublisherFunction": "outcome-publisher",
}

// Targets from issue 9, measured by BenchmarkInit (make bench) on the
// bootstraps built exactly as the Makefile builds them.
const (
	maxInit = 100 * time.Millisecond
	maxSize = 15 << 20
)

// A build is how the bootstraps are built.
type buildMode int

const (
	// forTests builds with the Makefile's tags and linker flags but
	// without -trimpath, so that it reuses the packages go test has just
	// compiled: only the mains are linked. What a bootstrap does does not
	// depend on -trimpath (it only rewrites file names in the binary).
	forTests buildMode = iota
	// asReleased builds exactly as the Makefile does for Lambda
	// (CGO_ENABLED=0 -trimpath -tags lambda.norpc -ldflags="-s -w"): what
	// BenchmarkInit measures.
	asReleased
)

var (
	binDir   string // the built bootstraps: <binDir>/<mode>/<dir>/bootstrap
	repoRoot string
	builds   = [...]func() error{
		forTests:   sync.OnceValue(func() error { return buildAll(forTests) }),
		asReleased: sync.OnceValue(func() error { return buildAll(asReleased) }),
	}
)

func TestMain(m *testing.M) {
	code := func() int {
		dir, err := os.MkdirTemp("", "wxbridge-bootstraps-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		binDir = dir
		return awstest.Run(m)
	}()
	os.Exit(code)
}

// build builds every bootstrap in mode, once per test binary.
func build(mode buildMode) error { return builds[mode]() }

// buildAll builds every function in mode for this machine's GOOS and
// GOARCH, in one go build (which builds them in parallel).
func buildAll(mode buildMode) error {
	wd, err := os.Getwd()
	if err != nil {
		return err
	}
	tpl, err := cfn.Find(wd)
	if err != nil {
		return err
	}
	repoRoot = filepath.Dir(tpl)
	out := filepath.Join(binDir, strconv.Itoa(int(mode)), "out") + string(filepath.Separator)
	args := []string{"build", "-tags", "lambda.norpc", "-ldflags=-s -w", "-o", out}
	if mode == asReleased {
		args = slices.Insert(args, 1, "-trimpath")
	}
	for _, dir := range functionDirs {
		args = append(args, "./functions/"+dir)
	}
	cmd := exec.Command("go", args...)
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+runtime.GOOS, "GOARCH="+runtime.GOARCH)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	for _, dir := range functionDirs {
		if err := os.MkdirAll(filepath.Dir(bootstrapPath(mode, dir)), 0o755); err != nil {
			return err
		}
		if err := os.Rename(filepath.Join(out, dir), bootstrapPath(mode, dir)); err != nil {
			return err
		}
	}
	return nil
}

func bootstrapPath(mode buildMode, dir string) string {
	return filepath.Join(binDir, strconv.Itoa(int(mode)), dir, "bootstrap")
}

// bootstrap returns the binary of the template function logicalID, built
// in mode.
func bootstrap(t testing.TB, mode buildMode, logicalID string) string {
	t.Helper()
	dir, ok := functionDirs[logicalID]
	if !ok {
		t.Fatalf("no functions/ directory known for %s: add it to functionDirs (and the Makefile)", logicalID)
	}
	if err := build(mode); err != nil {
		t.Fatal(err)
	}
	return bootstrapPath(mode, dir)
}

// process is one bootstrap running as in a Lambda execution environment.
type process struct {
	name    string
	api     *runtimeAPI
	cmd     *exec.Cmd
	out     *lines
	started time.Time
	exited  chan struct{}
	waitErr error
	timeout time.Duration
	stopped sync.Once
}

// stop ends the environment: the long poll, then the process.
func (p *process) stop() {
	p.stopped.Do(func() {
		p.api.Close()
		p.cmd.Process.Kill()
		<-p.exited
	})
}

// start runs the bootstrap of logicalID, built in mode, with env (the function's own
// variables) plus what Lambda sets, and returns once it has asked for its
// first invocation, or has failed to start.
func start(t testing.TB, mode buildMode, logicalID string, env map[string]string, timeout time.Duration) *process {
	t.Helper()
	bin := bootstrap(t, mode, logicalID)
	api := newRuntimeAPI(logicalID)
	p := &process{name: logicalID, api: api, out: &lines{}, exited: make(chan struct{}), timeout: timeout}
	vars := map[string]string{
		"AWS_LAMBDA_RUNTIME_API":          api.Addr(),
		"AWS_LAMBDA_FUNCTION_NAME":        logicalID,
		"AWS_LAMBDA_FUNCTION_VERSION":     "$LATEST",
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
		"AWS_LAMBDA_LOG_GROUP_NAME":       "/aws/lambda/" + logicalID,
		"AWS_LAMBDA_LOG_STREAM_NAME":      "2026/01/01/[$LATEST]" + randomHex(16),
		"AWS_LAMBDA_INITIALIZATION_TYPE":  "on-demand",
		"_HANDLER":                        "bootstrap",
		"LAMBDA_TASK_ROOT":                filepath.Dir(bin),
		"TZ":                              ":UTC",
		// The role's credentials, region and (locally) moto.
		"AWS_REGION":            awstest.Region,
		"AWS_DEFAULT_REGION":    awstest.Region,
		"AWS_ACCESS_KEY_ID":     "testing",
		"AWS_SECRET_ACCESS_KEY": "testing",
		"AWS_SESSION_TOKEN":     "testing",
		"AWS_ENDPOINT_URL":      awstest.Endpoint(),
		// Nothing from this machine's AWS setup leaks in.
		"AWS_CONFIG_FILE":             os.DevNull,
		"AWS_SHARED_CREDENTIALS_FILE": os.DevNull,
		"AWS_EC2_METADATA_DISABLED":   "true",
	}
	for k, v := range env {
		vars[k] = v
	}
	p.cmd = exec.Command(bin)
	p.cmd.Dir = filepath.Dir(bin)
	// Only the variables above: the environment Lambda gives is not this
	// shell's.
	p.cmd.Env = []string{}
	for k, v := range vars {
		p.cmd.Env = append(p.cmd.Env, k+"="+v)
	}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.started = time.Now()
	if err := p.cmd.Start(); err != nil {
		api.Close()
		t.Fatalf("start %s: %v", logicalID, err)
	}
	go func() { p.waitErr = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("%s output:\n%s", logicalID, p.out)
		}
	})
	select {
	case <-api.ready:
	case <-api.failed:
	case <-p.exited:
		select {
		case <-api.failed:
		default:
			t.Fatalf("%s exited before asking for an invocation (%v):\n%s", logicalID, p.waitErr, p.out)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("%s did not ask for an invocation within 15 s:\n%s", logicalID, p.out)
	}
	return p
}

// initTime is process start to the first invocation/next request.
func (p *process) initTime() time.Duration {
	p.api.mu.Lock()
	defer p.api.mu.Unlock()
	return p.api.firstNext.Sub(p.started)
}

// invoke delivers event (marshalled unless already []byte) and returns the
// bootstrap's answer, failing the test on a function error.
func (p *process) invoke(t testing.TB, event any) []byte {
	t.Helper()
	res := p.invokeRaw(t, event)
	if res.Err != nil {
		t.Fatalf("%s answered with an error (%s): %s: %s\n%s", p.name, res.ErrorType, res.Err.Type, res.Err.Message, p.out)
	}
	return res.Body
}

func (p *process) invokeRaw(t testing.TB, event any) result {
	t.Helper()
	payload, ok := event.([]byte)
	if !ok {
		var err error
		if payload, err = json.Marshal(event); err != nil {
			t.Fatal(err)
		}
	}
	res, err := p.api.invoke(context.Background(), payload, p.timeout)
	if err != nil {
		t.Fatalf("%s: %v\n%s", p.name, err, p.out)
	}
	return res
}

// lines collects a child's output, safe for the concurrent writes of its
// stdout and stderr.
type lines struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lines) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(b)
}

func (l *lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// records parses every output line as JSON; a line that is not JSON fails
// the test (Lambda's log pipeline and the EMF parser expect one JSON
// document per line).
func (l *lines) records(t testing.TB) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(l.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Errorf("output line is not JSON: %q", sc.Text())
			continue
		}
		out = append(out, rec)
	}
	return out
}
