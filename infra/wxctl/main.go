// Command wxctl is the command line for operators and business systems:
// it enqueues notification jobs, shows and watches their outcomes, and
// starts and watches follower backfills.
// It talks to AWS with the usual AWS configuration, or to make dev with
// --dev (or WXB_DEV), which needs nothing else (dev.go).
//
// Each subcommand lives in its own file and registers itself in commands.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"syscall"
)

// command is one subcommand. run gets the arguments after its name and
// returns an error to print (exit status 1), errUsage (exit status 2), or
// an exitError with its own status.
type command struct {
	summary string
	run     func(ctx context.Context, args []string, io stdio) error
}

// stdio is where a subcommand reads and writes, so tests can capture it.
type stdio struct {
	in       io.Reader
	out, err io.Writer
}

// errUsage reports arguments a subcommand could not use; it has already
// printed its usage.
var errUsage = fmt.Errorf("usage")

// exitError ends wxctl with exit status code after printing msg.
type exitError struct {
	code int
	msg  string
}

func (e exitError) Error() string { return e.msg }

var commands = map[string]command{}

func register(name string, c command) {
	if _, dup := commands[name]; dup {
		panic("wxctl: command registered twice: " + name)
	}
	commands[name] = c
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], stdio{os.Stdin, os.Stdout, os.Stderr})
	stop()
	os.Exit(code)
}

// run executes one wxctl invocation and returns its exit status.
func run(ctx context.Context, args []string, std stdio) int {
	devURL, args := devArgs(args, os.Getenv)
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(std.out)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(std.err, "wxctl: unknown command %q\n\n", args[0])
		usage(std.err)
		return 2
	}
	if devURL != "" {
		d, err := loadDevstack(ctx, devURL)
		if err != nil {
			fmt.Fprintln(std.err, "wxctl:", err)
			return 1
		}
		d.use()
		ctx = withDevstack(ctx, d)
	}
	var exit exitError
	switch err := c.run(ctx, args[1:], std); {
	case err == nil:
		return 0
	case err == errUsage:
		return 2
	case errors.As(err, &exit):
		fmt.Fprintln(std.err, "wxctl:", exit.msg)
		return exit.code
	default:
		fmt.Fprintln(std.err, "wxctl:", err)
		return 1
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: wxctl [--dev [URL]] <command> [flags]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-12s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nRun wxctl <command> -h for a command's flags. AWS comes from the usual AWS\n"+
		"configuration; --dev (or WXB_DEV=URL) uses make dev at URL (default "+devDefault+")\n"+
		"instead, with its endpoint, region, credentials, table, queues and secrets.")
}
