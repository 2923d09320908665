package contract

import (
	"encoding/json"
	"slices"
	"testing"
)

// TestChannelsJSON: "channels" is a list or the string "any", and writes
// back the way it was read.
func TestChannelsJSON(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want ChannelList
		any  bool
	}{
		{`"any"`, ChannelList{Any}, true},
		{`["oa_subscribe","template"]`, ChannelList{OASubscribe, Template}, false},
		{`["customer_service"]`, ChannelList{CustomerService}, false},
	} {
		var got ChannelList
		if err := json.Unmarshal([]byte(tc.in), &got); err != nil {
			t.Fatalf("%s: %v", tc.in, err)
		}
		if !slices.Equal(got, tc.want) || got.Any() != tc.any {
			t.Errorf("%s: got %v (any %v), want %v (any %v)", tc.in, got, got.Any(), tc.want, tc.any)
		}
		out, _ := json.Marshal(got)
		if string(out) != tc.in {
			t.Errorf("%s: writes back %s", tc.in, out)
		}
	}
	for _, bad := range []string{`"all"`, `null`, `3`, `["any"]`, `{"any":true}`} {
		var got ChannelList
		if err := json.Unmarshal([]byte(bad), &got); err == nil {
			t.Errorf("%s: read as %v, want an error", bad, got)
		}
	}
}

// TestPlan: the channels a job names, or, by default and for "any", every
// channel it has a message for in the default order.
func TestPlan(t *testing.T) {
	all := `"template":{"template_id":"t","data":{"k":"x"}},"subscribe":{"template_id":"t","data":{"thing1":"x"}},` +
		`"oa_subscribe":{"template_id":"t","data":{"thing1":"x"}},"customer_service":{"text":"hi"}`
	for _, tc := range []struct {
		name string
		job  string
		want []Channel
	}{
		{"default_is_every_message_in_order", `{"id":"a","to":{"uid":"u"},` + all + `}`, []Channel{Template, Subscribe, OASubscribe, CustomerService}},
		{"any_is_every_message", `{"id":"a","to":{"uid":"u"},"customer_service":{"text":"hi"},"oa_subscribe":{"template_id":"t","data":{"thing1":"x"}},"channels":"any"}`, []Channel{OASubscribe, CustomerService}},
		{"named_order_wins", `{"id":"a","to":{"uid":"u"},` + all + `,"channels":["customer_service","template"]}`, []Channel{CustomerService, Template}},
		{"old_jobs_unchanged", `{"id":"a","to":{"uid":"u"},"subscribe":{"template_id":"t","data":{"thing1":"x"}},"template":{"template_id":"t","data":{"k":"x"}}}`, []Channel{Template, Subscribe}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j, err := Parse([]byte(tc.job))
			if err != nil {
				t.Fatal(err)
			}
			if got := j.Plan(); !slices.Equal(got, tc.want) {
				t.Errorf("Plan() = %v, want %v", got, tc.want)
			}
		})
	}
}
