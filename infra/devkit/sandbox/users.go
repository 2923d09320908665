package sandbox

import (
	"encoding/json"
	"io"
	"net/http"
)

// followerRoutes adds the official account's follower and QR-code APIs.
func (s *Sandbox) followerRoutes(mux *http.ServeMux) {
	mux.HandleFunc("/cgi-bin/user/info", s.handleUserInfo)
	mux.HandleFunc("/cgi-bin/user/info/batchget", s.handleUserInfoBatch)
	mux.HandleFunc("/cgi-bin/qrcode/create", s.handleQRCodeCreate)
}

// UserInfo is the platform's answer about one OA user (cgi-bin/user/info).
// For someone who does not follow, only subscribe=0 and the openid.
type UserInfo struct {
	Subscribe      int    `json:"subscribe"`
	OpenID         string `json:"openid"`
	Language       string `json:"language,omitempty"`
	SubscribeTime  int64  `json:"subscribe_time,omitempty"`
	UnionID        string `json:"unionid,omitempty"`
	Remark         string `json:"remark"`
	GroupID        int    `json:"groupid"`
	TagIDList      []int  `json:"tagid_list"`
	SubscribeScene string `json:"subscribe_scene,omitempty"`
	QRScene        int    `json:"qr_scene"`
	QRSceneStr     string `json:"qr_scene_str"`
}

// oaApp checks the access token and that it is an official account's, and
// returns that account: the follower and message APIs are not open to a
// mini program (48001).
func (s *Sandbox) oaApp(r *http.Request) (*account, error) {
	app, err := s.authorize(r)
	if err != nil {
		return nil, err
	}
	a := s.ofKind(AppOfficialAccount, app.AppID)
	if a == nil {
		return nil, errcode(48001)
	}
	return a, nil
}

// userInfo answers official account a about openid (s.mu held): 40003 for
// an openid that is not one of this account's.
func (s *Sandbox) userInfo(a *account, openid string) (UserInfo, error) {
	p, m := s.member(a.AppID, openid)
	if p == nil {
		return UserInfo{}, errcode(40003)
	}
	if !m.following {
		return UserInfo{Subscribe: 0, OpenID: openid}, nil
	}
	return UserInfo{
		Subscribe:      1,
		OpenID:         openid,
		Language:       "zh_CN",
		SubscribeTime:  m.follow.subscribeTime,
		UnionID:        s.oaUnionID(a, p), // followers.go
		TagIDList:      []int{},
		SubscribeScene: m.follow.scene,
		QRSceneStr:     m.follow.qrScene,
	}, nil
}

// handleUserInfo is GET /cgi-bin/user/info?access_token&openid&lang.
func (s *Sandbox) handleUserInfo(w http.ResponseWriter, r *http.Request) {
	a, err := s.oaApp(r)
	if err != nil {
		s.answer(w, nil, err)
		return
	}
	openid := r.URL.Query().Get("openid")
	if openid == "" {
		s.fail(w, 40003)
		return
	}
	s.mu.Lock()
	info, err := s.userInfo(a, openid)
	s.mu.Unlock()
	s.answer(w, info, err)
}

// maxBatch is the most users user/info/batchget takes in one call.
const maxBatch = 100

// handleUserInfoBatch is POST /cgi-bin/user/info/batchget with
// {"user_list":[{"openid","lang"}]}, at most 100.
func (s *Sandbox) handleUserInfoBatch(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		s.fail(w, 43002)
		return
	}
	a, err := s.oaApp(r)
	if err != nil {
		s.answer(w, nil, err)
		return
	}
	var in struct {
		UserList []struct {
			OpenID string `json:"openid"`
		} `json:"user_list"`
	}
	b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if len(b) == 0 {
		s.fail(w, 44002)
		return
	}
	if err := json.Unmarshal(b, &in); err != nil || len(in.UserList) == 0 || len(in.UserList) > maxBatch {
		s.fail(w, 47001)
		return
	}
	out := struct {
		UserInfoList []UserInfo `json:"user_info_list"`
	}{make([]UserInfo, 0, len(in.UserList))}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, u := range in.UserList {
		info, err := s.userInfo(a, u.OpenID)
		if err != nil {
			// One bad openid fails the whole call, as on the platform.
			s.answer(w, nil, err)
			return
		}
		out.UserInfoList = append(out.UserInfoList, info)
	}
	s.answer(w, out, nil)
}

// handleQRCodeCreate is POST /cgi-bin/qrcode/create for string scenes
// (QR_STR_SCENE, QR_LIMIT_STR_SCENE): scanning the ticket (control API
// /scan) follows with that scene.
func (s *Sandbox) handleQRCodeCreate(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		s.fail(w, 43002)
		return
	}
	a, err := s.oaApp(r)
	if err != nil {
		s.answer(w, nil, err)
		return
	}
	var in struct {
		ExpireSeconds int    `json:"expire_seconds"`
		ActionName    string `json:"action_name"`
		ActionInfo    struct {
			Scene struct {
				SceneStr string `json:"scene_str"`
			} `json:"scene"`
		} `json:"action_info"`
	}
	b, _ := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err := json.Unmarshal(b, &in); err != nil {
		s.fail(w, 47001)
		return
	}
	scene := in.ActionInfo.Scene.SceneStr
	// scene_str is 1 to 64 characters.
	if (in.ActionName != "QR_STR_SCENE" && in.ActionName != "QR_LIMIT_STR_SCENE") || scene == "" || len(scene) > 64 {
		s.fail(w, 40053)
		return
	}
	expire := in.ExpireSeconds
	if in.ActionName == "QR_STR_SCENE" {
		if expire <= 0 {
			expire = 30
		}
		expire = min(expire, 30*24*3600)
	}
	s.mu.Lock()
	ticket := s.ticketFor(a.AppID, scene)
	s.mu.Unlock()
	out := map[string]any{"ticket": ticket, "url": "http://weixin.qq.com/q/" + ticket[2:24]}
	if in.ActionName == "QR_STR_SCENE" {
		out["expire_seconds"] = expire
	}
	s.answer(w, out, nil)
}
