package contract

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

const (
	outcomeSchemaFile = "../../schemas/outcome-event.schema.json"
	examplesDir       = "../../schemas/examples"
)

// statuses are the statuses an outcome event carries.
var statuses = []Status{Sent, Delivered, Blocked, Failed, Undeliverable, Expired, Unknown}

// examples reads the example files whose names start with prefix.
func examples(t *testing.T, prefix string) map[string][]byte {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(examplesDir, prefix+"*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples %s*.json: %v", prefix, err)
	}
	out := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(f)] = b
	}
	return out
}

func generic(t *testing.T, b []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestOutcomeExamples: every example event validates against the schema
// and decodes in Go to the same detail, field for field; its event id is
// the one wxbridge would give the change; together they cover every status.
func TestOutcomeExamples(t *testing.T) {
	schema := compile(t, outcomeSchemaFile)
	seen := map[Status]bool{}
	for name, b := range examples(t, "outcome-") {
		t.Run(name, func(t *testing.T) {
			if err := schema.Validate(generic(t, b)); err != nil {
				t.Fatalf("schema: %v", err)
			}
			ev, err := DecodeEvent(b)
			if err != nil {
				t.Fatal(err)
			}
			o := ev.Detail
			seen[o.Status] = true
			if ev.DetailType != DetailType(o.Status) || o.Final != o.Status.Final() {
				t.Errorf("detail-type %q, final %v for %s", ev.DetailType, o.Final, o.Status)
			}
			if want := OutcomeEventID(o.JobID, o.CreatedAt, o.Status); o.EventID != want {
				t.Errorf("event_id %s, wxbridge would give %s", o.EventID, want)
			}
			// Go keeps every field of the example's detail, and adds none.
			var raw struct{ Detail json.RawMessage }
			json.Unmarshal(b, &raw)
			back, _ := json.Marshal(o)
			if got, want := generic(t, back), generic(t, raw.Detail); !reflect.DeepEqual(got, want) {
				t.Errorf("detail through Go:\n got %s\nwant %s", back, raw.Detail)
			}
		})
	}
	for _, s := range statuses {
		if !seen[s] {
			t.Errorf("no example of %s", s)
		}
	}
}

// TestSendJobExamples: the example jobs are valid to the schema and to Go.
func TestSendJobExamples(t *testing.T) {
	schema := compileSchema(t)
	for name, b := range examples(t, "send-job-") {
		if err := schema.Validate(generic(t, b)); err != nil {
			t.Errorf("%s: schema: %v", name, err)
		}
		if _, err := Parse(b); err != nil {
			t.Errorf("%s: Go: %v", name, err)
		}
	}
}

// jsonFields lists a struct type's JSON field names, and which of them are
// always present (no omitempty).
func jsonFields(t reflect.Type) (all, always []string) {
	for f := range t.Fields() {
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		all = append(all, name)
		if !strings.Contains(opts, "omitempty") {
			always = append(always, name)
		}
	}
	sort.Strings(all)
	sort.Strings(always)
	return all, always
}

// schemaObject is the part of an object schema the comparison reads.
type schemaObject struct {
	Required   []string                   `json:"required"`
	Properties map[string]json.RawMessage `json:"properties"`
}

func (o schemaObject) names() []string {
	var out []string
	for k := range o.Properties {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (o schemaObject) enum(t *testing.T, field string) []string {
	t.Helper()
	var p struct {
		Enum []string `json:"enum"`
	}
	if err := json.Unmarshal(o.Properties[field], &p); err != nil {
		t.Fatal(err)
	}
	sort.Strings(p.Enum)
	return p.Enum
}

func strs[T ~string](in ...T) []string {
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = string(s)
	}
	sort.Strings(out)
	return out
}

// TestOutcomeSchemaIsGos: the schema names exactly the JSON fields of
// Outcome, Try and Recipient, requires exactly those Go always writes, and
// has Go's version, source, statuses, detail-types, channels and outcomes.
func TestOutcomeSchemaIsGos(t *testing.T) {
	b, err := os.ReadFile(outcomeSchemaFile)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		schemaObject
		AllOf []struct {
			If struct {
				Properties struct {
					Detail struct {
						Properties struct {
							Status struct{ Const Status } `json:"status"`
						} `json:"properties"`
					} `json:"detail"`
				} `json:"properties"`
			} `json:"if"`
			Then struct {
				Properties struct {
					DetailType struct{ Const string } `json:"detail-type"`
				} `json:"properties"`
			} `json:"then"`
		} `json:"allOf"`
		Defs struct {
			Outcome   schemaObject `json:"outcome"`
			Try       schemaObject `json:"try"`
			Recipient schemaObject `json:"recipient"`
			Channel   struct {
				Enum []string `json:"enum"`
			} `json:"channel"`
		} `json:"$defs"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		typ    reflect.Type
		schema schemaObject
	}{
		{"outcome", reflect.TypeFor[Outcome](), doc.Defs.Outcome},
		{"try", reflect.TypeFor[Try](), doc.Defs.Try},
		{"recipient", reflect.TypeFor[Recipient](), doc.Defs.Recipient},
		{"event", reflect.TypeFor[Event](), doc.schemaObject},
	} {
		all, always := jsonFields(c.typ)
		names := c.schema.names()
		if c.name == "event" { // the envelope also has EventBridge's fields Go does not read
			names = slices.DeleteFunc(names, func(n string) bool { return !slices.Contains(all, n) })
		}
		if !slices.Equal(all, names) {
			t.Errorf("%s: Go has %v, the schema %v", c.name, all, names)
		}
		req := slices.Sorted(slices.Values(c.schema.Required))
		if !slices.Equal(always, req) {
			t.Errorf("%s: Go always writes %v, the schema requires %v", c.name, always, req)
		}
	}

	var version, source struct{ Const string }
	json.Unmarshal(doc.Defs.Outcome.Properties["version"], &version)
	json.Unmarshal(doc.Properties["source"], &source)
	if version.Const != OutcomeVersion || source.Const != Source {
		t.Errorf("schema version %q source %q, Go %q %q", version.Const, source.Const, OutcomeVersion, Source)
	}
	if got := doc.Defs.Outcome.enum(t, "status"); !slices.Equal(got, strs(statuses...)) || DetailType(InProgress) != "" {
		t.Errorf("schema statuses %v, Go %v", got, strs(statuses...))
	}
	var types []string
	for _, s := range statuses {
		types = append(types, DetailType(s))
	}
	if got := doc.schemaObject.enum(t, "detail-type"); !slices.Equal(got, strs(types...)) {
		t.Errorf("schema detail-types %v, Go %v", got, strs(types...))
	}
	mapped := map[Status]string{}
	for _, a := range doc.AllOf {
		mapped[a.If.Properties.Detail.Properties.Status.Const] = a.Then.Properties.DetailType.Const
	}
	for _, s := range statuses {
		if mapped[s] != DetailType(s) {
			t.Errorf("%s: schema detail-type %q, Go %q", s, mapped[s], DetailType(s))
		}
	}
	if len(mapped) != len(statuses) {
		t.Errorf("schema maps %d statuses to detail-types, Go %d", len(mapped), len(statuses))
	}
	if got := slices.Sorted(slices.Values(doc.Defs.Channel.Enum)); !slices.Equal(got, strs(CustomerService, OASubscribe, Subscribe, Template)) {
		t.Errorf("schema channels %v", got)
	}
	if got := doc.Defs.Try.enum(t, "outcome"); !slices.Equal(got, strs(TrySent, TryFailed, TryUnknown, TrySkipped)) {
		t.Errorf("schema try outcomes %v", got)
	}
}

// TestDecodeRefuses: what the decoders refuse, the schema refuses too.
func TestDecodeRefuses(t *testing.T) {
	schema := compile(t, outcomeSchemaFile)
	base := examples(t, "outcome-sent")["outcome-sent.json"]
	edit := func(f func(ev, detail map[string]any)) []byte {
		var ev map[string]any
		json.Unmarshal(base, &ev)
		f(ev, ev["detail"].(map[string]any))
		b, _ := json.Marshal(ev)
		return b
	}
	for _, tc := range []struct {
		name  string
		event []byte
	}{
		{"version_2", edit(func(_, d map[string]any) { d["version"] = "2" })},
		{"no_version", edit(func(_, d map[string]any) { delete(d, "version") })},
		{"no_event_id", edit(func(_, d map[string]any) { delete(d, "event_id") })},
		{"empty_event_id", edit(func(_, d map[string]any) { d["event_id"] = "" })},
		{"no_job_id", edit(func(_, d map[string]any) { delete(d, "job_id") })},
		{"inprogress", edit(func(_, d map[string]any) { d["status"] = "INPROGRESS" })},
		{"unknown_status", edit(func(_, d map[string]any) { d["status"] = "QUEUED" })},
		{"another_source", edit(func(ev, _ map[string]any) { ev["source"] = "aws.s3" })},
		{"no_source", edit(func(ev, _ map[string]any) { delete(ev, "source") })},
		{"detail_not_an_object", edit(func(ev, _ map[string]any) { ev["detail"] = "SENT" })},
		{"bad_time", edit(func(_, d map[string]any) { d["at"] = "yesterday" })},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := DecodeEvent(tc.event); err == nil {
				t.Error("DecodeEvent accepted it")
			}
			if err := schema.Validate(generic(t, tc.event)); err == nil {
				t.Error("the schema accepted it")
			}
			var ev struct{ Detail json.RawMessage }
			json.Unmarshal(tc.event, &ev)
			if _, err := DecodeOutcome(ev.Detail); err == nil && !strings.Contains(tc.name, "source") {
				t.Error("DecodeOutcome accepted its detail")
			}
		})
	}
	if _, err := DecodeEvent([]byte("not json")); err == nil {
		t.Error("DecodeEvent accepted text")
	}
}

// TestOutcomeEventID: the id is a function of the job, its entry's
// creation and the status alone.
func TestOutcomeEventID(t *testing.T) {
	created := time.Date(2026, 11, 20, 7, 0, 1, 482_000_000, time.UTC)
	id := OutcomeEventID("order-8812-shipped", created, Sent)
	if id != OutcomeEventID("order-8812-shipped", created.In(time.FixedZone("CST", 8*3600)), Sent) {
		t.Error("the same instant in another zone gave another id")
	}
	for _, other := range []string{
		OutcomeEventID("order-8812-shipped", created, Delivered),
		OutcomeEventID("order-8812-shipped", created.Add(time.Millisecond), Sent),
		OutcomeEventID("order-8812-shippe", created, Sent),
		OutcomeEventID("order-8812-shipped\x00", created, Sent),
	} {
		if other == id {
			t.Errorf("two changes share the id %s", id)
		}
	}
}
