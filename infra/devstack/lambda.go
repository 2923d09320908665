package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/aws/aws-sdk-go-v2/aws"
	awslambda "github.com/aws/aws-sdk-go-v2/service/lambda"
	lambdatypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	followevent "wxbridge/functions/follow-event/handler"
	followersync "wxbridge/functions/follower-sync/handler"
	login "wxbridge/functions/login/handler"
	oauthcallback "wxbridge/functions/oauth-callback/handler"
	outcomepublisher "wxbridge/functions/outcome-publisher/handler"
	sendworker "wxbridge/functions/send-worker/handler"
	tokenrefresher "wxbridge/functions/token-refresher/handler"
	"wxbridge/infra/devkit/cfn"
	"wxbridge/shared/awsenv"
)

// builders are the functions the devstack can run in-process, by their
// logical ID in template.yaml: the same Build each function's main.go hands
// to the Lambda runtime.
var builders = map[string]func(context.Context, awsenv.Env) (any, error){
	"LoginFunction":            login.Build,
	"OAuthCallbackFunction":    oauthcallback.Build,
	"FollowEventFunction":      followevent.Build,
	"TokenRefresherFunction":   tokenrefresher.Build,
	"FollowerSyncFunction":     followersync.Build,
	"SendWorkerFunction":       sendworker.Build,
	"OutcomePublisherFunction": outcomepublisher.Build,
}

// function is one template function running in-process.
type function struct {
	def     cfn.Function
	handler lambda.Handler
}

// invoke runs the function on payload the way Lambda does: JSON in, JSON
// out, a request id and a deadline from the function's timeout.
func (f *function) invoke(ctx context.Context, payload []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(f.def.Timeout)*time.Second)
	defer cancel()
	ctx = lambdacontext.NewContext(ctx, &lambdacontext.LambdaContext{
		AwsRequestID:       requestID(),
		InvokedFunctionArn: fmt.Sprintf("arn:aws:lambda:us-east-1:%s:function:%s", account, f.def.LogicalID),
	})
	return f.handler.Invoke(ctx, payload)
}

