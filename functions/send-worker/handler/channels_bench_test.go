package handler

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"wxbridge/infra/devkit/sandbox"
	"wxbridge/shared/identity"
	"wxbridge/shared/notify"
	"wxbridge/shared/reach"
	"wxbridge/shared/wechat/push"
)

// reachability is one kind of person of the benchmark's population: what
// the platform lets wxbridge do, and what wxbridge has recorded of it.
type reachability struct {
	name  string
	share int // per 100 people
	setup func(e *env, p sandbox.Person, now time.Time) error
}

// population is the benchmark's mix, as a deployment that has received
// the account's pushes for a while sees its people. Per 100: 85 can be
// reached; 15 cannot, of whom 5 with nothing recorded that says so.
var population = []reachability{
	// Followers who wrote to the account today: the window is open.
	{"wrote_today", 15, func(e *env, p sandbox.Person, now time.Time) error {
		return errors.Join(e.seed(p, follows(now), true),
			delivered(e.sb.Message(context.Background(), p.ID, "is my order on its way?")),
			e.reachView().Interacted(context.Background(), oaKey(p), now))
	}},
	// Followers who last wrote three days ago.
	{"wrote_days_ago", 5, func(e *env, p sandbox.Person, now time.Time) error {
		return errors.Join(e.seed(p, follows(now), true), e.reachView().Interacted(context.Background(), oaKey(p), now.Add(-72*time.Hour)))
	}},
	// Followers, nothing else.
	{"follower", 25, func(e *env, p sandbox.Person, now time.Time) error {
		return e.seed(p, follows(now), true)
	}},
	// Followers whose follow wxbridge never saw (an OAuth visitor who
	// followed before wxbridge), nothing recorded.
	{"follow_unknown", 5, func(e *env, p sandbox.Person, now time.Time) error {
		return e.seed(p, nil, true)
	}},
	// Unfollowed; a long-term subscribe-notification consent.
	{"oa_long_term", 10, func(e *env, p sandbox.Person, now time.Time) error {
		return errors.Join(e.seed(p, unfollowed(now), true),
			delivered(e.sb.OAConsent(context.Background(), p.ID, sandbox.OAPopup{TemplateID: oaSubTemplate, LongTerm: true})),
			e.consented(oaKey(p), reach.Consent{TemplateID: oaSubTemplate, LongTerm: true, At: now}))
	}},
	// Unfollowed; one one-time subscribe-notification consent.
	{"oa_one_time", 10, func(e *env, p sandbox.Person, now time.Time) error {
		return errors.Join(e.seed(p, unfollowed(now), true),
			delivered(e.sb.OAConsent(context.Background(), p.ID, sandbox.OAPopup{TemplateID: oaSubTemplate})),
			e.consented(oaKey(p), reach.Consent{TemplateID: oaSubTemplate, At: now}))
	}},
	// Unfollowed; one mini-program consent, recorded by the consent
	// endpoint.
	{"mp_one_time", 10, func(e *env, p sandbox.Person, now time.Time) error {
		_, err := e.sb.GrantConsent(p.ID, mpTemplate)
		return errors.Join(e.seed(p, unfollowed(now), true), err,
			e.consented(mpKey(p), reach.Consent{TemplateID: mpTemplate, At: now}))
	}},
	// Unfollowed; a mini-program consent from before wxbridge, not recorded.
	{"mp_unrecorded", 5, func(e *env, p sandbox.Person, now time.Time) error {
		_, err := e.sb.GrantConsent(p.ID, mpTemplate)
		return errors.Join(e.seed(p, unfollowed(now), true), err)
	}},
	// Unfollowed; their consents used up or withdrawn, as recorded.
	{"consents_gone", 10, func(e *env, p sandbox.Person, now time.Time) error {
		return errors.Join(e.seed(p, unfollowed(now), true),
			e.consented(oaKey(p), reach.Consent{TemplateID: oaSubTemplate, Rejected: true, At: now}),
			e.consented(mpKey(p), reach.Consent{TemplateID: mpTemplate, At: now.Add(-time.Hour)}),
			e.reachView().Use(context.Background(), mpKey(p), mpTemplate))
	}},
	// Unfollowed, official account only, nothing recorded.
	{"unreachable_oa_only", 3, func(e *env, p sandbox.Person, now time.Time) error {
		return e.seed(p, unfollowed(now), false)
	}},
	// Unfollowed, both apps, nothing recorded.
	{"unreachable", 2, func(e *env, p sandbox.Person, now time.Time) error {
		return e.seed(p, unfollowed(now), true)
	}},
}

