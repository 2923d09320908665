package contract

import (
	"errors"
	"strings"
	"testing"
)

// TestAttackChannelJobs: jobs for the new channels that a careless or
// hostile business might enqueue are refused by Parse, naming the field;
// the edge cases that are valid stay valid.
func TestAttackChannelJobs(t *testing.T) {
	const to = `"id":"j","to":{"uid":"u"}`
	const oa = `"oa_subscribe":{"template_id":"t","data":{"thing1":"x"}}`
	const cs = `"customer_service":{"text":"hi"}`
	for _, tc := range []struct {
		name, job, field string // field "" when the job is valid
	}{
		{"any_in_capitals", `{` + to + `,` + cs + `,"channels":"ANY"}`, "channels"},
		{"any_with_a_space", `{` + to + `,` + cs + `,"channels":"any "}`, "channels"},
		{"any_inside_a_list", `{` + to + `,` + cs + `,"channels":["customer_service","any"]}`, "channels[1]"},
		{"empty_list", `{` + to + `,` + cs + `,"channels":[]}`, "channels"},
		{"channels_null", `{` + to + `,` + cs + `,"channels":null}`, "channels"},
		{"a_channel_without_its_message", `{` + to + `,` + cs + `,"channels":["oa_subscribe"]}`, "oa_subscribe"},
		{"a_channel_twice", `{` + to + `,` + cs + `,"channels":["customer_service","customer_service"]}`, "channels[1]"},
		{"an_unknown_channel", `{` + to + `,` + cs + `,"channels":["sms"]}`, "channels[0]"},
		{"any_without_a_message", `{` + to + `,"channels":"any"}`, "template"},
		{"text_and_card", `{` + to + `,"customer_service":{"text":"hi","miniprogrampage":{"title":"t","appid":"wx","pagepath":"p","thumb_media_id":"m"}}}`, "customer_service"},
		{"empty_text", `{` + to + `,"customer_service":{"text":""}}`, "customer_service"},
		{"card_without_thumb", `{` + to + `,"customer_service":{"miniprogrampage":{"title":"t","appid":"wx","pagepath":"p"}}}`, "customer_service.miniprogrampage.thumb_media_id"},
		{"text_of_513_characters", `{` + to + `,"customer_service":{"text":"` + strings.Repeat("字", MaxTextLength+1) + `"}}`, "customer_service.text"},
		{"text_not_a_string", `{` + to + `,"customer_service":{"text":42}}`, "customer_service.text"},
		{"oa_data_over_its_type", `{` + to + `,"oa_subscribe":{"template_id":"t","data":{"thing1":"` + strings.Repeat("x", 21) + `"}}}`, "oa_subscribe.data.thing1"},
		{"oa_page_not_a_url", `{` + to + `,"oa_subscribe":{"template_id":"t","page":"javascript:alert(1)","data":{"thing1":"x"}}}`, "oa_subscribe.page"},
		{"oa_unknown_field", `{` + to + `,"oa_subscribe":{"template_id":"t","url":"https://a.example","data":{"thing1":"x"}}}`, "oa_subscribe.url"},
		{"any_with_every_message", `{` + to + `,` + oa + `,` + cs + `,"channels":"any"}`, ""},
		{"text_of_512_characters", `{` + to + `,"customer_service":{"text":"` + strings.Repeat("字", MaxTextLength) + `"}}`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j, err := Parse([]byte(tc.job))
			if tc.field == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field {
				t.Fatalf("err = %v, want a FieldError on %s", err, tc.field)
			}
			if j.ID != "j" {
				t.Errorf("the refused job lost its id: %+v", j)
			}
		})
	}
}
