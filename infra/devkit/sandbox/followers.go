package sandbox

import (
	"errors"
	"net/http"
	"time"
)

// followerBook is what the sandbox keeps for follower lists and bulk
// followers (s.mu held for every use).
type followerBook struct {
	// noUnion holds the people for whom the official account does not see
	// a unionid (user/info leaves it out): the account is not bound to the
	// open platform their unionid comes from.
	noUnion map[string]bool
	// pos maps a person ID to its index in s.order, rebuilt when it misses.
	pos map[string]int
}

// FollowersSpec asks for many people who already follow the official
// account, as an account that existed before wxbridge has.
type FollowersSpec struct {
	Count int `json:"count"`
	// MiniProgramShare of them also use the mini program: tests log them in.
	MiniProgramShare float64 `json:"mini_program_share"`
	// WithoutUnionIDShare of them get no unionid from user/info. They are
	// never mini-program users, so the two shares add up to at most 1.
	WithoutUnionIDShare float64 `json:"without_unionid_share"`
}

// Follower is a person CreateFollowers made, and their kind.
type Follower struct {
	Person
	MiniProgram    bool `json:"mini_program"`
	WithoutUnionID bool `json:"without_unionid"`
}

// MaxFollowers bounds one CreateFollowers call.
const MaxFollowers = 1_000_000

// ErrFollowersSpec reports a FollowersSpec that cannot be met.
var ErrFollowersSpec = errors.New("sandbox: followers need 1 to 1,000,000 people and shares in [0, 1] adding up to at most 1")

// subscribeScenes are the ways people followed, as user/info names them.
var subscribeScenes = []string{"ADD_SCENE_SEARCH", "ADD_SCENE_QR_CODE", "ADD_SCENE_PROFILE_CARD", "ADD_SCENE_ACCOUNT_MIGRATION", "ADD_SCENE_WXA", "ADD_SCENE_OTHERS"}

// CreateFollowers adds spec.Count people who follow the official account
// already (no push: they followed before anyone listened), in creation
// order, followed a minute apart up to now. Kinds are spread evenly and
// their counts are exact: round(Count × share).
func (s *Sandbox) CreateFollowers(spec FollowersSpec) ([]Follower, error) {
	n := spec.Count
	if n <= 0 || n > MaxFollowers || spec.MiniProgramShare < 0 || spec.WithoutUnionIDShare < 0 ||
		spec.MiniProgramShare+spec.WithoutUnionIDShare > 1 {
		return nil, ErrFollowersSpec
	}
	noUnion := int(float64(n)*spec.WithoutUnionIDShare + 0.5)
	mp := min(int(float64(n)*spec.MiniProgramShare+0.5), n-noUnion)
	out := make([]Follower, 0, n)
	start := s.clock.Now().Add(-time.Duration(n) * time.Minute)
	others := 0 // followers with a unionid so far
	for i := range n {
		f := Follower{WithoutUnionID: spread(i, noUnion, n)}
		if !f.WithoutUnionID {
			f.MiniProgram = spread(others, mp, n-noUnion)
			others++
		}
		p, err := s.createPerson(PersonSpec{})
		if err != nil {
			return out, err
		}
		s.mu.Lock()
		m := s.people[p.ID].in(s.cfg.OfficialAccount.AppID)
		m.following = true
		m.follow = followState{subscribeTime: start.Add(time.Duration(i) * time.Minute).Unix(), scene: subscribeScenes[i%len(subscribeScenes)]}
		if f.WithoutUnionID {
			if s.roster.noUnion == nil {
				s.roster.noUnion = map[string]bool{}
			}
			s.roster.noUnion[p.ID] = true
		}
		s.mu.Unlock()
		f.Person = p
		f.Following = true
		out = append(out, f)
	}
	return out, nil
}

// spread reports whether item i of n is one of the k picked, spacing the
// picks evenly (exactly k of the n are).
func spread(i, k, n int) bool {
	if n == 0 {
		return false
	}
	return (i+1)*k/n > i*k/n
}

