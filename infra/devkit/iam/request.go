package iam

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"unicode"
)

// Protocols a request speaks, which decide the shape of a denial.
const (
	protoREST  = iota // REST-JSON (Lambda)
	protoJSON         // AWS JSON 1.0/1.1: X-Amz-Target names the operation
	protoQuery        // AWS query: the Action form field names it
)

// call is an AWS request as the check sees it: who signed it, where, what
// it does and the authorizations it needs.
type call struct {
	caller    string // the access key id
	region    string
	service   string // the SigV4 scope's service
	operation string
	protocol  int
	json      string // "1.0" or "1.1"
	requests  []Request
}

// ErrUnknownAPI reports a call the check cannot map to IAM actions and
// resources: it is denied, as an unverifiable call must be.
var ErrUnknownAPI = errors.New("iam: an API the local IAM check does not map")

// scope reads the access key id, region and service out of a SigV4
// Authorization header: "Credential=AKID/20260302/us-east-1/sqs/aws4_request".
func scope(auth string) (key, region, service string) {
	_, cred, ok := strings.Cut(auth, "Credential=")
	if !ok {
		return "", "", ""
	}
	cred, _, _ = strings.Cut(cred, ",")
	parts := strings.Split(strings.TrimSpace(cred), "/")
	if len(parts) != 5 {
		return "", "", ""
	}
	return parts[0], parts[2], parts[3]
}

// identify reads who makes the call and which operation it is.
func identify(r *http.Request, body []byte) call {
	c := call{protocol: protoREST}
	c.caller, c.region, c.service = scope(r.Header.Get("Authorization"))
	if target := r.Header.Get("X-Amz-Target"); target != "" {
		_, op, _ := strings.Cut(target, ".")
		c.protocol, c.operation, c.json = protoJSON, op, "1.0"
		if strings.Contains(r.Header.Get("Content-Type"), "json-1.1") {
			c.json = "1.1"
		}
		return c
	}
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		if form, err := url.ParseQuery(string(body)); err == nil && form.Get("Action") != "" {
			c.protocol, c.operation = protoQuery, form.Get("Action")
		}
	}
	return c
}

// where is what ARNs are built from: the call's region and partition and
// the environment's account.
type where struct{ partition, region, account string }

func (w where) arn(service, resource string) string {
	return fmt.Sprintf("arn:%s:%s:%s:%s:%s", w.partition, service, w.region, w.account, resource)
}

// requests maps c to the authorizations it needs.
func (ch *Checker) requests(c *call, r *http.Request, body []byte) error {
	w := where{Partition(c.region), c.region, ch.env.account()}
	if c.protocol == protoJSON {
		if err := ambiguous(body); err != nil {
			return err
		}
	}
	switch c.service {
	case "dynamodb":
		if c.protocol != protoJSON {
			break
		}
		return ch.dynamodb(c, w, body)
	case "sqs":
		return sqsRequests(c, w, body)
	case "secretsmanager":
		if c.protocol != protoJSON {
			break
		}
		return ch.secretsmanager(c, w, body)
	case "events":
		if c.protocol != protoJSON {
			break
		}
		return eventsRequests(c, w, body)
	case "lambda":
		return lambdaRequests(c, w, r)
	}
	return fmt.Errorf("%w: %s %s", ErrUnknownAPI, c.service, orPath(c.operation, r))
}

func orPath(op string, r *http.Request) string {
	if op != "" {
		return op
	}
	return r.Method + " " + r.URL.Path
}

// attr is a DynamoDB AttributeValue on the wire: {"S": "…"}.
type attr map[string]json.RawMessage

// dynamoItem is an item or a key.
type dynamoItem map[string]attr

// leading is the string form of attribute name in item (as IAM's
// dynamodb:LeadingKeys sees it), or "".
func (it dynamoItem) leading(name string) string {
	for _, raw := range it[name] {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return s // S, N and B are all JSON strings
		}
	}
	return ""
}

type dynamoTarget struct {
	TableName string     `json:"TableName"`
	Key       dynamoItem `json:"Key"`
	Item      dynamoItem `json:"Item"`
}

