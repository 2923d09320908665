package main

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"wxbridge/infra/devkit/sandbox"
	"wxbridge/shared/awsenv"
	"wxbridge/shared/backfill"
	"wxbridge/shared/binding"
	"wxbridge/shared/identity"
	"wxbridge/shared/tokens"
)

//go:embed console.html
var consolePage []byte

//go:embed h5.html
var h5Page []byte

// console adds the dev console and its JSON API under /_dev/. None of it
// exists in Lambda.
func (s *Stack) console(mux *http.ServeMux) {
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/_dev/", http.StatusFound) })
	mux.HandleFunc("GET /_dev/{$}", page(consolePage))
	mux.HandleFunc("GET /_dev/h5", page(h5Page))
	mux.HandleFunc("GET /_dev/config", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, s.devConfig()) })
	mux.HandleFunc("GET /_dev/api/state", s.handle(s.state))
	if s.sb == nil {
		return
	}
	mux.HandleFunc("POST /_dev/api/people", s.handle(func(r *http.Request) (any, error) {
		var spec sandbox.PersonSpec
		if err := readJSON(r, &spec); err != nil {
			return nil, err
		}
		return s.sb.CreatePerson(spec), nil
	}))
	mux.HandleFunc("POST /_dev/api/people/{id}/login", s.handle(func(r *http.Request) (any, error) {
		return s.miniProgramLogin(r.Context(), r.PathValue("id"))
	}))
	mux.HandleFunc("POST /_dev/api/people/{id}/follow", s.handle(func(r *http.Request) (any, error) {
		return s.sb.Follow(r.Context(), r.PathValue("id"), "")
	}))
	mux.HandleFunc("POST /_dev/api/people/{id}/unfollow", s.handle(func(r *http.Request) (any, error) {
		return s.sb.Unfollow(r.Context(), r.PathValue("id"))
	}))
	s.notifyRoutes(mux)
	s.backfillRoutes(mux)
	mux.HandleFunc("POST /_dev/api/people/{id}/scan", s.handle(func(r *http.Request) (any, error) {
		var in struct {
			ExternalID string `json:"external_id"`
		}
		if err := readJSON(r, &in); err != nil {
			return nil, err
		}
		// The business's binding QR code: a temporary parametric code whose
		// scene is a binding token for the external id.
		scene, err := binding.Sign(s.apps.BindKey, in.ExternalID, time.Now().Add(30*time.Minute))
		if err != nil {
			return nil, badRequest{err}
		}
		return s.sb.Scan(r.Context(), r.PathValue("id"), scene, "")
	}))
}

// badRequest marks an error the caller caused.
type badRequest struct{ error }

func (s *Stack) handle(f func(*http.Request) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := f(r)
		var br badRequest
		switch {
		case errors.As(err, &br), errors.Is(err, sandbox.ErrNoPerson):
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		case err != nil:
			writeJSON(w, http.StatusConflict, map[string]string{"error": err.Error()})
		default:
			writeJSON(w, http.StatusOK, v)
		}
	}
}

func page(b []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.Write(b)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func readJSON(r *http.Request, v any) error {
	b, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil || len(bytes.TrimSpace(b)) == 0 {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return badRequest{fmt.Errorf("body is not the expected JSON: %w", err)}
	}
	return nil
}

// miniProgramLogin plays the mini program: wx.login in the sandbox, then
// POST /mp/login to wxbridge, exactly as a phone would.
func (s *Stack) miniProgramLogin(ctx context.Context, id string) (any, error) {
	code, err := s.sb.WXLogin(id)
	if err != nil {
		return nil, err
	}
	body, _ := json.Marshal(map[string]string{"code": code})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.APIURL+"/mp/login", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("POST /mp/login answered %d: %v", resp.StatusCode, out["error"])
	}
	return out, nil
}

// personView is a simulated person with what wxbridge knows of them.
type personView struct {
	sandbox.Person
	Known *knownPerson `json:"wxbridge,omitempty"`
}

type knownPerson struct {
	UID        string `json:"uid"`
	Linked     bool   `json:"linked"`
	FollowsOA  bool   `json:"follows_oa"`
	HasMP      bool   `json:"has_mp"`
	HasOA      bool   `json:"has_oa"`
	UnionID    bool   `json:"unionid_known"`
	ExternalID string `json:"external_id,omitempty"`
	Merged     int    `json:"merged"`
}

