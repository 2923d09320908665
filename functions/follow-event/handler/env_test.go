package handler

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"wxbridge/infra/devkit/sandbox"
	"wxbridge/infra/devkit/testenv"
	"wxbridge/shared/identity"
	"wxbridge/shared/wechat/push"
)

// TestFromEnvCountsMergesOfPushes: the function as template.yaml builds it
// counts the merge a follow causes (a mini-program user who had visited
// the H5 pages without giving a unionid), labelled with the push as its
// source. FromEnv once left the identity store without metrics, and the
// push's sightings named no source.
func TestFromEnvCountsMergesOfPushes(t *testing.T) {
	te := testenv.New(t, testenv.Tokens(oaApp))
	ctx := context.Background()
	h, err := FromEnv(ctx, te.FunctionEnv("FollowEventFunction"))
	if err != nil {
		t.Fatal(err)
	}
	fs, err := te.Sandbox.CreateFollowers(sandbox.FollowersSpec{Count: 1, MiniProgramShare: 1})
	if err != nil {
		t.Fatal(err)
	}
	f := fs[0]
	people := identity.NewStore(te.DB, te.Table)
	for _, s := range []identity.Sighting{
		{MP: &identity.MPSighting{AppID: mpApp, OpenID: f.MPOpenID}, UnionID: f.UnionID, Source: identity.SourceLogin},
		{OA: &identity.OASighting{AppID: oaApp, OpenID: f.OAOpenID}, Source: identity.SourceOAuth},
	} {
		if _, err := people.Link(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	ev := push.Event{ToUserName: "gh_sandbox", FromUserName: f.OAOpenID, CreateTime: time.Now().Unix(), MsgType: "event", Event: "subscribe"}
	if _, err := h.Accounts[oaApp].Processor.Process(ctx, ev); err != nil {
		t.Fatal(err)
	}
	merges := map[string]int{}
	for _, l := range strings.Split(te.Logs.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["Merges"] != nil {
			merges[m["source"].(string)]++
		}
	}
	if len(merges) != 1 || merges["push"] != 1 {
		t.Errorf("Merges by source = %v, want push 1", merges)
	}
}
