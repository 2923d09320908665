package contract

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

const schemaFile = "../../schemas/send-job.schema.json"

// compileSchema compiles the job contract with a real JSON Schema
// (2020-12) implementation, formats asserted.
func compileSchema(t *testing.T) *jsonschema.Schema { return compile(t, schemaFile) }

// compile compiles the schema in file, formats asserted.
func compile(t *testing.T, file string) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	name := filepath.Base(file)
	if err := c.AddResource(name, doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile(name)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// base is a valid job; cases change one thing in it.
const base = `{"id":"order-8812-shipped","to":{"external_id":"8812"},
 "template":{"template_id":"tpl-oa","url":"https://shop.example.com/o/8812","miniprogram":{"appid":"wx5a0dbe0c0de00001","pagepath":"pages/o?id=8812"},"data":{"thing1":"Blue kettle","keyword2":"anything at all, template lines are cut by WeChat"}},
 "subscribe":{"template_id":"tpl-mp","page":"pages/o?id=8812","miniprogram_state":"formal","lang":"zh_CN","data":{"thing1":"Blue kettle"}},
 "oa_subscribe":{"template_id":"tpl-oas","page":"https://shop.example.com/o/8812","miniprogram":{"appid":"wx5a0dbe0c0de00001","pagepath":"pages/o?id=8812"},"data":{"thing1":"Blue kettle","phrase2":"已发货"}},
 "customer_service":{"text":"Your Blue kettle is on its way."},
 "channels":["template","subscribe"],"expires_at":"2026-11-22T00:00:00Z"}`

// card is a valid customer-service mini-program card.
func card() map[string]any {
	return map[string]any{"title": "Your order", "appid": "wx5a0dbe0c0de00001", "pagepath": "pages/o?id=8812", "thumb_media_id": "MEDIA1"}
}

// with returns base with the JSON at path (dot-separated) replaced by v, or
// removed when v is nil.
func with(t *testing.T, path string, v any) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(base), &m); err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(path, ".")
	cur := m
	for _, p := range parts[:len(parts)-1] {
		cur = cur[p].(map[string]any)
	}
	if v == nil {
		delete(cur, parts[len(parts)-1])
	} else {
		cur[parts[len(parts)-1]] = v
	}
	b, _ := json.Marshal(m)
	return string(b)
}

func data(k, v string) map[string]any { return map[string]any{k: v} }

