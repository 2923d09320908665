// Command follow-event is the official account's server push endpoint
// (GET and POST /wechat/push) and the consumer of its retry queue.
package main

import (
	"context"

	"wxbridge/functions/follow-event/handler"
	"wxbridge/shared/awsenv"
)

func main() {
	awsenv.Main("follow-event", func(ctx context.Context, env awsenv.Env) (any, error) {
		h, err := handler.FromEnv(ctx, env)
		if err != nil {
			return nil, err
		}
		return h.Handle, nil
	})
}
