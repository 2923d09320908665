// Command token-refresher keeps each WeChat app's access token in its
// Secrets Manager secret: on the 5-minute schedule, and on asynchronous
// invokes from functions whose token the platform refused. It is the only
// function that calls the token endpoints, so only its egress IP needs to be
// in the accounts' IP whitelists.
package main

import (
	"wxbridge/functions/token-refresher/handler"
	"wxbridge/shared/awsenv"
)

func main() { awsenv.Main("token-refresher", handler.Build) }
