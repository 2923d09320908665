// Command oauth-callback is web OAuth in the browser: the official
// accounts' H5 sign-in (GET /oauth/authorize, /oauth/callback and
// /oauth/{appid}/…), the website apps' QR login (GET /web/authorize,
// /web/callback and /web/{appid}/…), and WeChat's domain verification
// files at GET /<name>.
package main

import (
	"wxbridge/functions/oauth-callback/handler"
	"wxbridge/shared/awsenv"
)

func main() { awsenv.Main("oauth-callback", handler.Build) }