// dynamodb maps a DynamoDB call: item operations need the action on the
// table with the item's partition key as dynamodb:LeadingKeys; batches and
// transactions one authorization per item (a transaction's items by their
// own actions: PutItem, UpdateItem, DeleteItem, ConditionCheckItem,
// GetItem); Query its table or index with the partition key of its key
// condition; Scan none (ForAllValues over no keys holds, as in AWS).
func (ch *Checker) dynamodb(c *call, w where, body []byte) error {
	action := "dynamodb:" + c.operation
	item := func(action, table string, key dynamoItem, put bool) error {
		name, arn := ch.tableARN(w, table)
		schema, err := ch.schema(name)
		if err != nil {
			return err
		}
		v := key.leading(schema.hash)
		if v == "" {
			what := "Key"
			if put {
				what = "Item"
			}
			return fmt.Errorf("iam: %s on %s: %s has no partition key %s", action, name, what, schema.hash)
		}
		c.requests = append(c.requests, Request{Action: action, Resource: arn, Context: map[string][]string{leadingKeys: {v}}})
		return nil
	}
	switch c.operation {
	case "GetItem", "DeleteItem", "UpdateItem", "PutItem":
		var in dynamoTarget
		if err := json.Unmarshal(body, &in); err != nil {
			return fmt.Errorf("iam: %s: %w", c.operation, err)
		}
		if c.operation == "PutItem" {
			return item(action, in.TableName, in.Item, true)
		}
		return item(action, in.TableName, in.Key, false)
	case "BatchGetItem":
		var in struct {
			RequestItems map[string]struct {
				Keys []dynamoItem `json:"Keys"`
			} `json:"RequestItems"`
		}
		if err := json.Unmarshal(body, &in); err != nil {
			return fmt.Errorf("iam: %s: %w", c.operation, err)
		}
		for _, table := range sortedKeys(in.RequestItems) {
			for _, k := range in.RequestItems[table].Keys {
				if err := item(action, table, k, false); err != nil {
					return err
				}
			}
		}
		return nil
	case "BatchWriteItem":
		var in struct {
			RequestItems map[string][]struct {
				PutRequest *struct {
					Item dynamoItem `json:"Item"`
				} `json:"PutRequest"`
				DeleteRequest *struct {
					Key dynamoItem `json:"Key"`
				} `json:"DeleteRequest"`
			} `json:"RequestItems"`
		}
		if err := json.Unmarshal(body, &in); err != nil {
			return fmt.Errorf("iam: %s: %w", c.operation, err)
		}
		for _, table := range sortedKeys(in.RequestItems) {
			for _, wr := range in.RequestItems[table] {
				var err error
				switch {
				case wr.PutRequest != nil:
					err = item(action, table, wr.PutRequest.Item, true)
				case wr.DeleteRequest != nil:
					err = item(action, table, wr.DeleteRequest.Key, false)
				}
				if err != nil {
					return err
				}
			}
		}
		return nil
	case "TransactWriteItems", "TransactGetItems":
		var in struct {
			TransactItems []map[string]dynamoTarget `json:"TransactItems"`
		}
		if err := json.Unmarshal(body, &in); err != nil {
			return fmt.Errorf("iam: %s: %w", c.operation, err)
		}
		actions := map[string]string{"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem", "ConditionCheck": "ConditionCheckItem", "Get": "GetItem"}
		for _, ti := range in.TransactItems {
			for kind, t := range ti {
				a, ok := actions[kind]
				if !ok {
					return fmt.Errorf("%w: %s item %s", ErrUnknownAPI, c.operation, kind)
				}
				key, put := t.Key, kind == "Put"
				if put {
					key = t.Item
				}
				if err := item("dynamodb:"+a, t.TableName, key, put); err != nil {
					return err
				}
			}
		}
		return nil
	case "Query":
		var in struct {
			TableName                 string            `json:"TableName"`
			IndexName                 string            `json:"IndexName"`
			KeyConditionExpression    string            `json:"KeyConditionExpression"`
			ExpressionAttributeNames  map[string]string `json:"ExpressionAttributeNames"`
			ExpressionAttributeValues dynamoItem        `json:"ExpressionAttributeValues"`
			KeyConditions             map[string]struct {
				ComparisonOperator string `json:"ComparisonOperator"`
				AttributeValueList []attr `json:"AttributeValueList"`
			} `json:"KeyConditions"`
		}
		if err := json.Unmarshal(body, &in); err != nil {
			return fmt.Errorf("iam: Query: %w", err)
		}
		name, arn := ch.tableARN(w, in.TableName)
		schema, err := ch.schema(name)
		if err != nil {
			return err
		}
		hash := schema.hash
		if in.IndexName != "" {
			arn += "/index/" + in.IndexName
			if hash = schema.indexes[in.IndexName]; hash == "" {
				return fmt.Errorf("iam: Query on %s: the template's table has no index %s", name, in.IndexName)
			}
		}
		var v string
		if kc, ok := in.KeyConditions[hash]; ok && kc.ComparisonOperator == "EQ" && len(kc.AttributeValueList) == 1 {
			v = dynamoItem{"v": kc.AttributeValueList[0]}.leading("v")
		} else {
			v = partitionValue(in.KeyConditionExpression, hash, in.ExpressionAttributeNames, in.ExpressionAttributeValues)
		}
		if v == "" {
			return fmt.Errorf("iam: Query on %s: no condition %s = :value found in the key condition", name, hash)
		}
		c.requests = append(c.requests, Request{Action: action, Resource: arn, Context: map[string][]string{leadingKeys: {v}}})
		return nil
	case "Scan", "DescribeTable":
		var in struct {
			TableName string `json:"TableName"`
			IndexName string `json:"IndexName"`
		}
		if err := json.Unmarshal(body, &in); err != nil {
			return fmt.Errorf("iam: %s: %w", c.operation, err)
		}
		_, arn := ch.tableARN(w, in.TableName)
		if in.IndexName != "" {
			arn += "/index/" + in.IndexName
		}
		c.requests = append(c.requests, Request{Action: action, Resource: arn, Context: map[string][]string{leadingKeys: nil}})
		return nil
	}
	return fmt.Errorf("%w: dynamodb %s", ErrUnknownAPI, c.operation)
}

