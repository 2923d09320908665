package main

import (
	"os"
	"path/filepath"
	"testing"

	"wxbridge/infra/devkit/cfn"
	"wxbridge/infra/devkit/sandbox"
)

// TestConsoleInBrowser clicks through the story in the dev console in
// headless Chromium: a new person logs in from the mini program, follows,
// verifies their phone number in the second mini program, scans a binding
// QR code and unfollows, and the cards show each step as
// wxbridge records it. The last screen is saved to build/devstack-console.png.
// Then the person signs in on the H5 page, which uses the client kit.
func TestConsoleInBrowser(t *testing.T) {
	s := startStack(t)
	b := openBrowser(t)
	b.open(s.APIURL + "/_dev/")
	b.waitText("header", "sandbox")
	b.click("#new-person")
	card := `.person[data-id="p1"]`
	b.find(card)
	b.click(card + ` button[data-act="login"]`)
	b.waitText(card, "uid 01") // wxbridge knows the person now
	b.click(card + ` button[data-act="follow"]`)
	b.waitText(card, "follows")
	b.waitText(card+" .badges", "linked")
	// The second mini program's getPhoneNumber button (after a login there):
	// the person is known in it, with the number masked.
	mp2 := card + ` .app[data-app="` + sandbox.DevMiniProgram2.AppID + `"]`
	b.click(mp2 + ` button[data-act="verify-phone"]`)
	b.waitText(card, "verified in …"+sandbox.DevMiniProgram2.AppID[14:])
	b.waitText(mp2, "known")
	b.click(card + ` button[data-act="scan"]`)
	b.answerPrompt("8812")
	b.waitText(card, "bound · 8812")
	b.click("#send")
	b.waitText("#ledger", "DELIVERED")
	b.click(card + ` button[data-act="phone"]`)
	b.waitText("#phone-msgs", "Green tea, 2 boxes")
	b.screenshot(filepath.Join(t.TempDir(), "phone.png"))
	b.click("#phone-close")
	b.click(card + ` button[data-act="unfollow"]`)
	b.waitText(card, "not following")
	b.waitText("#log", "unsubscribed")

	wd, _ := os.Getwd()
	tplPath, err := cfn.Find(wd)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(filepath.Dir(tplPath), "build")
	os.MkdirAll(dir, 0o755)
	shot := filepath.Join(dir, "devstack-console.png")
	b.screenshot(shot)
	if fi, err := os.Stat(shot); err != nil || fi.Size() < 10_000 {
		t.Fatalf("screenshot %s: %v", shot, err)
	}

	// The H5 page signs in with the client kit (infra/clients/js): its
	// button sends the browser through the OA's web OAuth, the person
	// consents on the sandbox's page, and back on the page completeSignIn
	// keeps the session and clears the fragment; GET /me shows the person.
	p1, _ := s.sb.Person("p1")
	b.open(s.APIURL + "/_dev/h5")
	b.click("#sign-in")
	b.click(`select[name="person"] option[value="p1"]`)
	b.click(`button[type="submit"]:not([name])`)
	b.waitText("#signed-in", "Signed in as")
	b.waitText("#out", p1.OAOpenID)
	// The fragment holds the session: its length says enough.
	if hash, path := b.eval("return location.hash.length"), b.eval("return location.pathname"); hash != 0.0 || path != "/_dev/h5" {
		t.Errorf("after the sign-in the page is at %v with a fragment of %v characters, want /_dev/h5 and none", path, hash)
	}
}
