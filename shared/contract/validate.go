package contract

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"
)

// MaxIDLength is the longest job id, in characters.
const MaxIDLength = 128

// maxKeyLength bounds recipient keys, template ids and similar fields.
const maxKeyLength = 128

// maxLinkLength bounds URLs and pages.
const maxLinkLength = 1024

// MaxTextLength is the longest customer-service text, in characters: any
// text this long fits the platform's limit of 2048 bytes (45002 past it),
// whatever its characters.
const MaxTextLength = 512

// The patterns below are written once, as the strings that both Go's regexp
// and the JSON Schema file (ECMA-262 regular expressions) use; a test feeds
// the same jobs to both. han is the CJK Unified Ideographs and Extension A.
const han = "\u3400-\u4dbf\u4e00-\u9fff"

const (
	dateTimeChars = "[0-9年月日:/. -]"
	clockPart     = dateTimeChars + "*[0-9]{1,2}:[0-9]{2}" + dateTimeChars + "*"
	datePart      = "[0-9]{4} ?[-/.年] ?[0-9]{1,2}" + dateTimeChars + "*"
)

// Patterns of the contract, shared with schemas/send-job.schema.json.
var (
	dataKeyPattern      = regexp.MustCompile(`^[A-Za-z_]+[0-9]*$`)
	urlPattern          = regexp.MustCompile(`^https?://[^\s]+$`)
	expiresPattern      = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$`)
	miniProgramStates   = []string{"developer", "trial", "formal"}
	subscribeLanguages  = []string{"zh_CN", "en_US", "zh_HK", "zh_TW"}
	recipientFieldNames = []string{"uid", "external_id", "unionid", "oa_openid", "mp_openid", "phone"}
	// appIDPattern is a WeChat appid: "wx" and 16 hexadecimal digits.
	appIDPattern = regexp.MustCompile(`^wx[0-9a-f]{16}$`)
	// phonePattern is a phone number in E.164 form: "+", the country code
	// and the number, 6 to 15 digits in all.
	phonePattern = regexp.MustCompile(`^\+[0-9]{6,15}$`)
)

// keyType is the limit on subscribe-message values of one key type (the
// key's letters; the number after them is free), from the platform's
// "subscribe message value limits" table.
type keyType struct {
	max     int              // most characters; 0: no limit beyond the pattern
	pattern *regexp.Regexp   // nil: any characters
	nameLen bool             // name: 10 characters with any Chinese, else 20
	problem string           // what the rule says, for the error
	schema  map[string]any   // the same rule as JSON Schema keywords
	extra   []map[string]any // further alternatives (anyOf) for the schema
}

func rule(max int, pattern, problem string) keyType {
	k := keyType{max: max, problem: problem, schema: map[string]any{"type": "string", "minLength": 1}}
	if max > 0 {
		k.schema["maxLength"] = max
	}
	if pattern != "" {
		k.pattern = regexp.MustCompile(pattern)
		k.schema["pattern"] = pattern
	}
	return k
}

// KeyTypes are the subscribe-message key types wxbridge checks. Keys of
// other types (enum, and any the platform adds) only need a value.
var keyTypes = map[string]keyType{
	"thing":            rule(20, "", "must be 1 to 20 characters"),
	"number":           rule(32, `^-?[0-9]+(\.[0-9]+)?$`, "must be a number of at most 32 characters"),
	"letter":           rule(0, `^[A-Za-z]{1,32}$`, "must be 1 to 32 letters"),
	"symbol":           rule(0, `^[^0-9A-Za-z\s`+han+`]{1,5}$`, "must be 1 to 5 symbols"),
	"character_string": rule(0, `^[!-~]{1,32}$`, "must be 1 to 32 digits, letters or symbols"),
	"time":             rule(0, "^"+clockPart+"(~"+clockPart+")?$", "must be a 24-hour time (optionally with a date), or two joined by ~"),
	"date":             rule(0, "^"+datePart+"(~ ?"+datePart+")?$", "must be a date with the year (optionally with a time), or two joined by ~"),
	"amount":           rule(0, `^[^0-9A-Za-z\s.`+han+`]?[0-9]{1,10}(\.[0-9]+)?元?$`, "must be an optional currency symbol, at most 10 digits, optional decimals and 元"),
	"phone_number":     rule(0, "^[0-9 !-/:-@\\[-`{-~]{1,17}$", "must be 1 to 17 digits and symbols"),
	"car_number":       rule(0, `^[0-9A-Za-z`+han+`]([0-9A-Za-z]{0,6}[0-9A-Za-z`+han+`])?$`, "must be at most 8 letters and digits, the first and last may be Chinese"),
	"phrase":           rule(0, `^[`+han+`]{1,5}$`, "must be 1 to 5 Chinese characters"),
	"name":             nameRule(),
}

