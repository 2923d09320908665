package awsenv

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/aws"
	awslambda "github.com/aws/aws-sdk-go-v2/service/lambda"

	"wxbridge/shared/observe"
)

// Invoker is the Lambda API call a function uses to invoke another.
type Invoker interface {
	Invoke(ctx context.Context, in *awslambda.InvokeInput, opts ...func(*awslambda.Options)) (*awslambda.InvokeOutput, error)
}

// Env is everything a function is configured from: its environment
// variables, the AWS configuration, where its logs and metrics go and how it
// invokes other functions. In Lambda it is the process's (FromProcess); the
// devstack gives each function it runs in-process its own, built from
// template.yaml, with an Invoker that runs the other functions in-process.
type Env struct {
	Vars   map[string]string
	AWS    aws.Config
	Out    io.Writer
	Lambda Invoker
}

// FromProcess is the environment of a function running in Lambda.
func FromProcess(ctx context.Context) (Env, error) {
	cfg, err := Load(ctx)
	if err != nil {
		return Env{}, err
	}
	vars := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			vars[k] = v
		}
	}
	return Env{Vars: vars, AWS: cfg, Out: os.Stdout, Lambda: awslambda.NewFromConfig(cfg)}, nil
}

// Get returns the variable name, or "".
func (e Env) Get(name string) string { return e.Vars[name] }

// Require reads variables that must be set, naming every missing one.
func (e Env) Require(names ...string) (map[string]string, error) {
	out := make(map[string]string, len(names))
	var missing []string
	for _, n := range names {
		if out[n] = e.Vars[n]; out[n] == "" {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("awsenv: environment variables not set: %s", strings.Join(missing, ", "))
	}
	return out, nil
}

// Main is a function's whole main: it builds the handler from the process
// environment and hands it to the Lambda runtime, or logs why it cannot,
// reports it to the runtime API as an init error and exits.
func Main(function string, build func(context.Context, Env) (any, error)) {
	ctx := context.Background()
	log := observe.Logger(os.Stdout, function)
	env, err := FromProcess(ctx)
	if err == nil {
		var h any
		if h, err = build(ctx, env); err == nil {
			lambda.Start(h)
			return
		}
	}
	log.Error("init", "outcome", "init_error", "error", err)
	if rerr := ReportInitError(os.Getenv("AWS_LAMBDA_RUNTIME_API"), err); rerr != nil {
		log.Error("init", "outcome", "init_error_not_reported", "error", rerr)
	}
	os.Exit(1)
}

// ReportInitError posts err to the Lambda runtime API at api (host:port,
// AWS_LAMBDA_RUNTIME_API) as an init error, so that the invocation fails
// with the function's own message (a missing variable, an incomplete
// secret) rather than a bare "Runtime exited with error: exit status 1".
// aws-lambda-go has no call for it. An empty api (not in Lambda) does
// nothing.
func ReportInitError(api string, err error) error {
	if api == "" {
		return nil
	}
	body, _ := json.Marshal(map[string]any{"errorMessage": err.Error(), "errorType": "InitError"})
	req, rerr := http.NewRequest(http.MethodPost, "http://"+api+"/2018-06-01/runtime/init/error", bytes.NewReader(body))
	if rerr != nil {
		return rerr
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Lambda-Runtime-Function-Error-Type", "InitError")
	resp, rerr := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if rerr != nil {
		return rerr
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("awsenv: runtime API answered the init error with %s", resp.Status)
	}
	return nil
}