type tokenView struct {
	App         string    `json:"app"`
	AppID       string    `json:"appid"`
	RefreshedAt time.Time `json:"refreshed_at,omitzero"`
	ExpiresAt   time.Time `json:"expires_at,omitzero"`
	Failure     string    `json:"failure,omitempty"`
}

type queueView struct {
	Name     string `json:"name"`
	Visible  int    `json:"visible"`
	InFlight int    `json:"in_flight"`
	Delayed  int    `json:"delayed"`
}

// shownPeople is how many people the console shows cards for.
const shownPeople = 24

// state is everything the console shows, in one poll.
func (s *Stack) state(r *http.Request) (any, error) {
	ctx := r.Context()
	out := struct {
		People []personView `json:"people"`
		// Everyone counts the sandbox's people; People shows the first
		// few, so that a backfill of thousands does not flood the page.
		Everyone int           `json:"everyone"`
		Backfill *backfill.Run `json:"backfill,omitempty"`
		Tokens   []tokenView   `json:"tokens"`
		Queues   []queueView   `json:"queues"`
		Ledger   []ledgerEntry `json:"ledger"`
		Logs     []string      `json:"logs"`
		Now      time.Time     `json:"now"`
	}{Ledger: s.ledger(ctx, 15), Logs: s.tap.recent(60), Now: time.Now(), Backfill: s.backfill(r)}
	if s.sb != nil {
		out.Now = s.sb.Clock().Now()
		store := identity.NewStore(dynamodb.NewFromConfig(s.aws), s.res.refs["Table"])
		everyone := s.sb.People()
		out.Everyone = len(everyone)
		for _, p := range everyone[:min(len(everyone), shownPeople)] {
			v := personView{Person: p}
			found, err := store.Lookup(ctx, identity.MPKey(s.apps.MiniProgram.AppID, p.MPOpenID))
			if errors.Is(err, identity.ErrNotFound) {
				found, err = store.Lookup(ctx, identity.OAKey(s.apps.OfficialAccount.AppID, p.OAOpenID))
			}
			if err == nil {
				v.Known = &knownPerson{UID: found.UID, Linked: found.Linked(), FollowsOA: found.FollowsOA(), HasMP: len(found.MP) > 0,
					HasOA: len(found.OA) > 0, UnionID: found.UnionID != "", ExternalID: found.ExternalID, Merged: len(found.MergedFrom)}
			}
			out.People = append(out.People, v)
		}
	}
	sm := secretsmanager.NewFromConfig(s.aws)
	for _, t := range []struct{ app, appid, env string }{
		{"mini program", s.apps.MiniProgram.AppID, tokens.EnvMiniProgramSecret},
		{"official account", s.apps.OfficialAccount.AppID, tokens.EnvOfficialAccountSecret},
	} {
		id := s.tokenSecret(t.env)
		if id == "" {
			continue
		}
		var st tokens.Stored
		v := tokenView{App: t.app, AppID: t.appid}
		if err := awsenv.SecretJSON(ctx, sm, id, &st); err == nil {
			v.RefreshedAt, v.ExpiresAt = st.RefreshedAt, st.ExpiresAt
			if st.Failure != nil {
				v.Failure = fmt.Sprintf("errcode %d", st.Failure.ErrCode)
			}
		}
		out.Tokens = append(out.Tokens, v)
	}
	q := sqs.NewFromConfig(s.aws)
	for _, id := range s.tpl.ResourcesOf("AWS::SQS::Queue") {
		attrs, err := q.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: strPtr(s.res.queues[id]), AttributeNames: []sqstypes.QueueAttributeName{
			sqstypes.QueueAttributeNameApproximateNumberOfMessages, sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible, sqstypes.QueueAttributeNameApproximateNumberOfMessagesDelayed,
		}})
		if err != nil {
			continue
		}
		n := func(k sqstypes.QueueAttributeName) int { v, _ := strconv.Atoi(attrs.Attributes[string(k)]); return v }
		out.Queues = append(out.Queues, queueView{Name: id, Visible: n(sqstypes.QueueAttributeNameApproximateNumberOfMessages),
			InFlight: n(sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible), Delayed: n(sqstypes.QueueAttributeNameApproximateNumberOfMessagesDelayed)})
	}
	return out, nil
}

// tokenSecret is the token secret the template names in env, as any
// function sees it.
func (s *Stack) tokenSecret(env string) string {
	for _, f := range s.fns.fns {
		if v, ok := f.def.Env[env]; ok {
			if id, err := s.res.resolve(v); err == nil {
				return id
			}
		}
	}
	return ""
}

func strPtr(s string) *string { return &s }
