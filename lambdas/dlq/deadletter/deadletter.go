// Package deadletter fails generations whose job messages exhausted their
// receives on a request queue and landed in its dead-letter queue, so that
// every accepted generation reaches a terminal status.
package deadletter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
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
	Logger  *slog.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

func (c *Config) withDefaults() {
	if c.Now == nil {
		c.Now = time.Now
	}
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

// one handles a dead letter by the kind its body declares (lull.MessageKindOf).
func (h *Handler) one(ctx context.Context, rec events.SQSMessage) error {
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
	msg := "The generation could not be run: the engine kept failing."
	if g.LastError != "" {
		msg = fmt.Sprintf("The generation could not be run after %d attempts; last error: %s", g.Attempts, g.LastError)
	}
	done, err := h.Generations.Finish(ctx, g.ID, lull.StatusFailed, lull.Outcome{
		At: h.Now().UTC(), Failure: &lull.Failure{Code: "engine_error", Message: msg},
	})
	if lull.IsConflict(err) {
		return nil // finished concurrently; its finisher announces it
	}
	if err != nil {
		return err
	}
	log.InfoContext(ctx, "generation failed from dead-letter queue", "attempts", g.Attempts)
	return dispatch.Announce(ctx, h.Events, done)
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
