package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"wxbridge/infra/devkit/sandbox"
	"wxbridge/shared/config"
	"wxbridge/shared/observe"
)

// devAppsOf reads the apps /_dev/config lists.
func devAppsOf(t *testing.T, cfg map[string]any) []DevApp {
	t.Helper()
	b, _ := json.Marshal(cfg["apps"])
	var apps []DevApp
	if err := json.Unmarshal(b, &apps); err != nil || len(apps) == 0 {
		t.Fatalf("/_dev/config apps = %s (%v)", b, err)
	}
	return apps
}

// pick is the first app of kind with the default flag def, bound to the
// open platform.
func pick(t *testing.T, apps []DevApp, kind config.Kind, def bool) DevApp {
	t.Helper()
	i := slices.IndexFunc(apps, func(a DevApp) bool { return a.Kind == kind && a.Default == def && !a.Unbound })
	if i < 0 {
		t.Fatalf("/_dev/config lists no %s (default %v): %+v", kind, def, apps)
	}
	return apps[i]
}

// storyAcrossApps is TestStory's person in several apps of one open
// platform account, through nothing but the HTTP /_dev/config names: a
// login in the second mini program, a follow of the second official
// account (which pushes to its own URL, signed with its own Token, in
// another mode than the first), a QR login on the website app's page and a
// mobile app's login (after one refused while WeChat is busy, and through
// a DynamoDB throttle) end as one person with all four identities,
// whichever app's session asks GET /me, and the console shows them so,
// the phone number masked.
func storyAcrossApps(t *testing.T, cfg map[string]any) {
	api, sb := cfg["api_url"].(string), cfg["sandbox_url"].(string)
	apps := devAppsOf(t, cfg)
	mp2 := pick(t, apps, config.KindMiniProgram, false)
	oa1, oa2 := pick(t, apps, config.KindOfficialAccount, true), pick(t, apps, config.KindOfficialAccount, false)
	web, mobile := pick(t, apps, config.KindWebsite, true), pick(t, apps, config.KindMobile, true)
	if oa2.PushURL != api+"/wechat/push/"+oa2.AppID || oa1.PushURL != api+"/wechat/push" || oa2.Token == oa1.Token ||
		len(oa2.EncodingAESKey) != 43 || oa2.EncodingAESKey == oa1.EncodingAESKey || oa2.PushMode == oa1.PushMode || oa2.PushMode == "" {
		t.Errorf("official accounts in /_dev/config: %+v and %+v", oa1, oa2)
	}
	for _, a := range apps {
		if a.Kind != config.KindOfficialAccount && (a.Token != "" || a.PushURL != "") {
			t.Errorf("%s %s has push settings: %+v", a.Kind, a.AppID, a)
		}
	}
	if i := slices.IndexFunc(apps, func(a DevApp) bool { return a.Unbound }); i < 0 || apps[i].AppID != sandbox.DevUnboundMiniProgram.AppID {
		t.Errorf("the unbound mini program is not marked: %+v", apps)
	}
	for _, secret := range []string{sandbox.DevMiniProgram2.Secret, sandbox.DevWebsite.Secret, sandbox.DevMobile.Secret} {
		if b, _ := json.Marshal(cfg); strings.Contains(string(b), secret) {
			t.Fatal("/_dev/config shows an app secret")
		}
	}

	_, person := call(t, "POST", sb+"/sandbox/people", map[string]string{"nickname": "Many Apps"}, nil)
	id := person["id"].(string)
	sessions := map[string]string{}

	_, code := call(t, "POST", sb+"/sandbox/people/"+id+"/wx-login", map[string]string{"appid": mp2.AppID}, nil)
	status, login := call(t, "POST", api+"/mp/"+mp2.AppID+"/login", map[string]any{"code": code["code"]}, nil)
	if status != 200 {
		t.Fatalf("login in %s: %d %v", mp2.AppID, status, login)
	}
	sessions["mini program 2"] = login["session"].(string)

	status, d := call(t, "POST", sb+"/sandbox/people/"+id+"/follow", map[string]string{"appid": oa2.AppID}, nil)
	if status != 200 || d["delivered"] != true {
		t.Fatalf("follow %s: %d %v", oa2.AppID, status, d)
	}

	sessions["website app"] = qrLogin(t, api+"/web/authorize", cfg["h5_origin"].(string)+"/_dev/h5", sb, id)

	// The mobile app's login while WeChat is busy (the code exchange
	// answers -1 once): 503, and the app's next code logs in, through a
	// DynamoDB throttle on the person's record that the SDK retries away.
	mobileLogin := func() (int, map[string]any) {
		_, code := call(t, "POST", sb+"/sandbox/people/"+id+"/app-login", map[string]string{"appid": mobile.AppID}, nil)
		return call(t, "POST", api+"/app/login", map[string]any{"code": code["code"]}, nil)
	}
	if status, out := call(t, "POST", sb+"/sandbox/faults", map[string]any{"path": "/sns/oauth2/access_token", "errcode": -1, "count": 1}, nil); status != 201 {
		t.Fatalf("sandbox fault: %d %v", status, out)
	}
	if status, out := mobileLogin(); status != 503 || out["error"] != "wechat_unavailable" {
		t.Errorf("mobile login while WeChat is busy: %d %v, want 503 wechat_unavailable", status, out)
	}
	openid := person["openids"].(map[string]any)[mobile.AppID].(string)
	// /_dev/ is at the listener's root, h5_origin.
	if status, out := call(t, "POST", cfg["h5_origin"].(string)+"/_dev/faults", map[string]any{"service": "dynamodb", "match": openid, "count": 1, "error": "ThrottlingException"}, nil); status != 201 {
		t.Fatalf("AWS fault: %d %v", status, out)
	}
	status, login = mobileLogin()
	if status != 200 {
		t.Fatalf("mobile login in %s: %d %v", mobile.AppID, status, login)
	}
	sessions["mobile app"] = login["session"].(string)
	if _, faults := call(t, "GET", cfg["h5_origin"].(string)+"/_dev/faults", nil, nil); fmt.Sprint(faults["rules"]) == "[]" || faults["rules"].([]any)[0].(map[string]any)["fired"] != 1.0 {
		t.Errorf("the throttle did not fire once: %v", faults)
	}
	call(t, "DELETE", cfg["h5_origin"].(string)+"/_dev/faults", nil, nil)

	want := map[string]config.Kind{mp2.AppID: config.KindMiniProgram, oa2.AppID: config.KindOfficialAccount, web.AppID: config.KindWebsite, mobile.AppID: config.KindMobile}
	var uid any
	for from, session := range sessions {
		var me map[string]any
		// The follow's push may go through the retry queue on a loaded
		// machine, so the link can lag the sandbox's answer.
		eventually(t, "GET /me with the "+from+"'s session to show every app", func() bool {
			_, me = call(t, "GET", api+"/me", nil, map[string]string{"Authorization": "Bearer " + session})
			ids, _ := me["identities"].([]any)
			got := map[string]config.Kind{}
			for _, x := range ids {
				i := x.(map[string]any)
				got[i["appid"].(string)] = config.Kind(i["kind"].(string))
				if i["appid"] == oa2.AppID && i["subscribed"] != true {
					return false
				}
			}
			return len(got) == len(want) && equalKinds(got, want)
		})
		if uid == nil {
			uid = me["uid"]
		}
		if me["uid"] != uid || me["unionid_known"] != true {
			t.Errorf("GET /me with the %s's session: %v, want uid %v", from, me, uid)
		}
	}

	// The console shows the person in every app, the number masked.
	resp, err := http.Get(cfg["h5_origin"].(string) + "/_dev/api/state")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if number := person["phone"].(string); number == "" || strings.Contains(string(raw), number) || strings.Contains(string(raw), number[3:]) {
		t.Errorf("the console's state shows the phone number whole (or none was made): %q", number)
	}
	var st struct{ People []personView }
	json.Unmarshal(raw, &st)
	i := slices.IndexFunc(st.People, func(p personView) bool { return p.ID == id })
	if i < 0 || st.People[i].Known == nil || st.People[i].Known.UID != uid || !strings.HasPrefix(st.People[i].Phone, "+****") {
		t.Fatalf("the console's person %s: %+v", id, st.People[i:])
	}
	for _, a := range st.People[i].Apps {
		if _, ok := want[a.AppID]; a.Known != ok || (a.AppID == oa2.AppID && (a.Subscribed == nil || !*a.Subscribed)) {
			t.Errorf("the console's person in %s: %+v", a.AppID, a)
		}
	}
}

