package handler

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"wxbridge/infra/devkit/sandbox"
	"wxbridge/infra/devkit/testenv"
	"wxbridge/shared/backfill"
	"wxbridge/shared/config"
	"wxbridge/shared/wechat/push"
)

// TestBackfillOfTwoAccounts backfills two official accounts at once on one
// sync queue: each run lists its own account's followers with that
// account's token, keeps its own checkpoints (pages, chunks, counts), and
// links OA#<appid>#<openid>; someone who follows both ends up one person
// with both identities.
func TestBackfillOfTwoAccounts(t *testing.T) {
	oa2 := sandbox.DevOfficialAccount2
	e := newEnv(t,
		testenv.Sandbox(func(c *sandbox.Config) { c.Apps = sandbox.DefaultApps() }),
		testenv.Configure(func(c *config.Config) {
			c.OfficialAccounts = []config.OfficialAccount{{App: config.App{AppID: oa2.AppID, Secret: oa2.Secret}, Token: testenv.PushToken}}
		}),
		testenv.Tokens(oaApp, oa2.AppID))
	ctx := context.Background()
	for _, s := range e.accounts.Syncers {
		s.ChunkSize = 10
	}
	// The second account's follows are pushed somewhere that only
	// acknowledges them: wxbridge learns of them by the backfill alone.
	ack := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("success")) }))
	t.Cleanup(ack.Close)
	if err := e.sb.SetPushTargetApp(oa2.AppID, sandbox.PushTarget{URL: ack.URL, Token: testenv.PushToken, Mode: push.Plaintext}); err != nil {
		t.Fatal(err)
	}
	// 12 follow the first account, 8 of them the second too, and 5 more
	// the second only.
	fs, err := e.sb.CreateFollowers(sandbox.FollowersSpec{Count: 12})
	if err != nil {
		t.Fatal(err)
	}
	var second []sandbox.Person
	for _, f := range fs[:8] {
		second = append(second, f.Person)
	}
	for range 5 {
		second = append(second, e.sb.CreatePerson(sandbox.PersonSpec{}))
	}
	for _, p := range second {
		if _, err := e.sb.FollowApp(ctx, p.ID, oa2.AppID, ""); err != nil {
			t.Fatal(err)
		}
	}

	runs := map[string]backfill.Run{}
	for _, appid := range []string{"", oa2.AppID} { // "": the default account
		s, err := e.accounts.Syncer(appid)
		if err != nil {
			t.Fatal(err)
		}
		r, started, err := s.Start(ctx)
		if err != nil || !started {
			t.Fatalf("start %q: %v %v", appid, started, err)
		}
		runs[s.AppID] = r
	}
	e.drain(t, 2)

	appOf := map[string]string{} // openid -> its app
	for _, p := range e.sb.People() {
		for appid, openid := range p.OpenIDs {
			appOf[openid] = appid
		}
	}
	for appid, want := range map[string]int{oaApp: 12, oa2.AppID: 13} {
		s, _ := e.accounts.Syncer(appid)
		got, err := s.Status(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		if got.ID != runs[appid].ID || got.AppID != appid || got.Status != backfill.Done || got.Seen != want || got.Waiting != want || got.Chunks != 2 {
			t.Errorf("run of %s: %+v, want %d followers in 2 chunks", appid, got, want)
		}
		// Its first page is its own account's followers.
		page, err := e.runs.Page(ctx, appid, got.ID, 0)
		if err != nil || page == nil || len(page.OpenIDs) != want {
			t.Fatalf("page 0 of %s: %+v %v", appid, page, err)
		}
		for _, openid := range page.OpenIDs {
			if appOf[openid] != appid {
				t.Fatalf("page 0 of %s lists %s, an openid of %q", appid, openid, appOf[openid])
			}
		}
	}
	if runs[oaApp].ID == runs[oa2.AppID].ID {
		t.Error("one run for both accounts")
	}
	people := e.livePeople(t)
	both := 0
	for _, p := range people {
		_, in1 := p.OA[oaApp]
		id2, in2 := p.OA[oa2.AppID]
		if in1 && in2 {
			both++
		}
		if in2 && !slices.ContainsFunc(second, func(s sandbox.Person) bool { return s.OpenIDs[oa2.AppID] == id2.OpenID }) {
			t.Errorf("%s has an identity in the second account nobody followed it with: %+v", p.UID, p)
		}
	}
	if len(people) != 17 || both != 8 {
		t.Errorf("%d people, %d in both accounts; want 17 and 8", len(people), both)
	}
}
