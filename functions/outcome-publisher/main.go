// Command outcome-publisher turns the changes of send-ledger entries, read
// from the table's DynamoDB stream, into outcome events on the outcome bus
// (EventBridge), so business systems learn every job's fate.
package main

import (
	"wxbridge/functions/outcome-publisher/handler"
	"wxbridge/shared/awsenv"
)

func main() { awsenv.Main("outcome-publisher", handler.Build) }
