package main

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"wxbridge/infra/devkit/sandbox"
	"wxbridge/shared/backfill"
)

// syncer starts and reads the backfills of official account appid ("" the
// default one), as wxctl followers does.
func (s *Stack) syncer(appid string) (*backfill.Syncer, error) {
	oa, ok := s.apps.OA(appid)
	if !ok {
		return nil, badRequest{fmt.Errorf("%q is not an official account of this stack", appid)}
	}
	return &backfill.Syncer{
		AppID: oa.AppID,
		Store: backfill.NewStore(dynamodb.NewFromConfig(s.aws), s.res.refs["Table"]),
		Queue: backfill.Queue{Client: sqs.NewFromConfig(s.aws), URL: s.res.queues["SyncQueue"]},
	}, nil
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
	// {"appid"} names the official account to backfill; none, the default.
	mux.HandleFunc("POST /_dev/api/backfill", s.handle(func(r *http.Request) (any, error) {
		var in struct {
			AppID string `json:"appid"`
		}
		if err := readJSON(r, &in); err != nil {
			return nil, err
		}
		sy, err := s.syncer(in.AppID)
		if err != nil {
			return nil, err
		}
		run, started, err := sy.Start(r.Context())
		return map[string]any{"run": run, "started": started}, err
	}))
}

// backfill is the default official account's latest run, if any.
func (s *Stack) backfill(r *http.Request) *backfill.Run {
	sy, err := s.syncer("")
	if err != nil {
		return nil
	}
	run, err := sy.Store.Run(r.Context(), sy.AppID, "")
	if err != nil || run.ID == "" {
		return nil
	}
	return &run
}
