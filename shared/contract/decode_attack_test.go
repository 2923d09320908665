package contract

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
)

// The attacks on DecodeEvent and DecodeOutcome: hostile event bodies. What
// a decoder accepts must say one thing, the thing a rule on the bus and the
// schema see: its detail-type is its status's, final is the status's,
// event_id has the shape consumers deduplicate on.

var eventIDShape = regexp.MustCompile(`^[0-9a-f]{32}$`)

// coherent reports what is wrong with an event DecodeEvent accepted.
func coherent(ev Event) string {
	o := ev.Detail
	switch {
	case ev.Source != Source:
		return "source " + ev.Source
	case o.Version != OutcomeVersion:
		return "version " + o.Version
	case o.JobID == "":
		return "no job id"
	case !eventIDShape.MatchString(o.EventID):
		return "event_id " + o.EventID
	case DetailType(o.Status) == "" || ev.DetailType != DetailType(o.Status):
		return "detail-type " + ev.DetailType + " with status " + string(o.Status)
	case o.Final != o.Status.Final():
		return "final that is not the status's"
	}
	return ""
}

func TestAttackDecodeHostileEvents(t *testing.T) {
	schema := compile(t, outcomeSchemaFile)
	base := examples(t, "outcome-sent")["outcome-sent.json"]
	edit := func(f func(ev, detail map[string]any)) string {
		var ev map[string]any
		json.Unmarshal(base, &ev)
		f(ev, ev["detail"].(map[string]any))
		b, _ := json.Marshal(ev)
		return string(b)
	}
	raw := func(old, new string) string { return strings.Replace(string(base), old, new, 1) }
	for _, tc := range []struct{ name, body string }{
		{"detail_type_of_another_status", edit(func(ev, _ map[string]any) { ev["detail-type"] = "Notification Delivered" })},
		{"no_detail_type", edit(func(ev, _ map[string]any) { delete(ev, "detail-type") })},
		{"sent_said_final", edit(func(_, d map[string]any) { d["final"] = true })},
		{"failed_said_not_final", edit(func(ev, d map[string]any) {
			ev["detail-type"], d["status"], d["reason"] = "Notification Failed", "FAILED", "x"
		})},
		{"event_id_not_hex", edit(func(_, d map[string]any) { d["event_id"] = "order-8812-shipped" })},
		{"event_id_upper_case", edit(func(_, d map[string]any) { d["event_id"] = strings.ToUpper(d["event_id"].(string)) })},
		{"status_lower_case", edit(func(_, d map[string]any) { d["status"] = "sent" })},
		{"status_as_number", edit(func(_, d map[string]any) { d["status"] = 1 })},
		{"version_as_number", edit(func(_, d map[string]any) { d["version"] = 1 })},
		{"detail_null", edit(func(ev, _ map[string]any) { ev["detail"] = nil })},
		{"detail_a_list", edit(func(ev, d map[string]any) { ev["detail"] = []any{d} })},
		{"detail_as_a_string_of_json", edit(func(ev, d map[string]any) { b, _ := json.Marshal(d); ev["detail"] = string(b) })},
		{"attempts_past_int64", raw(`"attempts": 1`, `"attempts": 1e400`)},
		{"trailing_second_event", string(base) + string(base)},
		{"a_list_of_events", "[" + string(base) + "]"},
		{"empty", ""},
		{"null", "null"},
		// encoding/json matches keys without regard to case and keeps the
		// last: a second STATUS that rules and the schema never see.
		{"status_again_in_upper_case", raw(`"status": "SENT",`, `"status": "SENT", "STATUS": "FAILED",`)},
		{"source_in_upper_case_only", raw(`"source": "wxbridge"`, `"SOURCE": "wxbridge"`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := DecodeEvent([]byte(tc.body))
			if err != nil {
				return
			}
			if why := coherent(ev); why != "" {
				t.Errorf("DecodeEvent accepted an incoherent event (%s): %+v", why, ev)
			}
			var doc any
			if json.Unmarshal([]byte(tc.body), &doc) == nil && schema.Validate(doc) != nil && tc.name != "source_in_upper_case_only" {
				t.Errorf("DecodeEvent accepted what the schema refuses: %.200s", tc.body)
			}
		})
	}
}

// Every truncation of a valid event is refused, and none panics.
func TestAttackDecodeTruncatedEvents(t *testing.T) {
	for name, b := range examples(t, "outcome-") {
		if _, err := DecodeEvent(b); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for n := range len(b) - 1 {
			if _, err := DecodeEvent(b[:n]); err == nil && strings.TrimSpace(string(b[n:])) != "" {
				t.Fatalf("%s cut at %d was accepted", name, n)
			}
		}
	}
}
