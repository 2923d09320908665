package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"wxbridge/infra/devkit/awstest"
	"wxbridge/shared/contract"
	"wxbridge/shared/ddb"
)

// outcomeSchema compiles schemas/outcome-event.schema.json, formats
// asserted.
func outcomeSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open("../../schemas/outcome-event.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource("outcome-event.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("outcome-event.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// images reads the ledger's items as a stream record carries them.
type images struct {
	db    *dynamodb.Client
	table string
}

func (im images) of(t *testing.T, id string) ddb.Item {
	t.Helper()
	out, err := im.db.GetItem(context.Background(), &dynamodb.GetItemInput{TableName: &im.table, Key: ledgerKey(id), ConsistentRead: aws.Bool(true)})
	if err != nil {
		t.Fatal(err)
	}
	return out.Item
}

func entryOf(t *testing.T, item ddb.Item) Entry {
	t.Helper()
	if item == nil {
		return Entry{}
	}
	e, ok, err := EntryOf(item)
	if err != nil || !ok {
		t.Fatalf("EntryOf(%v) = %v, %v", item, ok, err)
	}
	return e
}

// changes replays a job's item images as a stream would (the first nil
// for an item that did not exist) and returns the outcome of each change,
// or nil for a change that has none.
func changes(t *testing.T, imgs ...ddb.Item) []*contract.Outcome {
	t.Helper()
	var out []*contract.Outcome
	for i := 1; i < len(imgs); i++ {
		o, ok := Outcome(entryOf(t, imgs[i-1]), entryOf(t, imgs[i]))
		if !ok {
			out = append(out, nil)
			continue
		}
		again, ok2 := Outcome(entryOf(t, imgs[i-1]), entryOf(t, imgs[i]))
		if !ok2 || !reflect.DeepEqual(o, again) {
			t.Fatalf("change %d: the same images gave %+v, then %+v", i, o, again)
		}
		out = append(out, &o)
	}
	return out
}

// TestOutcome drives real ledger writes and checks the events their
// images give: one per change of status, none for INPROGRESS or a write
// that keeps the status, the same id for the same change, a new one for
// each change and for a job id used again once its entry expired.
func TestOutcome(t *testing.T) {
	ctx := context.Background()
	db := dynamodb.NewFromConfig(awstest.Config(nil))
	im := images{db: db, table: awstest.Table(t)}
	l := NewLedger(db, im.table)
	start := time.Date(2026, 11, 20, 7, 0, 0, 0, time.UTC)
	now := start
	l.Now = func() time.Time { now = now.Add(time.Second); return now }
	to := &Recipient{ExternalID: "8812"}

	t.Run("sent_then_delivered", func(t *testing.T) {
		imgs := []ddb.Item{nil}
		c, err := l.claim(ctx, "o-1", "u1", start.Add(time.Hour), Template, "", to)
		if err != nil {
			t.Fatal(err)
		}
		imgs = append(imgs, im.of(t, "o-1"))
		// Template answered -1: released, then claimed again; INPROGRESS
		// throughout, which no event carries.
		if err := l.Release(ctx, "o-1", c, result{Channel: Template, ErrCode: -1, Class: "transient", Reason: "template: errcode -1 system error"}.after(nil, contract.TryFailed)); err != nil {
			t.Fatal(err)
		}
		imgs = append(imgs, im.of(t, "o-1"))
		c, err = l.claim(ctx, "o-1", "u1", start.Add(time.Hour), Template, "", to)
		if err != nil {
			t.Fatal(err)
		}
		imgs = append(imgs, im.of(t, "o-1"))
		sent := result{Status: Sent, Channel: Template, MsgID: "2000000001", MsgKey: msgKey("wxoa", "2000000001")}
		if err := l.Settle(ctx, "o-1", c, sent.after(nil, contract.TrySent)); err != nil {
			t.Fatal(err)
		}
		imgs = append(imgs, im.of(t, "o-1"))
		for range 2 { // WeChat pushes a report twice: the second writes nothing
			if ok, err := l.Report(ctx, "wxoa", "2000000001", "success"); !ok || err != nil {
				t.Fatal(ok, err)
			}
			imgs = append(imgs, im.of(t, "o-1"))
		}
		got := changes(t, imgs...)
		for i, o := range got {
			if (o != nil) != (i == 3 || i == 4) {
				t.Fatalf("change %d gave %+v; want events only for SENT (3) and DELIVERED (4)", i, o)
			}
		}
		s, d := got[3], got[4]
		if s.EventID == d.EventID || s.EventID == "" {
			t.Fatalf("SENT and DELIVERED share the id %q", s.EventID)
		}
		e := entryOf(t, imgs[4])
		want := contract.Outcome{
			Version: contract.OutcomeVersion, EventID: contract.OutcomeEventID("o-1", e.CreatedAt, Sent), JobID: "o-1", Status: Sent,
			Final: false, Channel: Template, MsgID: "2000000001", Attempts: 2, To: to, UID: "u1",
			Tried:     []contract.Try{{Channel: Template, Outcome: contract.TrySent}},
			CreatedAt: start.Add(time.Second), At: e.UpdatedAt,
		}
		if !reflect.DeepEqual(*s, want) {
			t.Fatalf("SENT outcome\n got %+v\nwant %+v", *s, want)
		}
		if d.Status != Delivered || !d.Final || d.Report != "success" || d.ReportedAt == nil || !d.At.Equal(*d.ReportedAt) || !d.CreatedAt.Equal(s.CreatedAt) {
			t.Fatalf("DELIVERED outcome: %+v", *d)
		}
		// What a target receives decodes to the same outcome.
		b, _ := json.Marshal(d)
		if back, err := contract.DecodeOutcome(b); err != nil || !reflect.DeepEqual(back, *d) {
			t.Fatalf("round trip: %+v %v", back, err)
		}
		// Deleted by TTL, then the id is used again: new events, new ids.
		if _, err := db.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: &im.table, Key: ledgerKey("o-1")}); err != nil {
			t.Fatal(err)
		}
		if _, ok := Outcome(entryOf(t, imgs[len(imgs)-1]), Entry{}); ok {
			t.Fatal("the removal of an entry gave an event")
		}
		c, _ = l.claim(ctx, "o-1", "u1", now.Add(time.Hour), Template, "", to)
		if err := l.Settle(ctx, "o-1", c, sent.after(nil, contract.TrySent)); err != nil {
			t.Fatal(err)
		}
		reused, ok := Outcome(Entry{}, entryOf(t, im.of(t, "o-1")))
		if !ok || reused.Status != Sent || reused.EventID == s.EventID || reused.Attempts != 1 {
			t.Fatalf("the id used again: %+v (first SENT %s)", reused, s.EventID)
		}
	})

	t.Run("every_final_status_is_one_event", func(t *testing.T) {
		type route struct {
			status Status
			write  func(id string) // from no entry to status
		}
		settle := func(r result) func(string) {
			return func(id string) {
				c, err := l.claim(ctx, id, "u2", now.Add(time.Hour), r.Channel, "", to)
				if err == nil {
					err = l.Settle(ctx, id, c, r)
				}
				if err != nil {
					t.Fatal(err)
				}
			}
		}
		record := func(r result) func(string) {
			return func(id string) {
				if _, wrote, err := l.Record(ctx, id, "", to, r); err != nil || !wrote {
					t.Fatal(wrote, err)
				}
			}
		}
		msgids := 3147483621077221000 // WeChat's msgids are numbers
		report := func(status string) func(string) {
			return func(id string) {
				msgids++
				msgid := fmt.Sprint(msgids)
				settle(result{Status: Sent, Channel: Template, MsgID: msgid, MsgKey: msgKey("wxoa", msgid)})(id)
				if ok, err := l.Report(ctx, "wxoa", msgid, status); !ok || err != nil {
					t.Fatal(ok, err)
				}
			}
		}
		routes := []route{
			{Sent, settle(result{Status: Sent, Channel: Subscribe}.after(nil, contract.TrySent))},
			{Failed, record(result{Status: Failed, Class: "invalid", Reason: "contract: invalid job: to has no recipient"})},
			{Failed, report("failed: system failed")},
			{Blocked, report("failed:user block")},
			{Undeliverable, record(result{Status: Undeliverable, Reason: "recipient unknown to wxbridge"})},
			{Expired, record(result{Status: Expired, Class: "expired", Reason: "expired at 2026-11-20T07:00:00Z"})},
			{Unknown, settle(result{Status: Unknown, Channel: Subscribe, Class: "transient", Reason: "subscribe: no answer from WeChat"}.after(nil, contract.TryUnknown))},
		}
		schema := outcomeSchema(t)
		ids := map[string]bool{}
		for i, r := range routes {
			id := "s-" + string(r.status) + "-" + string(rune('a'+i))
			before := im.of(t, id)
			r.write(id)
			var got []contract.Outcome
			for _, o := range changes(t, before, im.of(t, id)) {
				if o != nil {
					got = append(got, *o)
				}
			}
			if len(got) != 1 || got[0].Status != r.status || got[0].Final != contract.FinalOutcome(r.status, got[0].Channel, got[0].MsgID) || contract.DetailType(got[0].Status) == "" || got[0].To == nil {
				t.Fatalf("%s: %+v", id, got)
			}
			ids[got[0].EventID] = true
			// As a target receives it, it is what the schema promises.
			b, _ := json.Marshal(contract.Event{ID: "e-" + id, DetailType: contract.DetailType(r.status), Source: contract.Source, Time: got[0].At.Truncate(time.Second), Detail: got[0]})
			var inst any
			json.Unmarshal(b, &inst)
			if err := schema.Validate(inst); err != nil {
				t.Errorf("%s: the event breaks the schema: %v\n%s", id, err, b)
			}
		}
		if len(ids) != len(routes) {
			t.Fatalf("%d distinct ids for %d changes", len(ids), len(routes))
		}
	})

	t.Run("entry_of_other_items", func(t *testing.T) {
		if _, ok, err := EntryOf(ddb.Item{"pk": ddb.S("PERSON#01H"), "status": ddb.S("SENT")}); ok || err != nil {
			t.Fatalf("a person item is a ledger entry: %v %v", ok, err)
		}
		if _, ok, err := EntryOf(ddb.Item{"pk": ddb.S("SEND#x"), "job_id": ddb.S("x"), "status": ddb.S("SENT"), "tried": ddb.S("template")}); ok || err == nil {
			t.Fatalf("a malformed ledger item decoded: %v %v", ok, err)
		}
		if _, ok := Outcome(Entry{}, Entry{JobID: "x", Status: InProgress}); ok {
			t.Fatal("INPROGRESS gave an event")
		}
	})
}
