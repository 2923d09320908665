// Command oauth-callback is the official account's web OAuth for H5 pages:
// GET /oauth/authorize and GET /oauth/callback, and WeChat's domain
// verification files at GET /<name>.
package main

import (
	"wxbridge/functions/oauth-callback/handler"
	"wxbridge/shared/awsenv"
)

func main() { awsenv.Main("oauth-callback", handler.Build) }
