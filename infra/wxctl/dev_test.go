package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// bareMachine gives the test a machine without any AWS configuration: no
// region, no credentials, no AWS CLI files, no instance metadata (which the
// SDK would otherwise ask a link-local address for), and no devstack.
// What --dev sets is put back after the test.
func bareMachine(t *testing.T) {
	t.Helper()
	for _, k := range []string{"AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
		"AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN",
		"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
		"WXB_DEV", "WXB_TABLE", "WXB_SEND_QUEUE", "WXB_SYNC_QUEUE", "WXB_APP_SECRET", "WXB_OA_APPID", "WXB_STACK"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	none := filepath.Join(t.TempDir(), "none")
	t.Setenv("AWS_CONFIG_FILE", none)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", none)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
}

// wx runs wxctl in-process.
func wx(args ...string) (code int, out, errOut string) {
	var o, e bytes.Buffer
	code = run(context.Background(), args, stdio{strings.NewReader(""), &o, &e})
	return code, o.String(), e.String()
}

func TestDevArgs(t *testing.T) {
	cases := []struct {
		args      []string
		env       string
		url, rest string
	}{
		{[]string{"doctor"}, "", "", "doctor"},
		{[]string{"--dev", "doctor"}, "", devDefault, "doctor"},
		{[]string{"--dev", "http://127.0.0.1:9090/", "doctor"}, "", "http://127.0.0.1:9090", "doctor"},
		{[]string{"--dev=http://127.0.0.1:9090", "send", "-id", "x"}, "", "http://127.0.0.1:9090", "send -id x"},
		{[]string{"-dev", "followers", "status"}, "", devDefault, "followers status"},
		{[]string{"doctor"}, "http://127.0.0.1:7070/", "http://127.0.0.1:7070", "doctor"},
		{[]string{"--dev", "doctor"}, "http://127.0.0.1:7070", devDefault, "doctor"}, // the flag wins
		{[]string{"doctor", "--dev"}, "", "", "doctor --dev"},                        // a command's arguments are its own
	}
	for _, tc := range cases {
		url, rest := devArgs(tc.args, func(string) string { return tc.env })
		if url != tc.url || strings.Join(rest, " ") != tc.rest {
			t.Errorf("devArgs(%q, WXB_DEV=%q) = %q, %q; want %q, %q", tc.args, tc.env, url, rest, tc.url, tc.rest)
		}
	}
}

// TestNoRegionNoCredentials: on a machine without AWS configuration, every
// command says what is missing in one line, at once, not after the SDK's
// retries.
func TestNoRegionNoCredentials(t *testing.T) {
	bareMachine(t)
	send := []string{"send", "-queue", "http://127.0.0.1:1/000000000000/q", "-id", "j1", "-to", "external_id=1", "-template", "t", "-data", "a=b"}
	for _, tc := range []struct {
		name   string
		region string
		args   []string
		want   error
	}{
		{"send_without_region", "", send, errNoRegion},
		{"doctor_without_region", "", []string{"doctor", "-stack", "wxbridge-dev"}, errNoRegion},
		{"send_without_credentials", "us-east-1", send, errNoCredentials},
		{"followers_without_credentials", "us-east-1", []string{"followers", "status", "-table", "t", "-queue", "q", "-appid", "wx1"}, errNoCredentials},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("AWS_REGION", tc.region)
			start := time.Now()
			code, out, errOut := wx(tc.args...)
			if code != 1 || out != "" || errOut != "wxctl: "+tc.want.Error()+"\n" {
				t.Fatalf("exit %d, out %q, err %q; want exit 1 and the one line %q", code, out, errOut, tc.want)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("took %s to say so", d)
			}
		})
	}
}

func TestDevWithoutDevstack(t *testing.T) {
	bareMachine(t)
	code, out, errOut := wx("--dev", "http://127.0.0.1:1", "doctor")
	if code != 1 || out != "" || !strings.HasPrefix(errOut, "wxctl: no devstack answers at http://127.0.0.1:1 (is make dev running?") || strings.Count(errOut, "\n") != 1 {
		t.Fatalf("exit %d, out %q, err %q", code, out, errOut)
	}
}
