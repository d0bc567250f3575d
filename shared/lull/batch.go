package lull

import (
	"context"
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"strings"
	"time"
)

// BatchStatus is where a batch is in its lifecycle (OpenAI's statuses).
type BatchStatus string

// Batch statuses: validating → failed | in_progress; in_progress →
// finalizing → completed | expired; validating | in_progress → cancelling →
// finalizing → cancelled.
const (
	BatchValidating BatchStatus = "validating"
	BatchFailed     BatchStatus = "failed"
	BatchInProgress BatchStatus = "in_progress"
	BatchFinalizing BatchStatus = "finalizing"
	BatchCompleted  BatchStatus = "completed"
	BatchExpired    BatchStatus = "expired"
	BatchCancelling BatchStatus = "cancelling"
	BatchCancelled  BatchStatus = "cancelled"
)

// Terminal reports whether s is final.
func (s BatchStatus) Terminal() bool {
	switch s {
	case BatchFailed, BatchCompleted, BatchExpired, BatchCancelled:
		return true
	}
	return false
}

// ReadyToFinalize reports whether every line of b is stored and has ended,
// and b still waits for its finalize job. (A batch already finalizing has
// its job: SQS redelivers it if the run that took it dies.)
func (b *Batch) ReadyToFinalize() bool {
	return b.SplitDone && b.Completed+b.Failed >= b.Total &&
		(b.Status == BatchInProgress || b.Status == BatchCancelling)
}

// BatchError is one reason a batch failed validation, OpenAI-style.
type BatchError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Param   string `json:"param,omitempty"`
	Line    int    `json:"line,omitempty"` // 1-based line of the input file; 0 for the whole file
}

// Batch is a set of requests read from a JSONL file (OpenAI's batch object).
type Batch struct {
	ID               string
	Tenant           string
	Endpoint         Endpoint
	InputFileID      string
	CompletionWindow string
	// OutputExpiresAfter is how long after their creation the output and
	// error files are served (OpenAI's output_expires_after); 0 keeps
	// them for the retention period.
	OutputExpiresAfter time.Duration
	Status             BatchStatus
	Metadata           map[string]string
	// WebhookID is metadata.webhook_id: the endpoint batch events go to.
	WebhookID string
	// CancelRequested is set by a cancel so the finalizer ends as cancelled.
	CancelRequested bool

	CreatedAt    time.Time
	InProgressAt time.Time
	FinalizingAt time.Time
	CompletedAt  time.Time
	FailedAt     time.Time
	ExpiredAt    time.Time
	CancellingAt time.Time
	CancelledAt  time.Time
	ExpiresAt    time.Time

	// Total is the number of lines (requests); Completed and Failed count
	// lines that ended, each exactly once (Batches.CountLine).
	Total, Completed, Failed int
	// Created counts lines stored and enqueued so far; SplitDone says all are.
	Created   int
	SplitDone bool
	// SplitUntil is when the current split run's claim lapses (zero when
	// none ran); CountedAt is when a line was last counted, or the lines
	// last recounted by the sweeper.
	SplitUntil time.Time
	CountedAt  time.Time

	OutputFileID string
	ErrorFileID  string
	Errors       []BatchError
}

// BatchChange is what one batch transition writes besides the status. Zero
// fields are left as they are.
type BatchChange struct {
	Status BatchStatus
	// At stamps the timestamp field of Status (e.g. FinalizingAt).
	At              time.Time
	Total           *int
	OutputFileID    string
	ErrorFileID     string
	Errors          []BatchError
	CancelRequested bool
	// Completed and Failed, when set, replace the counts (finalize writes
	// the counts of the files it wrote, so the two always agree).
	Completed, Failed *int
}

