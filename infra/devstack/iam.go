package main

import (
	"fmt"
	"net/http"

	awslambda "github.com/aws/aws-sdk-go-v2/service/lambda"

	"wxbridge/infra/devkit/cfn"
	"wxbridge/infra/devkit/iam"
)

// startIAM puts the IAM check (infra/devkit/iam) in front of the faults
// proxy: every function signs its AWS calls as itself, and a call its
// policy in template.yaml does not allow fails with AccessDeniedException,
// as in AWS, and is logged ("IAM denied"). The functions' Lambda Invoke
// calls go through it too, to the in-process Invoke API (invoke.go). The
// devstack's own calls (setup, the console, the queue and stream pollers
// that play Lambda's event source mappings) are not a function's and go
// straight to moto.
func (s *Stack) startIAM(defs []cfn.Function) error {
	tpl, err := iam.LoadNearest()
	if err != nil {
		return err
	}
	ch := iam.New(tpl, iam.Env{Region: s.aws.Region, Account: account, Ref: func(name string) (string, error) {
		return s.res.resolve(cfn.Value{Ref: name})
	}})
	for _, def := range defs {
		if err := ch.Admit(def.LogicalID); err != nil {
			return fmt.Errorf("IAM policy of %s: %w", def.LogicalID, err)
		}
	}
	invoke := http.NewServeMux()
	s.fns.invokeRoutes(invoke)
	p, err := iam.Start(ch, iam.Options{
		Upstream: s.faults.URL(),
		Handlers: map[string]http.Handler{"lambda": invoke},
		OnDeny: func(d iam.Denial) {
			s.log.Warn("IAM denied", "function", d.Function, "operation", d.Operation, "action", d.Action, "resource", d.Resource)
		},
	})
	if err != nil {
		return fmt.Errorf("IAM check: %w", err)
	}
	s.iam = p
	return nil
}

// functionLambda is the Lambda client function logicalID invokes others
// with: the SDK's own, through the IAM check, to the in-process functions.
func (s *Stack) functionLambda(logicalID string) *awslambda.Client {
	return awslambda.NewFromConfig(s.functionAWS(logicalID))
}
