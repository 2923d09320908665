package ddb

import (
	"errors"
	"fmt"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

func TestLostRace(t *testing.T) {
	cancelled := func(codes ...string) error {
		var reasons []types.CancellationReason
		for _, c := range codes {
			reasons = append(reasons, types.CancellationReason{Code: aws.String(c)})
		}
		return &types.TransactionCanceledException{CancellationReasons: reasons}
	}
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"condition_failed", fmt.Errorf("put: %w", &types.ConditionalCheckFailedException{}), true},
		{"write_during_a_transaction", &types.TransactionConflictException{}, true},
		{"transaction_condition_failed", cancelled("None", "ConditionalCheckFailed"), true},
		{"transaction_collided", cancelled("TransactionConflict", "None"), true},
		{"transaction_throttled", cancelled("ThrottlingError"), false},
		{"throughput_exceeded", &types.ProvisionedThroughputExceededException{}, false},
		{"other", errors.New("boom"), false},
		{"nil", nil, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := LostRace(c.err); got != c.want {
				t.Fatalf("LostRace(%v) = %v, want %v", c.err, got, c.want)
			}
		})
	}
}
