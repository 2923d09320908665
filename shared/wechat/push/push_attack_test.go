package push

import (
	"fmt"
	"strings"
	"testing"
)

// TestAttackDedupKeyOfHostileEvents: whatever an event carries (a list as
// long as the largest push, a sender of kilobytes), its dedup key fits a
// DynamoDB partition key (2048 bytes, with the store's prefix), is the same
// for WeChat's retry of the event, and differs for an event whose list
// differs in one entry.
func TestAttackDedupKeyOfHostileEvents(t *testing.T) {
	long := Event{FromUserName: "o", CreateTime: 1, MsgType: "event", Event: SubscribePopup}
	for i := range 450 {
		long.Templates = append(long.Templates, TemplateEvent{TemplateID: fmt.Sprintf("T%042d", i), Status: "accept"})
	}
	if n := len(Marshal(long)); n > MaxBody {
		t.Fatalf("the event is %d bytes, more than a push carries", n)
	}
	other := long
	other.Templates = append([]TemplateEvent(nil), long.Templates...)
	other.Templates[449].Status = "reject"
	sender := Event{FromUserName: strings.Repeat("o", 4000), CreateTime: 1, MsgType: "event", Event: Subscribe}
	unfollow := sender
	unfollow.Event = Unsubscribe
	text := Event{FromUserName: "o", CreateTime: 1, MsgType: "text", MsgID: strings.Repeat("9", 3000)}
	for _, e := range []Event{long, other, sender, text} {
		if k := e.DedupKey(); len(k) > 1024 || k != e.DedupKey() {
			t.Errorf("%s key of %d bytes", e.Kind(), len(k))
		}
	}
	if long.DedupKey() == other.DedupKey() {
		t.Error("two lists differing in one entry share a key")
	}
	// A follow and an unfollow of one second still share theirs.
	if sender.DedupKey() != unfollow.DedupKey() {
		t.Error("the follow-state key of a long sender differs between follow and unfollow")
	}
	short := Event{FromUserName: "o", CreateTime: 1, MsgType: "event", Event: SubscribePopup, Templates: long.Templates[:2]}
	if !strings.HasPrefix(short.DedupKey(), "evt#o#1#") {
		t.Errorf("a short key was hashed: %s", short.DedupKey())
	}
}

// TestAttackHostileConsentLists: the parser keeps what the list says and
// leaves judging it to the event's handler: unknown statuses as they are,
// a missing TemplateId empty, lists under every event's element.
func TestAttackHostileConsentLists(t *testing.T) {
	body := `<xml><ToUserName>gh</ToUserName><FromUserName>o</FromUserName><CreateTime>1</CreateTime><MsgType>event</MsgType><Event>` + SubscribeChange + `</Event>` +
		`<SubscribeMsgChangeEvent><List><SubscribeStatusString>ACCEPT</SubscribeStatusString></List></SubscribeMsgChangeEvent>` +
		`<SubscribeMsgPopupEvent><List><TemplateId>A</TemplateId><SubscribeStatusString>maybe</SubscribeStatusString><Extra>x</Extra></List></SubscribeMsgPopupEvent>` +
		`<SubscribeMsgSentEvent><List><TemplateId>B</TemplateId><MsgID>not-a-number</MsgID><ErrorCode>x</ErrorCode></List></SubscribeMsgSentEvent></xml>`
	env, err := parse([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	got := env.Templates
	if len(got) != 3 || got[0].TemplateID != "A" || got[0].Status != "maybe" || got[1].TemplateID != "" || got[1].Status != "ACCEPT" || got[2].MsgID != "not-a-number" {
		t.Fatalf("templates %+v", got)
	}
	if validate(env.Event) != nil {
		t.Fatal(validate(env.Event))
	}
}