const leadingKeys = "dynamodb:leadingkeys"

// tableARN is a table's name and ARN from a request's TableName, which may
// be either.
func (ch *Checker) tableARN(w where, table string) (name, arn string) {
	if strings.HasPrefix(table, "arn:") {
		_, name, _ := strings.Cut(table, ":table/")
		return name, table
	}
	return table, w.arn("dynamodb", "table/"+table)
}

// decodedFields are the JSON member names the check decodes requests by.
// Go's decoder also takes a name in another case for one of them (the
// last one wins), where AWS reads names exactly: a body with "Key" and
// "key" would be checked by one and served by the other.
var decodedFields = map[string]bool{}

func init() {
	for _, f := range []string{"TableName", "Key", "Item", "Keys", "RequestItems", "PutRequest", "DeleteRequest", "TransactItems",
		"Put", "Update", "Delete", "ConditionCheck", "Get", "IndexName", "KeyConditionExpression", "ExpressionAttributeNames",
		"ExpressionAttributeValues", "KeyConditions", "ComparisonOperator", "AttributeValueList",
		"QueueUrl", "QueueName", "QueueOwnerAWSAccountId", "SecretId", "Name", "Tags", "Entries", "EventBusName", "Source", "DetailType"} {
		decodedFields[fold(f)] = true
	}
}

// fold is s with each letter replaced by the least of its case-folding
// orbit, so that names Go's decoder matches to one field fold alike
// (K, k and the Kelvin sign; S, s and the long s).
func fold(s string) string {
	return strings.Map(func(r rune) rune {
		least := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			least = min(least, f)
		}
		return least
	}, s)
}

// ambiguous reports an object of a JSON body that names one of the fields
// the check decodes twice, in two spellings Go's decoder takes for the
// same field: the check and the service would read different requests.
// Such a call is denied, as one the check cannot read faithfully. (An
// exact duplicate is read alike: the last one, by both.) A body that is
// not JSON is left to the decoding that follows.
func ambiguous(body []byte) error {
	type frame struct {
		names map[string]string // folded -> as written; nil for an array
		name  bool              // the next token is a member name
	}
	var stack []*frame
	done := func() { // a value ended: an object's next token is a name
		if n := len(stack); n > 0 && stack[n-1].names != nil {
			stack[n-1].name = true
		}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil
		}
		if n := len(stack); n > 0 && stack[n-1].name {
			if tok == json.Delim('}') {
				stack = stack[:n-1]
				done()
				continue
			}
			name, _ := tok.(string)
			f := fold(name)
			if prev, ok := stack[n-1].names[f]; ok && prev != name && decodedFields[f] {
				return fmt.Errorf("%w: a request naming %q and %q, which the check would read as one and AWS as two", ErrUnknownAPI, prev, name)
			}
			stack[n-1].names[f] = name
			stack[n-1].name = false
			continue
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{names: map[string]string{}, name: true})
		case json.Delim('['):
			stack = append(stack, &frame{})
		case json.Delim(']'):
			stack = stack[:len(stack)-1]
			done()
		default:
			done()
		}
	}
}

