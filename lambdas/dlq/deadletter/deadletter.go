// Package deadletter consumes lull's dead-letter queues. It fails
// generations whose job messages exhausted their receives on a request
// queue, so that every accepted generation reaches a terminal status —
// unless a worker holds a live lease on the generation, which is then
// healthy and its job is queued again instead. It fails batches whose jobs
// exhausted theirs. And it sends events that exhausted theirs on the events
// queue back to it, a few times, after a long delay.
package deadletter

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/lull-ai/lull/shared/dispatch"
	"github.com/lull-ai/lull/shared/lull"
)

// Config wires a Handler to its dependencies. Generations and Logger are
// required.
type Config struct {
	Generations lull.Generations
	// Batches, when set, also takes the batch queue's dead letters: a batch
	// whose job kept failing ends failed, so that every batch reaches a
	// terminal status.
	Batches lull.Batches
	Events  lull.Sender // nil disables events
	// Queues maps each served model to its request queue, where the jobs of
	// generations under a live lease go back. Without one such a dead
	// letter is left to the lease holder, which has its own message.
	Queues map[string]lull.Sender
	// EventRedrives is how often a dead event is sent back to the events
	// queue before it is dropped; 3 when zero. EventRedriveDelay is the
	// delay of each send; 15 minutes (SQS's longest) when zero.
	EventRedrives     int
	EventRedriveDelay time.Duration
	Logger            *slog.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

func (c *Config) withDefaults() {
	if c.Now == nil {
		c.Now = time.Now
	}
	c.EventRedrives = cmp.Or(c.EventRedrives, 3)
	c.EventRedriveDelay = cmp.Or(c.EventRedriveDelay, 15*time.Minute)
}

func (c *Config) validate() error {
	var errs []error
	if c.Generations == nil {
		errs = append(errs, errors.New("missing Generations"))
	}
	if c.Logger == nil {
		errs = append(errs, errors.New("missing Logger"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("deadletter: config: %w", err)
	}
	return nil
}

// Handler is the SQS-triggered DLQ consumer. Build it with New.
type Handler struct {
	Config
}

// New returns a Handler with cfg's defaults applied, or an error naming
// every missing dependency.
func New(cfg Config) (*Handler, error) {
	cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Handler{Config: cfg}, nil
}

// Handle fails the generation of each record. Records whose generation is
// already terminal (or unknown) succeed without change; records that hit a
// storage error are reported as batch item failures so SQS retries them.
func (h *Handler) Handle(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
	var resp events.SQSEventResponse
	for _, rec := range ev.Records {
		if err := h.one(ctx, rec); err != nil {
			h.Logger.WarnContext(ctx, "dead letter not processed; will retry", "message_id", rec.MessageId, "err", err)
			resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: rec.MessageId})
		}
	}
	return resp, nil
}

// one handles a dead letter by the kind its body declares (lull.MessageKindOf);
// events (which declare none, and carry a generation ID as jobs do) first.
func (h *Handler) one(ctx context.Context, rec events.SQSMessage) error {
	var ev lull.Event
	if json.Unmarshal([]byte(rec.Body), &ev) == nil && strings.HasPrefix(ev.ID, "evt_") && ev.Type != "" {
		return h.event(ctx, rec.Body, ev)
	}
	kind, err := lull.MessageKindOf([]byte(rec.Body))
	if err != nil {
		h.Logger.ErrorContext(ctx, "malformed dead letter dropped", "message_id", rec.MessageId, "err", err)
		return nil
	}
	if kind == lull.KindBatchJob {
		var bj lull.BatchJob
		if err := json.Unmarshal([]byte(rec.Body), &bj); err != nil || bj.BatchID == "" {
			h.Logger.ErrorContext(ctx, "malformed batch dead letter dropped", "message_id", rec.MessageId)
			return nil
		}
		return h.batch(ctx, bj)
	}
	var job lull.Job
	if err := json.Unmarshal([]byte(rec.Body), &job); err != nil || job.GenerationID == "" {
		h.Logger.ErrorContext(ctx, "malformed dead letter dropped", "message_id", rec.MessageId)
		return nil
	}
	log := h.Logger.With("generation_id", job.GenerationID, "tenant", job.Tenant)
	g, err := h.Generations.Get(ctx, job.GenerationID)
	if lull.IsNotFound(err) {
		log.WarnContext(ctx, "dead letter for unknown generation dropped")
		return nil
	}
	if err != nil {
		return err
	}
	if g.Status.Terminal() {
		return dispatch.Announce(ctx, h.Events, g)
	}
	now := h.Now()
	if g.Status == lull.StatusInProgress && g.LeaseUntil.After(now) {
		// A worker is running it: this job is a duplicate, or the holder's
		// own message that came back too often (lost visibility
		// extensions). Failing it would end a healthy generation. Queue the
		// job again for when the lease would have lapsed, so that a message
		// remains should the holder die.
		q, ok := h.Queues[g.Model]
		if !ok {
			log.WarnContext(ctx, "dead letter of a leased generation left to its lease holder", "owner", g.LeaseOwner)
			return nil
		}
		wait := min(g.LeaseUntil.Sub(now)+time.Second, 15*time.Minute)
		if err := q.Send(ctx, []byte(rec.Body), g.Tenant, wait); err != nil {
			return err
		}
		log.InfoContext(ctx, "dead letter of a leased generation queued again", "owner", g.LeaseOwner, "retry_in", wait.String())
		return nil
	}
	msg := "The generation could not be run: the engine kept failing."
	if g.LastError != "" {
		msg = fmt.Sprintf("The generation could not be run after %d attempts; last error: %s", g.Attempts, g.LastError)
	}
	done, err := h.Generations.Finish(ctx, g.ID, lull.StatusFailed, lull.Outcome{
		At: now.UTC(), Announce: true, Failure: &lull.Failure{Code: "engine_error", Message: msg},
	})
	if lull.IsConflict(err) {
		// Finished concurrently (or by this write, its answer lost): its
		// finisher may have died before announcing, so announce again.
		cur, gerr := h.Generations.Get(ctx, g.ID)
		if gerr != nil {
			return gerr
		}
		return dispatch.Announce(ctx, h.Events, cur)
	}
	if err != nil {
		return err
	}
	log.InfoContext(ctx, "generation failed from dead-letter queue", "attempts", g.Attempts)
	return dispatch.AnnounceFinished(ctx, h.Generations, h.Events, done)
}

// redrivesField counts, in a dead event's body, how often it was sent back.
const redrivesField = "dlq_redrives"

// event sends a dead event back to the events queue, after a long delay,
// until it was sent back EventRedrives times; then it is dropped and logged.
// (A batch line's event is not needed by then: the sweeper counts lines
// that ended without being counted.)
func (h *Handler) event(ctx context.Context, body string, ev lull.Event) error {
	log := h.Logger.With("event_id", ev.ID, "type", ev.Type, "tenant", ev.Tenant, "generation_id", ev.GenerationID, "batch_id", ev.BatchID)
	var fields map[string]json.RawMessage
	if err := json.Unmarshal([]byte(body), &fields); err != nil {
		log.ErrorContext(ctx, "malformed dead event dropped")
		return nil
	}
	var n int
	_ = json.Unmarshal(fields[redrivesField], &n)
	if n >= h.EventRedrives || h.Events == nil {
		log.ErrorContext(ctx, "event dropped after exhausting its redrives", "redrives", n)
		return nil
	}
	fields[redrivesField], _ = json.Marshal(n + 1)
	out, err := json.Marshal(fields)
	if err != nil {
		return err
	}
	if err := h.Events.Send(ctx, out, ev.Tenant, h.EventRedriveDelay); err != nil {
		return err
	}
	log.WarnContext(ctx, "dead event sent back to the events queue", "redrive", n+1, "delay", h.EventRedriveDelay.String())
	return nil
}

// batch fails the batch of a dead batch job, unless it already ended.
func (h *Handler) batch(ctx context.Context, job lull.BatchJob) error {
	log := h.Logger.With("batch_id", job.BatchID, "tenant", job.Tenant, "kind", job.Kind)
	if h.Batches == nil {
		log.ErrorContext(ctx, "batch dead letter dropped: no batch store configured")
		return nil
	}
	errs := []lull.BatchError{{Code: "internal_error",
		Message: fmt.Sprintf("The batch's %s step kept failing and was given up; lines that finished are not in a file. Create the batch again.", job.Kind)}}
	done, err := h.Batches.UpdateBatch(ctx, job.BatchID,
		[]lull.BatchStatus{lull.BatchValidating, lull.BatchInProgress, lull.BatchCancelling, lull.BatchFinalizing},
		lull.BatchChange{Status: lull.BatchFailed, At: h.Now().UTC(), Errors: errs})
	if lull.IsNotFound(err) || lull.IsConflict(err) {
		return nil // gone, or ended meanwhile
	}
	if err != nil {
		return err
	}
	log.WarnContext(ctx, "batch failed from dead-letter queue")
	return dispatch.AnnounceBatch(ctx, h.Events, done)
}
