package sandbox

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
)

// userGet calls user/get raw, to see the exact JSON shape.
func (h *harness) userGet(token, next string) (map[string]json.RawMessage, FollowerList) {
	h.t.Helper()
	q := url.Values{"access_token": {token}}
	if next != "" {
		q.Set("next_openid", next)
	}
	req, _ := http.NewRequest("GET", h.srv.URL+"/cgi-bin/user/get?"+q.Encode(), nil)
	_, raw := h.do(req)
	var fields map[string]json.RawMessage
	var page FollowerList
	if json.Unmarshal(raw, &fields) != nil || json.Unmarshal(raw, &page) != nil {
		h.t.Fatalf("user/get answer: %s", raw)
	}
	return fields, page
}

func TestUserGetPagesLikeThePlatform(t *testing.T) {
	h := start(t, DefaultConfig())
	// Someone who does not follow, listed nowhere.
	h.sb.CreatePerson(PersonSpec{})
	fs, err := h.sb.CreateFollowers(FollowersSpec{Count: 25000})
	if err != nil {
		t.Fatal(err)
	}
	tok := h.stable(h.sb.cfg.OfficialAccount, false).AccessToken
	var all []string
	var sizes []int
	next := ""
	for {
		fields, page := h.userGet(tok, next)
		if page.Total != 25000 {
			t.Fatalf("total = %d", page.Total)
		}
		sizes = append(sizes, page.Count)
		if page.Count == 0 {
			// The call after the last page: no data, empty next_openid.
			if _, ok := fields["data"]; ok || page.NextOpenID != "" {
				t.Errorf("after the last page: %v", fields)
			}
			break
		}
		if len(page.Data.OpenID) != page.Count || page.NextOpenID != page.Data.OpenID[page.Count-1] {
			t.Fatalf("page of %d: next_openid %q is not its last openid", page.Count, page.NextOpenID)
		}
		all = append(all, page.Data.OpenID...)
		next = page.NextOpenID
	}
	if len(sizes) != 4 || sizes[0] != 10000 || sizes[1] != 10000 || sizes[2] != 5000 {
		t.Errorf("page sizes %v, want 10000 10000 5000 0", sizes)
	}
	seen := map[string]bool{}
	for i, id := range all {
		if seen[id] || id != fs[i].OAOpenID {
			t.Fatalf("openid %d: %s (duplicate %v), want %s", i, id, seen[id], fs[i].OAOpenID)
		}
		seen[id] = true
	}
	// An unfollow takes the person out of the list and the total.
	h.sb.mu.Lock()
	h.sb.people[fs[3].ID].in(DevOfficialAccount.AppID).following = false
	h.sb.mu.Unlock()
	if _, page := h.userGet(tok, fs[0].OAOpenID); page.Total != 24999 || page.Data.OpenID[0] != fs[1].OAOpenID || page.Data.OpenID[2] != fs[4].OAOpenID {
		t.Errorf("after an unfollow: total %d, starts %v", page.Total, page.Data.OpenID[:3])
	}

	wantErr(t, h.platform("GET", "/cgi-bin/user/get", url.Values{"access_token": {tok}, "next_openid": {"oNOBODY"}}, nil), 40003)
	mpTok := h.stable(h.sb.cfg.MiniProgram, false).AccessToken
	wantErr(t, h.platform("GET", "/cgi-bin/user/get", url.Values{"access_token": {mpTok}}, nil), 48001)
	wantErr(t, h.platform("GET", "/cgi-bin/user/get", nil, nil), 41001)
}

func TestCreateFollowersKinds(t *testing.T) {
	h := start(t, DefaultConfig())
	var out struct {
		Count          int      `json:"count"`
		MiniProgram    int      `json:"mini_program"`
		WithoutUnionID int      `json:"without_unionid"`
		FirstID        string   `json:"first_id"`
		MiniProgramIDs []string `json:"mini_program_ids"`
	}
	h.control("POST", "/sandbox/followers", map[string]any{"count": 1001, "mini_program_share": 0.3, "without_unionid_share": 0.1}, http.StatusCreated, &out)
	if out.Count != 1001 || out.MiniProgram != 300 || out.WithoutUnionID != 100 || len(out.MiniProgramIDs) != 300 || out.FirstID != "p1" {
		t.Fatalf("answer = %+v", out)
	}
	var missing, kept int
	for _, p := range h.sb.People() {
		if !p.Following {
			t.Fatalf("%s does not follow", p.ID)
		}
		var info UserInfo
		h.sb.mu.Lock()
		info, _ = h.sb.userInfo(h.sb.apps[DevOfficialAccount.AppID], p.OAOpenID)
		h.sb.mu.Unlock()
		if info.Subscribe != 1 || info.SubscribeTime == 0 || info.SubscribeScene == "" {
			t.Fatalf("user/info %+v", info)
		}
		if info.UnionID == "" {
			missing++
		} else if info.UnionID == p.UnionID {
			kept++
		}
	}
	if missing != 100 || kept != 901 {
		t.Errorf("%d without unionid, %d with", missing, kept)
	}
	// A mini-program user logs in and gets their unionid from jscode2session.
	if a := h.login(out.MiniProgramIDs[0]); a.UnionID == "" {
		t.Errorf("login of a mini-program user: %+v", a)
	}
	for _, bad := range []map[string]any{{"count": 0}, {"count": 10, "mini_program_share": 0.6, "without_unionid_share": 0.5}, {"count": 10, "mini_program_share": -1}} {
		h.control("POST", "/sandbox/followers", bad, http.StatusBadRequest, nil)
	}
}
