package handler

// Attacks on "one person is one person" (issue 12): a follow, mini-program
// logins and H5 sign-ins of the same WeChat users all at once while
// user/info is slow or refused for the account's configuration (40164);
// bind tokens presented by two users at the same instant, at login and
// then through a QR scene, forged and expired.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	loginfn "wxbridge/functions/login/handler"
	"wxbridge/infra/devkit/awstest"
	"wxbridge/infra/devkit/sandbox"
	"wxbridge/shared/binding"
	"wxbridge/shared/config"
	"wxbridge/shared/ddb"
	"wxbridge/shared/identity"
	"wxbridge/shared/observe"
	"wxbridge/shared/wechat"
	"wxbridge/shared/wechat/push"
)

// sight links s as the other functions do, retrying a contended person as
// their clients would (503 busy).
func (e *env) sight(t testing.TB, s identity.Sighting) {
	t.Helper()
	for range 8 {
		_, err := e.store.Link(context.Background(), s)
		if !errors.Is(err, identity.ErrContention) {
			if err != nil {
				t.Errorf("link %+v: %v", s, err)
			}
			return
		}
	}
	t.Errorf("link %+v: still contended", s)
}

func mpLogin(p sandbox.Person) identity.Sighting {
	return identity.Sighting{MP: &identity.MPSighting{AppID: mpApp, OpenID: p.MPOpenID}, UnionID: p.UnionID, Source: identity.SourceLogin}
}

// h5 is an H5 sign-in: snsapi_base knows only the openid, snsapi_userinfo
// also the unionid.
func h5(p sandbox.Person, userinfo bool) identity.Sighting {
	s := identity.Sighting{OA: &identity.OASighting{AppID: oaApp, OpenID: p.OAOpenID}, Source: identity.SourceOAuth}
	if userinfo {
		s.UnionID = p.UnionID
	}
	return s
}

// allOne requires each person's mini-program, OA and unionid identities to
// be one person, linked and following.
func (e *env) allOne(t testing.TB, people []sandbox.Person) {
	t.Helper()
	for _, p := range people {
		mp := e.person(t, identity.MPKey(mpApp, p.MPOpenID))
		oa := e.person(t, identity.OAKey(oaApp, p.OAOpenID))
		un := e.person(t, identity.UnionKey(p.UnionID))
		if mp.UID != oa.UID || oa.UID != un.UID || !oa.Linked() || !oa.FollowsOA() {
			t.Errorf("%s split or not following: mp %s, oa %s, union %s (linked %v, follows %v)", p.ID, mp.UID, oa.UID, un.UID, oa.Linked(), oa.FollowsOA())
		}
	}
	// No stray person: one live person item per WeChat user (people
	// merged away stay as tombstones pointing at the survivor).
	out, err := e.db.Scan(context.Background(), &dynamodb.ScanInput{TableName: &e.table})
	if err != nil {
		t.Fatal(err)
	}
	persons := 0
	for _, it := range out.Items {
		if strings.HasPrefix(ddb.String(it, "pk"), "P#") && ddb.String(it, "merged_into") == "" {
			persons++
		}
	}
	if persons != len(people) {
		t.Errorf("%d live person items for %d WeChat users", persons, len(people))
	}
}