func requestID() string {
	b := make([]byte, 16)
	rand.Read(b)
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// functions are the running functions, by logical ID.
type functions struct {
	mu  sync.RWMutex
	fns map[string]*function
	wg  sync.WaitGroup // asynchronous invokes in flight
	log *slog.Logger
}

// Invoke is the Lambda API's Invoke for in-process functions: an
// asynchronous invoke (InvocationType Event) runs in the background and
// answers 202, like Lambda's queue; a synchronous one answers the result;
// DryRun answers 204. invoke.go serves it over HTTP.
func (fs *functions) Invoke(ctx context.Context, in *awslambda.InvokeInput, _ ...func(*awslambda.Options)) (*awslambda.InvokeOutput, error) {
	f, name := fs.lookup(aws.ToString(in.FunctionName)) // invoke.go
	if f == nil {
		return nil, &lambdatypes.ResourceNotFoundException{Message: aws.String("devstack: no function " + name)}
	}
	if in.InvocationType == lambdatypes.InvocationTypeDryRun {
		return &awslambda.InvokeOutput{StatusCode: 204}, nil
	}
	if in.InvocationType == lambdatypes.InvocationTypeEvent {
		fs.wg.Add(1)
		go func() {
			defer fs.wg.Done()
			if _, err := f.invoke(context.WithoutCancel(ctx), in.Payload); err != nil {
				fs.log.Warn("async invoke failed", "function", name, "error", err)
			}
		}()
		return &awslambda.InvokeOutput{StatusCode: 202}, nil
	}
	out, err := f.invoke(ctx, in.Payload)
	if err != nil {
		return &awslambda.InvokeOutput{StatusCode: 200, FunctionError: aws.String("Unhandled"), Payload: functionError(err)}, nil
	}
	return &awslambda.InvokeOutput{StatusCode: 200, Payload: out}, nil
}

// poll feeds one queue's messages to its function as SQS batches, like the
// Lambda event source mapping: messages the function reports as failed (or
// all of them, if it fails) stay in the queue until their visibility times
// out, and SQS moves them to the dead-letter queue after maxReceiveCount.
func (fs *functions) poll(ctx context.Context, client *sqs.Client, f *function, t cfn.QueueTrigger, url, arn string) {
	for ctx.Err() == nil {
		out, err := client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl:                    &url,
			MaxNumberOfMessages:         int32(min(t.BatchSize, 10)),
			WaitTimeSeconds:             1,
			MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameAll},
			MessageAttributeNames:       []string{"All"},
		})
		if err != nil {
			if ctx.Err() == nil {
				fs.log.Warn("poll", "queue", t.Queue, "error", err)
				sleep(ctx, time.Second)
			}
			continue
		}
		if len(out.Messages) == 0 {
			continue
		}
		ev := events.SQSEvent{}
		for _, m := range out.Messages {
			rec := events.SQSMessage{
				MessageId: aws.ToString(m.MessageId), ReceiptHandle: aws.ToString(m.ReceiptHandle), Body: aws.ToString(m.Body),
				Md5OfBody: aws.ToString(m.MD5OfBody), Attributes: m.Attributes, EventSource: "aws:sqs", EventSourceARN: arn, AWSRegion: "us-east-1",
			}
			if len(m.MessageAttributes) > 0 {
				rec.MessageAttributes = map[string]events.SQSMessageAttribute{}
			}
			for k, v := range m.MessageAttributes {
				rec.MessageAttributes[k] = events.SQSMessageAttribute{StringValue: v.StringValue, DataType: aws.ToString(v.DataType)}
			}
			ev.Records = append(ev.Records, rec)
		}
		payload, _ := json.Marshal(ev)
		res, err := f.invoke(ctx, payload)
		if err != nil {
			fs.log.Warn("batch failed", "function", f.def.LogicalID, "messages", len(ev.Records), "error", err)
			continue
		}
		failed := map[string]bool{}
		if t.PartialFailures {
			var resp events.SQSEventResponse
			json.Unmarshal(res, &resp)
			for _, bf := range resp.BatchItemFailures {
				failed[bf.ItemIdentifier] = true
			}
		}
		var del []sqstypes.DeleteMessageBatchRequestEntry
		for i, m := range out.Messages {
			if !failed[aws.ToString(m.MessageId)] {
				del = append(del, sqstypes.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: m.ReceiptHandle})
			}
		}
		if len(del) > 0 {
			if _, err := client.DeleteMessageBatch(context.WithoutCancel(ctx), &sqs.DeleteMessageBatchInput{QueueUrl: &url, Entries: del}); err != nil {
				fs.log.Warn("delete", "queue", t.Queue, "error", err)
			}
		}
	}
}

var rateExpr = regexp.MustCompile(`^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$`)

// every reads a rate() schedule expression.
func every(expr string) (time.Duration, error) {
	m := rateExpr.FindStringSubmatch(expr)
	if m == nil {
		return 0, fmt.Errorf("schedule %q: only rate(N minutes|hours|days) runs locally", expr)
	}
	n, _ := strconv.Atoi(m[1])
	unit := map[string]time.Duration{"minute": time.Minute, "hour": time.Hour, "day": 24 * time.Hour}[strings.TrimSuffix(m[2], "s")]
	return time.Duration(n) * unit, nil
}

// schedule runs f with input every period until ctx ends.
func (fs *functions) schedule(ctx context.Context, f *function, period time.Duration, input []byte) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := f.invoke(ctx, input); err != nil {
				fs.log.Warn("scheduled run failed", "function", f.def.LogicalID, "error", err)
			}
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// logTap keeps the latest function log lines for the console and passes
// the others on, leaving out metric (EMF) lines.
type logTap struct {
	mu      sync.Mutex
	out     io.Writer
	capture io.Writer
	lines   []string
	buf     bytes.Buffer
}

const keepLines = 200

func (l *logTap) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	for {
		line, err := l.buf.ReadString('\n')
		if err != nil {
			l.buf.Reset()
			l.buf.WriteString(line)
			break
		}
		if l.capture != nil {
			io.WriteString(l.capture, line)
		}
		if strings.Contains(line, `"_aws":`) {
			continue
		}
		l.lines = append(l.lines, strings.TrimSpace(line))
		if len(l.lines) > keepLines {
			l.lines = l.lines[len(l.lines)-keepLines:]
		}
		if l.out != nil {
			io.WriteString(l.out, line)
		}
	}
	return len(p), nil
}

// recent returns up to n of the latest lines, newest last.
func (l *logTap) recent(n int) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines[max(0, len(l.lines)-n):]...)
}
