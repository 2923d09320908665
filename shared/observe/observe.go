// Package observe is how functions report: one JSON log line per event via
// log/slog, and CloudWatch Embedded Metric Format (EMF) lines that
// CloudWatch turns into metrics without an API call.
package observe

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/lambdacontext"
)

// Namespace is the CloudWatch namespace of every wxbridge metric.
const Namespace = "wxbridge"

// Logger returns a JSON logger whose lines all carry the function name.
func Logger(w io.Writer, function string) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, nil)).With("function", function)
}

// RequestID is the Lambda request id of ctx, or "" outside Lambda.
func RequestID(ctx context.Context) string {
	if lc, ok := lambdacontext.FromContext(ctx); ok {
		return lc.AwsRequestID
	}
	return ""
}

// Metrics writes EMF lines for one function.
type Metrics struct {
	mu       sync.Mutex
	w        io.Writer
	function string
	now      func() time.Time
}

// NewMetrics returns Metrics writing to w (stdout in Lambda).
func NewMetrics(w io.Writer, function string) *Metrics {
	return &Metrics{w: w, function: function, now: time.Now}
}

// Count records one occurrence of name, with dimensions in addition to the
// function name (for example outcome=created).
func (m *Metrics) Count(name string, dims ...string) {
	m.put(name, "Count", 1, dims)
}

// Value records one measurement v of name in unit (a CloudWatch unit such
// as "Seconds"), with dimensions as for Count.
func (m *Metrics) Value(name, unit string, v float64, dims ...string) {
	m.put(name, unit, v, dims)
}

func (m *Metrics) put(name, unit string, v float64, dims []string) {
	if m == nil {
		return
	}
	rec := map[string]any{"function": m.function, name: v}
	keys := []string{"function"}
	for i := 0; i+1 < len(dims); i += 2 {
		rec[dims[i]] = dims[i+1]
		keys = append(keys, dims[i])
	}
	rec["_aws"] = map[string]any{
		"Timestamp": m.now().UnixMilli(),
		"CloudWatchMetrics": []any{map[string]any{
			"Namespace":  Namespace,
			"Dimensions": [][]string{keys},
			"Metrics":    []any{map[string]string{"Name": name, "Unit": unit}},
		}},
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.w.Write(append(b, '\n'))
}