// TestAttackEverySightingAtOnceWhileUserInfoIsSlow: for each of several
// people, the follow push, three mini-program logins and H5 sign-ins of
// both scopes race, while user/info is slower than the push budget (the
// follow is queued). Once the queue drains, each is one person.
func TestAttackEverySightingAtOnceWhileUserInfoIsSlow(t *testing.T) {
	e := newEnv(t, push.Safe)
	e.h.Budget = 300 * time.Millisecond
	if err := e.sb.InjectFault(sandbox.Fault{Path: "/cgi-bin/user/info", Latency: 600 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	people := make([]sandbox.Person, 4)
	for i := range people {
		people[i] = e.sb.CreatePerson(sandbox.PersonSpec{})
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for _, p := range people {
		wg.Go(func() { <-start; e.follow(t, p.ID, "") })
		for range 3 {
			wg.Go(func() { <-start; e.sight(t, mpLogin(p)) })
		}
		wg.Go(func() { <-start; e.sight(t, h5(p, false)) })
		wg.Go(func() { <-start; e.sight(t, h5(p, true)) })
	}
	close(start)
	wg.Wait()
	e.sb.ClearFaults()
	if _, failed := e.drain(t); failed != 0 {
		t.Fatalf("%d queued follows failed", failed)
	}
	e.allOne(t, people)
}

// TestAttackConfigErrorThenRecoveryWithConcurrentSignIns: user/info is
// refused with 40164 (IP whitelist) while the person follows, logs in to
// the mini program and signs in on H5 (snsapi_base, no unionid), all at
// once; the follow waits, is tried again while still refused (and
// replayed), then links once the whitelist is fixed: one person, never a
// second one without the unionid.
func TestAttackConfigErrorThenRecoveryWithConcurrentSignIns(t *testing.T) {
	e := newEnv(t, push.Safe)
	if err := e.sb.InjectFault(sandbox.Fault{Path: "/cgi-bin/user/info", ErrCode: 40164}); err != nil {
		t.Fatal(err)
	}
	people := []sandbox.Person{e.sb.CreatePerson(sandbox.PersonSpec{}), e.sb.CreatePerson(sandbox.PersonSpec{})}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for _, p := range people {
		wg.Go(func() { <-start; e.follow(t, p.ID, "") })
		wg.Go(func() { <-start; e.sight(t, mpLogin(p)) })
		wg.Go(func() { <-start; e.sight(t, h5(p, false)) })
	}
	close(start)
	wg.Wait()
	if n := e.queued(t); n != len(people) {
		t.Fatalf("%d follows waiting, want %d", n, len(people))
	}
	for _, p := range people {
		// The H5 sign-in made an OA identity without unionid: the follow
		// must not have turned it into a follower of its own.
		if oa := e.person(t, identity.OAKey(oaApp, p.OAOpenID)); oa.FollowsOA() || oa.UnionID != "" {
			t.Fatalf("follow recorded while user/info was refused: %+v", oa)
		}
	}
	if handled, failed := e.drain(t); handled != 0 || failed != len(people) {
		t.Fatalf("drain while refused: handled %d, failed %d", handled, failed)
	}
	e.sb.ClearFaults()
	// Each waiting message is delivered twice at once (SQS is at least once).
	ev := awstest.Receive(t, e.sqs, e.queueURL, len(people))
	ev.Records = append(ev.Records, ev.Records...)
	if resp := e.retryBatch(t, ev, 10*time.Second); len(resp.BatchItemFailures) != 0 {
		t.Fatalf("failures after recovery: %+v", resp.BatchItemFailures)
	}
	e.allOne(t, people)
}

// TestAttackTwoStrangersScanOneBindingCodeAtOnce: a binding QR code shown
// on a screen, scanned by two people at the same instant: exactly one of
// them is bound, the other follows unbound.
func TestAttackTwoStrangersScanOneBindingCodeAtOnce(t *testing.T) {
	e := newEnv(t, push.Safe)
	for round := range 3 {
		tok, _ := binding.Sign(bindKey, "acct-"+string(rune('a'+round)), e.sb.Clock().Now().Add(time.Hour))
		a, b := e.sb.CreatePerson(sandbox.PersonSpec{}), e.sb.CreatePerson(sandbox.PersonSpec{})
		var wg sync.WaitGroup
		start := make(chan struct{})
		for _, p := range []sandbox.Person{a, b} {
			wg.Go(func() {
				<-start
				if d, err := e.sb.Follow(context.Background(), p.ID, tok); err != nil || !d.Delivered {
					t.Errorf("follow: %v %+v", err, d)
				}
			})
		}
		close(start)
		wg.Wait()
		bound := 0
		for _, p := range []sandbox.Person{a, b} {
			got := e.person(t, identity.OAKey(oaApp, p.OAOpenID))
			if !got.FollowsOA() || got.UnionID != p.UnionID {
				t.Fatalf("follower %+v", got)
			}
			if got.ExternalID != "" {
				bound++
			}
		}
		if bound != 1 {
			t.Fatalf("round %d: %d of two strangers bound by one token, want exactly 1", round, bound)
		}
	}
}

// loginHandler is the login function over the same table and sandbox.
func (e *env) loginHandler(t testing.TB) *loginfn.Handler {
	t.Helper()
	cfg := config.Config{
		MiniProgram:     config.App{AppID: mpApp, Secret: sandbox.DevMiniProgram.Secret},
		OfficialAccount: config.OfficialAccount{App: config.App{AppID: oaApp}},
		SigningKey:      "attack-session-signing-key-0123456789abcdef",
		BindKey:         bindKey,
	}
	var logs bytes.Buffer
	out := &syncWriter{w: &logs}
	api := httptest.NewServer(e.sb) // the same sandbox at a second address
	t.Cleanup(api.Close)
	db := e.te.As("LoginFunction").DB
	h, err := loginfn.New(cfg, wechat.New(wechat.Options{APIBase: api.URL}), identity.NewStore(db, e.table), observe.Logger(out, "login"), observe.NewMetrics(out, "login"),
		loginfn.WithTokenUses(binding.NewUses(db, e.table)))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func (e *env) mpLoginWith(t testing.TB, h *loginfn.Handler, p sandbox.Person, tok string) int {
	t.Helper()
	code, err := e.sb.WXLogin(p.ID)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]string{"code": code, "bind_token": tok})
	req := events.APIGatewayV2HTTPRequest{RouteKey: "POST /mp/login", RawPath: "/mp/login", Body: string(body), Headers: map[string]string{}}
	req.RequestContext.HTTP.Method = "POST"
	resp, err := h.Handle(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode
}

// TestAttackTokenAtLoginThenThroughAQRScene: a business hands a user one
// bind token, which the user presents at mini-program login and again by
// scanning the QR code that carries it. The same user ends as one person
// bound to the account (once the unionid is known, if login did not
// reveal it); a stranger scanning the code afterwards is not bound.
func TestAttackTokenAtLoginThenThroughAQRScene(t *testing.T) {
	for _, reveal := range []bool{true, false} {
		t.Run(map[bool]string{true: "login_reveals_unionid", false: "login_without_unionid"}[reveal], func(t *testing.T) {
			e := newEnv(t, push.Safe)
			login := e.loginHandler(t)
			e.sb.SetRevealUnionID(reveal)
			owner, stranger := e.sb.CreatePerson(sandbox.PersonSpec{}), e.sb.CreatePerson(sandbox.PersonSpec{})
			tok, _ := binding.Sign(bindKey, "8812", e.sb.Clock().Now().Add(time.Hour))
			if status := e.mpLoginWith(t, login, owner, tok); status != 200 {
				t.Fatalf("owner's login with the token = %d", status)
			}
			e.follow(t, owner.ID, tok)
			if !reveal {
				// The mini program learns the unionid from open data
				// (POST /mp/profile), which links the two identities.
				e.sight(t, identity.Sighting{MP: &identity.MPSighting{AppID: mpApp, OpenID: owner.MPOpenID}, UnionID: owner.UnionID, Source: identity.SourceOpenData})
			}
			got := e.person(t, identity.ExternalKey("8812"))
			if got.UnionID != owner.UnionID || !got.FollowsOA() || got.MP[mpApp].OpenID != owner.MPOpenID {
				t.Fatalf("8812 = %+v, want the owner, following, with the mini-program identity", got)
			}
			e.follow(t, stranger.ID, tok)
			if s := e.person(t, identity.OAKey(oaApp, stranger.OAOpenID)); s.ExternalID != "" || s.UID == got.UID {
				t.Fatalf("stranger %+v bound through the owner's code", s)
			}
			if status := e.mpLoginWith(t, login, stranger, tok); status != 400 {
				t.Fatalf("stranger's login with the owner's token = %d, want 400", status)
			}
		})
	}
}

// TestAttackForgedAndExpiredScenes: a scene that looks like a binding
// token but is forged, expired or signed for too long binds nothing and
// spends nothing; the follow is recorded.
func TestAttackForgedAndExpiredScenes(t *testing.T) {
	e := newEnv(t, push.Safe)
	now := e.sb.Clock().Now()
	good, _ := binding.Sign(bindKey, "8812", now.Add(time.Hour))
	expired, _ := binding.Sign(bindKey, "8812", now.Add(-time.Second))
	tooLong, _ := binding.Sign(bindKey, "8812", now.Add(binding.MaxLifetime+time.Hour))
	otherKey, _ := binding.Sign("not-the-business-key-0123456789abcdef", "8812", now.Add(time.Hour))
	// A MAC character away from the end, changed: the last one carries
	// padding bits a lenient decoder ignores, so changing it may forge
	// nothing (the test then fails about 1 in 1,000 runs).
	i := len(good) - 5
	c := byte('A')
	if good[i] == c {
		c = 'B'
	}
	forged := good[:i] + string(c) + good[i+1:]
	for name, scene := range map[string]string{"expired": expired, "beyond_30_days": tooLong, "other_key": otherKey, "forged_mac": forged, "another_id": "8813" + good[4:]} {
		p := e.sb.CreatePerson(sandbox.PersonSpec{})
		e.follow(t, p.ID, scene)
		if got := e.person(t, identity.OAKey(oaApp, p.OAOpenID)); got.ExternalID != "" || !got.FollowsOA() {
			t.Fatalf("%s: %+v", name, got)
		}
	}
	if _, err := e.store.Lookup(context.Background(), identity.ExternalKey("8812")); !errors.Is(err, identity.ErrNotFound) {
		t.Fatalf("8812 bound by a bad scene: %v", err)
	}
	// The genuine token is still unspent for its user.
	p := e.sb.CreatePerson(sandbox.PersonSpec{})
	e.follow(t, p.ID, good)
	if got := e.person(t, identity.ExternalKey("8812")); got.UnionID != p.UnionID {
		t.Fatalf("8812 = %+v: the genuine token did not bind its user", got)
	}
}
