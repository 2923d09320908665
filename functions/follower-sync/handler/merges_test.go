package handler

import (
	"context"
	"testing"
	"time"

	"wxbridge/infra/devkit/sandbox"
	"wxbridge/shared/backfill"
	"wxbridge/shared/identity"
	"wxbridge/shared/wechat/push"
)

// TestMergesAreCountedWhateverTheirSource: two followers each known twice
// (their mini-program login, and an OAuth visit that gave no unionid) are
// merged, one by the follow event the platform pushes, one by the
// backfill. The identity store counts both merges, once each, each with
// its source.
func TestMergesAreCountedWhateverTheirSource(t *testing.T) {
	e := newEnv(t)
	fs, err := e.sb.CreateFollowers(sandbox.FollowersSpec{Count: 2, MiniProgramShare: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, f := range fs {
		e.loginAs(t, f.ID)
		visit := identity.Sighting{OA: &identity.OASighting{AppID: oaApp, OpenID: f.OAOpenID}, Source: identity.SourceOAuth}
		if _, err := e.people.Link(ctx, visit); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(e.livePeople(t)); n != 4 {
		t.Fatalf("%d people before the merges, want 4", n)
	}

	proc := e.followEvent()
	ev := push.Event{ToUserName: "gh_sandbox", FromUserName: fs[0].OAOpenID, CreateTime: time.Now().Unix(), MsgType: "event", Event: "subscribe"}
	if _, err := proc.Process(ctx, ev); err != nil {
		t.Fatal(err)
	}
	e.start(t)
	e.drain(t, 1)

	if r := e.status(t); r.Status != backfill.Done || r.Linked != 2 {
		t.Fatalf("run = %+v", r)
	}
	if n := len(e.livePeople(t)); n != 2 {
		t.Fatalf("%d people after the merges, want 2", n)
	}
	if all, pushed, backfilled := metric(e.logs, "Merges"), metric(e.logs, "Merges", "source", "push"), metric(e.logs, "Merges", "source", "backfill"); all != 2 || pushed != 1 || backfilled != 1 {
		t.Errorf("Merges counted %d times, %d by the push, %d by the backfill; want 2, 1 and 1", all, pushed, backfilled)
	}
}
