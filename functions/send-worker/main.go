// Command send-worker consumes the send queue: it delivers notification
// jobs through the official account's template messages, subscribe
// notifications and customer-service messages and the mini program's
// subscribe messages, skipping those the person's recorded consents and
// interactions rule out, and records each outcome in the ledger.
package main

import (
	"wxbridge/functions/send-worker/handler"
	"wxbridge/shared/awsenv"
)

func main() { awsenv.Main("send-worker", handler.Build) }
