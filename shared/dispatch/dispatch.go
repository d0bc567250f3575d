// Package dispatch puts generations' jobs on their model queues and batch
// jobs on the batch queue, and announces terminal generations and batches on
// the events queue. The API, the worker, the sweeper, the DLQ consumer and
// the batch Lambda share it so that every path enqueues and announces the
// same way.
package dispatch

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/lull-ai/lull/shared/lull"
)

// Enqueue sends g's job to q (grouped by tenant for fairness) and records
// that it was enqueued. If the send fails the generation stays marked as
// unenqueued and the sweeper sends it later, so a caller may treat the error
// as a warning once the generation is stored. Sending twice is harmless:
// workers run a generation at most once to completion.
func Enqueue(ctx context.Context, gens lull.Generations, q lull.Sender, g *lull.Generation) error {
	body, err := json.Marshal(lull.JobFor(g))
	if err != nil {
		return fmt.Errorf("dispatch: marshal job %s: %w", g.ID, err)
	}
	if err := q.Send(ctx, body, g.Tenant, 0); err != nil {
		return fmt.Errorf("dispatch: enqueue %s: %w", g.ID, err)
	}
	if err := gens.MarkEnqueued(ctx, g.ID); err != nil {
		return fmt.Errorf("dispatch: mark %s enqueued: %w", g.ID, err)
	}
	return nil
}

// Announce sends the event for g's terminal status to events. A nil events
// sender (events disabled) or a status with no event is a no-op. The event ID
// is stable, so announcing twice lets receivers de-duplicate.
func Announce(ctx context.Context, events lull.Sender, g *lull.Generation) error {
	if events == nil || !lull.Announced(g) {
		return nil
	}
	body, err := json.Marshal(lull.EventFor(g))
	if err != nil {
		return fmt.Errorf("dispatch: marshal event for %s: %w", g.ID, err)
	}
	if err := events.Send(ctx, body, g.Tenant, 0); err != nil {
		return fmt.Errorf("dispatch: announce %s %s: %w", g.ID, g.Status, err)
	}
	return nil
}

// SendBatchJob puts the job of kind for b on the batch queue q, grouped by
// tenant. Batch jobs are idempotent, so sending one twice is harmless.
func SendBatchJob(ctx context.Context, q lull.Sender, kind string, b *lull.Batch) error {
	body, err := json.Marshal(lull.BatchJobFor(kind, b))
	if err != nil {
		return fmt.Errorf("dispatch: marshal %s job for %s: %w", kind, b.ID, err)
	}
	if err := q.Send(ctx, body, b.Tenant, 0); err != nil {
		return fmt.Errorf("dispatch: send %s job for %s: %w", kind, b.ID, err)
	}
	return nil
}

// AnnounceBatch sends the event for b's terminal status to events. A nil
// events sender or a status that is not terminal is a no-op; the event ID
// is stable, so announcing twice lets receivers de-duplicate.
func AnnounceBatch(ctx context.Context, events lull.Sender, b *lull.Batch) error {
	if events == nil || !b.Status.Terminal() {
		return nil
	}
	body, err := json.Marshal(lull.BatchEventFor(b))
	if err != nil {
		return fmt.Errorf("dispatch: marshal event for %s: %w", b.ID, err)
	}
	if err := events.Send(ctx, body, b.Tenant, 0); err != nil {
		return fmt.Errorf("dispatch: announce %s %s: %w", b.ID, b.Status, err)
	}
	return nil
}

// AnnounceFinished announces g (Announce) and then, when gens tracks
// announcements (lull.Announcements), records that it was announced, so the
// sweep does not announce it again. A failed record is not an error: it
// costs one more (de-duplicated) announcement.
func AnnounceFinished(ctx context.Context, gens lull.Generations, events lull.Sender, g *lull.Generation) error {
	if err := Announce(ctx, events, g); err != nil {
		return err
	}
	if a, ok := gens.(lull.Announcements); ok {
		_ = a.MarkAnnounced(ctx, g.ID)
	}
	return nil
}
