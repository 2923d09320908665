// Package moto starts a local moto server, which plays DynamoDB, SQS and
// Secrets Manager for the tests and the devstack.
package moto

import (
	_ "embed"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

//go:embed serial.py
var serialLauncher []byte

// ErrMissing means moto_server is not installed.
var ErrMissing = errors.New(`moto_server is not on PATH: install it with pip install 'moto[server]' (or set AWS_ENDPOINT_URL to a running moto)`)

// Server is a running moto server.
type Server struct {
	URL  string
	cmd  *exec.Cmd
	dir  string
	done chan struct{}
}

// Start runs moto on a free loopback port, with requests serialized (see
// serial.py for why), and waits until it answers. The server dies with the
// calling process even if that process is killed.
func Start() (*Server, error) {
	if _, err := exec.LookPath("moto_server"); err != nil {
		return nil, ErrMissing
	}
	python, err := interpreter()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "wxb-moto-")
	if err != nil {
		return nil, err
	}
	launcher := filepath.Join(dir, "serial.py")
	if err := os.WriteFile(launcher, serialLauncher, 0o600); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(python, launcher, "-H", "127.0.0.1", "-p", fmt.Sprint(port))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stderr := &tail{max: 8 << 10}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("moto: start: %w", err)
	}
	s := &Server{URL: fmt.Sprintf("http://127.0.0.1:%d", port), cmd: cmd, dir: dir, done: make(chan struct{})}
	go func() { cmd.Wait(); close(s.done) }()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		select {
		case <-s.done:
			s.Stop()
			return nil, fmt.Errorf("moto: exited at start: %s", stderr)
		default:
		}
		if resp, err := http.Get(s.URL + "/moto-api/"); err == nil {
			resp.Body.Close()
			return s, nil
		}
	}
	s.Stop()
	return nil, fmt.Errorf("moto: no answer on %s within 30s: %s", s.URL, stderr)
}

// Stop kills the server and waits for it to exit.
func (s *Server) Stop() {
	if s.cmd.Process != nil {
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
	}
	os.RemoveAll(s.dir)
}

// interpreter finds the Python that has moto installed: the one named in
// moto_server's own #! line when it is a plain script, else python3 (pyenv
// and similar put a shell shim on PATH).
func interpreter() (string, error) {
	candidates := []string{}
	if p, err := exec.LookPath("moto_server"); err == nil {
		if b, err := os.ReadFile(p); err == nil {
			first, _, _ := strings.Cut(string(b[:min(len(b), 256)]), "\n")
			if py, ok := strings.CutPrefix(first, "#!"); ok && strings.Contains(py, "python") && !strings.Contains(py, " ") {
				candidates = append(candidates, py)
			}
		}
	}
	candidates = append(candidates, "python3", "python")
	for _, c := range candidates {
		if err := exec.Command(c, "-c", "import moto.server").Run(); err == nil {
			return c, nil
		}
	}
	return "", fmt.Errorf("moto: moto_server is on PATH but no python can import moto.server: %w", ErrMissing)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// tail keeps the first bytes a process writes, for error messages.
type tail struct {
	mu  sync.Mutex
	b   strings.Builder
	max int
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if rest := t.max - t.b.Len(); rest > 0 {
		t.b.Write(p[:min(len(p), rest)])
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(t.b.String())
}
