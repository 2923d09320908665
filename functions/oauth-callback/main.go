// Command oauth-callback is the official account's web OAuth for H5 pages:
// GET /oauth/authorize and GET /oauth/callback.
package main

import (
	"context"

	"wxbridge/functions/oauth-callback/handler"
	"wxbridge/shared/awsenv"
)

func main() {
	awsenv.Main("oauth-callback", func(ctx context.Context, env awsenv.Env) (any, error) {
		h, err := handler.FromEnv(ctx, env)
		if err != nil {
			return nil, err
		}
		return h.Handle, nil
	})
}