// TestSchemaAndGoAgree feeds the same jobs to the JSON Schema file and to
// Parse: both must accept the valid ones and refuse the invalid ones, and
// Go must name the offending field.
func TestSchemaAndGoAgree(t *testing.T) {
	schema := compileSchema(t)
	long := strings.Repeat("x", 129)
	cases := []struct {
		name  string
		job   string
		field string // "" for a valid job
	}{
		{"valid_full", base, ""},
		{"valid_template_only", `{"id":"a","to":{"oa_openid":"o1"},"template":{"template_id":"t","data":{"keyword1":"x"}}}`, ""},
		{"valid_no_channels", with(t, "channels", nil), ""},
		{"valid_subscribe_only", `{"id":"a","to":{"uid":"01H"},"subscribe":{"template_id":"t","data":{"thing1":"x"}}}`, ""},
		{"valid_id_128", with(t, "id", strings.Repeat("界", 128)), ""},
		{"valid_offset_time", with(t, "expires_at", "2026-11-22T08:00:00.5+08:00"), ""},
		{"missing_id", with(t, "id", nil), "id"},
		{"empty_id", with(t, "id", ""), "id"},
		{"id_too_long", with(t, "id", long), "id"},
		{"id_not_string", with(t, "id", 42), "id"},
		{"no_recipient", with(t, "to", map[string]any{}), "to"},
		{"two_recipients", with(t, "to", map[string]any{"uid": "a", "unionid": "b"}), "to"},
		{"unknown_recipient_key", with(t, "to", map[string]any{"email": "a@b"}), "to.email"},
		{"recipient_too_long", with(t, "to", map[string]any{"uid": long}), "to.uid"},
		{"no_message", with(t, "template", nil) + "", ""}, // replaced below
		{"channel_without_message", `{"id":"a","to":{"uid":"u"},"subscribe":{"template_id":"t","data":{"thing1":"x"}},"channels":["template"]}`, "template"},
		{"unknown_channel", with(t, "channels", []any{"sms"}), "channels[0]"},
		{"repeated_channel", with(t, "channels", []any{"template", "template"}), "channels[1]"},
		{"empty_channels", with(t, "channels", []any{}), "channels"},
		{"unknown_field", with(t, "priority", "high"), "priority"},
		{"template_without_id", with(t, "template.template_id", nil), "template.template_id"},
		{"template_url_not_http", with(t, "template.url", "javascript:alert(1)"), "template.url"},
		{"template_empty_data", with(t, "template.data", map[string]any{}), "template.data"},
		{"template_empty_value", with(t, "template.data", data("thing1", "")), "template.data.thing1"},
		{"template_bad_key", with(t, "template.data", data("thing 1", "x")), "template.data.thing 1"},
		{"template_value_not_string", with(t, "template.data", map[string]any{"thing1": 5}), "template.data.thing1"},
		{"miniprogram_without_appid", with(t, "template.miniprogram", map[string]any{"pagepath": "p"}), "template.miniprogram.appid"},
		{"bad_state", with(t, "subscribe.miniprogram_state", "beta"), "subscribe.miniprogram_state"},
		{"bad_lang", with(t, "subscribe.lang", "fr_FR"), "subscribe.lang"},
		{"expires_not_rfc3339", with(t, "expires_at", "2026-11-22 00:00:00"), "expires_at"},
		{"expires_bad_month", with(t, "expires_at", "2026-13-22T00:00:00Z"), "expires_at"},

		// The official account's subscribe notifications and customer-service
		// messages, and "channels": "any".
		{"valid_any", with(t, "channels", "any"), ""},
		{"valid_all_four_in_order", with(t, "channels", []any{"customer_service", "oa_subscribe", "subscribe", "template"}), ""},
		{"valid_oa_subscribe_only", `{"id":"a","to":{"oa_openid":"o1"},"oa_subscribe":{"template_id":"t","data":{"thing1":"x"}},"channels":["oa_subscribe"]}`, ""},
		{"valid_customer_service_only", `{"id":"a","to":{"oa_openid":"o1"},"customer_service":{"text":"hi"},"channels":"any"}`, ""},
		{"valid_card", with(t, "customer_service", map[string]any{"miniprogrampage": card()}), ""},
		{"valid_card_with_empty_text", with(t, "customer_service", map[string]any{"text": "", "miniprogrampage": card()}), ""},
		{"valid_text_512_characters", with(t, "customer_service", map[string]any{"text": strings.Repeat("字", 512)}), ""},
		{"any_inside_a_list", with(t, "channels", []any{"template", "any"}), "channels[1]"},
		{"any_alone_in_a_list", with(t, "channels", []any{"any"}), "channels[0]"},
		{"channels_other_string", with(t, "channels", "all"), "channels"},
		{"channels_a_number", with(t, "channels", 3), "channels"},
		{"channels_an_object", with(t, "channels", map[string]any{"any": true}), "channels"},
		{"oa_subscribe_listed_without_message", `{"id":"a","to":{"uid":"u"},"template":{"template_id":"t","data":{"k":"x"}},"channels":["template","oa_subscribe"]}`, "oa_subscribe"},
		{"customer_service_listed_without_message", `{"id":"a","to":{"uid":"u"},"template":{"template_id":"t","data":{"k":"x"}},"channels":["customer_service"]}`, "customer_service"},
		{"oa_subscribe_without_id", with(t, "oa_subscribe.template_id", nil), "oa_subscribe.template_id"},
		{"oa_subscribe_without_data", with(t, "oa_subscribe.data", nil), "oa_subscribe.data"},
		{"oa_subscribe_page_not_a_url", with(t, "oa_subscribe.page", "pages/o?id=8812"), "oa_subscribe.page"},
		{"oa_subscribe_miniprogram_without_appid", with(t, "oa_subscribe.miniprogram", map[string]any{"pagepath": "p"}), "oa_subscribe.miniprogram.appid"},
		{"oa_subscribe_unknown_field", with(t, "oa_subscribe.url", "https://a.example"), "oa_subscribe.url"},
		{"oa_subscribe_thing_too_long", with(t, "oa_subscribe.data", data("thing1", strings.Repeat("字", 21))), "oa_subscribe.data.thing1"},
		{"oa_subscribe_phrase_not_chinese", with(t, "oa_subscribe.data", data("phrase2", "shipped")), "oa_subscribe.data.phrase2"},
		{"oa_subscribe_value_not_string", with(t, "oa_subscribe.data", map[string]any{"thing1": true}), "oa_subscribe.data.thing1"},
		{"customer_service_empty", with(t, "customer_service", map[string]any{}), "customer_service"},
		{"customer_service_empty_text", with(t, "customer_service", map[string]any{"text": ""}), "customer_service"},
		{"customer_service_text_and_card", with(t, "customer_service", map[string]any{"text": "hi", "miniprogrampage": card()}), "customer_service"},
		{"customer_service_text_too_long", with(t, "customer_service", map[string]any{"text": strings.Repeat("字", 513)}), "customer_service.text"},
		{"customer_service_unknown_type", with(t, "customer_service", map[string]any{"image": map[string]any{"media_id": "m"}}), "customer_service.image"},
		{"card_without_thumb", with(t, "customer_service", map[string]any{"miniprogrampage": func() map[string]any { c := card(); delete(c, "thumb_media_id"); return c }()}), "customer_service.miniprogrampage.thumb_media_id"},
		{"card_empty_title", with(t, "customer_service", map[string]any{"miniprogrampage": func() map[string]any { c := card(); c["title"] = ""; return c }()}), "customer_service.miniprogrampage.title"},
		{"card_unknown_field", with(t, "customer_service", map[string]any{"miniprogrampage": func() map[string]any { c := card(); c["url"] = "https://a.example"; return c }()}), "customer_service.miniprogrampage.url"},
	}
	// A job with neither message.
	cases[14].job = `{"id":"a","to":{"uid":"u"}}`
	cases[14].field = "template"

	// The per-key-type limits of subscribe-message data.
	type dv struct {
		key, value string
		ok         bool
	}
	for _, d := range []dv{
		{"thing1", strings.Repeat("字", 20), true}, {"thing1", strings.Repeat("字", 21), false},
		{"number2", "12.50", true}, {"number2", "-3", true}, {"number2", strings.Repeat("9", 33), false}, {"number2", "12a", false}, {"number2", "1.", false},
		{"letter3", "ABCxyz", true}, {"letter3", "AB12", false}, {"letter3", strings.Repeat("a", 33), false},
		{"symbol4", "%#@", true}, {"symbol4", "%%%%%%", false}, {"symbol4", "a!", false},
		{"character_string5", "SF-8812/A", true}, {"character_string5", "has space", false}, {"character_string5", strings.Repeat("A", 33), false}, {"character_string5", "中文", false},
		{"time6", "15:01", true}, {"time6", "2019年10月1日 15:01", true}, {"time6", "2026-11-20 15:01~2026-11-20 17:00", true}, {"time6", "tomorrow", false}, {"time6", "2026-11-20", false},
		{"date7", "2019年10月1日", true}, {"date7", "2026-11-20 15:01", true}, {"date7", "2026/11/20~2026/11/27", true}, {"date7", "10月1日", false}, {"date7", "soon", false},
		{"amount8", "¥99.50", true}, {"amount8", "99元", true}, {"amount8", "$1234567890", true}, {"amount8", "¥12345678901", false}, {"amount8", "USD 5", false},
		{"phone_number9", "+86-0766-66888866", true}, {"phone_number9", "123456789012345678", false}, {"phone_number9", "call me", false},
		{"car_number10", "粤A8Z888挂", true}, {"car_number10", "ABC123", true}, {"car_number10", "粤A8Z8889挂", false}, {"car_number10", "A粤B", false},
		{"name11", "王小明", true}, {"name11", "Johnathan Smithson", true}, {"name11", strings.Repeat("王", 11), false}, {"name11", strings.Repeat("a", 21), false}, {"name11", "王" + strings.Repeat("a", 10), false},
		{"phrase12", "配送中", true}, {"phrase12", "已经配送中了", false}, {"phrase12", "ok", false},
		{"enum13", "anything", true}, {"thing14", "", false},
	} {
		field := "subscribe.data." + d.key
		if d.ok {
			field = ""
		}
		cases = append(cases, struct {
			name  string
			job   string
			field string
		}{d.key + "=" + d.value, with(t, "subscribe.data", data(d.key, d.value)), field})
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var inst any
			if err := json.Unmarshal([]byte(tc.job), &inst); err != nil {
				t.Fatal(err)
			}
			schemaErr := schema.Validate(inst)
			_, goErr := Parse([]byte(tc.job))
			if (schemaErr == nil) != (tc.field == "") {
				t.Errorf("schema: %v, want valid=%v", schemaErr, tc.field == "")
			}
			if (goErr == nil) != (tc.field == "") {
				t.Errorf("Go: %v, want valid=%v", goErr, tc.field == "")
			}
			var fe *FieldError
			if tc.field != "" && goErr != nil && (!errors.As(goErr, &fe) || fe.Field != tc.field) {
				t.Errorf("Go names %v, want field %q", goErr, tc.field)
			}
		})
	}
}

