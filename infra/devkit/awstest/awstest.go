// Package awstest gives tests real AWS semantics through moto: one
// moto_server per test binary on a free loopback port (or the endpoint in
// AWS_ENDPOINT_URL), and per-test tables, queues and secrets created from
// the same template.yaml definitions the stack deploys.
package awstest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"wxbridge/infra/devkit/cfn"
	"wxbridge/infra/devkit/moto"
)

// Region is the region every local resource lives in.
const Region = "us-east-1"

var (
	endpoint string
	template *cfn.Template
)

// Main runs a test binary's tests with moto available: it starts
// moto_server unless AWS_ENDPOINT_URL names one, runs the tests and stops
// moto. Call it from TestMain.
func Main(m *testing.M) {
	os.Exit(run(m))
}

// Run is Main for a TestMain with more to clean up after the tests: it
// returns the exit code instead of exiting.
func Run(m *testing.M) int { return run(m) }

func run(m *testing.M) int {
	tpl, err := cfn.LoadNearest()
	if err != nil {
		fmt.Fprintln(os.Stderr, "awstest:", err)
		return 1
	}
	template = tpl
	if ep := os.Getenv("AWS_ENDPOINT_URL"); ep != "" {
		endpoint = ep
		return m.Run()
	}
	srv, err := moto.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "awstest:", err)
		return 1
	}
	defer srv.Stop()
	endpoint = srv.URL
	return m.Run()
}

// Endpoint is the moto URL of this test binary.
func Endpoint() string { return endpoint }

// Config returns an AWS configuration that talks to moto, with calls
// counted by counter when it is not nil. It keeps the SDK's standard
// retries, as in Lambda: a loaded moto sometimes drops a connection.
func Config(counter *Counter) aws.Config {
	if endpoint == "" {
		panic("awstest: call awstest.Main from TestMain")
	}
	cfg := aws.Config{
		Region:       Region,
		Credentials:  credentials.NewStaticCredentialsProvider("testing", "testing", ""),
		BaseEndpoint: aws.String(endpoint),
	}
	if counter != nil {
		cfg.HTTPClient = &http.Client{Transport: counter}
	}
	return cfg
}

// Name returns a unique resource name for the test.
func Name(t testing.TB, prefix string) string {
	b := make([]byte, 4)
	rand.Read(b)
	// Queue and table names allow only [A-Za-z0-9_-] (and '.' for tables).
	n := strings.Map(func(r rune) rune {
		if r == '_' || r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, t.Name())
	if len(n) > 40 {
		n = n[:40]
	}
	return fmt.Sprintf("%s-%s-%s", prefix, n, hex.EncodeToString(b))
}

// Table creates a table from the template's "Table" resource and returns
// its name. It is deleted when the test ends.
func Table(t testing.TB) string {
	t.Helper()
	name := Name(t, "wxb")
	def, err := template.Table("Table", name)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	db := dynamodb.NewFromConfig(Config(nil))
	// The name is this test's own: "in use" is the SDK's retry of a
	// CreateTable whose first answer a loaded moto was too slow to give.
	var inUse *ddbtypes.ResourceInUseException
	if _, err := db.CreateTable(ctx, def.Create); err != nil && !errors.As(err, &inUse) {
		t.Fatalf("create table: %v", err)
	}
	if def.TTL != nil {
		if _, err := db.UpdateTimeToLive(ctx, def.TTL); err != nil && !strings.Contains(err.Error(), "already enabled") {
			t.Fatalf("enable TTL: %v", err)
		}
	}
	t.Cleanup(func() { db.DeleteTable(context.Background(), &dynamodb.DeleteTableInput{TableName: aws.String(name)}) })
	return name
}

// Secret creates a secret holding value as JSON and returns its ARN.
func Secret(t testing.TB, value any) string {
	t.Helper()
	b, err := json.Marshal(value)
	if err != nil {
		t.Fatal(err)
	}
	sm := secretsmanager.NewFromConfig(Config(nil))
	out, err := sm.CreateSecret(context.Background(), &secretsmanager.CreateSecretInput{
		Name: aws.String(Name(t, "wxb")), SecretString: aws.String(string(b)),
	})
	if err != nil {
		t.Fatalf("create secret: %v", err)
	}
	t.Cleanup(func() {
		sm.DeleteSecret(context.Background(), &secretsmanager.DeleteSecretInput{SecretId: out.ARN, ForceDeleteWithoutRecovery: aws.Bool(true)})
	})
	return *out.ARN
}

// Counter is an http.RoundTripper that counts AWS requests by operation
// (the X-Amz-Target header, e.g. "DynamoDB_20120810.GetItem" counts as
// "GetItem").
type Counter struct {
	mu     sync.Mutex
	counts map[string]int
}

// RoundTrip counts and forwards the request.
func (c *Counter) RoundTrip(r *http.Request) (*http.Response, error) {
	op := r.Header.Get("X-Amz-Target")
	if i := strings.LastIndexByte(op, '.'); i >= 0 {
		op = op[i+1:]
	}
	c.mu.Lock()
	if c.counts == nil {
		c.counts = map[string]int{}
	}
	c.counts[op]++
	c.mu.Unlock()
	return http.DefaultTransport.RoundTrip(r)
}

// Counts returns a copy of the counts and resets them.
func (c *Counter) Counts() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.counts
	c.counts = map[string]int{}
	return out
}

// Queue creates the template's AWS::SQS::Queue logicalID for the test, with
// its dead-letter queue and redrive policy, and returns its URL. Queues are
// deleted when the test ends.
func Queue(t testing.TB, logicalID string) string {
	t.Helper()
	url, _ := queue(t, logicalID)
	return url
}

func queue(t testing.TB, logicalID string) (url, arn string) {
	def, err := template.Queue(logicalID)
	if err != nil {
		t.Fatal(err)
	}
	attrs := def.Attributes
	if def.DeadLetter != "" {
		_, dlqARN := queue(t, def.DeadLetter)
		policy, _ := json.Marshal(map[string]any{"deadLetterTargetArn": dlqARN, "maxReceiveCount": def.MaxReceiveCount})
		attrs["RedrivePolicy"] = string(policy)
	}
	ctx := context.Background()
	client := sqs.NewFromConfig(Config(nil))
	out, err := client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(Name(t, logicalID)), Attributes: attrs})
	if err != nil {
		t.Fatalf("create queue %s: %v", logicalID, err)
	}
	t.Cleanup(func() { client.DeleteQueue(context.Background(), &sqs.DeleteQueueInput{QueueUrl: out.QueueUrl}) })
	got, err := client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: out.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	if err != nil {
		t.Fatalf("queue %s attributes: %v", logicalID, err)
	}
	return *out.QueueUrl, got.Attributes[string(sqstypes.QueueAttributeNameQueueArn)]
}
