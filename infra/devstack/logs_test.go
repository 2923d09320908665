package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"wxbridge/infra/devkit/sandbox"
	"wxbridge/shared/awsenv"
	"wxbridge/shared/binding"
	"wxbridge/shared/identity"
	"wxbridge/shared/observe"
	"wxbridge/shared/tokens"
	"wxbridge/shared/wechat/push"
)

// TestLogsKeepSecrets runs every end-to-end flow through the devstack with
// all function output captured, metrics included: mini-program login and
// open data, follows in safe mode (and a forged push), a binding scan, H5
// OAuth with consent, template and subscribe sends, a backfill, and a token
// the platform revokes mid-flight. No secret, access token, session key,
// session, login or OAuth code, binding token, encrypted payload or
// nickname may appear in it, and every line must be JSON naming its
// function.
func TestLogsKeepSecrets(t *testing.T) {
	captured := &observe.Capture{}
	s := testStack(t, Config{Capture: captured})
	ctx := context.Background()
	sb := s.sb
	secrets := map[string]string{
		"mini-program app secret":     s.apps.MiniProgram.Secret,
		"official-account app secret": s.apps.OfficialAccount.Secret,
		"push Token":                  s.apps.OfficialAccount.Token,
		"EncodingAESKey":              s.apps.OfficialAccount.EncodingAESKey,
		"session signing key":         s.apps.SigningKey,
		"bind key":                    s.apps.BindKey,
	}
	// Every app's secret, and each official account's push settings.
	for _, a := range s.apps.AllApps() {
		app, _ := s.apps.App(a.Kind, a.AppID)
		secrets[string(a.Kind)+" "+a.AppID+" app secret"] = app.Secret
	}
	for _, oa := range s.apps.OfficialAccountList() {
		secrets["push Token of "+oa.AppID], secrets["EncodingAESKey of "+oa.AppID] = oa.Token, oa.EncodingAESKey
	}
	add := func(name, v string) {
		if v == "" {
			t.Fatalf("%s: empty, the flow did not run", name)
		}
		secrets[name] = v
	}
	tokenOf := func(env string) string {
		var st tokens.Stored
		if err := awsenv.SecretJSON(ctx, secretsmanager.NewFromConfig(s.aws), s.tokenSecret(env), &st); err != nil {
			t.Fatal(err)
		}
		return st.AccessToken
	}
	add("official-account access token", tokenOf(tokens.EnvOfficialAccountSecret))
	add("mini-program access token", tokenOf(tokens.EnvMiniProgramSecret))

	// Mini-program login, then open data.
	sb.SetRevealUnionID(false)
	mia := sb.CreatePerson(sandbox.PersonSpec{Nickname: "MiaSecretNick"})
	code, _ := sb.WXLogin(mia.ID)
	add("wx.login code", code)
	status, login := call(t, "POST", s.APIURL+"/mp/login", map[string]string{"code": code}, nil)
	if status != 200 {
		t.Fatalf("login: %d %v", status, login)
	}
	session := login["session"].(string)
	add("session", session)
	store := identity.NewStore(dynamodb.NewFromConfig(s.aws), s.res.refs["Table"])
	stored, err := store.Session(ctx, s.apps.MiniProgram.AppID, mia.MPOpenID)
	if err != nil {
		t.Fatal(err)
	}
	add("session_key", stored.SessionKey)
	data, iv, _ := sb.OpenData(mia.ID)
	add("encryptedData", data[:32])
	bearer := map[string]string{"Authorization": "Bearer " + session}
	if status, out := call(t, "POST", s.APIURL+"/mp/profile", map[string]string{"encrypted_data": data, "iv": iv}, bearer); status != 200 {
		t.Fatalf("profile: %d %v", status, out)
	}

	// The phone number, verified with the mini program's button: neither
	// the number nor the button's code is logged.
	if out, err := s.verifyPhone(ctx, mia.ID, ""); err != nil || out["phone"] == nil {
		t.Fatalf("verify phone: %v %v", out, err)
	}
	mia, _ = sb.Person(mia.ID)
	add("phone number", mia.Phone)
	add("national phone number", strings.TrimPrefix(mia.Phone, "+86"))

	// Follows, a binding scan, a push wxbridge must refuse.
	if d, _ := sb.Follow(ctx, mia.ID, ""); !d.Delivered {
		t.Fatal("follow not delivered")
	}
	bindToken, _ := binding.Sign(s.apps.BindKey, "8812", time.Now().Add(time.Hour))
	add("binding token", bindToken)
	if d, _ := sb.Scan(ctx, mia.ID, bindToken, ""); !d.Delivered {
		t.Fatal("scan not delivered")
	}
	c, _ := push.NewCipher(s.apps.OfficialAccount.EncodingAESKey, s.apps.OfficialAccount.AppID)
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	q, body, _ := push.Seal(push.Safe, "not-the-token", c, push.Event{ToUserName: "gh", FromUserName: mia.OAOpenID, CreateTime: time.Now().Unix(), MsgType: "event", Event: push.Subscribe}, ts, "n")
	enc := strings.TrimSuffix(strings.SplitN(string(body), "<![CDATA[", 2)[1], "]]></Encrypt></xml>")
	add("push Encrypt", enc[:32])
	forged := s.APIURL + "/wechat/push?" + url.Values{"timestamp": {q.Timestamp}, "nonce": {q.Nonce}, "encrypt_type": {"aes"}, "msg_signature": {q.MsgSignature}, "signature": {q.Signature}}.Encode()
	if resp, err := http.Post(forged, "text/xml", bytes.NewReader(body)); err != nil || resp.StatusCode != 401 {
		t.Fatalf("forged push: %v %v", resp, err)
	}

	// H5 OAuth with consent, redirects followed by hand.
	jar, _ := cookiejar.New(nil) // one browser: the callback wants the cookie the authorize step set
	noFollow := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	hop := func(u string) string {
		t.Helper()
		resp, err := noFollow.Get(u)
		if err != nil || resp.StatusCode != http.StatusFound {
			t.Fatalf("GET %s: %v %v", u, resp, err)
		}
		resp.Body.Close()
		return resp.Header.Get("Location")
	}
	authorize := hop(s.APIURL + "/oauth/authorize?" + url.Values{"scope": {"snsapi_userinfo"}, "return_to": {s.APIURL + "/_dev/h5"}}.Encode())
	au, _ := url.Parse(authorize)
	aq := au.Query()
	aq.Set("person", mia.ID) // the sandbox's consent, given at once
	au.RawQuery = aq.Encode()
	callback := hop(au.String())
	cb, _ := url.Parse(callback)
	add("OAuth code", cb.Query().Get("code"))
	back, _ := url.Parse(hop(callback))
	frag, _ := url.ParseQuery(back.Fragment)
	add("H5 session", frag.Get("session"))

	// Notifications on both channels.
	sb.GrantConsent(mia.ID, demoSubscribeID)
	_, me := call(t, "GET", s.APIURL+"/me", nil, bearer)
	for _, channels := range [][]string{{"template"}, {"subscribe"}} {
		if status, out := call(t, "POST", s.APIURL+"/_dev/api/send", map[string]any{"uid": me["uid"], "channels": channels, "item": "Tea", "order": "1"}, nil); status != 200 {
			t.Fatalf("send: %d %v", status, out)
		}
	}
	eventually(t, "both messages in the inbox", func() bool { in, _ := sb.Inbox(mia.ID); return len(in) == 2 })

	// A backfill.
	if _, err := sb.CreateFollowers(sandbox.FollowersSpec{Count: 150, MiniProgramShare: 0.3, WithoutUnionIDShare: 0.1}); err != nil {
		t.Fatal(err)
	}
	if status, out := call(t, "POST", s.APIURL+"/_dev/api/backfill", nil, nil); status != 200 {
		t.Fatalf("backfill: %d %v", status, out)
	}
	eventually(t, "the backfill to finish", func() bool {
		_, st := call(t, "GET", s.APIURL+"/_dev/api/state", nil, nil)
		b, _ := st["backfill"].(map[string]any)
		return b != nil && b["status"] == "done"
	})
	// Any official account of the stack can be backfilled; anything else is
	// refused before a run is made.
	for appid, want := range map[string]int{sandbox.DevOfficialAccount2.AppID: 200, sandbox.DevMiniProgram.AppID: 400} {
		if status, out := call(t, "POST", s.APIURL+"/_dev/api/backfill", map[string]any{"appid": appid}, nil); status != want {
			t.Errorf("backfill of %s: %d %v, want %d", appid, status, out, want)
		}
	}

	// The platform revokes the OA token: the next follow's user/info gets
	// 40001, the token source asks the refresher for a forced refresh, and
	// the follow goes through with the new token.
	if _, err := sb.RevokeTokens(s.apps.OfficialAccount.AppID); err != nil {
		t.Fatal(err)
	}
	tom := sb.CreatePerson(sandbox.PersonSpec{Nickname: "TomSecretNick"})
	if d, _ := sb.Follow(ctx, tom.ID, ""); !d.Delivered {
		t.Fatal("follow after the revocation not delivered")
	}
	eventually(t, "a new OA token", func() bool {
		return tokenOf(tokens.EnvOfficialAccountSecret) != secrets["official-account access token"]
	})
	add("refreshed access token", tokenOf(tokens.EnvOfficialAccountSecret))
	s.fns.wg.Wait()
	for _, p := range sb.People() {
		secrets["nickname of "+p.ID] = p.Nickname
	}

	logs := captured.String()
	if n := strings.Count(logs, "\n"); n < 50 {
		t.Fatalf("only %d log lines: the flows did not log", n)
	}
	for name, v := range secrets {
		if strings.Contains(logs, v) {
			t.Errorf("the logs contain the %s", name)
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("not a JSON line: %.200s", line)
			continue
		}
		if rec["function"] == nil || rec["function"] == "" {
			t.Errorf("a line without its function: %.200s", line)
		}
	}
}
