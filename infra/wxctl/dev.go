package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"wxbridge/shared/awsenv"
)

// devDefault is where make dev listens unless WXB_DEV_ADDR says otherwise.
const devDefault = "http://127.0.0.1:8080"

// devArgs takes wxctl's own flag off the front of args: --dev (make dev at
// its default address), --dev URL or --dev=URL. Without it, WXB_DEV names
// the devstack. url is "" for a deployed stack. An address without a
// scheme (127.0.0.1:9090, as WXB_DEV_ADDR is written) is http; --dev= with
// nothing after it is --dev, never a deployed stack.
func devArgs(args []string, getenv func(string) string) (url string, rest []string) {
	url = devURLOf(getenv("WXB_DEV"))
	if len(args) == 0 {
		return url, args
	}
	switch a := args[0]; {
	case a == "--dev" || a == "-dev":
		// No command has a ':' in its name: a next argument with one is
		// the address.
		if len(args) > 1 && strings.Contains(args[1], ":") {
			return devURLOf(args[1]), args[2:]
		}
		return devDefault, args[1:]
	case strings.HasPrefix(a, "--dev=") || strings.HasPrefix(a, "-dev="):
		_, v, _ := strings.Cut(a, "=")
		if url = devURLOf(v); url == "" {
			url = devDefault
		}
		return url, args[1:]
	}
	return url, args
}

// devURLOf is a devstack address as given, with http:// when it has no
// scheme and without a trailing slash.
func devURLOf(s string) string {
	s = strings.TrimRight(strings.TrimSpace(s), "/")
	if s != "" && !strings.Contains(s, "://") {
		s = "http://" + s
	}
	return s
}

// devstack is what wxctl reads of the devstack's GET /_dev/config: every
// address, name and credential a command needs.
type devstack struct {
	URL             string              `json:"-"` // where /_dev/config and the Lambda Invoke API are (api_url may add PublicUrl's path)
	AWSEndpointURL  string              `json:"aws_endpoint_url"`
	Region          string              `json:"region"`
	AccessKeyID     string              `json:"aws_access_key_id"`
	SecretAccessKey string              `json:"aws_secret_access_key"`
	Table           string              `json:"table"`
	SendQueueURL    string              `json:"send_queue_url"`
	SyncQueueURL    string              `json:"sync_queue_url"`
	ConfigSecret    string              `json:"apps_secret"`
	PushURL         string              `json:"push_url"`
	Resources       map[string]resource `json:"resources"`
	OA              struct {
		AppID string `json:"appid"`
	} `json:"oa"`
	// Apps are every configured app; an official account's with its push
	// URL.
	Apps []struct {
		AppID   string `json:"appid"`
		PushURL string `json:"push_url"`
	} `json:"apps"`
	TokenSecretPrefix string `json:"token_secret_prefix"`
}

// resource is one of a stack's resources: its type and physical ID (what
// !Ref gives: a queue URL, a secret ARN, an alarm or function name).
type resource struct {
	Type string `json:"type"`
	ID   string `json:"id"`
}

// loadDevstack reads url's /_dev/config.
func loadDevstack(ctx context.Context, url string) (*devstack, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/_dev/config", nil)
	if err != nil {
		return nil, fmt.Errorf("--dev %q: %w", url, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("no devstack answers at %s (is make dev running? WXB_DEV or --dev URL names another address): %w", url, err)
	}
	defer resp.Body.Close()
	var d devstack
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	if err == nil {
		err = json.Unmarshal(body, &d)
	}
	if err == nil && (d.AWSEndpointURL == "" || d.Region == "" || d.AccessKeyID == "") {
		err = errors.New("it names no AWS endpoint, region or credentials (a devstack older than this wxctl?)")
	}
	if err != nil {
		return nil, fmt.Errorf("%s/_dev/config is not a devstack's configuration: %w", url, err)
	}
	d.URL = url
	return &d, nil
}

// use points this process at the devstack: the AWS SDK at its moto, with
// moto's region and credentials (whatever the environment said before),
// and every command's defaults at its resources.
func (d *devstack) use() {
	for k, v := range map[string]string{
		"AWS_ENDPOINT_URL":      d.AWSEndpointURL,
		"AWS_REGION":            d.Region,
		"AWS_ACCESS_KEY_ID":     d.AccessKeyID,
		"AWS_SECRET_ACCESS_KEY": d.SecretAccessKey,
		"WXB_TABLE":             d.Table,
		"WXB_SEND_QUEUE":        d.SendQueueURL,
		"WXB_SYNC_QUEUE":        d.SyncQueueURL,
		"WXB_APP_SECRET":        d.ConfigSecret,
		"WXB_OA_APPID":          d.OA.AppID,
	} {
		os.Setenv(k, v)
	}
	// A session token or a profile of real credentials must not come along.
	os.Unsetenv("AWS_SESSION_TOKEN")
	os.Unsetenv("AWS_PROFILE")
}

type devstackKey struct{}

// withDevstack is ctx carrying the devstack wxctl was pointed at.
func withDevstack(ctx context.Context, d *devstack) context.Context {
	return context.WithValue(ctx, devstackKey{}, d)
}

// devstackOf is the devstack of --dev or WXB_DEV, or nil for a deployed
// stack.
func devstackOf(ctx context.Context) *devstack {
	d, _ := ctx.Value(devstackKey{}).(*devstack)
	return d
}

// errNoRegion and errNoCredentials are what wxctl says at once where the
// AWS SDK would fail each call, the latter only after its retries.
var (
	errNoRegion      = errors.New("no AWS region: set AWS_REGION (or a region in the AWS CLI's profile), or use wxctl --dev with make dev")
	errNoCredentials = errors.New("no AWS credentials: configure the AWS CLI (aws configure, AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; aws sts get-caller-identity tells), or use wxctl --dev with make dev")
)

// loadAWS is the AWS configuration wxctl's commands use: the machine's
// (awsenv.Load: the environment and the AWS CLI's files), or the
// devstack's once --dev has set the environment. A missing region or
// missing credentials is one line, before any call.
func loadAWS(ctx context.Context) (aws.Config, error) {
	cfg, err := awsenv.Load(ctx)
	if err != nil {
		return cfg, err
	}
	if cfg.Region == "" {
		return cfg, errNoRegion
	}
	if cfg.Credentials == nil {
		return cfg, errNoCredentials
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if _, err := cfg.Credentials.Retrieve(ctx); err != nil {
		return cfg, errNoCredentials
	}
	return cfg, nil
}
