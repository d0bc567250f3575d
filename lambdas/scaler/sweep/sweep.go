// Package sweep finds generations that need a nudge: accepted but never
// enqueued (the API's SendMessage failed after the DynamoDB write) and
// non-terminal past their completion window. The scaler Lambda runs it every
// minute.
package sweep

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/lull-ai/lull/shared/dispatch"
	"github.com/lull-ai/lull/shared/lull"
)

// Sweeper re-enqueues and expires generations.
type Sweeper struct {
	Generations lull.Generations
	Queues      map[string]lull.Sender // model → request queue
	Events      lull.Sender            // nil disables events
	Logger      *slog.Logger
	Now         func() time.Time
	// Grace is how old an unenqueued generation must be before it is
	// re-sent, so the API's own send is not raced; 30s when zero.
	Grace time.Duration
	// Limit caps the work of one sweep; 1000 when zero.
	Limit int
}

// Result counts what a sweep did.
type Result struct {
	Reenqueued int
	Expired    int
}

// Sweep runs one pass. It returns the first error after doing what it can.
func (s *Sweeper) Sweep(ctx context.Context) (Result, error) {
	var res Result
	var errs []error
	now := s.Now()
	grace := s.Grace
	if grace == 0 {
		grace = 30 * time.Second
	}
	limit := s.Limit
	if limit == 0 {
		limit = 1000
	}
	stale, err := s.Generations.Unenqueued(ctx, now.Add(-grace), limit)
	errs = append(errs, err)
	for _, g := range stale {
		if g.Status.Terminal() {
			continue
		}
		q, ok := s.Queues[g.Model]
		if !ok {
			s.Logger.ErrorContext(ctx, "unenqueued generation for a model no longer served", "generation_id", g.ID, "model", g.Model)
			continue
		}
		if err := dispatch.Enqueue(ctx, s.Generations, q, g); err != nil {
			errs = append(errs, err)
			continue
		}
		res.Reenqueued++
		s.Logger.InfoContext(ctx, "re-enqueued generation", "generation_id", g.ID, "tenant", g.Tenant)
	}
	due, err := s.Generations.DueToExpire(ctx, now, limit)
	errs = append(errs, err)
	for _, g := range due {
		done, err := s.Generations.Finish(ctx, g.ID, lull.StatusExpired, lull.Outcome{At: now.UTC(), Failure: &lull.Failure{
			Code: "expired", Message: "The completion window ended before the generation could finish."}})
		if lull.IsConflict(err) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		res.Expired++
		s.Logger.InfoContext(ctx, "expired generation", "generation_id", g.ID, "tenant", g.Tenant)
		errs = append(errs, dispatch.Announce(ctx, s.Events, done))
	}
	return res, errors.Join(errs...)
}
