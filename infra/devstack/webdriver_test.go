package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// browser is a headless Chromium driven through chromedriver's WebDriver
// HTTP API: enough of the protocol for a click-through test, with nothing
// but the standard library.
type browser struct {
	t      *testing.T
	base   string // http://127.0.0.1:<port>/session/<id>
	driver *exec.Cmd
}

const elementKey = "element-6066-11e4-a52e-4f735466cecf"

// openBrowser starts chromedriver and a headless Chromium session. Both come
// from Debian (chromium, chromium-driver); make test installs them.
func openBrowser(t *testing.T) *browser {
	t.Helper()
	driverPath, err := exec.LookPath("chromedriver")
	if err != nil {
		t.Fatal("chromedriver is not installed: apt-get install chromium chromium-driver (make test does this)")
	}
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium is not installed: apt-get install chromium chromium-driver (make test does this)")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command(driverPath, fmt.Sprintf("--port=%d", port))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	b := &browser{t: t, driver: cmd, base: fmt.Sprintf("http://127.0.0.1:%d", port)}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	})
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if resp, err := http.Get(b.base + "/status"); err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("chromedriver did not start")
		}
	}
	var sess struct {
		SessionID string `json:"sessionId"`
	}
	b.do("POST", "/session", map[string]any{"capabilities": map[string]any{"alwaysMatch": map[string]any{
		"browserName": "chrome",
		"goog:chromeOptions": map[string]any{"binary": chromium, "args": []string{
			"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
			"--no-first-run", "--disable-component-update", "--disable-sync", "--window-size=1400,900",
			"--user-data-dir=" + t.TempDir(),
		}},
	}}}, &sess)
	if sess.SessionID == "" {
		t.Fatal("no WebDriver session")
	}
	b.base += "/session/" + sess.SessionID
	t.Cleanup(func() { b.do("DELETE", "", nil, nil) })
	return b
}

// do calls the WebDriver API and decodes "value" into out, failing the
// test on an error answer.
func (b *browser) do(method, path string, body, out any) {
	b.t.Helper()
	if err := b.try(method, path, body, out); err != nil {
		b.t.Fatal(err)
	}
}

// errStale is WebDriver's answer for an element the page has replaced
// (the console re-renders as it polls).
var errStale = fmt.Errorf("stale element reference")

// try calls the WebDriver API and decodes "value" into out.
func (b *browser) try(method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		j, _ := json.Marshal(body)
		rd = bytes.NewReader(j)
	}
	req, _ := http.NewRequest(method, b.base+path, rd)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("webdriver %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var env struct {
		Value json.RawMessage `json:"value"`
	}
	json.Unmarshal(raw, &env)
	if resp.StatusCode != 200 {
		if bytes.Contains(raw, []byte(`"stale element reference"`)) {
			return errStale
		}
		return fmt.Errorf("webdriver %s %s: %d %.300s", method, path, resp.StatusCode, raw)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(env.Value, out); err != nil {
		return fmt.Errorf("webdriver %s %s: %v in %.300s", method, path, err, raw)
	}
	return nil
}

// onElement finds css and runs call on it, finding it again if the page
// replaced it in between.
func (b *browser) onElement(css string, call func(id string) error) {
	b.t.Helper()
	var last error
	b.eventually("a live element "+css, func() bool {
		last = call(b.find(css))
		if last != nil && last != errStale {
			b.t.Fatal(last)
		}
		return last == nil
	})
}

func (b *browser) open(url string) { b.do("POST", "/url", map[string]string{"url": url}, nil) }

// find waits for the first element matching css.
func (b *browser) find(css string) string {
	b.t.Helper()
	var id string
	b.eventually("element "+css, func() bool {
		var els []map[string]string
		if b.try("POST", "/elements", map[string]string{"using": "css selector", "value": css}, &els) != nil {
			return false
		}
		if len(els) > 0 {
			id = els[0][elementKey]
		}
		return id != ""
	})
	return id
}

func (b *browser) click(css string) {
	b.onElement(css, func(id string) error { return b.try("POST", "/element/"+id+"/click", map[string]any{}, nil) })
}

func (b *browser) text(css string) string {
	var s string
	b.onElement(css, func(id string) error { return b.try("GET", "/element/"+id+"/text", nil, &s) })
	return s
}

// waitText waits until the element matching css shows want.
func (b *browser) waitText(css, want string) {
	b.t.Helper()
	b.eventually(fmt.Sprintf("%s to show %q", css, want), func() bool { return strings.Contains(b.text(css), want) })
}

// answerPrompt types text into the page's prompt() and accepts it.
func (b *browser) answerPrompt(text string) {
	b.eventually("a prompt", func() bool {
		req, _ := http.NewRequest("GET", b.base+"/alert/text", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	b.do("POST", "/alert/text", map[string]string{"text": text}, nil)
	b.do("POST", "/alert/accept", map[string]any{}, nil)
}

// eval runs script (a function body) in the page and returns its result.
func (b *browser) eval(script string) any {
	var v any
	b.do("POST", "/execute/sync", map[string]any{"script": script, "args": []any{}}, &v)
	return v
}

func (b *browser) screenshot(path string) {
	var png string
	b.do("GET", "/screenshot", nil, &png)
	raw, err := base64.StdEncoding.DecodeString(png)
	if err != nil {
		b.t.Fatal(err)
	}
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

func (b *browser) eventually(what string, ok func() bool) {
	b.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			b.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(150 * time.Millisecond)
	}
}
