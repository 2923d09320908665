// Command login is the login function of the mini programs and mobile
// apps: POST /mp/login, /mp/profile, /mp/phone, /mp/subscribe-consents (and
// under /mp/{appid}/), POST /app/login (and /app/{appid}/login), GET /me.
package main

import (
	"wxbridge/functions/login/handler"
	"wxbridge/shared/awsenv"
)

func main() { awsenv.Main("login", handler.Build) }
