package batchjob

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/lull-ai/lull/shared/dispatch"
	"github.com/lull-ai/lull/shared/lull"
)

// maxRun is longer than a batch job can run (Lambda's 15-minute limit).
const maxRun = 16 * time.Minute

// ReconcileStore is what Reconcile reads and counts: batches and their lines.
type ReconcileStore interface {
	lull.Batches
	lull.BatchLines
}

// recountMarker records that the sweeper re-derived a batch
// (dynamodb.Store), which Reconcile takes as progress.
type recountMarker interface {
	MarkRecounted(ctx context.Context, batchID string, at time.Time) error
}

// ReconcilerConfig wires a Reconciler; every field is required.
type ReconcilerConfig struct {
	Batches ReconcileStore
	// BatchQueue receives the jobs sent again.
	BatchQueue lull.Sender
	Logger     *slog.Logger
}

// Reconciler re-derives what open batches need from their stored state
// (the sweeper runs it).
type Reconciler struct {
	cfg ReconcilerConfig
}

// NewReconciler returns a Reconciler, or an error naming every missing
// dependency.
func NewReconciler(cfg ReconcilerConfig) (*Reconciler, error) {
	var errs []error
	for _, f := range []struct {
		name    string
		missing bool
	}{{"Batches", cfg.Batches == nil}, {"BatchQueue", cfg.BatchQueue == nil}, {"Logger", cfg.Logger == nil}} {
		if f.missing {
			errs = append(errs, fmt.Errorf("missing %s", f.name))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("batchjob: reconciler config: %w", err)
	}
	return &Reconciler{cfg: cfg}, nil
}

// Reconcile re-derives what the open batch b needs from the stored state,
// so that no batch waits for ever on one message surviving (a lost split,
// cancel or finalize job; a line event that landed in a DLQ or was never
// sent). quiet is how long a batch may show no progress before its jobs are
// sent again:
//
//   - lines still to store (validating, or the split not done), no live
//     split claim, created more than quiet ago and not re-derived within
//     quiet: its split job again (a duplicate finds the claim held and is
//     dropped);
//   - every line stored and no line counted for quiet: each terminal line
//     not yet counted is counted (CountLine counts once), a cancelling
//     batch gets its cancel job again, and the batch is finalized when
//     every line is counted;
//   - finalizing for longer than quiet and than a batch Lambda runs: its
//     finalize job again.
func (r *Reconciler) Reconcile(ctx context.Context, b *lull.Batch, now time.Time, quiet time.Duration) error {
	if b.Status.Terminal() {
		return nil
	}
	log := r.cfg.Logger.With("batch_id", b.ID, "tenant", b.Tenant, "status", string(b.Status))
	switch {
	case b.Status == lull.BatchFinalizing:
		// A finalize run holds its message for as long as it runs; only a
		// run gone for good (its message too) leaves a batch finalizing
		// past the longest run.
		if now.Sub(b.FinalizingAt) < max(quiet, maxRun) {
			return nil
		}
		log.WarnContext(ctx, "batch finalizing for too long; finalize job sent again", "since", b.FinalizingAt)
		return dispatch.SendBatchJob(ctx, r.cfg.BatchQueue, lull.BatchJobFinalize, b)
	case !b.SplitDone:
		if now.Before(b.SplitUntil) || now.Sub(b.CreatedAt) < quiet || now.Sub(b.CountedAt) < quiet {
			// A run holds the claim, the first job may still be on its
			// way, or the job was sent again less than quiet ago.
			return nil
		}
		log.WarnContext(ctx, "batch not split and no run holds it; split job sent again", "created", b.Created, "total", b.Total)
		if err := dispatch.SendBatchJob(ctx, r.cfg.BatchQueue, lull.BatchJobSplit, b); err != nil {
			return err
		}
		return r.mark(ctx, b, now)
	case b.ReadyToFinalize():
		return dispatch.SendBatchJob(ctx, r.cfg.BatchQueue, lull.BatchJobFinalize, b)
	}
	last := b.InProgressAt
	if b.CountedAt.After(last) {
		last = b.CountedAt
	}
	if now.Sub(last) < quiet {
		return nil // lines are being counted
	}
	counted := 0
	cursor := ""
	for {
		lines, next, err := r.cfg.Batches.Lines(ctx, b.ID, cursor, 100)
		if err != nil {
			return err
		}
		for _, g := range lines {
			if !g.Status.Terminal() || g.Counted {
				continue
			}
			_, did, err := r.cfg.Batches.CountLine(ctx, g)
			if err != nil {
				return err
			}
			if did {
				counted++
			}
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if counted > 0 {
		log.WarnContext(ctx, "batch lines ended without being counted; counted now", "lines", counted)
	}
	// A batch waiting for GPU capacity shows no progress for hours:
	// recount it once per quiet period, not on every sweep.
	if err := r.mark(ctx, b, now); err != nil {
		return err
	}
	if b.Status == lull.BatchCancelling {
		if err := dispatch.SendBatchJob(ctx, r.cfg.BatchQueue, lull.BatchJobCancel, b); err != nil {
			return err
		}
	}
	cur, err := r.cfg.Batches.GetBatch(ctx, b.ID)
	if err != nil {
		return err
	}
	if cur.ReadyToFinalize() {
		return dispatch.SendBatchJob(ctx, r.cfg.BatchQueue, lull.BatchJobFinalize, cur)
	}
	return nil
}

// mark records that the sweeper re-derived b at now, when the store can
// (recountMarker), so that it does so once per quiet period.
func (r *Reconciler) mark(ctx context.Context, b *lull.Batch, now time.Time) error {
	if m, ok := r.cfg.Batches.(recountMarker); ok {
		return m.MarkRecounted(ctx, b.ID, now)
	}
	return nil
}
