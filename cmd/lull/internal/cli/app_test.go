package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestHelpEverywhere walks the command tree: every group and every command
// answers --help with its usage on stdout and exit 0.
func TestHelpEverywhere(t *testing.T) {
	t.Parallel()
	var walk func(c *command, path []string)
	var paths [][]string
	walk = func(c *command, path []string) {
		paths = append(paths, path)
		for _, s := range c.sub {
			walk(s, append(append([]string(nil), path...), s.name))
		}
	}
	walk((&App{}).tree(), nil)
	if len(paths) < 15 {
		t.Fatalf("only %d commands found", len(paths))
	}
	for _, p := range paths {
		for _, flag := range []string{"--help", "-h"} {
			var out, errOut bytes.Buffer
			a := &App{Stdout: &out, Stderr: &errOut, Getenv: func(string) string { return "" }}
			code := a.Run(context.Background(), append(append([]string(nil), p...), flag))
			name := strings.Join(append([]string{"lull"}, p...), " ")
			if code != ExitOK || !strings.Contains(out.String(), name) || !strings.Contains(out.String(), "Usage:") || errOut.Len() > 0 {
				t.Errorf("%s %s: exit %d, stdout %q, stderr %q", name, flag, code, out.String(), errOut.String())
			}
		}
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"nope"}, ExitUsage, `unknown command "nope"`},
		{[]string{"batch"}, ExitUsage, "lull batch <command>"},
		{[]string{"batch", "run", "--endpoint", "/v1/chat/completions", "--out", "o"}, ExitUsage, "want one FILE"},
		{[]string{"batch", "run", "f.jsonl", "--out", "o"}, ExitUsage, "--endpoint is required"},
		{[]string{"batch", "run", "f.jsonl", "--endpoint", "/v1/completions"}, ExitUsage, "--out is required"},
		{[]string{"batch", "run", "--bogus"}, ExitUsage, "flag provided but not defined"},
		{[]string{"send"}, ExitUsage, "no PROMPT"},
		{[]string{"wait"}, ExitUsage, "at least one generation ID"},
		{[]string{"webhooks", "retry", "wh_1"}, ExitUsage, "WEBHOOK_ID DELIVERY_ID"},
		{[]string{"get", "gen_1"}, ExitUsage, "no API key"},
		{[]string{"admin", "projects"}, ExitUsage, "Admin API does not exist yet"},
	}
	for _, tt := range tests {
		var out, errOut bytes.Buffer
		a := &App{Stdout: &out, Stderr: &errOut, Getenv: func(string) string { return "" }}
		code := a.Run(context.Background(), tt.args)
		all := out.String() + errOut.String()
		if code != tt.code || !strings.Contains(all, tt.msg) {
			t.Errorf("%q: exit %d, output %q; want %d and %q", tt.args, code, all, tt.code, tt.msg)
		}
	}
}
