package identity

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

// TestRefused: what Link refuses for the sighting itself stays refused
// (the push and the backfill stop retrying it); contention and the table's
// failures may pass.
func TestRefused(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("%w: no WeChat identity", ErrInvalid), true},
		{fmt.Errorf("link: %w", &ConflictError{Field: "unionid"}), true},
		{ErrConflict, true},
		{ErrContention, false},
		{context.DeadlineExceeded, false},
		{errors.New("dynamodb: throttled"), false},
		{nil, false},
	} {
		if got := Refused(c.err); got != c.want {
			t.Errorf("Refused(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