// oaUnionID is the unionid user/info of official account a gives for p
// (s.mu held).
func (s *Sandbox) oaUnionID(a *account, p *person) string {
	if a.AppID == s.cfg.OfficialAccount.AppID && s.roster.noUnion[p.ID] {
		return ""
	}
	return unionIDFor(a, p)
}

// rosterRoutes adds the follower list (cgi-bin/user/get).
func (s *Sandbox) rosterRoutes(mux *http.ServeMux) {
	mux.HandleFunc("/cgi-bin/user/get", s.handleUserGet)
}

// rosterControl adds POST /sandbox/followers.
func (s *Sandbox) rosterControl(mux *http.ServeMux) {
	mux.HandleFunc("POST /sandbox/followers", s.postFollowers)
}

// maxUserGet is the most openids one user/get page holds.
const maxUserGet = 10000

// FollowerList is the platform's user/get answer.
type FollowerList struct {
	Total int `json:"total"`
	Count int `json:"count"`
	Data  *struct {
		OpenID []string `json:"openid"`
	} `json:"data,omitempty"`
	NextOpenID string `json:"next_openid"`
}

// followerPage lists up to maxUserGet current followers of official
// account appid after the person whose openid there is next ("" from the
// start), in creation order (s.mu held). Like the platform, a page that ends the list still names its last
// openid; the call after it answers count 0 with an empty next_openid and
// no data.
func (s *Sandbox) followerPage(appid, next string) (FollowerList, error) {
	from := 0
	if next != "" {
		p, _ := s.member(appid, next)
		if p == nil {
			return FollowerList{}, errcode(40003)
		}
		from = s.position(p.ID) + 1
	}
	var out FollowerList
	var ids []string
	for i, id := range s.order {
		m := s.people[id].in(appid)
		if !m.following {
			continue
		}
		out.Total++
		if i >= from && len(ids) < maxUserGet {
			ids = append(ids, m.openid)
		}
	}
	out.Count = len(ids)
	if len(ids) > 0 {
		out.Data = &struct {
			OpenID []string `json:"openid"`
		}{ids}
		out.NextOpenID = ids[len(ids)-1]
	}
	return out, nil
}

// position is the index of person id in s.order (s.mu held).
func (s *Sandbox) position(id string) int {
	if i, ok := s.roster.pos[id]; ok {
		return i
	}
	s.roster.pos = make(map[string]int, len(s.order))
	for i, pid := range s.order {
		s.roster.pos[pid] = i
	}
	return s.roster.pos[id]
}

// handleUserGet is GET /cgi-bin/user/get?access_token&next_openid.
func (s *Sandbox) handleUserGet(w http.ResponseWriter, r *http.Request) {
	a, err := s.oaApp(r)
	if err != nil {
		s.answer(w, nil, err)
		return
	}
	s.mu.Lock()
	page, err := s.followerPage(a.AppID, r.URL.Query().Get("next_openid"))
	s.mu.Unlock()
	s.answer(w, page, err)
}

func (s *Sandbox) postFollowers(w http.ResponseWriter, r *http.Request) {
	var spec FollowersSpec
	if err := decodeBody(r, &spec); err != nil {
		controlError(w, http.StatusBadRequest, err.Error())
		return
	}
	fs, err := s.CreateFollowers(spec)
	if err != nil {
		controlError(w, http.StatusBadRequest, err.Error())
		return
	}
	out := struct {
		Count          int      `json:"count"`
		MiniProgram    int      `json:"mini_program"`
		WithoutUnionID int      `json:"without_unionid"`
		FirstID        string   `json:"first_id"`
		LastID         string   `json:"last_id"`
		MiniProgramIDs []string `json:"mini_program_ids"`
	}{Count: len(fs), FirstID: fs[0].ID, LastID: fs[len(fs)-1].ID, MiniProgramIDs: []string{}}
	for _, f := range fs {
		switch {
		case f.MiniProgram:
			out.MiniProgram++
			out.MiniProgramIDs = append(out.MiniProgramIDs, f.ID)
		case f.WithoutUnionID:
			out.WithoutUnionID++
		}
	}
	writeJSON(w, http.StatusCreated, out)
}
