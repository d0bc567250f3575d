// Package cli is the `lull` command line: it parses arguments, calls lull's
// HTTP API through apiclient and shows progress with the progress package.
// main wires it to the process (environment, signals, terminal); tests run
// it in-process or as the built binary.
package cli

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/lull-ai/lull/cmd/lull/internal/apiclient"
)

// Exit statuses.
const (
	ExitOK          = 0   // everything asked for succeeded
	ExitFailed      = 1   // an error, or some lines or generations did not succeed
	ExitUsage       = 2   // bad arguments
	ExitInterrupted = 130 // stopped by Ctrl-C, work left running
)

// DefaultAPIURL is where the command line looks for lull without LULL_API_URL.
const DefaultAPIURL = "http://127.0.0.1:8080"

// App is one run of the command line and everything it touches.
type App struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// Getenv reads configuration (LULL_API_URL, LULL_API_KEY,
	// LULL_WEBHOOK_SECRET); os.Getenv when nil.
	Getenv func(string) string
	// Interrupts delivers Ctrl-C; nil when there is none to handle.
	Interrupts <-chan os.Signal
	// Terminal says Stdout is a terminal (progress is drawn as a bar) and
	// Width is its width in columns.
	Terminal bool
	Width    int
	// HTTPClient calls the API; apiclient's default when nil.
	HTTPClient *http.Client
	// Now is the clock; time.Now when nil.
	Now func() time.Time

	lines chan lineResult // Stdin read line by line, started on first use
}

type lineResult struct {
	line string
	err  error
}

// command is one node of the command tree: a group with subcommands, or a
// leaf that runs.
type command struct {
	name    string
	summary string
	// usage is the argument synopsis after the command path.
	usage string
	// help is the long description printed by --help.
	help string
	sub  []*command
	// run runs a leaf with its positional arguments; setup, when set,
	// declares the leaf's flags on fs and returns run bound to them.
	run   runFunc
	setup func(fs *flag.FlagSet) runFunc
}

// runFunc runs a leaf command with its positional arguments.
type runFunc func(ctx context.Context, a *App, args []string) error

// usageError is a mistake in the arguments; it exits ExitUsage.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// exitError ends the run with a status after printing msg (when non-empty).
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

func (a *App) tree() *command {
	return &command{
		name:    "lull",
		summary: "asynchronous LLM inference on idle GPUs",
		help: `Configuration:
  LULL_API_URL   the API's base URL (default ` + DefaultAPIURL + `)
  LULL_API_KEY   your API key (sent as a bearer token; never printed)

Every command takes --help. Exit status: 0 success, 1 failure (including
lines or generations that did not succeed), 2 bad arguments, 130 stopped by
Ctrl-C with the work left running.`,
		sub: []*command{
			batchCommands(),
			{name: "send", summary: "submit a slow chat completion and print its ID", usage: "--model M [--webhook ID] PROMPT",
				help: "PROMPT is the user message (the arguments joined; \"-\" or none reads standard input).\n" +
					"The request goes to POST /v1/slow/chat/completions; the ID is printed alone on standard output, so\n" +
					"  lull wait $(lull send --model M \"Say hello\")\nworks.",
				setup: sendCmd},
			{name: "get", summary: "print a generation (request, response, usage)", usage: "ID",
				setup: getCmd},
			{name: "wait", summary: "wait for generations to end, with one progress bar", usage: "ID...",
				help:  "Exits 0 when every generation completed, 1 when any failed, expired or was cancelled.",
				setup: waitCmd},
			webhookCommands(),
			{name: "admin", summary: "projects, keys, rate limits, usage (not available yet)", usage: "...",
				help: "The Admin API does not exist yet; this command will manage projects, keys, rate limits and usage once it does.",
				run: func(context.Context, *App, []string) error {
					return &exitError{ExitUsage, "lull admin: the Admin API does not exist yet in this deployment"}
				}},
		},
	}
}

// Run runs the command line with args (without the program name) and
// returns the exit status.
func (a *App) Run(ctx context.Context, args []string) int {
	if a.Getenv == nil {
		a.Getenv = os.Getenv
	}
	if a.Now == nil {
		a.Now = time.Now
	}
	if a.Stdin == nil {
		a.Stdin = strings.NewReader("")
	}
	root := a.tree()
	cmd, path, rest := root, []string{"lull"}, args
	for len(cmd.sub) > 0 {
		if len(rest) == 0 || rest[0] == "-h" || rest[0] == "--help" || rest[0] == "help" {
			a.printGroupHelp(a.Stdout, cmd, path)
			if len(rest) == 0 && cmd != root {
				return ExitUsage
			}
			return ExitOK
		}
		next := find(cmd.sub, rest[0])
		if next == nil {
			fmt.Fprintf(a.Stderr, "%s: unknown command %q\n\n", strings.Join(path, " "), rest[0])
			a.printGroupHelp(a.Stderr, cmd, path)
			return ExitUsage
		}
		cmd, path, rest = next, append(path, next.name), rest[1:]
	}
	name := strings.Join(path, " ")
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	run := cmd.run
	if cmd.setup != nil {
		run = cmd.setup(fs)
	}
	positional, err := parseInterspersed(fs, rest)
	if errors.Is(err, flag.ErrHelp) {
		a.printLeafHelp(a.Stdout, cmd, name, fs)
		return ExitOK
	}
	if err != nil {
		fmt.Fprintf(a.Stderr, "%s: %v\n", name, err)
		a.printLeafHelp(a.Stderr, cmd, name, fs)
		return ExitUsage
	}
	err = run(ctx, a, positional)
	var ue *usageError
	var ee *exitError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &ue):
		fmt.Fprintf(a.Stderr, "%s: %s\n", name, ue.msg)
		fmt.Fprintf(a.Stderr, "usage: %s %s (see --help)\n", name, cmd.usage)
		return ExitUsage
	case errors.As(err, &ee):
		if ee.msg != "" {
			fmt.Fprintln(a.Stderr, ee.msg)
		}
		return ee.code
	case ctx.Err() != nil && errors.Is(err, ctx.Err()):
		fmt.Fprintf(a.Stderr, "%s: stopped\n", name)
		return ExitInterrupted
	default:
		fmt.Fprintf(a.Stderr, "%s: %v\n", name, err)
		return ExitFailed
	}
}

