package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
)

// TestAttack14FollowersAppID: wxctl followers start --appid naming an app
// that is no official account of the configuration (not configured, a
// mini program, a website app, an official account's appid in upper case,
// with spaces) says so and what the appid is, and starts nothing; the
// configured second account starts with either flag spelling.
func TestAttack14FollowersAppID(t *testing.T) {
	table, queue := followersEnv(t)
	t.Setenv("WXB_TABLE", table)
	t.Setenv("WXB_SYNC_QUEUE", queue)
	t.Setenv("WXB_OA_APPID", "")
	const oa1, oa2, mp, web = "wx00000000000000a1", "wx00000000000000a2", "wx00000000000000b1", "wx00000000000000c1"
	sm := secretsmanager.New(secretsmanager.Options{Region: "us-east-1", BaseEndpoint: aws.String(followersMotoURL),
		Credentials: credentials.NewStaticCredentialsProvider("testing", "testing", "")})
	secret, err := sm.CreateSecret(context.Background(), &secretsmanager.CreateSecretInput{
		Name: aws.String(strings.NewReplacer("/", "-").Replace(t.Name()) + "-config"),
		SecretString: aws.String(`{"official_accounts":[{"appid":"` + oa1 + `","secret":"s1"},{"appid":"` + oa2 + `","secret":"s2"}],` +
			`"mini_program":{"appid":"` + mp + `","secret":"s3"},"website_apps":[{"appid":"` + web + `","secret":"s4"}]}`),
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
	for appid, what := range map[string]string{
		"wx00000000000000f1":  "no app of the configuration has this appid",
		mp:                    "it is a mini program",
		web:                   "it is a website app",
		strings.ToUpper(oa2):  "no app of the configuration",
		" " + oa2:             "no app of the configuration",
		"wx00000000000000a1 ": "no app of the configuration",
	} {
		code, out, errOut := wx("followers", "start", "--appid", appid)
		if code != 1 || out != "" || !strings.Contains(errOut, "is not an official account of the configuration") || !strings.Contains(errOut, what) {
			t.Errorf("start --appid %q: %d %q %q, want an error saying %q", appid, code, out, errOut, what)
		}
	}
	if code, out, _ := wx("followers", "list"); code != 0 || strings.Count(out, "no backfill has run yet") != 2 {
		t.Errorf("a refused start started a run: %d %q", code, out)
	}
	for _, flag := range []string{"--appid", "-appid"} {
		code, out, errOut := wx("followers", "start", flag, oa2)
		if code != 0 || !strings.Contains(out, "run ") {
			t.Errorf("start %s %s: %d %q %q", flag, oa2, code, out, errOut)
		}
	}
}
