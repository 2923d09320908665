package wechat_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"wxbridge/infra/devkit/sandbox"
	"wxbridge/shared/wechat"
)

// TestFollowerPageWalksTheList lists the sandbox's followers page by page
// until Last, as the backfill does.
func TestFollowerPageWalksTheList(t *testing.T) {
	sb := sandbox.New(sandbox.DefaultConfig())
	srv := httptest.NewServer(sb)
	defer srv.Close()
	ctx := context.Background()
	oa := sandbox.DevOfficialAccount
	tok, err := wechat.New(wechat.Options{APIBase: srv.URL}).StableToken(ctx, oa.AppID, oa.Secret, false)
	if err != nil {
		t.Fatal(err)
	}
	c := wechat.New(wechat.Options{APIBase: srv.URL, Tokens: &staticSource{current: tok.Token}})
	fs, err := sb.CreateFollowers(sandbox.FollowersSpec{Count: 12345})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	pages := 0
	for next := ""; ; {
		p, err := c.FollowerPage(ctx, oa.AppID, next)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if p.Total != len(fs) || len(p.OpenIDs) > wechat.MaxFollowerPage {
			t.Fatalf("page: total %d, %d openids", p.Total, len(p.OpenIDs))
		}
		got = append(got, p.OpenIDs...)
		if p.Last() {
			break
		}
		next = p.NextOpenID
	}
	if pages != 3 || len(got) != len(fs) || got[12344] != fs[12344].OAOpenID {
		t.Errorf("%d pages, %d openids", pages, len(got))
	}
}

// TestFollowerPageAnswers covers the answer shapes user/get is known to
// give, including a last page with an empty next_openid (as documented)
// and one that answers with its count not matching its list.
func TestFollowerPageAnswers(t *testing.T) {
	cases := []struct {
		name, body string
		last       bool
		n          int
		fails      bool
	}{
		{"page_naming_its_last_openid", `{"total":2,"count":2,"data":{"openid":["oA","oB"]},"next_openid":"oB"}`, false, 2, false},
		{"documented_last_page", `{"total":2,"count":2,"data":{"openid":["oA","oB"]},"next_openid":""}`, true, 2, false},
		{"after_the_last_page", `{"total":2,"count":0,"next_openid":""}`, true, 0, false},
		{"no_followers", `{"total":0,"count":0,"data":{"openid":[]},"next_openid":""}`, true, 0, false},
		{"count_does_not_match", `{"total":3,"count":3,"data":{"openid":["oA"]},"next_openid":"oA"}`, false, 0, true},
		{"empty_openid", `{"total":1,"count":1,"data":{"openid":[""]},"next_openid":""}`, false, 0, true},
		{"quota", `{"errcode":45009,"errmsg":"reach max api daily quota limit rid: 6569d9a4-1d2e0b2c-0f7e6a40"}`, false, 0, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var gotNext string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				gotNext = r.URL.Query().Get("next_openid")
				w.Write([]byte(c.body))
			}))
			defer srv.Close()
			cl := wechat.New(wechat.Options{APIBase: srv.URL, Tokens: &staticSource{current: "T"}})
			p, err := cl.FollowerPage(context.Background(), "wxoa", "oZ")
			if (err != nil) != c.fails || gotNext != "oZ" {
				t.Fatalf("err %v, next_openid sent %q", err, gotNext)
			}
			if err == nil && (p.Last() != c.last || len(p.OpenIDs) != c.n) {
				t.Errorf("page %+v: last %v", p, p.Last())
			}
			if c.name == "quota" && wechat.ClassOf(err) != wechat.ClassQuota {
				t.Errorf("class %v", wechat.ClassOf(err))
			}
		})
	}
}
