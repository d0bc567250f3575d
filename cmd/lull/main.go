// Command lull is lull's command line: batches with progress bars and
// results in input order, slow requests, and webhook endpoints with a local
// receiver. `lull --help` lists the commands; configuration comes from
// LULL_API_URL and LULL_API_KEY.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/lull-ai/lull/cmd/lull/internal/cli"
	"github.com/lull-ai/lull/cmd/lull/internal/term"
)

func main() {
	interrupts := make(chan os.Signal, 1)
	signal.Notify(interrupts, os.Interrupt)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	app := &cli.App{
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv,
		Interrupts: interrupts, Terminal: term.IsTerminal(os.Stdout), Width: term.Width(os.Stdout),
	}
	code := app.Run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}
