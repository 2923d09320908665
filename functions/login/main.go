// Command login is the mini-program login function: POST /mp/login,
// POST /mp/profile and GET /me.
package main

import (
	"context"

	"wxbridge/functions/login/handler"
	"wxbridge/shared/awsenv"
)

func main() {
	awsenv.Main("login", func(ctx context.Context, env awsenv.Env) (any, error) {
		h, err := handler.FromEnv(ctx, env)
		if err != nil {
			return nil, err
		}
		return h.Handle, nil
	})
}
