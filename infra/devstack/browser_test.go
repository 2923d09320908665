package main

import (
	"os"
	"path/filepath"
	"testing"

	"wxbridge/infra/devkit/cfn"
)

// TestConsoleInBrowser clicks through the story in the dev console in
// headless Chromium: a new person logs in from the mini program, follows,
// scans a binding QR code and unfollows, and the cards show each step as
// wxbridge records it. The last screen is saved to build/devstack-console.png.
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
}
