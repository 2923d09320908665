package main

import (
	"errors"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"wxbridge/infra/devkit/sandbox"
	"wxbridge/shared/backfill"
)

// syncer starts and reads backfills, as wxctl followers does.
func (s *Stack) syncer() *backfill.Syncer {
	return &backfill.Syncer{
		AppID: s.apps.OfficialAccount.AppID,
		Store: backfill.NewStore(dynamodb.NewFromConfig(s.aws), s.res.refs["Table"]),
		Queue: backfill.Queue{Client: sqs.NewFromConfig(s.aws), URL: s.res.queues["SyncQueue"]},
	}
}

// backfillRoutes adds followers who predate wxbridge, and starting a
// backfill, to the console's API.
func (s *Stack) backfillRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /_dev/api/followers", s.handle(func(r *http.Request) (any, error) {
		spec := sandbox.FollowersSpec{Count: 500, MiniProgramShare: 0.3, WithoutUnionIDShare: 0.1}
		if err := readJSON(r, &spec); err != nil {
			return nil, err
		}
		made, err := s.sb.CreateFollowers(spec)
		if errors.Is(err, sandbox.ErrFollowersSpec) {
			return nil, badRequest{err}
		}
		return map[string]int{"created": len(made)}, err
	}))
	mux.HandleFunc("POST /_dev/api/backfill", s.handle(func(r *http.Request) (any, error) {
		run, started, err := s.syncer().Start(r.Context())
		return map[string]any{"run": run, "started": started}, err
	}))
}

// backfill is the latest run, if any.
func (s *Stack) backfill(r *http.Request) *backfill.Run {
	run, err := s.syncer().Store.Run(r.Context(), s.apps.OfficialAccount.AppID, "")
	if err != nil || run.ID == "" {
		return nil
	}
	return &run
}