// Batches stores batches and their progress.
type Batches interface {
	// CreateBatch stores a new batch.
	CreateBatch(ctx context.Context, b *Batch) error
	// CreateBatchOnce stores b unless the tenant used idemKey for a batch
	// before: then it stores nothing and returns the earlier batch and
	// created=false (ECONFLICT when that request's fingerprint differs).
	CreateBatchOnce(ctx context.Context, b *Batch, idemKey, fingerprint string) (stored *Batch, created bool, err error)
	// GetBatch returns the batch (strongly consistent) or ENOTFOUND.
	GetBatch(ctx context.Context, id string) (*Batch, error)
	// ListBatches returns a page of the tenant's batches, newest first.
	ListBatches(ctx context.Context, tenant, after string, limit int) ([]*Batch, bool, error)
	// UpdateBatch applies ch if the batch's status is one of from, and
	// returns the batch as written; ECONFLICT otherwise.
	UpdateBatch(ctx context.Context, id string, from []BatchStatus, ch BatchChange) (*Batch, error)
	// ClaimSplit gives owner the right to store b's lines until until:
	// ECONFLICT while another owner's claim has not passed now, so two
	// deliveries of a split job never store lines at the same time.
	ClaimSplit(ctx context.Context, id, owner string, now, until time.Time) error
	// SetSplitProgress records that the first created lines are stored and
	// enqueued, and whether that is all of them.
	SetSplitProgress(ctx context.Context, id string, created int, done bool) error
}

// BatchLines stores a batch's lines (generations with a BatchID) and counts
// them as they end.
type BatchLines interface {
	// CreateLines stores new batch lines in few calls, without the
	// existence check of Generations.Create: the caller guarantees that
	// none of them was stored before (a line overwritten after a worker
	// started it would run again).
	CreateLines(ctx context.Context, lines []*Generation) error
	// Lines returns a page of the batch's lines in input order after the
	// cursor ("" for the first page) and the cursor of the next page ("" at
	// the end).
	Lines(ctx context.Context, batchID, cursor string, limit int) ([]*Generation, string, error)
	// CountLine adds the terminal line gen to its batch's Completed (when
	// its status is completed) or Failed count, once: counted is false when
	// the line was already counted. It returns the batch after counting.
	CountLine(ctx context.Context, gen *Generation) (b *Batch, counted bool, err error)
}

// Batch job kinds, the messages on the batch queue.
const (
	BatchJobSplit    = "split"    // validate the input file, create and enqueue the lines
	BatchJobCancel   = "cancel"   // cancel the lines still queued
	BatchJobFinalize = "finalize" // write the output and error files, end the batch
)

// BatchJob is the body of a message on the batch queue.
type BatchJob struct {
	// MessageKind is KindBatchJob (empty in messages sent by older versions).
	MessageKind string `json:"message_kind,omitempty"`
	// Kind is the step: BatchJobSplit, BatchJobCancel or BatchJobFinalize.
	Kind    string `json:"kind"`
	BatchID string `json:"batch_id"`
	Tenant  string `json:"tenant"`
}

// BatchJobFor returns the job of kind (BatchJobSplit, …) for b.
func BatchJobFor(kind string, b *Batch) BatchJob {
	return BatchJob{MessageKind: KindBatchJob, Kind: kind, BatchID: b.ID, Tenant: b.Tenant}
}

// LineCounter counts a batch's lines as they end. The webhook dispatcher
// hands it every generation event of a batch line (such events are counted,
// never delivered).
type LineCounter interface {
	// LineDone counts the line whose generation ev announces, once, and asks
	// for the batch to be finalized when it was the last.
	LineDone(ctx context.Context, ev Event) error
}

// Batch event types.
const (
	EventBatchCompleted = "batch.completed"
	EventBatchFailed    = "batch.failed"
	EventBatchExpired   = "batch.expired"
	EventBatchCancelled = "batch.cancelled"
)

// BatchEventFor returns the event announcing b's terminal status; its ID is
// stable across re-sends.
func BatchEventFor(b *Batch) Event {
	at := b.CompletedAt
	switch b.Status {
	case BatchFailed:
		at = b.FailedAt
	case BatchExpired:
		at = b.ExpiredAt
	case BatchCancelled:
		at = b.CancelledAt
	}
	return Event{
		ID: "evt_" + strings.TrimPrefix(b.ID, "batch_") + "_" + string(b.Status), Type: "batch." + string(b.Status),
		Tenant: b.Tenant, BatchID: b.ID, WebhookID: b.WebhookID, CreatedAt: at,
	}
}

// DerivedID returns a stable ID with prefix for the parts, in NewID's
// format: the same parts always give the same ID. Batch lines and a batch's
// output files use it so that a retried step stores the same objects.
func DerivedID(prefix string, parts ...string) string {
	sum := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	enc := strings.ToLower(base32.StdEncoding.EncodeToString(sum[:]))
	return prefix + "_" + enc[:26]
}

// LineID is the generation ID of line n (0-based) of batch batchID.
func LineID(batchID string, n int) string { return DerivedID("gen", batchID, fmt.Sprint(n)) }