func follows(now time.Time) *identity.Follow {
	return &identity.Follow{Subscribed: true, At: now.Add(-30 * 24 * time.Hour).Truncate(time.Second)}
}

func unfollowed(now time.Time) *identity.Follow {
	return &identity.Follow{Subscribed: false, At: now.Add(-24 * time.Hour).Truncate(time.Second)}
}

func oaKey(p sandbox.Person) reach.Key { return reach.Key{AppID: oaApp, OpenID: p.OAOpenID} }
func mpKey(p sandbox.Person) reach.Key { return reach.Key{AppID: mpApp, OpenID: p.MPOpenID} }

// delivered is a push's error, or why it was not delivered.
func delivered(d sandbox.Delivery, err error) error {
	if err == nil && !d.Delivered {
		err = fmt.Errorf("push not delivered: %+v", d)
	}
	return err
}

// seed links p as the pushes and logins would have: the OA identity with
// follow (nil: follow state unknown), and the MP identity when mp. A
// follower follows on the platform too; anyone else has unfollowed there.
func (e *env) seed(p sandbox.Person, follow *identity.Follow, mp bool) error {
	ctx := context.Background()
	err := delivered(e.sb.Follow(ctx, p.ID, ""))
	if follow != nil && !follow.Subscribed {
		err = errors.Join(err, delivered(e.sb.Unfollow(ctx, p.ID)))
	}
	s := identity.Sighting{OA: &identity.OASighting{AppID: oaApp, OpenID: p.OAOpenID, Follow: follow}, UnionID: p.UnionID}
	if mp {
		s.MP = &identity.MPSighting{AppID: mpApp, OpenID: p.MPOpenID}
	}
	_, lerr := e.store.Link(ctx, s)
	return errors.Join(err, lerr)
}

// reachView is the test's own view of the reach store.
func (e *env) reachView() *reach.Store { return reachStore(e.te.DB, e.table, e.sb) }

func (e *env) consented(k reach.Key, c reach.Consent) error {
	return e.reachView().Consented(context.Background(), k, []reach.Consent{c})
}

// people makes n people of the population's mix, in kind order, n a
// multiple of 100; the pushes go to a server that accepts them unread (the
// stores are seeded directly).
func (e *env) people(t testing.TB, n int) []sandbox.Person {
	t.Helper()
	accept := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("success")) }))
	defer accept.Close()
	if err := e.sb.SetPushTarget(sandbox.PushTarget{URL: accept.URL, Token: pushToken, Mode: push.Plaintext}); err != nil {
		t.Fatal(err)
	}
	now := e.sb.Clock().Now()
	var kinds []reachability
	for _, k := range population {
		for range k.share * n / 100 {
			kinds = append(kinds, k)
		}
	}
	out := make([]sandbox.Person, len(kinds))
	errs := make([]error, len(kinds))
	var wg sync.WaitGroup
	next := make(chan int)
	for range 8 {
		wg.Go(func() {
			for i := range next {
				out[i] = e.sb.CreatePerson(sandbox.PersonSpec{})
				if err := kinds[i].setup(e, out[i], now); err != nil {
					errs[i] = fmt.Errorf("%s: %w", kinds[i].name, err)
				}
			}
		})
	}
	for i := range kinds {
		next <- i
	}
	close(next)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return out
}