func nameRule() keyType {
	k := rule(10, "", "must be at most 10 characters if it has Chinese, else at most 20")
	k.nameLen = true
	k.extra = []map[string]any{{"type": "string", "pattern": "^[^" + han + "]{1,20}$"}}
	return k
}

func isHan(r rune) bool { return r >= 0x3400 && r <= 0x4dbf || r >= 0x4e00 && r <= 0x9fff }

// check reports whether v fits the key type.
func (k keyType) check(v string) bool {
	n := utf8.RuneCountInString(v)
	if k.nameLen {
		if strings.ContainsFunc(v, isHan) {
			return n <= 10
		}
		return n <= 20
	}
	if k.max > 0 && n > k.max {
		return false
	}
	return k.pattern == nil || k.pattern.MatchString(v)
}

// typeOf is the key type of a data key: its letters.
func typeOf(key string) string { return strings.TrimRight(key, "0123456789") }

// Validate checks a job against the contract, naming the first offending
// field. Subscribe-message values are checked against the limits of their
// key type before anything is sent: WeChat refuses them (47003) rather
// than cutting them.
func Validate(j Job) error {
	bad := func(field, problem string, args ...any) error {
		return &FieldError{Field: field, Problem: fmt.Sprintf(problem, args...)}
	}
	switch n := utf8.RuneCountInString(j.ID); {
	case n == 0:
		return bad("id", "is required")
	case n > MaxIDLength:
		return bad("id", "must be at most %d characters", MaxIDLength)
	}
	keys := 0
	for i, v := range []string{j.To.UID, j.To.ExternalID, j.To.UnionID, j.To.OAOpenID, j.To.MPOpenID, j.To.Phone} {
		if v == "" {
			continue
		}
		keys++
		if utf8.RuneCountInString(v) > maxKeyLength {
			return bad("to."+recipientFieldNames[i], "must be at most %d characters", maxKeyLength)
		}
	}
	if keys != 1 {
		return bad("to", "must have exactly one of %s", strings.Join(recipientFieldNames, ", "))
	}
	if j.To.Phone != "" && !phonePattern.MatchString(j.To.Phone) {
		// The number itself stays out of the error: it is personal.
		return bad("to.phone", "must be a number in E.164 form: + and 6 to 15 digits (country code first)")
	}
	if err := checkFrom(j.From); err != nil {
		return err
	}
	if !slices.ContainsFunc(channels, j.Has) {
		return bad("template", "or subscribe, oa_subscribe or customer_service is required")
	}
	if m := j.Template; m != nil {
		if err := checkTemplateID("template.template_id", m.TemplateID); err != nil {
			return err
		}
		if m.URL != "" && (len(m.URL) > maxLinkLength || !urlPattern.MatchString(m.URL)) {
			return bad("template.url", "must be an http(s) URL of at most %d characters", maxLinkLength)
		}
		if err := checkMiniProgram("template.miniprogram", m.MiniProgram); err != nil {
			return err
		}
		if err := checkData("template.data", m.Data, false); err != nil {
			return err
		}
	}
	if m := j.Subscribe; m != nil {
		if err := checkTemplateID("subscribe.template_id", m.TemplateID); err != nil {
			return err
		}
		if utf8.RuneCountInString(m.Page) > maxLinkLength {
			return bad("subscribe.page", "must be at most %d characters", maxLinkLength)
		}
		if m.MiniProgramState != "" && !slices.Contains(miniProgramStates, m.MiniProgramState) {
			return bad("subscribe.miniprogram_state", "must be one of %s", strings.Join(miniProgramStates, ", "))
		}
		if m.Lang != "" && !slices.Contains(subscribeLanguages, m.Lang) {
			return bad("subscribe.lang", "must be one of %s", strings.Join(subscribeLanguages, ", "))
		}
		if err := checkData("subscribe.data", m.Data, true); err != nil {
			return err
		}
	}
	if m := j.OASubscribe; m != nil {
		if err := checkTemplateID("oa_subscribe.template_id", m.TemplateID); err != nil {
			return err
		}
		if m.Page != "" && (len(m.Page) > maxLinkLength || !urlPattern.MatchString(m.Page)) {
			return bad("oa_subscribe.page", "must be an http(s) URL of at most %d characters", maxLinkLength)
		}
		if err := checkMiniProgram("oa_subscribe.miniprogram", m.MiniProgram); err != nil {
			return err
		}
		if err := checkData("oa_subscribe.data", m.Data, true); err != nil {
			return err
		}
	}
	if m := j.CustomerService; m != nil {
		switch {
		case (m.Text == "") == (m.MiniProgramPage == nil):
			return bad("customer_service", "must have exactly one of text and miniprogrampage")
		case utf8.RuneCountInString(m.Text) > MaxTextLength:
			return bad("customer_service.text", "must be at most %d characters", MaxTextLength)
		}
		if c := m.MiniProgramPage; c != nil {
			for _, f := range []struct{ name, v string }{{"title", c.Title}, {"appid", c.AppID}, {"pagepath", c.PagePath}, {"thumb_media_id", c.ThumbMediaID}} {
				limit := maxKeyLength
				if f.name == "pagepath" {
					limit = maxLinkLength
				}
				if f.v == "" || utf8.RuneCountInString(f.v) > limit {
					return bad("customer_service.miniprogrampage."+f.name, "is required, at most %d characters", limit)
				}
			}
		}
	}
	if j.Channels != nil && len(j.Channels) == 0 {
		return bad("channels", "must not be empty (leave it out for the default order)")
	}
	if j.Channels.Any() {
		return nil
	}
	for i, c := range j.Channels {
		field := fmt.Sprintf("channels[%d]", i)
		switch {
		case !slices.Contains(channels, c):
			return bad(field, "must be one of %s", channelNames())
		case slices.Contains(j.Channels[:i], c):
			return bad(field, "repeats %q", c)
		case !j.Has(c):
			return bad(string(c), "is required when channels lists it")
		}
	}
	return nil
}

