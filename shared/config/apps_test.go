package config

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestAppsOfEachKind(t *testing.T) {
	mp1, mp2 := App{"wx0000000000000001", "s1"}, App{"wx0000000000000002", "s2"}
	oa1 := OfficialAccount{App: App{"wx0000000000000003", "s3"}, Token: "t3"}
	oa2 := OfficialAccount{App: App{"wx0000000000000004", "s4"}, Token: "t4"}
	web, mob := App{"wx0000000000000005", "s5"}, App{"wx0000000000000006", "s6"}

	t.Run("the_old_shape_names_the_defaults", func(t *testing.T) {
		c := Config{MiniProgram: mp1, OfficialAccount: oa1}
		if d, _ := c.Default(KindMiniProgram); d != mp1 {
			t.Errorf("default mini program %v", d)
		}
		if oa, ok := c.OA(""); !ok || oa != oa1 {
			t.Errorf("default official account %v", oa)
		}
		if _, ok := c.Default(KindWebsite); ok {
			t.Error("no website app is configured")
		}
	})

	t.Run("lists_only_make_their_first_the_default", func(t *testing.T) {
		c, err := Config{MiniPrograms: []App{mp2, mp1}, OfficialAccounts: []OfficialAccount{oa2, oa1}, WebsiteApps: []App{web}, MobileApps: []App{mob}}.Normalize()
		if err != nil {
			t.Fatal(err)
		}
		if c.MiniProgram != mp2 || c.OfficialAccount != oa2 {
			t.Errorf("defaults %v %v, want the first of each list", c.MiniProgram, c.OfficialAccount)
		}
		if got := c.Apps(KindMiniProgram); !slices.Equal(got, []App{mp2, mp1}) {
			t.Errorf("mini programs %v: each once, the default first", got)
		}
		if oas := c.OfficialAccountList(); len(oas) != 2 || oas[1] != oa1 {
			t.Errorf("official accounts %v, with their push settings", oas)
		}
		for appid, want := range map[string]Kind{mp1.AppID: KindMiniProgram, oa1.AppID: KindOfficialAccount, web.AppID: KindWebsite, mob.AppID: KindMobile} {
			if k, ok := c.KindOf(appid); !ok || k != want {
				t.Errorf("KindOf(%s) = %s, %v", appid, k, ok)
			}
		}
		if _, ok := c.KindOf("wx00000000000000ff"); ok {
			t.Error("an appid not configured has no kind")
		}
		if _, ok := c.App(KindMiniProgram, oa1.AppID); ok {
			t.Error("an official account is not a mini program")
		}
		if got := len(c.AllApps()); got != 6 {
			t.Errorf("%d apps in all, want 6", got)
		}
	})

	t.Run("the_single_field_listed_again_unchanged", func(t *testing.T) {
		c, err := Config{MiniProgram: mp1, MiniPrograms: []App{mp1, mp2}}.Normalize()
		if err != nil || len(c.Apps(KindMiniProgram)) != 2 {
			t.Errorf("%v, %v", c.Apps(KindMiniProgram), err)
		}
	})

	for name, c := range map[string]Config{
		"the_same_app_with_another_secret":       {MiniProgram: mp1, MiniPrograms: []App{{mp1.AppID, "other"}}},
		"an_official_account_with_another_token": {OfficialAccount: oa1, OfficialAccounts: []OfficialAccount{{App: oa1.App, Token: "other"}}},
		"one_appid_as_two_kinds":                 {MiniProgram: mp1, WebsiteApps: []App{mp1}},
	} {
		t.Run("refuses_"+name, func(t *testing.T) {
			_, err := c.Normalize()
			if !errors.Is(err, ErrIncomplete) || strings.Contains(err.Error(), "other") || strings.Contains(err.Error(), "s1") {
				t.Errorf("err = %v: want ErrIncomplete naming places, never values", err)
			}
		})
	}
}
