package handler

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/service/eventbridge"

	"wxbridge/shared/awsenv"
	"wxbridge/shared/observe"
)

// FromEnv builds the outcome-publisher from its environment:
// WXB_OUTCOME_BUS, the outcome bus's name or ARN.
func FromEnv(ctx context.Context, env awsenv.Env) (*Handler, error) {
	vars, err := env.Require("WXB_OUTCOME_BUS")
	if err != nil {
		return nil, err
	}
	return &Handler{
		Bus:     eventbridge.NewFromConfig(env.AWS),
		BusName: vars["WXB_OUTCOME_BUS"],
		Log:     observe.Logger(env.Out, "outcome-publisher"),
		Metrics: observe.NewMetrics(env.Out, "outcome-publisher"),
	}, nil
}

// Build is the function's entry point for awsenv.Main and the devstack: the
// Lambda handler, built from env.
func Build(ctx context.Context, env awsenv.Env) (any, error) {
	h, err := FromEnv(ctx, env)
	if err != nil {
		return nil, err
	}
	return h.Handle, nil
}
