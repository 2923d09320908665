// Command login is the mini-program login function: POST /mp/login,
// POST /mp/profile and GET /me.
package main

import (
	"wxbridge/functions/login/handler"
	"wxbridge/shared/awsenv"
)

func main() { awsenv.Main("login", handler.Build) }
