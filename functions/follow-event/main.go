// Command follow-event is the official accounts' server push endpoint (GET
// and POST /wechat/push and /wechat/push/{appid}) and the consumer of its
// retry queue.
package main

import (
	"wxbridge/functions/follow-event/handler"
	"wxbridge/shared/awsenv"
)

func main() { awsenv.Main("follow-event", handler.Build) }
