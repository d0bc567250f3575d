// Package batchjob runs lull's Batch API jobs: it validates a batch's JSONL
// input file while streaming it, stores and enqueues one generation per line,
// cancels the queued lines of a cancelled batch (counting them, exactly once
// each, as shared/linecount counts the lines that run), and, when the last
// line ends, writes the output and error files in OpenAI's format and ends
// the batch.
//
// Crash safety: every step is idempotent. Line generations have IDs derived
// from the batch and the line number, so a retried split stores nothing
// twice and resumes from the last recorded checkpoint; counting is a
// conditional transaction per line; the output files have derived IDs and
// keys; every batch transition is conditional on the current status.
package batchjob

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/lull-ai/lull/shared/linecount"
	"github.com/lull-ai/lull/shared/lull"
	"github.com/lull-ai/lull/shared/parallel"
	"github.com/lull-ai/lull/shared/request"
)

// Limits of an input file, as OpenAI's.
const (
	DefaultMaxLines = 50_000
	DefaultMaxBytes = 200 << 20
)

// Store is what the batch jobs need from storage besides generations:
// input and output files, batches, and their lines.
type Store interface {
	lull.Files
	lull.Batches
	lull.BatchLines
}

// Config wires a Handler to its dependencies. Batches, Generations, Blobs,
// BatchQueue, Queues and Logger are required; zero limits take the
// defaults noted.
type Config struct {
	Batches     Store
	Generations lull.Generations
	Blobs       lull.Blobs
	// Tasks says what each served model does; a model missing here
	// generates (chat, completions, responses).
	Tasks map[string]lull.Task
	// Queues maps each served model to its request queue.
	Queues map[string]lull.BatchSender
	// BatchQueue receives the finalize job when a batch's last line is
	// counted.
	BatchQueue lull.Sender
	// Events receives batch.* events; nil disables them.
	Events lull.Sender
	Logger *slog.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time

	MaxLines     int   // lines per file; DefaultMaxLines when zero
	MaxBytes     int64 // bytes per file; DefaultMaxBytes when zero
	MaxLineBytes int   // bytes per line; 2 MiB + 64 KiB when zero
	// InlineLimit is the largest line body kept in the generation and its
	// message; larger ones go to the blob store. 64 KiB when zero.
	InlineLimit int
	// Chunk is how many lines are stored and enqueued between checkpoints;
	// 500 when zero.
	Chunk int
	// Concurrency bounds parallel store and blob calls; 16 when zero.
	Concurrency int
	// Limits bound what one line may ask of the engine, as for the API
	// (zero fields: request.DefaultLimits).
	Limits request.Limits
}

func (c *Config) withDefaults() {
	c.MaxLines = cmp.Or(c.MaxLines, DefaultMaxLines)
	c.MaxBytes = cmp.Or(c.MaxBytes, DefaultMaxBytes)
	c.MaxLineBytes = cmp.Or(c.MaxLineBytes, 2<<20+64<<10)
	c.InlineLimit = cmp.Or(c.InlineLimit, 64<<10)
	c.Chunk = cmp.Or(c.Chunk, 500)
	c.Concurrency = cmp.Or(c.Concurrency, 16)
	if c.Now == nil {
		c.Now = time.Now
	}
}

