// Package batchjob runs lull's Batch API jobs: it validates a batch's JSONL
// input file while streaming it, stores and enqueues one generation per line,
// counts lines as they end (exactly once each), cancels the queued lines of
// a cancelled batch, and, when the last line ends, writes the output and
// error files in OpenAI's format and ends the batch.
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
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/lull-ai/lull/shared/dispatch"
	"github.com/lull-ai/lull/shared/lull"
	"github.com/lull-ai/lull/shared/parallel"
)

// Counter counts a batch's lines as they end and, once the last one is
// counted, asks for the batch to be finalized. The webhook dispatcher runs it
// for every generation event of a batch line; the batch Lambda for lines it
// cancels itself.
type Counter struct {
	Batches     lull.Batches
	Generations lull.Generations
	// BatchQueue receives the finalize job.
	BatchQueue lull.Sender
	Logger     *slog.Logger
}

// LineDone counts the line that ev announces. A repeated event counts
// nothing but still re-checks whether the batch can be finalized, so a crash
// between counting and asking for finalization heals on the redelivery.
func (c *Counter) LineDone(ctx context.Context, ev lull.Event) error {
	g, err := c.Generations.Get(ctx, ev.GenerationID)
	if lull.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	return c.count(ctx, g)
}

func (c *Counter) count(ctx context.Context, g *lull.Generation) error {
	if g.BatchID == "" || !g.Status.Terminal() {
		return nil
	}
	b, counted, err := c.Batches.CountLine(ctx, g)
	if lull.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("batchjob: count line %s of %s: %w", g.ID, g.BatchID, err)
	}
	if counted {
		c.Logger.DebugContext(ctx, "batch line counted", "batch_id", b.ID, "generation_id", g.ID,
			"completed", b.Completed, "failed", b.Failed, "total", b.Total)
	}
	return c.finalizeIfDone(ctx, b)
}

// finalizeIfDone sends the finalize job when every line of b has ended.
func (c *Counter) finalizeIfDone(ctx context.Context, b *lull.Batch) error {
	if !ready(b) {
		return nil
	}
	return dispatch.SendBatchJob(ctx, c.BatchQueue, lull.BatchJobFinalize, b)
}

// ready reports whether every line of b is stored and has ended, and b
// still waits for its finalize job. (A batch already finalizing has its job:
// SQS redelivers it if the run that took it dies.)
func ready(b *lull.Batch) bool {
	return b.SplitDone && b.Completed+b.Failed >= b.Total &&
		(b.Status == lull.BatchInProgress || b.Status == lull.BatchCancelling)
}

// Limits of an input file, as OpenAI's.
const (
	DefaultMaxLines = 50_000
	DefaultMaxBytes = 200 << 20
)

// Handler is the SQS-triggered batch Lambda.
type Handler struct {
	Counter
	Blobs lull.Blobs
	// Tasks says what each served model does; a model missing here
	// generates (chat, completions, responses).
	Tasks map[string]lull.Task
	// Queues maps each served model to its request queue.
	Queues map[string]lull.BatchSender
	// Events receives batch.* events; nil disables them.
	Events lull.Sender
	Now    func() time.Time

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

	once sync.Once
}

// defaults fills the zero settings, once: Run may be called concurrently.
func (h *Handler) defaults() { h.once.Do(h.setDefaults) }

func (h *Handler) setDefaults() {
	h.MaxLines = cmp.Or(h.MaxLines, DefaultMaxLines)
	h.MaxBytes = cmp.Or(h.MaxBytes, DefaultMaxBytes)
	h.MaxLineBytes = cmp.Or(h.MaxLineBytes, 2<<20+64<<10)
	h.InlineLimit = cmp.Or(h.InlineLimit, 64<<10)
	h.Chunk = cmp.Or(h.Chunk, 500)
	h.Concurrency = cmp.Or(h.Concurrency, 16)
	if h.Now == nil {
		h.Now = time.Now
	}
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
	h.defaults()
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
