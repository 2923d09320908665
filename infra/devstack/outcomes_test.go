package main

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"wxbridge/shared/contract"
)

// devConfig reads GET /_dev/config.
func devConfig(t testing.TB, s *Stack) DevConfig {
	t.Helper()
	resp, err := http.Get(s.URL + "/_dev/config")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var cfg DevConfig
	if err := json.NewDecoder(resp.Body).Decode(&cfg); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// businessSQS is an SQS client made only from /_dev/config, as a business
// system (or the AWS CLI with the exports make dev prints) makes one.
func businessSQS(cfg DevConfig) *sqs.Client {
	return sqs.NewFromConfig(aws.Config{
		Region: cfg.Region, BaseEndpoint: aws.String(cfg.AWSEndpointURL),
		Credentials: credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, ""),
	})
}

// outcomeEvents reads the outcome queue at url, deleting what it reads, until
// the events of job reach the statuses want (in that order, once each) or
// 20 s pass; it returns job's events and fails the test on anything else.
func outcomeEvents(t *testing.T, q *sqs.Client, url, job string, want ...contract.Status) []contract.Event {
	t.Helper()
	var got []contract.Event
	var statuses []contract.Status
	for deadline := time.Now().Add(20 * time.Second); len(statuses) < len(want) && time.Now().Before(deadline); {
		out, err := q.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: &url, MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range out.Messages {
			ev, err := contract.DecodeEvent([]byte(*m.Body))
			if err != nil {
				t.Fatalf("outcome queue: %v in %s", err, *m.Body)
			}
			if _, err := q.DeleteMessage(context.Background(), &sqs.DeleteMessageInput{QueueUrl: &url, ReceiptHandle: m.ReceiptHandle}); err != nil {
				t.Fatal(err)
			}
			if ev.Detail.JobID == job {
				got, statuses = append(got, ev), append(statuses, ev.Detail.Status)
			}
		}
	}
	if !slices.Equal(statuses, want) {
		t.Fatalf("outcome events of %s: %v, want %v", job, statuses, want)
	}
	return got
}
