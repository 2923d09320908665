package observe

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/lambdacontext"
)

func TestCountWritesEMF(t *testing.T) {
	var buf bytes.Buffer
	m := NewMetrics(&buf, "login")
	m.now = func() time.Time { return time.UnixMilli(1795000000123) }
	m.Count("Logins", "outcome", "created")
	var rec struct {
		AWS struct {
			Timestamp         int64
			CloudWatchMetrics []struct {
				Namespace  string
				Dimensions [][]string
				Metrics    []struct{ Name, Unit string }
			}
		} `json:"_aws"`
		Function string `json:"function"`
		Outcome  string `json:"outcome"`
		Logins   int    `json:"Logins"`
	}
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("not JSON: %v: %s", err, buf.String())
	}
	cw := rec.AWS.CloudWatchMetrics
	if rec.AWS.Timestamp != 1795000000123 || len(cw) != 1 || cw[0].Namespace != Namespace ||
		len(cw[0].Dimensions) != 1 || len(cw[0].Dimensions[0]) != 2 || cw[0].Metrics[0].Name != "Logins" {
		t.Fatalf("EMF record = %+v", rec)
	}
	if rec.Function != "login" || rec.Outcome != "created" || rec.Logins != 1 {
		t.Fatalf("values = %+v", rec)
	}
}

func TestValueWritesEMFWithUnit(t *testing.T) {
	var buf bytes.Buffer
	m := NewMetrics(&buf, "token-refresher")
	m.Value("TokenAge", "Seconds", 301.5, "appid", "wx1")
	var rec struct {
		AWS struct {
			CloudWatchMetrics []struct {
				Dimensions [][]string
				Metrics    []struct{ Name, Unit string }
			}
		} `json:"_aws"`
		TokenAge float64 `json:"TokenAge"`
		AppID    string  `json:"appid"`
	}
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("not JSON: %v: %s", err, buf.String())
	}
	cw := rec.AWS.CloudWatchMetrics
	if len(cw) != 1 || cw[0].Metrics[0].Name != "TokenAge" || cw[0].Metrics[0].Unit != "Seconds" ||
		len(cw[0].Dimensions[0]) != 2 || rec.TokenAge != 301.5 || rec.AppID != "wx1" {
		t.Fatalf("EMF record = %s", buf.String())
	}
}

func TestLoggerAddsTheRequestFromTheContext(t *testing.T) {
	var buf bytes.Buffer
	log := Logger(&buf, "fn")
	ctx := lambdacontext.NewContext(context.Background(), &lambdacontext.LambdaContext{AwsRequestID: "req-1"})
	ctx = With(ctx, "message_id", "m-1")
	ctx = With(ctx, "job_id", "j-1")
	log.InfoContext(ctx, "send", "outcome", "SENT")
	log.Info("no context")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	var first, second map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(lines[1]), &second); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"function": "fn", "request_id": "req-1", "message_id": "m-1", "job_id": "j-1", "outcome": "SENT"} {
		if first[k] != want {
			t.Errorf("%s = %v, want %q (line %s)", k, first[k], want, lines[0])
		}
	}
	if _, ok := second["request_id"]; ok {
		t.Errorf("a line logged without a context carries a request id: %s", lines[1])
	}
}