func (c *Config) validate() error {
	var errs []error
	for _, f := range []struct {
		name    string
		missing bool
	}{
		{"Batches", c.Batches == nil}, {"Generations", c.Generations == nil}, {"Blobs", c.Blobs == nil},
		{"BatchQueue", c.BatchQueue == nil}, {"Queues", len(c.Queues) == 0}, {"Logger", c.Logger == nil},
	} {
		if f.missing {
			errs = append(errs, fmt.Errorf("missing %s", f.name))
		}
	}
	for model, q := range c.Queues {
		if q == nil {
			errs = append(errs, fmt.Errorf("missing the queue of model %q in Queues", model))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("batchjob: config: %w", err)
	}
	return nil
}

// Handler is the SQS-triggered batch Lambda. Build it with New.
type Handler struct {
	Config
	lines *linecount.Counter
}

// New returns a Handler with cfg's defaults applied, or an error naming
// every missing dependency.
func New(cfg Config) (*Handler, error) {
	cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	lines, err := linecount.New(linecount.Config{Lines: cfg.Batches, Generations: cfg.Generations, BatchQueue: cfg.BatchQueue, Logger: cfg.Logger})
	if err != nil {
		return nil, fmt.Errorf("batchjob: %w", err)
	}
	return &Handler{Config: cfg, lines: lines}, nil
}

// finalizeIfDone sends the finalize job when every line of b has ended.
func (h *Handler) finalizeIfDone(ctx context.Context, b *lull.Batch) error {
	return h.lines.FinalizeIfDone(ctx, b)
}

// Handle runs each record's job; records whose job failed with a storage or
// queue error are reported as batch item failures so SQS redelivers them.
func (h *Handler) Handle(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
	var resp events.SQSEventResponse
	for _, rec := range ev.Records {
		var job lull.BatchJob
		if err := json.Unmarshal([]byte(rec.Body), &job); err != nil || job.BatchID == "" {
			h.Logger.ErrorContext(ctx, "malformed batch job dropped", "message_id", rec.MessageId)
			continue
		}
		if err := h.Run(ctx, job); err != nil {
			h.Logger.WarnContext(ctx, "batch job failed; will retry", "kind", job.Kind, "batch_id", job.BatchID, "err", err)
			resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: rec.MessageId})
		}
	}
	return resp, nil
}

// Run runs one job.
func (h *Handler) Run(ctx context.Context, job lull.BatchJob) error {
	b, err := h.Batches.GetBatch(ctx, job.BatchID)
	if lull.IsNotFound(err) {
		h.Logger.WarnContext(ctx, "job for unknown batch dropped", "batch_id", job.BatchID)
		return nil
	}
	if err != nil {
		return err
	}
	switch job.Kind {
	case lull.BatchJobSplit:
		return h.split(ctx, b)
	case lull.BatchJobCancel:
		if !b.SplitDone {
			return nil // the split job cancels once it has stored every line
		}
		return h.cancelLines(ctx, b)
	case lull.BatchJobFinalize:
		return h.finalize(ctx, b)
	}
	h.Logger.ErrorContext(ctx, "unknown batch job dropped", "kind", job.Kind, "batch_id", b.ID)
	return nil
}

// cancelLines cancels every line of b still queued and counts it, then
// finalizes b if nothing is left running.
func (h *Handler) cancelLines(ctx context.Context, b *lull.Batch) error {
	log := h.Logger.With("batch_id", b.ID, "tenant", b.Tenant)
	var cancelled atomic.Int64
	err := h.eachPage(ctx, b.ID, func(lines []*lull.Generation) error {
		return parallel.Each(ctx, h.Concurrency, len(lines), func(ctx context.Context, i int) error {
			g := lines[i]
			if g.Status == lull.StatusQueued {
				done, err := h.Generations.Finish(ctx, g.ID, lull.StatusCancelled, lull.Outcome{At: h.Now().UTC(),
					Failure: &lull.Failure{Code: "batch_cancelled", Message: "The batch was cancelled before this request ran."}})
				if lull.IsConflict(err) {
					return nil // a worker started it meanwhile; its event counts it
				}
				if err != nil {
					return err
				}
				g = done
			}
			if g.Status == lull.StatusCancelled {
				cancelled.Add(1)
				return h.countOnly(ctx, g)
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	log.InfoContext(ctx, "batch lines cancelled", "cancelled", cancelled.Load())
	b, err = h.Batches.GetBatch(ctx, b.ID)
	if err != nil {
		return err
	}
	return h.finalizeIfDone(ctx, b)
}

// countOnly counts a line without triggering finalization (the caller checks
// once at the end).
func (h *Handler) countOnly(ctx context.Context, g *lull.Generation) error {
	_, _, err := h.Batches.CountLine(ctx, g)
	return err
}

// eachPage calls f with the batch's lines a page at a time, in input order.
func (h *Handler) eachPage(ctx context.Context, batchID string, f func([]*lull.Generation) error) error {
	cursor := ""
	for {
		lines, next, err := h.Batches.Lines(ctx, batchID, cursor, 100)
		if err != nil {
			return err
		}
		if err := f(lines); err != nil {
			return err
		}
		if next == "" {
			return nil
		}
		cursor = next
	}
}
