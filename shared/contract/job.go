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
	"reflect"
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
	// OASubscribe is the official account's subscribe notification (订阅通知):
	// it needs the person's consent for the template, one-time (used up by
	// the send) or long-term.
	OASubscribe Channel = "oa_subscribe"
	// CustomerService is the official account's customer-service message:
	// only within 48 hours of the person's last interaction with the
	// account, and only a few per interaction.
	CustomerService Channel = "customer_service"
	// Any, as the whole of a job's channels (JSON "channels": "any"), lets
	// wxbridge choose among the channels the job has a message for.
	Any Channel = "any"
)

// channels are the channels a job can name, in the default order.
var channels = []Channel{Template, Subscribe, OASubscribe, CustomerService}

// ChannelList is a job's channels: in JSON either a list of channels in
// order of preference or the string "any", which decodes to
// ChannelList{Any}.
type ChannelList []Channel

// Any reports whether the list is "any": wxbridge chooses.
func (l ChannelList) Any() bool { return len(l) == 1 && l[0] == Any }

// MarshalJSON writes "any" for ChannelList{Any}, else the list.
func (l ChannelList) MarshalJSON() ([]byte, error) {
	if l.Any() {
		return []byte(`"any"`), nil
	}
	return json.Marshal([]Channel(l))
}

// UnmarshalJSON reads a list of channels or the string "any". "any" inside
// a list is refused: it stands alone.
func (l *ChannelList) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		if Channel(s) != Any {
			return &FieldError{Field: "channels", Problem: `must be a list of channels or "any"`}
		}
		*l = ChannelList{Any}
		return nil
	}
	var list []Channel
	if bytes.Equal(bytes.TrimSpace(b), []byte("null")) || json.Unmarshal(b, &list) != nil {
		return &json.UnmarshalTypeError{Value: "channels", Type: reflect.TypeFor[ChannelList](), Field: "channels"}
	}
	if i := slices.Index(list, Any); i >= 0 {
		return &FieldError{Field: fmt.Sprintf("channels[%d]", i), Problem: `is "any", which stands alone: "channels": "any"`}
	}
	*l = list
	return nil
}

// Job is one notification to one person.
type Job struct {
	// ID is the idempotency key: a job id is sent at most once, however
	// often it is enqueued or delivered. At most 128 characters.
	ID              string                  `json:"id"`
	To              Recipient               `json:"to"`
	Template        *TemplateMessage        `json:"template,omitempty"`
	Subscribe       *SubscribeMessage       `json:"subscribe,omitempty"`
	OASubscribe     *OASubscribeMessage     `json:"oa_subscribe,omitempty"`
	CustomerService *CustomerServiceMessage `json:"customer_service,omitempty"`
	// Channels is the order of preference; empty means every channel the
	// job has a message for, in the order template, subscribe,
	// oa_subscribe, customer_service; ChannelList{Any} lets wxbridge
	// choose (see Plan).
	Channels ChannelList `json:"channels,omitempty"`
	// ExpiresAt, when set, is when the notification stops being worth
	// sending: a job found later is recorded EXPIRED, not sent.
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	// From names the apps to send from, at most one of each kind: the
	// official-account channels (template, oa_subscribe, customer_service)
	// send from its official account, subscribe from its mini program. A
	// kind it does not name sends from that kind's default app; empty sends
	// every channel from the defaults.
	From AppIDs `json:"from,omitempty"`
}

// AppIDs is a job's "from": in JSON either one appid or a list of them.
// One appid writes back as a string, more as a list.
type AppIDs []string

// MaxFrom is the most apps a job's "from" names: one of each kind (mini
// program, official account, website app, mobile app).
const MaxFrom = 4

// MarshalJSON writes a single appid as a string, else the list.
func (a AppIDs) MarshalJSON() ([]byte, error) {
	if len(a) == 1 {
		return json.Marshal(a[0])
	}
	return json.Marshal([]string(a))
}

// UnmarshalJSON reads an appid or a list of appids; null is refused, as
// the schema refuses it.
func (a *AppIDs) UnmarshalJSON(b []byte) error {
	if bytes.Equal(bytes.TrimSpace(b), []byte("null")) {
		return &FieldError{Field: "from", Problem: "must be an appid or a list of appids"}
	}
	var s string
	if json.Unmarshal(b, &s) == nil {
		*a = AppIDs{s}
		return nil
	}
	var list []string
	if json.Unmarshal(b, &list) != nil {
		return &FieldError{Field: "from", Problem: "must be an appid or a list of appids"}
	}
	*a = list
	return nil
}