func find(cmds []*command, name string) *command {
	for _, c := range cmds {
		if c.name == name {
			return c
		}
	}
	return nil
}

// parseInterspersed parses flags that may come before, between or after
// positional arguments ("batch run FILE --out X"); everything after "--" is
// positional.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, nil
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(positional, rest...), nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

func (a *App) printGroupHelp(w io.Writer, cmd *command, path []string) {
	fmt.Fprintf(w, "%s — %s\n\nUsage:\n  %s <command> [flags] [arguments]\n\nCommands:\n", strings.Join(path, " "), cmd.summary, strings.Join(path, " "))
	subs := append([]*command(nil), cmd.sub...)
	if cmd.name != "lull" {
		sort.Slice(subs, func(i, j int) bool { return subs[i].name < subs[j].name })
	}
	for _, s := range subs {
		fmt.Fprintf(w, "  %-12s %s\n", s.name, s.summary)
	}
	if cmd.help != "" {
		fmt.Fprintf(w, "\n%s\n", cmd.help)
	}
	fmt.Fprintf(w, "\nRun '%s <command> --help' for a command's flags.\n", strings.Join(path, " "))
}

func (a *App) printLeafHelp(w io.Writer, cmd *command, name string, fs *flag.FlagSet) {
	fmt.Fprintf(w, "%s — %s\n\nUsage:\n  %s %s\n", name, cmd.summary, name, cmd.usage)
	if cmd.help != "" {
		fmt.Fprintf(w, "\n%s\n", cmd.help)
	}
	var flags strings.Builder
	fs.VisitAll(func(f *flag.Flag) {
		arg, usage := flag.UnquoteUsage(f)
		fmt.Fprintf(&flags, "  --%s", f.Name)
		if arg != "" {
			fmt.Fprintf(&flags, " %s", arg)
		}
		fmt.Fprintf(&flags, "\n        %s", usage)
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "0s" {
			fmt.Fprintf(&flags, " (default %s)", f.DefValue)
		}
		flags.WriteString("\n")
	})
	if flags.Len() > 0 {
		fmt.Fprintf(w, "\nFlags:\n%s", flags.String())
	}
	fmt.Fprintf(w, "\nEnvironment: LULL_API_URL (default %s), LULL_API_KEY.\n", DefaultAPIURL)
}

// client returns an API client configured from the environment.
func (a *App) client() (*apiclient.Client, error) {
	base := cmp.Or(a.Getenv("LULL_API_URL"), DefaultAPIURL)
	c, err := apiclient.New(base, a.Getenv("LULL_API_KEY"), a.HTTPClient)
	if err != nil {
		return nil, &exitError{ExitUsage, "lull: " + strings.TrimPrefix(err.Error(), "apiclient: ")}
	}
	return c, nil
}

// readLine reads one line of Stdin, or returns ctx's error. Lines are read
// by one goroutine for the life of the App, so a prompt abandoned on Ctrl-C
// does not lose the next answer.
func (a *App) readLine(ctx context.Context) (string, error) {
	if a.lines == nil {
		a.lines = make(chan lineResult)
		go func() {
			var buf []byte
			one := make([]byte, 1)
			for {
				n, err := a.Stdin.Read(one)
				if n == 1 && one[0] != '\n' {
					buf = append(buf, one[0])
					continue
				}
				if n == 1 || err != nil {
					line := strings.TrimRight(string(buf), "\r")
					buf = buf[:0]
					if err != nil && line == "" {
						a.lines <- lineResult{err: err}
						return
					}
					a.lines <- lineResult{line: line}
				}
			}
		}()
	}
	select {
	case <-ctx.Done():
		return "", ctx.Err()
	case r := <-a.lines:
		return r.line, r.err
	}
}

// interrupted returns the channel of Ctrl-C presses (never ready when the
// App has none).
func (a *App) interrupted() <-chan os.Signal { return a.Interrupts }

// withInterruptCancel returns a context cancelled on the first Ctrl-C, for
// commands that simply stop.
func (a *App) withInterruptCancel(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-a.interrupted():
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// pollEvery is the period of status polls.
func pollEvery(d time.Duration) time.Duration { return cmp.Or(d, time.Second) }
