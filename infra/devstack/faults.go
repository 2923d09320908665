package main

import (
	"fmt"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"

	"wxbridge/infra/devkit/awsfault"
)

// startFaults puts an awsfault proxy in front of the AWS endpoint. The
// functions' AWS calls go through it, so that /_dev/faults can make them
// fail on the wire; the devstack's own calls (setup, the console, the
// queue pollers that play Lambda's event source mappings) go straight to
// moto.
func (s *Stack) startFaults() error {
	p, err := awsfault.Start(s.AWSURL)
	if err != nil {
		return fmt.Errorf("AWS faults proxy: %w", err)
	}
	s.faults = p
	return nil
}

// functionAWS is the AWS configuration function logicalID is built with:
// the devstack's, signed as that function, through the IAM check (iam.go)
// and then the faults proxy.
func (s *Stack) functionAWS(logicalID string) aws.Config {
	return s.iam.Config(s.aws, logicalID)
}

// faultRoutes adds the AWS faults' control API: POST /_dev/faults arms a
// rule (201 and the rule), GET lists the rules with how many times each
// fired, DELETE clears them (204). See docs/devstack.md.
func (s *Stack) faultRoutes(mux *http.ServeMux) {
	mux.Handle("/_dev/faults", s.faults.Control())
}
