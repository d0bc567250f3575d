// Package sweep finds generations and batches that need a nudge: accepted
// but never enqueued (the API's SendMessage failed after the DynamoDB
// write), non-terminal past their completion window, terminal but maybe
// never announced (the process that ended them died before its event left),
// and open batches whose progress stalled (a lost split, cancel or finalize
// job, or a line whose event never arrived); and webhook deliveries parked
// until a retry further away than a queue delay can hold, now due. The
// scaler Lambda runs it every minute. Nothing here depends on one message
// surviving: what to do is re-derived from the stored state.
package sweep

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/lull-ai/lull/shared/dispatch"
	"github.com/lull-ai/lull/shared/lull"
	"github.com/lull-ai/lull/shared/parallel"
)

// OpenBatches lists the batches that are not terminal (dynamodb.Store).
type OpenBatches interface {
	OpenBatches(ctx context.Context, olderThan time.Time, limit int) ([]*lull.Batch, error)
}

// Reconciler re-derives what an open batch needs (batchjob.Reconciler).
type Reconciler interface {
	Reconcile(ctx context.Context, b *lull.Batch, now time.Time, quiet time.Duration) error
}

// Config wires a Sweeper to its dependencies. Generations and Logger are
// required; zero values of the others take the defaults noted.
type Config struct {
	Generations lull.Generations
	Queues      map[string]lull.Sender // model → request queue
	Events      lull.Sender            // nil disables events
	// Announcements, when set, lists terminal generations whose event may
	// not have been sent; the sweep announces them again.
	Announcements lull.Announcements
	// Batches and Reconciler, when both set, reconcile every open batch
	// older than BatchQuiet; BatchQuiet is also how long a batch may show
	// no progress before its jobs are sent again (15m when zero: longer
	// than a batch Lambda runs).
	Batches    OpenBatches
	Reconciler Reconciler
	BatchQuiet time.Duration
	// Webhooks, with Events, lets the sweep queue the attempts of parked
	// deliveries once due; nil skips that step.
	Webhooks lull.Webhooks
	Logger   *slog.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Grace is how old an unenqueued generation must be before it is
	// re-sent, so the API's own send is not raced; 30s when zero.
	Grace time.Duration
	// Limit is the page size of each query; 1000 when zero.
	Limit int
	// Budget bounds the time one sweep spends expiring: it takes page
	// after page (a batch's 50,000 lines can expire at once) until none is
	// left or the budget is spent; 30s when zero (the scaler Lambda runs
	// for at most 50 s, once a minute).
	Budget time.Duration
	// Concurrency bounds parallel expirations; 16 when zero.
	Concurrency int
}

func (c *Config) withDefaults() {
	if c.Now == nil {
		c.Now = time.Now
	}
	c.Grace = cmp.Or(c.Grace, 30*time.Second)
	c.Limit = cmp.Or(c.Limit, 1000)
	c.Budget = cmp.Or(c.Budget, 30*time.Second)
	c.Concurrency = cmp.Or(c.Concurrency, 16)
	c.BatchQuiet = cmp.Or(c.BatchQuiet, 15*time.Minute)
}

func (c *Config) validate() error {
	var errs []error
	if c.Generations == nil {
		errs = append(errs, errors.New("missing Generations"))
	}
	if c.Logger == nil {
		errs = append(errs, errors.New("missing Logger"))
	}
	if c.Grace < 0 || c.Limit < 0 || c.Budget < 0 || c.Concurrency < 0 {
		errs = append(errs, fmt.Errorf("negative Grace %s, Limit %d, Budget %s or Concurrency %d", c.Grace, c.Limit, c.Budget, c.Concurrency))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sweep: config: %w", err)
	}
	return nil
}

// Sweeper re-enqueues, expires and re-announces generations and reconciles
// open batches. Build it with New.
type Sweeper struct {
	Config
}

// New returns a Sweeper with cfg's defaults applied, or an error naming
// every missing dependency.
func New(cfg Config) (*Sweeper, error) {
	cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Sweeper{Config: cfg}, nil
}

// Result counts what a sweep did.
type Result struct {
	Reenqueued  int
	Expired     int
	Reannounced int
	Batches     int // open batches reconciled
	// Retried counts parked deliveries whose due attempt was queued.
	Retried int
}