// sent is what sending one job to each of people cost.
type sent struct {
	delivered     int
	calls         map[string]int
	reads, writes int // DynamoDB requests
	took          time.Duration
}

// sendAll sends one job to each person through h, ten at a time as the
// event source mapping hands them over; any, or the channels in the
// default order (template, subscribe, oa_subscribe, customer_service).
func (e *env) sendAll(t testing.TB, h *Handler, people []sandbox.Person, label string, any bool) sent {
	t.Helper()
	before := e.calls()
	e.counter.Counts()
	start := time.Now()
	for i := 0; i < len(people); i += 10 {
		var jobs []notify.Job
		for _, p := range people[i:min(i+10, len(people))] {
			j := allChannels(fmt.Sprintf("%s-%s", label, p.ID), p)
			if !any {
				j.Channels = nil
			}
			jobs = append(jobs, j)
		}
		resp, err := h.Handle(context.Background(), batchEvent(t, jobs))
		if err != nil || len(resp.BatchItemFailures) != 0 {
			t.Fatalf("batch: %v, %d failures", err, len(resp.BatchItemFailures))
		}
	}
	c := e.counter.Counts()
	out := sent{calls: e.called(before), took: time.Since(start),
		reads: c["GetItem"] + c["BatchGetItem"] + c["Query"], writes: c["PutItem"] + c["UpdateItem"] + c["DeleteItem"] + c["TransactWriteItems"]}
	for _, p := range people {
		if len(e.inbox(t, p)) > 0 {
			out.delivered++
		}
	}
	return out
}

// BenchmarkChannelChoice sends one job to each of 1,000 people of mixed
// reachability (population) with "channels": "any", and, side by side, to
// another 1,000 of the same mix with the channels tried blindly in the
// default order by a worker without the reach store (wxbridge before it):
// the share delivered and WeChat calls per delivered job of each (target
// for "any": at most 1.1), and the template messages each spent (the
// account's daily quota).
func BenchmarkChannelChoice(b *testing.B) {
	const n = 1000
	for range b.N {
		b.StopTimer()
		e := newEnv(b)
		chosen, blindly := e.people(b, n), e.people(b, n)
		blindSender := *e.sender
		blindSender.Reach = nil
		blind := *e.h
		blind.Sender = &blindSender
		b.StartTimer()
		a := e.sendAll(b, e.h, chosen, "any", true)
		o := e.sendAll(b, &blind, blindly, "blind", false)
		b.StopTimer()
		total := func(s sent) (c int) {
			for _, v := range s.calls {
				c += v
			}
			return c
		}
		b.ReportMetric(100*float64(a.delivered)/n, "any-delivered-%")
		b.ReportMetric(float64(total(a))/float64(a.delivered), "any-calls/delivered")
		b.ReportMetric(float64(a.calls["/cgi-bin/message/template/send"]), "any-template-msgs")
		b.ReportMetric(float64(a.took.Milliseconds())/n, "any-ms/job")
		b.ReportMetric(float64(a.reads)/n, "any-ddb-reads/job")
		b.ReportMetric(float64(a.writes)/n, "any-ddb-writes/job")
		b.ReportMetric(100*float64(o.delivered)/n, "blind-delivered-%")
		b.ReportMetric(float64(total(o))/float64(o.delivered), "blind-calls/delivered")
		b.ReportMetric(float64(o.calls["/cgi-bin/message/template/send"]), "blind-template-msgs")
		b.ReportMetric(float64(o.took.Milliseconds())/n, "blind-ms/job")
		b.ReportMetric(float64(o.reads)/n, "blind-ddb-reads/job")
		b.ReportMetric(float64(o.writes)/n, "blind-ddb-writes/job")
		b.Logf("any: %d delivered, calls %v; blind: %d delivered, calls %v", a.delivered, a.calls, o.delivered, o.calls)
	}
}