// TestSchemaPatternsAreGos: the subscribe-data rules in the schema file are
// the ones Go applies, keyword for keyword.
func TestSchemaPatternsAreGos(t *testing.T) {
	b, err := os.ReadFile(schemaFile)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Defs struct {
			SubscribeData struct {
				PatternProperties map[string]map[string]any `json:"patternProperties"`
			} `json:"subscribeData"`
		} `json:"$defs"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	pp := doc.Defs.SubscribeData.PatternProperties
	if len(pp) != len(keyTypes) {
		t.Fatalf("schema has %d key types, Go %d", len(pp), len(keyTypes))
	}
	for name, kt := range keyTypes {
		got, ok := pp["^"+name+"[0-9]*$"]
		if !ok {
			t.Errorf("schema lacks key type %s", name)
			continue
		}
		delete(got, "description")
		want := map[string]any{}
		for k, v := range kt.schema {
			want[k] = v
		}
		if kt.extra != nil {
			want = map[string]any{"anyOf": append([]map[string]any{kt.schema}, kt.extra...)}
		}
		wb, _ := json.Marshal(want)
		var wantJSON any
		json.Unmarshal(wb, &wantJSON)
		gb, _ := json.Marshal(got)
		var gotJSON any
		json.Unmarshal(gb, &gotJSON)
		if !reflect.DeepEqual(gotJSON, wantJSON) {
			t.Errorf("%s: schema %s, Go %s", name, gb, wb)
		}
	}
}