// Sweep runs one pass. It returns the first error after doing what it can.
func (s *Sweeper) Sweep(ctx context.Context) (Result, error) {
	var res Result
	var errs []error
	now, limit := s.Now(), s.Limit
	stale, err := s.Generations.Unenqueued(ctx, now.Add(-s.Grace), limit)
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
	budget, conc := s.Budget, s.Concurrency
	start := time.Now()
	for {
		due, err := s.Generations.DueToExpire(ctx, now, limit)
		errs = append(errs, err)
		n, err := s.expire(ctx, now, due, conc)
		errs = append(errs, err)
		res.Expired += n
		// Stop when the index is drained, when a page made no progress (it
		// may list what was just expired until the index catches up, or
		// keep failing), or when the budget is spent.
		if len(due) < limit || n == 0 || time.Since(start) > budget || ctx.Err() != nil {
			break
		}
	}
	if s.Announcements != nil {
		n, err := s.reannounce(ctx, now.Add(-s.Grace), limit, conc)
		res.Reannounced = n
		errs = append(errs, err)
	}
	if s.Batches != nil && s.Reconciler != nil {
		n, err := s.reconcile(ctx, now, limit)
		res.Batches = n
		errs = append(errs, err)
	}
	n, err := s.retryParked(ctx, now)
	res.Retried = n
	errs = append(errs, err)
	return res, errors.Join(errs...)
}

// reannounce announces the terminal generations whose transition before
// olderThan may never have been announced.
func (s *Sweeper) reannounce(ctx context.Context, olderThan time.Time, limit, conc int) (int, error) {
	gens, err := s.Announcements.Unannounced(ctx, olderThan, limit)
	if err != nil {
		return 0, err
	}
	var n atomic.Int64
	err = parallel.Each(ctx, conc, len(gens), func(ctx context.Context, i int) error {
		g := gens[i]
		if err := dispatch.AnnounceFinished(ctx, s.Generations, s.Events, g); err != nil {
			return err
		}
		n.Add(1)
		s.Logger.InfoContext(ctx, "re-announced generation", "generation_id", g.ID, "tenant", g.Tenant, "status", string(g.Status))
		return nil
	})
	return int(n.Load()), err
}

// reconcile re-derives every open batch older than BatchQuiet.
func (s *Sweeper) reconcile(ctx context.Context, now time.Time, limit int) (int, error) {
	quiet := s.BatchQuiet
	open, err := s.Batches.OpenBatches(ctx, now.Add(-quiet), limit)
	if err != nil {
		return 0, err
	}
	var errs []error
	for _, b := range open {
		if err := s.Reconciler.Reconcile(ctx, b, now, quiet); err != nil {
			errs = append(errs, err)
		}
	}
	return len(open), errors.Join(errs...)
}

// retryParked queues the next attempt of every parked delivery now due,
// then clears its mark. A crash between the two queues it again on the
// next sweep: the dispatcher skips an attempt already made.
func (s *Sweeper) retryParked(ctx context.Context, now time.Time) (int, error) {
	if s.Webhooks == nil || s.Events == nil {
		return 0, nil
	}
	due, err := s.Webhooks.DueDeliveries(ctx, now, s.Limit)
	if err != nil {
		return 0, err
	}
	var sent atomic.Int64
	err = parallel.Each(ctx, s.Concurrency, len(due), func(ctx context.Context, i int) error {
		d, err := s.Webhooks.GetDelivery(ctx, due[i].WebhookID, due[i].ID)
		if lull.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		if d.Status != lull.DeliveryPending || !d.Parked {
			return nil
		}
		body, err := json.Marshal(lull.DeliveryTask{Event: d.Event(), DeliveryID: d.ID, Attempt: len(d.Attempts) + 1, DueAt: d.NextAttemptAt})
		if err != nil {
			return fmt.Errorf("sweep: marshal task of delivery %s: %w", d.ID, err)
		}
		if err := s.Events.Send(ctx, body, d.Tenant, 0); err != nil {
			return err
		}
		sent.Add(1)
		return s.Webhooks.Unpark(ctx, d.WebhookID, d.ID, d.NextAttemptAt)
	})
	return int(sent.Load()), err
}

// expire moves each of due to expired and announces it, conc at a time, and
// returns how many it expired.
func (s *Sweeper) expire(ctx context.Context, now time.Time, due []*lull.Generation, conc int) (int, error) {
	var expired atomic.Int64
	err := parallel.Each(ctx, conc, len(due), func(ctx context.Context, i int) error {
		g := due[i]
		done, err := s.Generations.Finish(ctx, g.ID, lull.StatusExpired, lull.Outcome{At: now.UTC(), Announce: true, Failure: &lull.Failure{
			Code: "expired", Message: "The completion window ended before the generation could finish."}})
		if lull.IsConflict(err) {
			return nil
		}
		if err != nil {
			return err
		}
		expired.Add(1)
		s.Logger.InfoContext(ctx, "expired generation", "generation_id", g.ID, "tenant", g.Tenant)
		return dispatch.AnnounceFinished(ctx, s.Generations, s.Events, done)
	})
	return int(expired.Load()), err
}
