package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"wxbridge/infra/devkit/moto"
	"wxbridge/shared/notify"
)

var (
	motoOnce sync.Once
	motoURL  string
	motoErr  error
)

// motoQueue starts moto once for the package (or uses AWS_ENDPOINT_URL),
// points the AWS SDK at it and returns a client and a fresh queue.
func motoQueue(t *testing.T) (*sqs.Client, string) {
	t.Helper()
	motoOnce.Do(func() {
		if motoURL = getenv("AWS_ENDPOINT_URL"); motoURL != "" {
			return
		}
		var srv *moto.Server
		srv, motoErr = moto.Start()
		if motoErr == nil {
			motoURL = srv.URL // stopped with the test process (Pdeathsig)
		}
	})
	if motoErr != nil {
		t.Fatal(motoErr)
	}
	t.Setenv("AWS_ENDPOINT_URL", motoURL)
	t.Setenv("AWS_ACCESS_KEY_ID", "testing")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "testing")
	t.Setenv("AWS_REGION", "us-east-1")
	c := sqs.New(sqs.Options{Region: "us-east-1", BaseEndpoint: aws.String(motoURL), Credentials: credentials.NewStaticCredentialsProvider("testing", "testing", "")})
	out, err := c.CreateQueue(context.Background(), &sqs.CreateQueueInput{QueueName: aws.String(strings.ReplaceAll(t.Name(), "/", "-"))})
	if err != nil {
		t.Fatal(err)
	}
	return c, *out.QueueUrl
}

func receive(t *testing.T, c *sqs.Client, url string) (string, notify.Job) {
	t.Helper()
	out, err := c.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: &url, MaxNumberOfMessages: 10})
	if err != nil || len(out.Messages) != 1 {
		t.Fatalf("receive: %v, %d messages", err, len(out.Messages))
	}
	job, err := notify.Parse([]byte(*out.Messages[0].Body))
	if err != nil {
		t.Fatal(err)
	}
	return *out.Messages[0].MessageId, job
}