var and = regexp.MustCompile(`(?i)\s+and\s+`)

var keyEquals = regexp.MustCompile(`^\(*\s*([#:\w.-]+)\s*=\s*([#:\w.-]+)\s*\)*$`)

// partitionValue finds "hash = :v" (or ":v = hash") among the AND-ed
// parts of a key condition expression and returns the value of :v.
func partitionValue(expr, hash string, names map[string]string, values dynamoItem) string {
	for _, part := range and.Split(expr, -1) {
		m := keyEquals.FindStringSubmatch(strings.TrimSpace(part))
		if m == nil {
			continue
		}
		for _, pair := range [][2]string{{m[1], m[2]}, {m[2], m[1]}} {
			name, value := pair[0], pair[1]
			if n, ok := names[name]; ok {
				name = n
			}
			if name == hash && strings.HasPrefix(value, ":") {
				return values.leading(value)
			}
		}
	}
	return ""
}

// sqsActions are the SQS operations the check maps, with the action each
// needs (a batch needs its single message action).
var sqsActions = map[string]string{
	"SendMessage": "SendMessage", "SendMessageBatch": "SendMessage",
	"ReceiveMessage": "ReceiveMessage",
	"DeleteMessage":  "DeleteMessage", "DeleteMessageBatch": "DeleteMessage",
	"ChangeMessageVisibility": "ChangeMessageVisibility", "ChangeMessageVisibilityBatch": "ChangeMessageVisibility",
	"GetQueueAttributes": "GetQueueAttributes", "GetQueueUrl": "GetQueueUrl", "PurgeQueue": "PurgeQueue",
}

// sqsRequests maps an SQS call (JSON protocol, or query) to its action on
// the queue's ARN, from QueueUrl (or GetQueueUrl's QueueName).
func sqsRequests(c *call, w where, body []byte) error {
	action, ok := sqsActions[c.operation]
	if !ok {
		return fmt.Errorf("%w: sqs %s", ErrUnknownAPI, c.operation)
	}
	var in struct {
		QueueURL  string `json:"QueueUrl"`
		QueueName string `json:"QueueName"`
		Owner     string `json:"QueueOwnerAWSAccountId"`
	}
	switch c.protocol {
	case protoJSON:
		if err := json.Unmarshal(body, &in); err != nil {
			return fmt.Errorf("iam: sqs %s: %w", c.operation, err)
		}
	case protoQuery:
		form, _ := url.ParseQuery(string(body))
		in.QueueURL, in.QueueName, in.Owner = form.Get("QueueUrl"), form.Get("QueueName"), form.Get("QueueOwnerAWSAccountId")
	default:
		return fmt.Errorf("%w: sqs over REST", ErrUnknownAPI)
	}
	var arn string
	if c.operation == "GetQueueUrl" {
		account := w.account
		if in.Owner != "" {
			account = in.Owner
		}
		arn = fmt.Sprintf("arn:%s:sqs:%s:%s:%s", w.partition, w.region, account, in.QueueName)
	} else {
		var err error
		if arn, err = queueARN(in.QueueURL, w.partition, w.region); err != nil {
			return err
		}
	}
	c.requests = append(c.requests, Request{Action: "sqs:" + action, Resource: arn, Context: map[string][]string{}})
	return nil
}

