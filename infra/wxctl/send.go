package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"wxbridge/shared/notify"
)

func init() {
	register("send", command{summary: "enqueue a notification job (flags, or JSON on stdin)", run: runSend})
}

// dataFlag collects repeated -data key=value pairs.
type dataFlag map[string]string

func (d dataFlag) String() string { return fmt.Sprint(map[string]string(d)) }

func (d dataFlag) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return errors.New("want key=value, e.g. thing1=Blue kettle")
	}
	d[k] = val
	return nil
}

const sendUsage = `usage: wxctl send [-queue URL] -id ID -to KIND=VALUE [-template ID [-url URL]] [-subscribe ID [-page PAGE]] -data KEY=VALUE... [-channels template,subscribe] [-expires 24h|RFC3339]
       wxctl send [-queue URL] < job.json

Puts one notification job on the send queue and prints its SQS message id.
Without -id the job is read as JSON from stdin (the format of
schemas/send-job.schema.json). -to KIND is uid, external_id, unionid,
oa_openid or mp_openid. -data applies to every message of the job. The
queue defaults to $WXB_SEND_QUEUE (the stack's SendQueueUrl output).
`

func runSend(ctx context.Context, args []string, std stdio) error {
	fs := flag.NewFlagSet("send", flag.ContinueOnError)
	fs.SetOutput(std.err)
	fs.Usage = func() { fmt.Fprint(std.err, sendUsage); fs.PrintDefaults() }
	queue := fs.String("queue", os.Getenv("WXB_SEND_QUEUE"), "send queue URL")
	id := fs.String("id", "", "job id: the idempotency key (at most 128 characters)")
	to := fs.String("to", "", "recipient as KIND=VALUE, e.g. external_id=8812")
	tpl := fs.String("template", "", "official-account template id (template channel)")
	url := fs.String("url", "", "page the template message opens")
	sub := fs.String("subscribe", "", "mini-program subscribe template id (subscribe channel)")
	page := fs.String("page", "", "mini-program page the subscribe message opens")
	channels := fs.String("channels", "", "channel order, e.g. subscribe,template (default: template first)")
	expires := fs.String("expires", "", "when the job stops being worth sending: a duration from now (24h) or RFC 3339")
	data := dataFlag{}
	fs.Var(data, "data", "KEY=VALUE of the message data (repeat)")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if *queue == "" {
		fmt.Fprintln(std.err, "wxctl send: no queue: pass -queue or set WXB_SEND_QUEUE")
		return errUsage
	}
	var job notify.Job
	var err error
	if *id == "" {
		job, err = jobFromJSON(std.in)
	} else {
		job, err = jobFromFlags(*id, *to, *tpl, *url, *sub, *page, *channels, *expires, data)
	}
	if err != nil {
		return err
	}
	cfg, err := loadAWS(ctx)
	if err != nil {
		return err
	}
	msgID, err := notify.NewClient(sqs.NewFromConfig(cfg), *queue).Enqueue(ctx, job)
	if err != nil {
		return err
	}
	fmt.Fprintln(std.out, msgID)
	return nil
}

func jobFromJSON(in io.Reader) (notify.Job, error) {
	b, err := io.ReadAll(io.LimitReader(in, 1<<20))
	if err != nil {
		return notify.Job{}, err
	}
	if len(strings.TrimSpace(string(b))) == 0 {
		return notify.Job{}, errors.New("no job: pass -id and the other flags, or the job as JSON on stdin")
	}
	return notify.Parse(b)
}

func jobFromFlags(id, to, tpl, url, sub, page, channels, expires string, data map[string]string) (notify.Job, error) {
	job := notify.Job{ID: id}
	kind, value, _ := strings.Cut(to, "=")
	switch kind {
	case "uid":
		job.To.UID = value
	case "external_id":
		job.To.ExternalID = value
	case "unionid":
		job.To.UnionID = value
	case "oa_openid":
		job.To.OAOpenID = value
	case "mp_openid":
		job.To.MPOpenID = value
	default:
		return job, fmt.Errorf("-to %q: want uid, external_id, unionid, oa_openid or mp_openid =VALUE", to)
	}
	if tpl != "" {
		job.Template = &notify.TemplateMessage{TemplateID: tpl, URL: url, Data: data}
	}
	if sub != "" {
		job.Subscribe = &notify.SubscribeMessage{TemplateID: sub, Page: page, Data: data}
	}
	if channels != "" {
		for _, c := range strings.Split(channels, ",") {
			job.Channels = append(job.Channels, notify.Channel(strings.TrimSpace(c)))
		}
	}
	if expires != "" {
		at, err := time.Parse(time.RFC3339, expires)
		if err != nil {
			d, derr := time.ParseDuration(expires)
			if derr != nil || d <= 0 {
				return job, fmt.Errorf("-expires %q: want a duration (24h) or an RFC 3339 time", expires)
			}
			at = time.Now().Add(d).UTC().Truncate(time.Second)
		}
		job.ExpiresAt = &at
	}
	return job, notify.Validate(job)
}
