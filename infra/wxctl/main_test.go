package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
)

func TestRunDispatches(t *testing.T) {
	register("echo-test", command{summary: "test command", run: func(_ context.Context, args []string, std stdio) error {
		switch {
		case len(args) == 0:
			return errUsage
		case args[0] == "fail":
			return errors.New("it failed")
		}
		std.out.Write([]byte(strings.Join(args, " ")))
		return nil
	}})
	defer delete(commands, "echo-test")
	cases := []struct {
		args        []string
		code        int
		out, errOut string
	}{
		{nil, 2, "echo-test", ""},
		{[]string{"help"}, 0, "test command", ""},
		{[]string{"nope"}, 2, "", `unknown command "nope"`},
		{[]string{"echo-test", "a", "b"}, 0, "a b", ""},
		{[]string{"echo-test"}, 2, "", ""},
		{[]string{"echo-test", "fail"}, 1, "", "wxctl: it failed"},
	}
	for _, tc := range cases {
		var out, errOut bytes.Buffer
		code := run(context.Background(), tc.args, stdio{strings.NewReader(""), &out, &errOut})
		if code != tc.code || !strings.Contains(out.String(), tc.out) || !strings.Contains(errOut.String(), tc.errOut) {
			t.Errorf("run(%q) = %d, out %q, err %q", tc.args, code, out.String(), errOut.String())
		}
	}
}
