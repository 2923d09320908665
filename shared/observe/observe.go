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

// Logger returns a JSON logger whose lines all carry the function name and,
// when logged with a context (InfoContext and its relatives), the Lambda
// request id and whatever With put in that context: call sites never attach
// them by hand.
func Logger(w io.Writer, function string) *slog.Logger {
	return slog.New(contextHandler{slog.NewJSONHandler(w, nil)}).With("function", function)
}

// contextHandler adds the request's attributes carried by the context.
type contextHandler struct{ slog.Handler }

func (h contextHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := RequestID(ctx); id != "" {
		r.AddAttrs(slog.String("request_id", id))
	}
	if attrs, ok := ctx.Value(attrsKey{}).([]slog.Attr); ok {
		r.AddAttrs(attrs...)
	}
	return h.Handler.Handle(ctx, r)
}

func (h contextHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return contextHandler{h.Handler.WithAttrs(attrs)}
}

func (h contextHandler) WithGroup(name string) slog.Handler {
	return contextHandler{h.Handler.WithGroup(name)}
}

type attrsKey struct{}

// With returns a context whose log lines (through a Logger, logged with the
// context) also carry args, given as to slog.Logger.With: for example the
// SQS message id, or the job id, for everything logged about that message.
func With(ctx context.Context, args ...any) context.Context {
	old, _ := ctx.Value(attrsKey{}).([]slog.Attr)
	r := slog.NewRecord(time.Time{}, 0, "", 0)
	r.Add(args...)
	attrs := append([]slog.Attr(nil), old...)
	r.Attrs(func(a slog.Attr) bool { attrs = append(attrs, a); return true })
	return context.WithValue(ctx, attrsKey{}, attrs)
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
