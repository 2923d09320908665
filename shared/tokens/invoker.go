package tokens

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	lambdatypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"
)

// Invoker delivers a RefreshRequest to the token-refresher without waiting
// for it to run: the Source learns the outcome by reading the secret.
type Invoker interface {
	Request(ctx context.Context, req RefreshRequest) error
}

// LambdaInvoke is the one Lambda call LambdaInvoker makes.
type LambdaInvoke interface {
	Invoke(ctx context.Context, in *lambda.InvokeInput, opts ...func(*lambda.Options)) (*lambda.InvokeOutput, error)
}

// LambdaInvoker invokes the deployed token-refresher asynchronously
// (InvocationType Event): Lambda queues the request and answers 202 at once.
type LambdaInvoker struct {
	Client   LambdaInvoke
	Function string // name or ARN of the token-refresher
}

// Request queues req for the refresher.
func (l LambdaInvoker) Request(ctx context.Context, req RefreshRequest) error {
	payload, err := json.Marshal(req)
	if err != nil {
		return err
	}
	out, err := l.Client.Invoke(ctx, &lambda.InvokeInput{
		FunctionName:   aws.String(l.Function),
		InvocationType: lambdatypes.InvocationTypeEvent,
		Payload:        payload,
	})
	if err != nil {
		return fmt.Errorf("tokens: invoke %s: %w", l.Function, err)
	}
	if out.StatusCode != 202 {
		return fmt.Errorf("tokens: invoke %s: status %d, want 202", l.Function, out.StatusCode)
	}
	return nil
}

// Local runs the refresher in this process, in its own goroutine, the way an
// asynchronous Lambda invoke runs it elsewhere. Tests and the devstack use
// it: moto can store a Lambda function but runs invocations only in Docker,
// which the tests and the devstack do not have, and the in-process refresher
// is the same handler code the deployed function runs.
type Local struct {
	// Run is the refresher, typically its handler's Handle.
	Run func(ctx context.Context, req RefreshRequest) error

	wg       sync.WaitGroup
	mu       sync.Mutex
	requests []RefreshRequest
}

// Request starts Run(req) and returns at once. Run gets a context that the
// caller's cancellation does not reach, like an invocation that outlives
// its caller.
func (l *Local) Request(ctx context.Context, req RefreshRequest) error {
	l.mu.Lock()
	l.requests = append(l.requests, req)
	l.mu.Unlock()
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		l.Run(context.WithoutCancel(ctx), req) // errors are the refresher's to log, as in Lambda
	}()
	return nil
}

// Wait blocks until every run started so far has returned.
func (l *Local) Wait() { l.wg.Wait() }

// Requests returns the requests received so far.
func (l *Local) Requests() []RefreshRequest {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]RefreshRequest(nil), l.requests...)
}