func TestSend(t *testing.T) {
	c, url := motoQueue(t)
	t.Run("flags", func(t *testing.T) {
		var out, errOut bytes.Buffer
		code := run(context.Background(), []string{"send", "-queue", url, "-id", "order-8812", "-to", "external_id=8812",
			"-template", "tpl-oa", "-subscribe", "tpl-mp", "-data", "thing1=Blue kettle", "-data", "phrase2=已发货",
			"-channels", "subscribe,template", "-expires", "24h"}, stdio{strings.NewReader(""), &out, &errOut})
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut.String())
		}
		id, job := receive(t, c, url)
		if strings.TrimSpace(out.String()) != id {
			t.Fatalf("printed %q, queued %q", out.String(), id)
		}
		if job.ID != "order-8812" || job.To.ExternalID != "8812" || job.Subscribe.Data["phrase2"] != "已发货" ||
			job.Channels[0] != notify.Subscribe || job.ExpiresAt == nil {
			t.Fatalf("job = %+v", job)
		}
	})
	t.Run("oa_subscribe_customer_service_and_any", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			args []string
			ok   func(notify.Job) bool
		}{
			{"text", []string{"-oa-subscribe", "tpl-oa-sub", "-oa-page", "https://shop.example.com/o/8812", "-data", "thing1=Blue kettle",
				"-text", "Your kettle is on its way", "-channels", "any"}, func(j notify.Job) bool {
				return j.Channels.Any() && j.OASubscribe.TemplateID == "tpl-oa-sub" && j.OASubscribe.Page == "https://shop.example.com/o/8812" &&
					j.OASubscribe.Data["thing1"] == "Blue kettle" && j.CustomerService.Text == "Your kettle is on its way" && j.Template == nil
			}},
			{"card", []string{"-card", "title=Your order", "-card", "appid=wxmp0000000000001", "-card", "pagepath=pages/order?id=8812",
				"-card", "thumb_media_id=MEDIA1", "-channels", "customer_service"}, func(j notify.Job) bool {
				c := j.CustomerService.MiniProgramPage
				return c != nil && c.Title == "Your order" && c.PagePath == "pages/order?id=8812" && c.ThumbMediaID == "MEDIA1" &&
					j.CustomerService.Text == "" && len(j.Channels) == 1 && j.Channels[0] == notify.CustomerService
			}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				var out, errOut bytes.Buffer
				args := append([]string{"send", "-queue", url, "-id", "cs-" + tc.name, "-to", "external_id=8812"}, tc.args...)
				if code := run(context.Background(), args, stdio{strings.NewReader(""), &out, &errOut}); code != 0 {
					t.Fatalf("exit %d: %s", code, errOut.String())
				}
				if _, job := receive(t, c, url); !tc.ok(job) {
					t.Fatalf("job = %+v", job)
				}
			})
		}
		var out, errOut bytes.Buffer
		code := run(context.Background(), []string{"send", "-queue", url, "-id", "x", "-to", "external_id=1", "-card", "colour=red"},
			stdio{strings.NewReader(""), &out, &errOut})
		if code != 1 || !strings.Contains(errOut.String(), "colour") {
			t.Fatalf("an unknown card field: exit %d, %q", code, errOut.String())
		}
	})
	t.Run("from_and_phone", func(t *testing.T) {
		var out, errOut bytes.Buffer
		code := run(context.Background(), []string{"send", "-queue", url, "-id", "order-8816", "-to", "phone=+8613800000000",
			"-from", "wx5a0dbe0c0de00004, wx5a0dbe0c0de00003", "-template", "tpl-oa", "-data", "thing1=Red kettle"}, stdio{strings.NewReader(""), &out, &errOut})
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut.String())
		}
		if _, job := receive(t, c, url); job.To.Phone != "+8613800000000" || len(job.From) != 2 || job.From[0] != "wx5a0dbe0c0de00004" || job.From[1] != "wx5a0dbe0c0de00003" {
			t.Fatalf("job = %+v", job)
		}
		for _, bad := range [][]string{{"-to", "phone=13800000000"}, {"-to", "external_id=1", "-from", "my-account"}} {
			var out, errOut bytes.Buffer
			args := append([]string{"send", "-queue", url, "-id", "x", "-template", "t", "-data", "a=b"}, bad...)
			if code := run(context.Background(), args, stdio{strings.NewReader(""), &out, &errOut}); code != 1 || strings.Contains(errOut.String(), "13800000000") {
				t.Errorf("%v: exit %d, %q", bad, code, errOut.String())
			}
		}
	})
	t.Run("json_on_stdin", func(t *testing.T) {
		body := `{"id":"j2","to":{"uid":"01H"},"template":{"template_id":"t","data":{"thing1":"x"}}}`
		var out, errOut bytes.Buffer
		t.Setenv("WXB_SEND_QUEUE", url)
		if code := run(context.Background(), []string{"send"}, stdio{strings.NewReader(body), &out, &errOut}); code != 0 {
			t.Fatalf("exit %d: %s", code, errOut.String())
		}
		id, job := receive(t, c, url)
		if strings.TrimSpace(out.String()) != id || job.ID != "j2" {
			t.Fatalf("printed %q, queued %q %+v", out.String(), id, job)
		}
	})
	t.Run("invalid_jobs_are_refused_naming_the_field", func(t *testing.T) {
		for _, tc := range []struct {
			args  []string
			stdin string
			field string
		}{
			{[]string{"-id", "x", "-to", "external_id=1", "-subscribe", "t", "-data", "thing1=" + strings.Repeat("长", 21)}, "", "subscribe.data.thing1"},
			{nil, `{"id":"x","to":{"uid":"a","unionid":"b"},"template":{"template_id":"t","data":{"a":"b"}}}`, "to"},
		} {
			var out, errOut bytes.Buffer
			code := run(context.Background(), append([]string{"send", "-queue", url}, tc.args...), stdio{strings.NewReader(tc.stdin), &out, &errOut})
			if code != 1 || !strings.Contains(errOut.String(), tc.field) || out.Len() != 0 {
				t.Fatalf("exit %d, out %q, err %q (want the field %s)", code, out.String(), errOut.String(), tc.field)
			}
		}
		got, _ := c.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: &url})
		if len(got.Messages) != 0 {
			t.Fatal("an invalid job was queued")
		}
	})
	t.Run("no_queue_is_a_usage_error", func(t *testing.T) {
		t.Setenv("WXB_SEND_QUEUE", "")
		var out, errOut bytes.Buffer
		if code := run(context.Background(), []string{"send", "-id", "x"}, stdio{strings.NewReader(""), &out, &errOut}); code != 2 {
			t.Fatalf("exit %d", code)
		}
	})
}

func getenv(k string) string { return strings.TrimSpace(os.Getenv(k)) }
