package wechat_test

import (
	"errors"
	"fmt"
	"testing"

	"wxbridge/shared/wechat"
)

// classed is an error from outside the package that knows its class, the
// way shared/tokens' "no usable access token" does.
type classed struct{ c wechat.Class }

func (e classed) Error() string       { return "classed" }
func (e classed) Class() wechat.Class { return e.c }

func TestClassOfHonoursAClassMethod(t *testing.T) {
	for _, c := range []wechat.Class{wechat.ClassTransient, wechat.ClassConfig, wechat.ClassQuota} {
		if got := wechat.ClassOf(fmt.Errorf("wrapped: %w", classed{c})); got != c {
			t.Errorf("ClassOf = %s, want %s", got, c)
		}
	}
	// A platform answer inside wins: it is the more specific of the two.
	both := errors.Join(&wechat.Error{API: "/cgi-bin/stable_token", Code: 40164}, classed{wechat.ClassTransient})
	if got := wechat.ClassOf(both); got != wechat.ClassConfig {
		t.Errorf("ClassOf = %s, want config", got)
	}
}
