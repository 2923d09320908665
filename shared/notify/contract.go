// Package notify is how business systems notify WeChat users through
// wxbridge: the client that puts jobs (shared/contract) on the send queue,
// the send ledger that makes each job id go out at most once, and the rules
// of sending: resolve the recipient, pick the channel, classify WeChat's
// answer and record the outcome.
//
// The rules live in send.go as plain Go; ledger.go holds the DynamoDB items
// and conditional writes they rely on.
package notify

import "wxbridge/shared/contract"

// The job contract lives in shared/contract, which a business imports
// alone; these names keep the sender's code reading as before.
type (
	Job                    = contract.Job
	Recipient              = contract.Recipient
	TemplateMessage        = contract.TemplateMessage
	SubscribeMessage       = contract.SubscribeMessage
	OASubscribeMessage     = contract.OASubscribeMessage
	CustomerServiceMessage = contract.CustomerServiceMessage
	MiniProgramLink        = contract.MiniProgramLink
	Channel                = contract.Channel
	FieldError             = contract.FieldError
)

// The channels.
const (
	Template        = contract.Template
	Subscribe       = contract.Subscribe
	OASubscribe     = contract.OASubscribe
	CustomerService = contract.CustomerService
	// Any, as a job's channels, lets wxbridge choose: the cheapest channel
	// that can reach the person first.
	Any = contract.Any
)

// MaxIDLength is the longest job id, in characters.
const MaxIDLength = contract.MaxIDLength

// Decoding and validating jobs.
var (
	Parse      = contract.Parse
	Validate   = contract.Validate
	ErrInvalid = contract.ErrInvalid
	ErrNotJSON = contract.ErrNotJSON
)
