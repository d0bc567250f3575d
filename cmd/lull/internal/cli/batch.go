package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/lull-ai/lull/cmd/lull/internal/apiclient"
	"github.com/lull-ai/lull/cmd/lull/internal/progress"
)

// SinglePartLimit is the largest file sent in one POST /v1/files; larger
// ones go through the Uploads API in parts of this size.
const SinglePartLimit = 4 << 20

func batchCommands() *command {
	return &command{
		name: "batch", summary: "run JSONL files through the Batch API",
		sub: []*command{
			{name: "run", summary: "upload a JSONL file, run it as a batch with a progress bar, write the results in input order",
				usage: "FILE --endpoint E --out OUT [--errors ERR] [--window 24h]",
				help: `FILE is OpenAI's batch input: one {"custom_id", "method":"POST", "url", "body"} per line.
Files above 4 MiB are sent through the Uploads API in 4 MiB parts.

OUT receives one result line per input line, in the input's order (the Batch
API itself gives no order); with --errors the lines that did not succeed go
to ERR instead, also in input order.

On a terminal a progress bar shows completed / failed / total, the rate and
the time left; otherwise a line is printed every --interval. Ctrl-C asks
whether to cancel the batch: "y" cancels it (the lines already finished are
still written), anything else carries on; a second Ctrl-C leaves the batch
running and exits 130.

Exits 0 only when every line succeeded; otherwise 1, saying how many did not.`,
				setup: batchRunCmd},
			{name: "status", summary: "show a batch's status and counts", usage: "ID", run: runBatchStatus},
			{name: "cancel", summary: "cancel a batch (lines already finished are kept)", usage: "ID", run: runBatchCancel},
			{name: "download", summary: "write a finished batch's results in input order", usage: "ID --out OUT [--errors ERR]",
				help:  "Reads the batch's input, output and error files. Exits 1 when any line did not succeed.",
				setup: batchDownloadCmd},
		},
	}
}

// batchRunOpts are `batch run`'s flags, bound by batchRunFlags.
type batchRunOpts struct {
	endpoint, window, out, errs string
	poll, interval              time.Duration
	partSize                    int64
}

func batchRunCmd(fs *flag.FlagSet) runFunc {
	o := &batchRunOpts{}
	fs.StringVar(&o.endpoint, "endpoint", "", "the lines' endpoint: /v1/chat/completions or /v1/completions (required)")
	fs.StringVar(&o.window, "window", "24h", "completion window")
	fs.StringVar(&o.out, "out", "", "file to write the results to (required)")
	fs.StringVar(&o.errs, "errors", "", "file to write the lines that did not succeed to (default: OUT)")
	fs.DurationVar(&o.poll, "poll", time.Second, "how often to read the batch's status")
	fs.DurationVar(&o.interval, "interval", 10*time.Second, "least time between progress lines when not on a terminal")
	fs.Int64Var(&o.partSize, "part-size", SinglePartLimit, "bytes per upload part (files above 4 MiB)")
	return o.run
}