// Recipient names the person by exactly one key. OAOpenID and MPOpenID are
// openids in the app the job sends from (Job.From, else the default app of
// their kind). Phone is a number in E.164 form ("+8613800000000") that a
// person verified in a mini program: the job goes to whoever verified it
// last.
type Recipient struct {
	UID        string `json:"uid,omitempty" dynamodbav:"uid,omitempty"`
	ExternalID string `json:"external_id,omitempty" dynamodbav:"external_id,omitempty"`
	UnionID    string `json:"unionid,omitempty" dynamodbav:"unionid,omitempty"`
	OAOpenID   string `json:"oa_openid,omitempty" dynamodbav:"oa_openid,omitempty"`
	MPOpenID   string `json:"mp_openid,omitempty" dynamodbav:"mp_openid,omitempty"`
	Phone      string `json:"phone,omitempty" dynamodbav:"phone,omitempty"`
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

// OASubscribeMessage is the job's official-account subscribe notification.
type OASubscribeMessage struct {
	TemplateID string `json:"template_id"`
	// Page is the web page (an http or https URL) the notification opens;
	// MiniProgram, when set, opens a mini-program page instead.
	Page        string           `json:"page,omitempty"`
	MiniProgram *MiniProgramLink `json:"miniprogram,omitempty"`
	// Data values must fit the limit of their key's type, as for the mini
	// program's subscribe messages: see Validate.
	Data map[string]string `json:"data"`
}

// CustomerServiceMessage is the job's customer-service message: exactly one
// of Text and MiniProgramPage.
type CustomerServiceMessage struct {
	// Text is at most MaxTextLength characters.
	Text            string           `json:"text,omitempty"`
	MiniProgramPage *MiniProgramCard `json:"miniprogrampage,omitempty"`
}

// MiniProgramCard is a mini-program card sent as a customer-service message.
type MiniProgramCard struct {
	Title    string `json:"title"`
	AppID    string `json:"appid"`
	PagePath string `json:"pagepath"`
	// ThumbMediaID is the card's picture: a media id the official account
	// uploaded.
	ThumbMediaID string `json:"thumb_media_id"`
}

// Has reports whether the job has a message for channel c.
func (j Job) Has(c Channel) bool {
	switch c {
	case Template:
		return j.Template != nil
	case Subscribe:
		return j.Subscribe != nil
	case OASubscribe:
		return j.OASubscribe != nil
	case CustomerService:
		return j.CustomerService != nil
	}
	return false
}

// Plan returns the channels to try, in order: the job's channels, or,
// when it names none or "any", every channel it has a message for in the
// default order (template, subscribe, oa_subscribe, customer_service). For
// "any" (Channels.Any) the worker reorders them by what each costs and
// whether it can reach the person.
func (j Job) Plan() []Channel {
	if len(j.Channels) > 0 && !j.Channels.Any() {
		return j.Channels
	}
	var out []Channel
	for _, c := range channels {
		if j.Has(c) {
			out = append(out, c)
		}
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
	var fe *FieldError
	switch {
	case errors.As(err, &fe):
		return fe
	case errors.As(err, &te) && te.Type == reflect.TypeFor[ChannelList]():
		return &FieldError{Field: "channels", Problem: `must be a list of channels or "any"`}
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
var objects = []string{"", "to", "template", "template.miniprogram", "subscribe", "oa_subscribe", "oa_subscribe.miniprogram",
	"customer_service", "customer_service.miniprogrampage", "template.data", "subscribe.data", "oa_subscribe.data"}

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
		"":                                 {"id", "to", "template", "subscribe", "oa_subscribe", "customer_service", "channels", "expires_at", "from"},
		"to":                               recipientFieldNames,
		"template":                         {"template_id", "url", "miniprogram", "data"},
		"template.miniprogram":             {"appid", "pagepath"},
		"subscribe":                        {"template_id", "page", "data", "miniprogram_state", "lang"},
		"oa_subscribe":                     {"template_id", "page", "miniprogram", "data"},
		"oa_subscribe.miniprogram":         {"appid", "pagepath"},
		"customer_service":                 {"text", "miniprogrampage"},
		"customer_service.miniprogrampage": {"title", "appid", "pagepath", "thumb_media_id"},
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
