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

	"wxbridge/shared/contract"
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

const sendUsage = `usage: wxctl send [-queue URL] -id ID -to KIND=VALUE [-from APPID,...] [-template ID [-url URL]] [-subscribe ID [-page PAGE]]
                  [-oa-subscribe ID [-oa-page URL]] [-text TEXT | -card KEY=VALUE...] -data KEY=VALUE...
                  [-channels template,subscribe,oa_subscribe,customer_service|any] [-expires 24h|RFC3339]
       wxctl send [-queue URL] < job.json

Puts one notification job on the send queue and prints its SQS message id.
Without -id the job is read as JSON from stdin (the format of
schemas/send-job.schema.json). -to KIND is uid, external_id, unionid,
oa_openid, mp_openid or phone (E.164, +8613800000000). -from names the
apps to send from, at most one of each kind (default: the default apps);
oa_openid and mp_openid are openids in those apps. -data applies to every
template message of the job
(template, subscribe, oa_subscribe). -text or -card (title, appid, pagepath,
thumb_media_id) is the customer-service message. -channels any lets
wxbridge choose the cheapest channel that can reach the person. The queue
defaults to $WXB_SEND_QUEUE (the stack's SendQueueUrl output).
`

// sendFlags are the job's parts as flags.
type sendFlags struct {
	id, to, from, channels, expires string
	tpl, url                        string // template
	sub, page                       string // subscribe
	oaSub, oaPage                   string // oa_subscribe
	text                            string // customer_service
	card, data                      dataFlag
}

func runSend(ctx context.Context, args []string, std stdio) error {
	fs := flag.NewFlagSet("send", flag.ContinueOnError)
	fs.SetOutput(std.err)
	fs.Usage = func() { fmt.Fprint(std.err, sendUsage); fs.PrintDefaults() }
	queue := fs.String("queue", os.Getenv("WXB_SEND_QUEUE"), "send queue URL")
	f := sendFlags{card: dataFlag{}, data: dataFlag{}}
	fs.StringVar(&f.id, "id", "", "job id: the idempotency key (at most 128 characters)")
	fs.StringVar(&f.to, "to", "", "recipient as KIND=VALUE, e.g. external_id=8812 or phone=+8613800000000")
	fs.StringVar(&f.from, "from", "", "appids to send from, comma-separated, at most one of each kind (default: the default apps)")
	fs.StringVar(&f.tpl, "template", "", "official-account template id (template channel)")
	fs.StringVar(&f.url, "url", "", "page the template message opens")
	fs.StringVar(&f.sub, "subscribe", "", "mini-program subscribe template id (subscribe channel)")
	fs.StringVar(&f.page, "page", "", "mini-program page the subscribe message opens")
	fs.StringVar(&f.oaSub, "oa-subscribe", "", "official-account subscribe-notification template id (oa_subscribe channel)")
	fs.StringVar(&f.oaPage, "oa-page", "", "web page (URL) the subscribe notification opens")
	fs.StringVar(&f.text, "text", "", "customer-service text message (customer_service channel)")
	fs.Var(f.card, "card", "KEY=VALUE of a customer-service mini-program card: title, appid, pagepath, thumb_media_id (repeat)")
	fs.StringVar(&f.channels, "channels", "", "channel order, e.g. subscribe,template, or any (default: template, subscribe, oa_subscribe, customer_service)")
	fs.StringVar(&f.expires, "expires", "", "when the job stops being worth sending: a duration from now (24h) or RFC 3339")
	fs.Var(f.data, "data", "KEY=VALUE of the message data (repeat)")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if *queue == "" {
		fmt.Fprintln(std.err, "wxctl send: no queue: pass -queue or set WXB_SEND_QUEUE")
		return errUsage
	}
	var job notify.Job
	var err error
	if f.id == "" {
		job, err = jobFromJSON(std.in)
	} else {
		job, err = jobFromFlags(f)
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

func jobFromFlags(f sendFlags) (notify.Job, error) {
	job := notify.Job{ID: f.id}
	kind, value, _ := strings.Cut(f.to, "=")
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
	case "phone":
		job.To.Phone = value
	default:
		return job, fmt.Errorf("-to %q: want uid, external_id, unionid, oa_openid, mp_openid or phone =VALUE", f.to)
	}
	if f.from != "" {
		for _, appid := range strings.Split(f.from, ",") {
			job.From = append(job.From, strings.TrimSpace(appid))
		}
	}
	if f.tpl != "" {
		job.Template = &notify.TemplateMessage{TemplateID: f.tpl, URL: f.url, Data: f.data}
	}
	if f.sub != "" {
		job.Subscribe = &notify.SubscribeMessage{TemplateID: f.sub, Page: f.page, Data: f.data}
	}
	if f.oaSub != "" {
		job.OASubscribe = &notify.OASubscribeMessage{TemplateID: f.oaSub, Page: f.oaPage, Data: f.data}
	}
	if f.text != "" || len(f.card) > 0 {
		job.CustomerService = &notify.CustomerServiceMessage{Text: f.text}
		if len(f.card) > 0 {
			card, err := cardFrom(f.card)
			if err != nil {
				return job, err
			}
			job.CustomerService.MiniProgramPage = card
		}
	}
	switch strings.TrimSpace(f.channels) {
	case "":
	case string(notify.Any):
		job.Channels = contract.ChannelList{notify.Any}
	default:
		for _, c := range strings.Split(f.channels, ",") {
			job.Channels = append(job.Channels, notify.Channel(strings.TrimSpace(c)))
		}
	}
	if f.expires != "" {
		at, err := time.Parse(time.RFC3339, f.expires)
		if err != nil {
			d, derr := time.ParseDuration(f.expires)
			if derr != nil || d <= 0 {
				return job, fmt.Errorf("-expires %q: want a duration (24h) or an RFC 3339 time", f.expires)
			}
			at = time.Now().Add(d).UTC().Truncate(time.Second)
		}
		job.ExpiresAt = &at
	}
	return job, notify.Validate(job)
}

// cardFrom reads -card's KEY=VALUE pairs as a mini-program card.
func cardFrom(kv map[string]string) (*contract.MiniProgramCard, error) {
	var c contract.MiniProgramCard
	for k, v := range kv {
		switch k {
		case "title":
			c.Title = v
		case "appid":
			c.AppID = v
		case "pagepath":
			c.PagePath = v
		case "thumb_media_id":
			c.ThumbMediaID = v
		default:
			return nil, fmt.Errorf("-card %s: want title, appid, pagepath or thumb_media_id", k)
		}
	}
	return &c, nil
}