func equalKinds(a, b map[string]config.Kind) bool {
	for k, v := range b {
		if a[k] != v {
			return false
		}
	}
	return true
}

// qrLogin is a website app's QR login in a browser: authorize sends it to
// the platform's qrconnect page, where the sandbox's person id scans and
// consents, and back through the callback to returnTo with the session in
// the fragment.
func qrLogin(t *testing.T, authorize, returnTo, sandboxURL, id string) string {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	next := authorize + "?return_to=" + url.QueryEscape(returnTo)
	for range 4 {
		resp, err := browser.Get(next)
		if err != nil {
			t.Fatalf("QR login: %v", err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		loc := resp.Header.Get("Location")
		if resp.StatusCode != http.StatusFound || loc == "" {
			t.Fatalf("QR login: %s answered %d", next, resp.StatusCode)
		}
		if rest, ok := strings.CutPrefix(loc, returnTo+"#"); ok {
			frag, _ := url.ParseQuery(rest)
			if frag.Get("session") == "" {
				t.Fatalf("QR login ended with %q", rest)
			}
			return frag.Get("session")
		}
		u, err := url.Parse(loc)
		if err != nil {
			t.Fatalf("QR login: redirect to %q: %v", loc, err)
		}
		if strings.HasPrefix(loc, sandboxURL+"/connect/qrconnect") {
			q := u.Query()
			q.Set("person", id) // the person scans and consents on the platform's page
			u.RawQuery, u.Fragment = q.Encode(), ""
		}
		next = u.String()
	}
	t.Fatal("QR login: too many redirects")
	return ""
}

// TestOldSingleAppConfiguration: a configuration secret of the old shape
// (one mini_program, one official_account, no lists) still runs the whole
// stack: the default routes serve its two apps, and an appid of another
// app is unknown.
func TestOldSingleAppConfiguration(t *testing.T) {
	s := testStack(t, Config{Logs: &observe.Capture{}, oneApp: true})
	_, cfg := call(t, "GET", s.URL+"/_dev/config", nil, nil)
	apps := devAppsOf(t, cfg)
	if len(apps) != 2 || apps[0].AppID != sandbox.DevMiniProgram.AppID || apps[1].AppID != sandbox.DevOfficialAccount.AppID ||
		apps[1].PushURL != s.APIURL+"/wechat/push" || !apps[0].Default || !apps[1].Default {
		t.Errorf("apps = %+v", apps)
	}
	secret, err := secretsmanager.NewFromConfig(s.aws).GetSecretValue(context.Background(), &secretsmanager.GetSecretValueInput{SecretId: aws.String(s.res.refs["AppSecret"])})
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]json.RawMessage
	json.Unmarshal([]byte(aws.ToString(secret.SecretString)), &doc)
	for _, list := range []string{"mini_programs", "official_accounts", "website_apps", "mobile_apps"} {
		if doc[list] != nil {
			t.Errorf("the old shape's secret has %s", list)
		}
	}
	if doc["mini_program"] == nil || doc["official_account"] == nil {
		t.Errorf("the old shape's secret lacks its single apps: %v", slices.Collect(maps.Keys(doc)))
	}

	sb := s.SandboxURL
	_, person := call(t, "POST", sb+"/sandbox/people", map[string]string{"nickname": "Old"}, nil)
	id := person["id"].(string)
	_, code := call(t, "POST", sb+"/sandbox/people/"+id+"/wx-login", nil, nil)
	if status, out := call(t, "POST", s.APIURL+"/mp/"+sandbox.DevMiniProgram2.AppID+"/login", map[string]any{"code": code["code"]}, nil); status != 404 || out["error"] != "unknown_app" {
		t.Errorf("login in an app not configured: %d %v", status, out)
	}
	status, login := call(t, "POST", s.APIURL+"/mp/login", map[string]any{"code": code["code"]}, nil)
	if status != 200 {
		t.Fatalf("login: %d %v", status, login)
	}
	if status, d := call(t, "POST", sb+"/sandbox/people/"+id+"/follow", nil, nil); status != 200 || d["delivered"] != true {
		t.Fatalf("follow: %d %v", status, d)
	}
	eventually(t, "the follower linked", func() bool {
		_, me := call(t, "GET", s.APIURL+"/me", nil, map[string]string{"Authorization": "Bearer " + login["session"].(string)})
		return me["linked"] == true && me["follows_oa"] == true
	})
}
