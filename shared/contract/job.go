// Package contract is what a business system and wxbridge agree on, and
// nothing else: the send job a business enqueues (schemas/send-job.schema.json)
// with its validation, and the outcome event wxbridge publishes for each
// change of a job's state (schemas/outcome-event.schema.json). It imports
// only the standard library, so that a business links only this package.
package contract

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Channel is a way to reach a person.
type Channel string

// The channels.
const (
	// Template is the official account's template message: only followers
	// receive it.
	Template Channel = "template"
	// Subscribe is the mini program's subscribe message: it needs a
	// one-time consent from the person, which the send uses up.
	Subscribe Channel = "subscribe"
)

// Job is one notification to one person.
type Job struct {
	// ID is the idempotency key: a job id is sent at most once, however
	// often it is enqueued or delivered. At most 128 characters.
	ID        string            `json:"id"`
	To        Recipient         `json:"to"`
	Template  *TemplateMessage  `json:"template,omitempty"`
	Subscribe *SubscribeMessage `json:"subscribe,omitempty"`
	// Channels is the order of preference; empty means every channel the
	// job has a message for, template first.
	Channels []Channel `json:"channels,omitempty"`
	// ExpiresAt, when set, is when the notification stops being worth
	// sending: a job found later is recorded EXPIRED, not sent.
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// Recipient names the person by exactly one key.
type Recipient struct {
	UID        string `json:"uid,omitempty" dynamodbav:"uid,omitempty"`
	ExternalID string `json:"external_id,omitempty" dynamodbav:"external_id,omitempty"`
	UnionID    string `json:"unionid,omitempty" dynamodbav:"unionid,omitempty"`
	OAOpenID   string `json:"oa_openid,omitempty" dynamodbav:"oa_openid,omitempty"`
	MPOpenID   string `json:"mp_openid,omitempty" dynamodbav:"mp_openid,omitempty"`
}

// TemplateMessage is the job's official-account template message.
type TemplateMessage struct {
	TemplateID  string           `json:"template_id"`
	URL         string           `json:"url,omitempty"`
	MiniProgram *MiniProgramLink `json:"miniprogram,omitempty"`
	// Data maps the template's keys to their values. Each line shows at
	// most 20 characters; WeChat cuts longer values.
	Data map[string]string `json:"data"`
}

// MiniProgramLink is a mini-program page a template message opens.
type MiniProgramLink struct {
	AppID    string `json:"appid"`
	PagePath string `json:"pagepath,omitempty"`
}

// SubscribeMessage is the job's mini-program subscribe message.
type SubscribeMessage struct {
	TemplateID string `json:"template_id"`
	Page       string `json:"page,omitempty"`
	// Data values must fit the limit of their key's type (thing ≤ 20
	// characters, number ≤ 32 digits, ...): see Validate.
	Data             map[string]string `json:"data"`
	MiniProgramState string            `json:"miniprogram_state,omitempty"` // developer, trial or formal (default)
	Lang             string            `json:"lang,omitempty"`              // zh_CN (default), en_US, zh_HK, zh_TW
}

// Plan returns the channels to try, in order.
func (j Job) Plan() []Channel {
	if len(j.Channels) > 0 {
		return j.Channels
	}
	var out []Channel
	if j.Template != nil {
		out = append(out, Template)
	}
	if j.Subscribe != nil {
		out = append(out, Subscribe)
	}
	return out
}

// ErrNotJSON reports a message that is not a JSON object.
var ErrNotJSON = errors.New("contract: job is not a JSON object")

// Parse decodes and validates a job. When the job is invalid but carries a
// string id, the returned Job has that ID set, so that the failure can be
// recorded against it.
func Parse(b []byte) (Job, error) {
	var head struct {
		ID        json.RawMessage `json:"id"`
		ExpiresAt json.RawMessage `json:"expires_at"`
	}
	if err := json.Unmarshal(b, &head); err != nil || !bytes.HasPrefix(bytes.TrimSpace(b), []byte("{")) {
		return Job{}, ErrNotJSON
	}
	var id string
	if json.Unmarshal(head.ID, &id) != nil {
		id = ""
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var j Job
	if err := dec.Decode(&j); err != nil {
		return Job{ID: id}, locate(b, decodeError(err))
	}
	if dec.More() {
		return Job{ID: id}, &FieldError{Field: "(job)", Problem: "trailing data after the JSON object"}
	}
	// time.Time accepts more spellings than RFC 3339 (and the schema) do.
	var expires string
	if json.Unmarshal(head.ExpiresAt, &expires) == nil && !expiresPattern.MatchString(expires) {
		return Job{ID: id}, &FieldError{Field: "expires_at", Problem: "must be an RFC 3339 date-time such as 2026-11-22T00:00:00Z"}
	}
	if err := Validate(j); err != nil {
		return Job{ID: id}, err
	}
	return j, nil
}

// decodeError names the field a decoding error is about.
func decodeError(err error) error {
	var te *json.UnmarshalTypeError
	var pe *time.ParseError
	switch {
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			field = "(job)"
		}
		return &FieldError{Field: field, Problem: "must be " + jsonType(te.Type.Kind().String())}
	case errors.As(err, &pe):
		return &FieldError{Field: "expires_at", Problem: "must be an RFC 3339 date-time such as 2026-11-22T00:00:00Z"}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return &FieldError{Field: strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`), Problem: "is not a field of a send job"}
	}
	return &FieldError{Field: "(job)", Problem: "is not valid JSON: " + err.Error()}
}

// objects are the job's nested objects, by path.
var objects = []string{"", "to", "template", "template.miniprogram", "subscribe", "template.data", "subscribe.data"}

// locate turns the decoder's bare field names into paths: an unknown field
// "email" becomes "to.email", a non-string data value "template.data"
// becomes "template.data.thing1".
func locate(b []byte, err error) error {
	var fe *FieldError
	if !errors.As(err, &fe) {
		return err
	}
	var doc map[string]any
	if json.Unmarshal(b, &doc) != nil {
		return err
	}
	for _, path := range objects {
		obj := doc
		if path != "" {
			for _, p := range strings.Split(path, ".") {
				next, _ := obj[p].(map[string]any)
				obj = next
			}
		}
		if obj == nil {
			continue
		}
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			full := k
			if path != "" {
				full = path + "." + k
			}
			_, isString := obj[k].(string)
			switch {
			case strings.HasSuffix(path, ".data") && path == fe.Field && !isString:
				return &FieldError{Field: full, Problem: fe.Problem}
			case k == fe.Field && !strings.HasSuffix(path, ".data") && !known(path, k):
				return &FieldError{Field: full, Problem: fe.Problem}
			}
		}
	}
	return err
}

// known reports whether key is a field of the object at path.
func known(path, key string) bool {
	fields := map[string][]string{
		"":                     {"id", "to", "template", "subscribe", "channels", "expires_at"},
		"to":                   recipientFieldNames,
		"template":             {"template_id", "url", "miniprogram", "data"},
		"template.miniprogram": {"appid", "pagepath"},
		"subscribe":            {"template_id", "page", "data", "miniprogram_state", "lang"},
	}
	return slices.Contains(fields[path], key)
}

func jsonType(kind string) string {
	switch kind {
	case "string":
		return "a string"
	case "slice":
		return "an array"
	case "map", "struct", "ptr":
		return "an object"
	}
	return "of another type"
}

// FieldError is a job that breaks the contract, naming the offending field
// with a JSON path such as "subscribe.data.thing1". It carries no values:
// job data may be personal.
type FieldError struct {
	Field   string
	Problem string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("contract: invalid job: %s %s", e.Field, e.Problem)
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *FieldError) Is(target error) bool { return target == ErrInvalid }

// ErrInvalid reports a job that breaks the contract.
var ErrInvalid = errors.New("contract: invalid job")
