// Package linecount counts a batch's lines as they end, each exactly once,
// and queues the batch's finalize job when the last one is counted. The
// webhook dispatcher runs it for every generation event of a batch line;
// the batch Lambda for the lines it cancels itself.
package linecount

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/lull-ai/lull/shared/dispatch"
	"github.com/lull-ai/lull/shared/lull"
)

// Config wires a Counter to its dependencies; every field is required.
type Config struct {
	// Lines counts lines in the store (lull.BatchLines.CountLine).
	Lines       lull.BatchLines
	Generations lull.Generations
	// BatchQueue receives the finalize job.
	BatchQueue lull.Sender
	Logger     *slog.Logger
}

func (c *Config) validate() error {
	var errs []error
	for _, f := range []struct {
		name    string
		missing bool
	}{{"Lines", c.Lines == nil}, {"Generations", c.Generations == nil}, {"BatchQueue", c.BatchQueue == nil}, {"Logger", c.Logger == nil}} {
		if f.missing {
			errs = append(errs, fmt.Errorf("missing %s", f.name))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("linecount: config: %w", err)
	}
	return nil
}

// Counter counts a batch's lines as they end and, once the last one is
// counted, asks for the batch to be finalized.
type Counter struct {
	cfg Config
}

var _ lull.LineCounter = (*Counter)(nil)

// New returns a Counter, or an error naming every missing dependency.
func New(cfg Config) (*Counter, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Counter{cfg: cfg}, nil
}

// LineDone counts the line that ev announces. A repeated event counts
// nothing but still re-checks whether the batch can be finalized, so a crash
// between counting and asking for finalization heals on the redelivery.
func (c *Counter) LineDone(ctx context.Context, ev lull.Event) error {
	g, err := c.cfg.Generations.Get(ctx, ev.GenerationID)
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
	b, counted, err := c.cfg.Lines.CountLine(ctx, g)
	if lull.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("linecount: count line %s of %s: %w", g.ID, g.BatchID, err)
	}
	if counted {
		c.cfg.Logger.DebugContext(ctx, "batch line counted", "batch_id", b.ID, "generation_id", g.ID,
			"completed", b.Completed, "failed", b.Failed, "total", b.Total)
	}
	return c.FinalizeIfDone(ctx, b)
}

// FinalizeIfDone sends the finalize job when every line of b has ended
// (b.ReadyToFinalize).
func (c *Counter) FinalizeIfDone(ctx context.Context, b *lull.Batch) error {
	if !b.ReadyToFinalize() {
		return nil
	}
	return dispatch.SendBatchJob(ctx, c.cfg.BatchQueue, lull.BatchJobFinalize, b)
}