// secretsmanager maps a Secrets Manager call to its action on the secret's
// ARN: SecretId is an ARN or a name (known from the template's secrets).
// CreateSecret is authorized on the ARN of the secret it names (Name); with
// Tags it also needs secretsmanager:TagResource there, as in AWS.
func (ch *Checker) secretsmanager(c *call, w where, body []byte) error {
	switch c.operation {
	case "GetSecretValue", "PutSecretValue", "DescribeSecret", "UpdateSecret", "UpdateSecretVersionStage",
		"ListSecretVersionIds", "GetResourcePolicy", "TagResource", "UntagResource", "RotateSecret", "CancelRotateSecret", "DeleteSecret", "RestoreSecret",
		"CreateSecret":
	default:
		return fmt.Errorf("%w: secretsmanager %s", ErrUnknownAPI, c.operation)
	}
	var in struct {
		SecretID string            `json:"SecretId"`
		Name     string            `json:"Name"`
		Tags     []json.RawMessage `json:"Tags"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		return fmt.Errorf("iam: secretsmanager %s: %w", c.operation, err)
	}
	if c.operation == "CreateSecret" {
		if in.Name == "" || strings.HasPrefix(in.Name, "arn:") {
			return fmt.Errorf("iam: secretsmanager CreateSecret: Name %q is not a secret name", in.Name)
		}
		arn := w.arn("secretsmanager", "secret:"+in.Name)
		c.requests = append(c.requests, Request{Action: "secretsmanager:CreateSecret", Resource: arn, Context: map[string][]string{}})
		if len(in.Tags) > 0 {
			c.requests = append(c.requests, Request{Action: "secretsmanager:TagResource", Resource: arn, Context: map[string][]string{}})
		}
		return nil
	}
	arn := ch.secretARN(w, in.SecretID)
	c.requests = append(c.requests, Request{Action: "secretsmanager:" + c.operation, Resource: arn, Context: map[string][]string{}})
	return nil
}

// eventsRequests maps PutEvents: events:PutEvents on each entry's bus
// (EventBusName, a name or an ARN; the default bus when empty), with
// events:source and events:detail-type.
func eventsRequests(c *call, w where, body []byte) error {
	if c.operation != "PutEvents" {
		return fmt.Errorf("%w: events %s", ErrUnknownAPI, c.operation)
	}
	var in struct {
		Entries []struct {
			EventBusName string `json:"EventBusName"`
			Source       string `json:"Source"`
			DetailType   string `json:"DetailType"`
		} `json:"Entries"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		return fmt.Errorf("iam: events PutEvents: %w", err)
	}
	for _, e := range in.Entries {
		bus := e.EventBusName
		if bus == "" {
			bus = "default"
		}
		arn := bus
		if !strings.HasPrefix(bus, "arn:") {
			arn = w.arn("events", "event-bus/"+bus)
		}
		c.requests = append(c.requests, Request{Action: "events:PutEvents", Resource: arn, Context: map[string][]string{
			"events:source": nonEmpty(e.Source), "events:detail-type": nonEmpty(e.DetailType),
		}})
	}
	return nil
}

func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

// lambdaRequests maps Lambda's REST Invoke: POST
// /2015-03-31/functions/{FunctionName}/invocations needs
// lambda:InvokeFunction on the function's ARN, with its qualifier when the
// call names one.
func lambdaRequests(c *call, w where, r *http.Request) error {
	p := r.URL.EscapedPath()
	rest, ok := strings.CutPrefix(p, "/2015-03-31/functions/")
	name, tail, _ := strings.Cut(rest, "/")
	if !ok || tail != "invocations" || r.Method != http.MethodPost {
		return fmt.Errorf("%w: lambda %s %s", ErrUnknownAPI, r.Method, r.URL.Path)
	}
	c.operation = "Invoke"
	fn, err := url.PathUnescape(name)
	if err != nil {
		return fmt.Errorf("iam: lambda Invoke: %w", err)
	}
	var arn string
	switch parts := strings.Split(fn, ":"); {
	case strings.HasPrefix(fn, "arn:"):
		arn = fn
	case len(parts) >= 3 && parts[1] == "function": // 123456789012:function:Name[:qualifier]
		arn = fmt.Sprintf("arn:%s:lambda:%s:%s", w.partition, w.region, fn)
	default: // Name[:qualifier]
		arn = w.arn("lambda", "function:"+fn)
	}
	if q := r.URL.Query().Get("Qualifier"); q != "" && strings.Count(arn, ":") == 6 {
		arn += ":" + q
	}
	c.requests = append(c.requests, Request{Action: "lambda:InvokeFunction", Resource: arn, Context: map[string][]string{}})
	return nil
}