func channelNames() string {
	names := make([]string, len(channels))
	for i, c := range channels {
		names[i] = string(c)
	}
	return strings.Join(names, ", ")
}

// checkFrom checks the shape of a job's "from": 1 to MaxFrom appids, none
// twice. Whether each is configured, and as which kind, only the worker
// knows: it records a job naming an app it does not have, or two of one
// kind, UNDELIVERABLE.
func checkFrom(from AppIDs) error {
	if from == nil {
		return nil
	}
	if len(from) == 0 || len(from) > MaxFrom {
		return &FieldError{Field: "from", Problem: fmt.Sprintf("must name 1 to %d apps (at most one of each kind)", MaxFrom)}
	}
	for i, id := range from {
		field := "from"
		if len(from) > 1 {
			field = fmt.Sprintf("from[%d]", i)
		}
		switch {
		case !appIDPattern.MatchString(id):
			return &FieldError{Field: field, Problem: "must be an appid: wx and 16 hexadecimal digits"}
		case slices.Contains(from[:i], id):
			return &FieldError{Field: field, Problem: fmt.Sprintf("repeats %q", id)}
		}
	}
	return nil
}

func checkMiniProgram(field string, mp *MiniProgramLink) error {
	if mp == nil {
		return nil
	}
	if mp.AppID == "" || utf8.RuneCountInString(mp.AppID) > maxKeyLength {
		return &FieldError{Field: field + ".appid", Problem: "is required"}
	}
	if utf8.RuneCountInString(mp.PagePath) > maxLinkLength {
		return &FieldError{Field: field + ".pagepath", Problem: fmt.Sprintf("must be at most %d characters", maxLinkLength)}
	}
	return nil
}

func checkTemplateID(field, id string) error {
	if id == "" || utf8.RuneCountInString(id) > maxKeyLength {
		return &FieldError{Field: field, Problem: fmt.Sprintf("is required, at most %d characters", maxKeyLength)}
	}
	return nil
}

// checkData checks a message's data; typed applies the subscribe message's
// limits by key type.
func checkData(field string, data map[string]string, typed bool) error {
	if len(data) == 0 {
		return &FieldError{Field: field, Problem: "must have at least one key"}
	}
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	slices.Sort(keys) // name the same field every time
	for _, k := range keys {
		f := field + "." + k
		v := data[k]
		switch {
		case !dataKeyPattern.MatchString(k) || len(k) > 64:
			return &FieldError{Field: f, Problem: "is not a template key (letters, then an optional number)"}
		case v == "":
			return &FieldError{Field: f, Problem: "must not be empty"}
		}
		if !typed {
			continue
		}
		if kt, ok := keyTypes[typeOf(k)]; ok && !kt.check(v) {
			return &FieldError{Field: f, Problem: kt.problem}
		}
	}
	return nil
}