func (o *batchRunOpts) run(ctx context.Context, a *App, args []string) error {
	switch {
	case len(args) != 1:
		return usagef("want one FILE, got %d arguments", len(args))
	case o.endpoint == "":
		return usagef("--endpoint is required (/v1/chat/completions or /v1/completions)")
	case o.out == "":
		return usagef("--out is required")
	case o.partSize < 1 || o.partSize > SinglePartLimit:
		return usagef("--part-size must be between 1 and %d", SinglePartLimit)
	}
	c, err := a.client()
	if err != nil {
		return err
	}
	path := args[0]
	f, err := os.Open(path)
	if err != nil {
		return &exitError{ExitFailed, fmt.Sprintf("lull batch run: %v", err)}
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	order, err := customIDs(f)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	// Check the outputs can be written before spending anything.
	outs, err := openOutputs(o.out, o.errs)
	if err != nil {
		return err
	}
	defer outs.abort()

	// Upload; Ctrl-C here simply stops.
	upCtx, stopUp := a.withInterruptCancel(ctx)
	file, err := a.upload(upCtx, c, f, filepath.Base(path), st.Size(), o.partSize)
	interrupted := upCtx.Err() != nil && ctx.Err() == nil
	stopUp()
	if err != nil && interrupted {
		return &exitError{ExitInterrupted, "stopped during the upload; no batch was created"}
	}
	if err != nil {
		return err
	}
	b, err := c.CreateBatch(ctx, file.ID, o.endpoint, o.window, nil)
	if err != nil {
		return err
	}
	fmt.Fprintf(a.Stdout, "batch %s created for %d lines (stop it with: lull batch cancel %s)\n", b.ID, len(order), b.ID)

	b, cancelled, err := a.follow(ctx, c, b, o.poll, o.interval)
	if err != nil {
		return err
	}
	return a.finish(ctx, c, b, order, outs, cancelled)
}

// upload sends the file in one request or through the Uploads API.
func (a *App) upload(ctx context.Context, c *apiclient.Client, f io.Reader, name string, size, partSize int64) (*apiclient.File, error) {
	if size <= SinglePartLimit && size <= partSize {
		file, err := c.UploadFile(ctx, name, f)
		if err != nil {
			return nil, fmt.Errorf("upload %s: %w", name, err)
		}
		fmt.Fprintf(a.Stdout, "uploaded %s as %s (%d bytes)\n", name, file.ID, file.Bytes)
		return file, nil
	}
	parts := (size + partSize - 1) / partSize
	fmt.Fprintf(a.Stdout, "uploading %s (%d bytes) in %d parts\n", name, size, parts)
	bar := &progress.Bar{Out: a.Stdout, Terminal: a.Terminal, Width: a.Width, Label: "upload", Now: a.Now, Interval: 5 * time.Second}
	file, err := c.UploadLarge(ctx, name, f, size, partSize, func(sent int64) {
		done := int((sent + partSize - 1) / partSize)
		bar.Update(progress.Counts{Completed: done, Total: int(parts)}, "parts")
	})
	if err != nil {
		bar.Clear()
		return nil, fmt.Errorf("upload %s: %w", name, err)
	}
	bar.Finish(progress.Counts{Completed: int(parts), Total: int(parts)}, "uploaded")
	fmt.Fprintf(a.Stdout, "uploaded %s as %s\n", name, file.ID)
	return file, nil
}

// follow polls the batch until it ends, drawing progress and handling
// Ctrl-C. It reports whether the user cancelled the batch.
func (a *App) follow(ctx context.Context, c *apiclient.Client, b *apiclient.Batch, poll, interval time.Duration) (*apiclient.Batch, bool, error) {
	bar := &progress.Bar{Out: a.Stdout, Terminal: a.Terminal, Width: a.Width, Label: b.ID, Now: a.Now, Interval: interval}
	t := time.NewTicker(pollEvery(poll))
	defer t.Stop()
	cancelled := false
	for {
		counts := progress.Counts{Completed: b.RequestCounts.Completed, Failed: b.RequestCounts.Failed, Total: b.RequestCounts.Total}
		if b.Ended() {
			bar.Finish(counts, b.Status)
			return b, cancelled, nil
		}
		bar.Update(counts, b.Status)
		select {
		case <-ctx.Done():
			bar.Clear()
			return nil, false, ctx.Err()
		case <-a.interrupted():
			bar.Clear()
			if cancelled {
				return nil, false, &exitError{ExitInterrupted, fmt.Sprintf("left %s cancelling; see: lull batch status %s", b.ID, b.ID)}
			}
			yes, err := a.confirm(ctx, fmt.Sprintf("cancel the batch %s? [y/N] ", b.ID))
			if err != nil {
				return nil, false, &exitError{ExitInterrupted, fmt.Sprintf("\nleft %s running; see: lull batch status %s", b.ID, b.ID)}
			}
			if !yes {
				fmt.Fprintln(a.Stdout, "carrying on")
				continue
			}
			nb, err := c.CancelBatch(ctx, b.ID)
			if err != nil && !apiclient.IsStatus(err, 409) {
				return nil, false, fmt.Errorf("cancel %s: %w", b.ID, err)
			}
			if err == nil {
				b = nb
			}
			cancelled = true
			fmt.Fprintf(a.Stdout, "cancelling %s; lines already finished are kept\n", b.ID)
		case <-t.C:
			nb, err := c.Batch(ctx, b.ID)
			if err != nil {
				if ctx.Err() != nil {
					return nil, false, ctx.Err()
				}
				// A passing network error should not end a long wait.
				bar.Clear()
				fmt.Fprintf(a.Stderr, "reading %s: %v (retrying)\n", b.ID, err)
				continue
			}
			b = nb
		}
	}
}

// confirm prints a question and reads a yes/no answer. A second Ctrl-C or
// the end of input is an error: the caller leaves the work running.
func (a *App) confirm(ctx context.Context, question string) (bool, error) {
	fmt.Fprint(a.Stdout, question)
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-a.interrupted():
			cancel()
		case <-pctx.Done():
		}
	}()
	line, err := a.readLine(pctx)
	if err != nil {
		return false, err
	}
	answer := strings.ToLower(strings.TrimSpace(line))
	return answer == "y" || answer == "yes", nil
}

