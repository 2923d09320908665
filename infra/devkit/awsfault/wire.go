package awsfault

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"hash/crc32"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// Protocols a request can speak, which decide the shape of its error.
const (
	protoOther = iota // REST or unknown: answered in JSON 1.1's shape
	protoJSON         // AWS JSON 1.0 or 1.1: X-Amz-Target names the operation
	protoQuery        // AWS query: the Action form field names the operation
)

// call is what the proxy knows of a request.
type call struct {
	service   string
	operation string
	protocol  int
	json      string // "1.0" or "1.1" for protoJSON
	body      []byte
}

// targetServices maps an X-Amz-Target prefix to its service.
var targetServices = map[string]string{
	"DynamoDB_20120810": DynamoDB,
	"AmazonSQS":         SQS,
	"secretsmanager":    SecretsManager,
	"AWSEvents":         EventBridge,
}

// identify names the service and operation of an AWS request: from
// X-Amz-Target (JSON protocols, "DynamoDB_20120810.UpdateItem"), else from
// the Action parameter (query protocol); the service also from the SigV4
// credential scope ("Credential=AKID/20260302/us-east-1/sqs/aws4_request").
func identify(r *http.Request, body []byte) call {
	c := call{body: body, service: scopeService(r.Header.Get("Authorization"))}
	if target := r.Header.Get("X-Amz-Target"); target != "" {
		prefix, op, _ := strings.Cut(target, ".")
		c.protocol, c.operation, c.json = protoJSON, op, "1.0"
		if s, ok := targetServices[prefix]; ok {
			c.service = s
		}
		if strings.Contains(r.Header.Get("Content-Type"), "json-1.1") {
			c.json = "1.1"
		}
		return c
	}
	action := r.URL.Query().Get("Action")
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		if form, err := url.ParseQuery(string(body)); err == nil && form.Get("Action") != "" {
			action = form.Get("Action")
		}
	}
	if action != "" {
		c.protocol, c.operation = protoQuery, action
	}
	return c
}

// scopeService reads the service out of a SigV4 Authorization header.
func scopeService(auth string) string {
	_, cred, ok := strings.Cut(auth, "Credential=")
	if !ok {
		return ""
	}
	cred, _, _ = strings.Cut(cred, ",")
	parts := strings.Split(strings.TrimSpace(cred), "/")
	if len(parts) != 5 {
		return ""
	}
	return parts[3]
}

// failure is one service's error answer.
type failure struct {
	status  int
	typ     string // the JSON __type: a shape ID, or a bare code
	code    string // the error code the SDK reports
	fault   string // "Sender" or "Receiver", for query-protocol answers
	message string
}

// failures are each service's answers for each injectable error, as the
// service sends them. DynamoDB and SQS name their errors with shape IDs;
// Secrets Manager (JSON 1.1) with bare codes.
var failures = map[string]map[string]failure{
	DynamoDB: {
		InternalServerError: {500, "com.amazonaws.dynamodb.v20120810#InternalServerError", "InternalServerError", "Receiver", "Internal server error"},
		ThrottlingException: {400, "com.amazon.coral.availability#ThrottlingException", "ThrottlingException", "Sender", "Rate of requests exceeds the allowed throughput."},
		ProvisionedThroughputExceeded: {400, "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException", "ProvisionedThroughputExceededException", "Sender",
			"The level of configured provisioned throughput for the table was exceeded. Consider increasing your provisioning level with the UpdateTable API."},
	},
	SQS: {
		InternalServerError: {500, "com.amazon.coral.service#InternalFailure", "InternalFailure", "Receiver", "The request processing has failed because of an unknown error, exception or failure."},
		ThrottlingException: {400, "com.amazonaws.sqs#RequestThrottled", "RequestThrottled", "Sender", "Request is throttled."},
	},
	SecretsManager: {
		InternalServerError: {500, "InternalServiceError", "InternalServiceError", "Receiver", "An error occurred on the server side."},
		ThrottlingException: {400, "ThrottlingException", "ThrottlingException", "Sender", "Rate exceeded"},
	},
	// EventBridge (JSON 1.1) names its errors with bare codes too.
	EventBridge: {
		InternalServerError: {500, "InternalException", "InternalException", "Receiver", "An internal error occurred."},
		ThrottlingException: {400, "ThrottlingException", "ThrottlingException", "Sender", "Rate exceeded."},
	},
}

func failureOf(service, name string) (failure, bool) {
	f, ok := failures[service][name]
	return f, ok
}

// injected ends every injected message, so that a log line says where the
// error came from.
const injected = " (injected by awsfault)"

// answer writes f as the service answers it to c's protocol.
func (f failure) answer(w http.ResponseWriter, c call) {
	id := requestID()
	h := w.Header()
	h.Set("X-Amzn-RequestId", id)
	if c.protocol == protoQuery {
		var b strings.Builder
		b.WriteString(xml.Header)
		fmt.Fprintf(&b, "<ErrorResponse><Error><Type>%s</Type><Code>%s</Code><Message>", f.fault, f.code)
		xml.EscapeText(&b, []byte(f.message+injected))
		fmt.Fprintf(&b, "</Message><Detail/></Error><RequestId>%s</RequestId></ErrorResponse>", id)
		h.Set("Content-Type", "text/xml")
		w.WriteHeader(f.status)
		w.Write([]byte(b.String()))
		return
	}
	// Secrets Manager's error members are "Message"; DynamoDB's and SQS's
	// "message". The SDK reads either for the error text, but fills the
	// typed error's field only from the one its model names.
	msgKey := "message"
	if c.service == SecretsManager {
		msgKey = "Message"
	}
	body, _ := json.Marshal(map[string]string{"__type": f.typ, msgKey: f.message + injected})
	version := c.json
	if version == "" {
		version = "1.1"
	}
	h.Set("Content-Type", "application/x-amz-json-"+version)
	switch c.service {
	case DynamoDB:
		// DynamoDB signs every answer with a CRC32 the SDK checks.
		h.Set("X-Amz-Crc32", strconv.FormatUint(uint64(crc32.ChecksumIEEE(body)), 10))
	case SQS:
		// SQS is query-compatible: this header carries the code its query
		// protocol used, which the SDK prefers.
		h.Set("X-Amzn-Query-Error", f.code+";"+f.fault)
	}
	w.WriteHeader(f.status)
	w.Write(body)
}

func requestID() string {
	b := make([]byte, 16)
	rand.Read(b)
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
