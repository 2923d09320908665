package awsenv

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

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
// environment and hands it to the Lambda runtime, or logs why it cannot and
// exits (Lambda reports an init error).
func Main(function string, build func(context.Context, Env) (any, error)) {
	ctx := context.Background()
	log := observe.Logger(os.Stdout, function)
	env, err := FromProcess(ctx)
	if err != nil {
		log.Error("init", "error", err)
		os.Exit(1)
	}
	h, err := build(ctx, env)
	if err != nil {
		log.Error("init", "error", err)
		os.Exit(1)
	}
	lambda.Start(h)
}