// outputs are the result files, written to temporary names and renamed into
// place only when complete.
type outputs struct {
	out, errs         *os.File
	outPath, errsPath string
}

func openOutputs(outPath, errsPath string) (*outputs, error) {
	o := &outputs{outPath: outPath, errsPath: errsPath}
	var err error
	if o.out, err = os.CreateTemp(filepath.Dir(outPath), "."+filepath.Base(outPath)+".*"); err != nil {
		return nil, &exitError{ExitFailed, fmt.Sprintf("cannot write --out: %v", err)}
	}
	if errsPath != "" {
		if o.errs, err = os.CreateTemp(filepath.Dir(errsPath), "."+filepath.Base(errsPath)+".*"); err != nil {
			o.abort()
			return nil, &exitError{ExitFailed, fmt.Sprintf("cannot write --errors: %v", err)}
		}
	}
	return o, nil
}

func (o *outputs) abort() {
	for _, f := range []*os.File{o.out, o.errs} {
		if f != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}
}

func (o *outputs) commit() error {
	for _, p := range []struct {
		f    *os.File
		path string
	}{{o.out, o.outPath}, {o.errs, o.errsPath}} {
		if p.f == nil {
			continue
		}
		if err := p.f.Close(); err != nil {
			return err
		}
		if err := os.Rename(p.f.Name(), p.path); err != nil {
			return err
		}
	}
	o.out, o.errs = nil, nil
	return nil
}

// finish downloads an ended batch's results, writes them in input order and
// decides the exit status.
func (a *App) finish(ctx context.Context, c *apiclient.Client, b *apiclient.Batch, order []string, outs *outputs, cancelled bool) error {
	if b.Status == "failed" && b.Errors != nil {
		fmt.Fprintf(a.Stderr, "batch %s failed validation; nothing ran:\n", b.ID)
		for _, e := range b.Errors.Data {
			line := ""
			if e.Line != nil {
				line = fmt.Sprintf("line %d: ", *e.Line)
			}
			fmt.Fprintf(a.Stderr, "  %s%s (%s)\n", line, e.Message, e.Code)
		}
		return &exitError{ExitFailed, fmt.Sprintf("%d of %d lines did not succeed", len(order), len(order))}
	}
	n, err := a.writeResults(ctx, c, b, order, outs)
	if err != nil {
		return err
	}
	if err := outs.commit(); err != nil {
		return err
	}
	where := outs.outPath
	if outs.errsPath != "" {
		where += fmt.Sprintf(" (%d not succeeded to %s)", n.Failed+n.Missing, outs.errsPath)
	}
	fmt.Fprintf(a.Stdout, "wrote %d results in input order to %s\n", n.Succeeded+n.Failed, where)
	bad := len(order) - n.Succeeded
	switch {
	case bad > 0:
		msg := fmt.Sprintf("%d of %d lines did not succeed (batch %s %s", bad, len(order), b.ID, b.Status)
		if n.Missing > 0 {
			msg += fmt.Sprintf("; %d without any result", n.Missing)
		}
		return &exitError{ExitFailed, msg + ")"}
	case b.Status != "completed":
		return &exitError{ExitFailed, fmt.Sprintf("batch %s ended %s", b.ID, b.Status)}
	case cancelled:
		return &exitError{ExitFailed, fmt.Sprintf("batch %s was cancelled after every line ended", b.ID)}
	}
	return nil
}

