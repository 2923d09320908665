// Command send-worker consumes the send queue: it delivers notification
// jobs through the official account's template messages and the mini
// program's subscribe messages, and records each outcome in the ledger.
package main

import (
	"wxbridge/functions/send-worker/handler"
	"wxbridge/shared/awsenv"
)

func main() { awsenv.Main("send-worker", handler.Build) }
