// Command follow-event is the official account's server push endpoint
// (GET and POST /wechat/push) and the consumer of its retry queue.
package main

import (
	"wxbridge/functions/follow-event/handler"
	"wxbridge/shared/awsenv"
)

func main() { awsenv.Main("follow-event", handler.Build) }