func (a *App) writeResults(ctx context.Context, c *apiclient.Client, b *apiclient.Batch, order []string, outs *outputs) (resultCounts, error) {
	var readers []io.Reader
	for _, id := range []*string{b.OutputFileID, b.ErrorFileID} {
		if id == nil || *id == "" {
			readers = append(readers, nil)
			continue
		}
		rc, err := c.FileContent(ctx, *id)
		if err != nil {
			return resultCounts{}, fmt.Errorf("download %s: %w", *id, err)
		}
		defer rc.Close()
		readers = append(readers, rc)
	}
	var errOut io.Writer
	if outs.errs != nil {
		errOut = outs.errs
	}
	n, err := writeOrdered(order, readers[0], readers[1], outs.out, errOut, filepath.Dir(outs.out.Name()))
	if err != nil {
		return n, fmt.Errorf("write results: %w", err)
	}
	return n, nil
}

func runBatchStatus(ctx context.Context, a *App, args []string) error {
	if len(args) != 1 {
		return usagef("want one batch ID")
	}
	c, err := a.client()
	if err != nil {
		return err
	}
	b, err := c.Batch(ctx, args[0])
	if err != nil {
		return err
	}
	printBatch(a.Stdout, b)
	return nil
}

func printBatch(w io.Writer, b *apiclient.Batch) {
	rc := b.RequestCounts
	fmt.Fprintf(w, "%s  %s  %s\n", b.ID, b.Status, b.Endpoint)
	fmt.Fprintf(w, "  lines      %d total, %d completed, %d failed, %d pending\n", rc.Total, rc.Completed, rc.Failed, max(rc.Total-rc.Completed-rc.Failed, 0))
	fmt.Fprintf(w, "  created    %s\n", time.Unix(b.CreatedAt, 0).UTC().Format(time.RFC3339))
	if b.ExpiresAt != nil {
		fmt.Fprintf(w, "  expires    %s\n", time.Unix(*b.ExpiresAt, 0).UTC().Format(time.RFC3339))
	}
	fmt.Fprintf(w, "  input      %s\n", b.InputFileID)
	if b.OutputFileID != nil {
		fmt.Fprintf(w, "  output     %s\n", *b.OutputFileID)
	}
	if b.ErrorFileID != nil {
		fmt.Fprintf(w, "  errors     %s\n", *b.ErrorFileID)
	}
	if b.Errors != nil {
		for _, e := range b.Errors.Data {
			fmt.Fprintf(w, "  error      %s: %s\n", e.Code, e.Message)
		}
	}
}

func runBatchCancel(ctx context.Context, a *App, args []string) error {
	if len(args) != 1 {
		return usagef("want one batch ID")
	}
	c, err := a.client()
	if err != nil {
		return err
	}
	b, err := c.CancelBatch(ctx, args[0])
	if err != nil {
		return err
	}
	fmt.Fprintf(a.Stdout, "%s %s\n", b.ID, b.Status)
	return nil
}

func batchDownloadCmd(fs *flag.FlagSet) runFunc {
	o := &batchRunOpts{}
	fs.StringVar(&o.out, "out", "", "file to write the results to (required)")
	fs.StringVar(&o.errs, "errors", "", "file to write the lines that did not succeed to (default: OUT)")
	return o.download
}

func (o *batchRunOpts) download(ctx context.Context, a *App, args []string) error {
	if len(args) != 1 {
		return usagef("want one batch ID")
	}
	if o.out == "" {
		return usagef("--out is required")
	}
	c, err := a.client()
	if err != nil {
		return err
	}
	b, err := c.Batch(ctx, args[0])
	if err != nil {
		return err
	}
	if !b.Ended() {
		return &exitError{ExitFailed, fmt.Sprintf("batch %s is %s: its results are written when it ends", b.ID, b.Status)}
	}
	in, err := c.FileContent(ctx, b.InputFileID)
	if err != nil {
		return fmt.Errorf("read input file %s: %w", b.InputFileID, err)
	}
	order, err := customIDs(in)
	in.Close()
	if err != nil {
		return err
	}
	outs, err := openOutputs(o.out, o.errs)
	if err != nil {
		return err
	}
	defer outs.abort()
	return a.finish(ctx, c, b, order, outs, false)
}
