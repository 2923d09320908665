package sandbox_test

import (
	"context"
	"testing"

	"wxbridge/infra/devkit/sandbox"
)

// The client wxbridge links reads the sandbox's getuserphonenumber answer
// back to the number the person holds.
func TestPhoneNumberThroughTheClient(t *testing.T) {
	sb, wc, _ := newMessages(t)
	ctx := context.Background()
	p := sb.CreatePerson(sandbox.PersonSpec{})
	for _, number := range []string{p.Phone, "+85291234567", "+14155550123"} {
		if err := sb.SetPhone(p.ID, number); err != nil {
			t.Fatal(err)
		}
		c, err := sb.PhoneCode(p.ID, "")
		if err != nil {
			t.Fatal(err)
		}
		got, err := wc.PhoneNumber(ctx, mp, c)
		if err != nil || got.E164() != number || got.WatermarkAppID != mp {
			t.Errorf("%s: got %v (watermark %s), %v", number, got, got.WatermarkAppID, err)
		}
		if _, err := wc.PhoneNumber(ctx, mp, c); code(err) != 40029 {
			t.Errorf("%s: second exchange %v, want 40029", number, err)
		}
	}
}
