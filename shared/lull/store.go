package lull

import (
	"context"
	"io"
	"time"
)

// Outcome is what a transition writes besides the status.
type Outcome struct {
	At            time.Time
	ResponseKey   string
	ResponseBytes int64
	Usage         *Usage
	Failure       *Failure
	// Announce records the transition as not yet announced: a store that
	// implements Announcements lists it until MarkAnnounced, so a sweep
	// announces it if the caller dies between the write and its event.
	Announce bool
}

// Announcements tracks terminal transitions whose event may not have been
// sent yet (those written with Outcome.Announce), so that no event depends
// on the process that made the transition surviving it.
type Announcements interface {
	// MarkAnnounced records that the generation's terminal event was sent.
	// Marking a generation that is not waiting for one is not an error.
	MarkAnnounced(ctx context.Context, id string) error
	// Unannounced returns generations whose terminal transition before
	// olderThan may not have been announced, oldest first.
	Unannounced(ctx context.Context, olderThan time.Time, limit int) ([]*Generation, error)
}

// ListOptions selects a page of a tenant's generations, newest first.
type ListOptions struct {
	Limit  int    // 1..100
	After  string // return generations older than this ID (OpenAI-style cursor)
	Status Status // only this status, when set
}

// Generations stores generations. Every status change is a conditional write
// on Status.From, so concurrent or repeated callers cannot produce two
// terminal transitions: the loser gets an ECONFLICT error.
type Generations interface {
	// Create stores a new generation. With a non-empty idempotency key it is
	// atomic with recording the key for the tenant: if the key is already
	// recorded, Create stores nothing and returns the earlier generation and
	// created=false (ECONFLICT when the earlier request's fingerprint differs).
	Create(ctx context.Context, g *Generation, fingerprint string) (stored *Generation, created bool, err error)
	// Get returns the generation or ENOTFOUND.
	Get(ctx context.Context, id string) (*Generation, error)
	// List returns a page of the tenant's generations and the After cursor
	// that continues the listing ("" at its end). With a Status filter the
	// work per call is bounded: a page may hold fewer than Limit
	// generations (even none) and still continue.
	List(ctx context.Context, tenant string, opts ListOptions) (gens []*Generation, next string, err error)
	// MarkEnqueued records that the generation's job reached its queue.
	MarkEnqueued(ctx context.Context, id string) error
	// Unenqueued returns generations created before olderThan whose job may
	// not have reached a queue.
	Unenqueued(ctx context.Context, olderThan time.Time, limit int) ([]*Generation, error)
	// DueToExpire returns non-terminal generations whose window ended before now.
	DueToExpire(ctx context.Context, now time.Time, limit int) ([]*Generation, error)
	// Start moves the generation to in_progress under a lease held by owner
	// until leaseUntil and counts an attempt. It fails with ECONFLICT when the
	// generation is terminal, its window has passed, or another owner holds
	// an unexpired lease.
	Start(ctx context.Context, id, owner string, now, leaseUntil time.Time) (*Generation, error)
	// Renew extends owner's lease; ECONFLICT when owner no longer holds it.
	Renew(ctx context.Context, id, owner string, leaseUntil time.Time) error
	// Finish moves the generation to the terminal status to, conditional on
	// to.From(); ECONFLICT otherwise.
	Finish(ctx context.Context, id string, to Status, out Outcome) (*Generation, error)
	// NoteError records a transient error for later diagnosis.
	NoteError(ctx context.Context, id, msg string) error
	// Delete removes a terminal generation's record (the caller removes its
	// blobs); ECONFLICT while it is not terminal, ENOTFOUND when missing.
	Delete(ctx context.Context, id string) error
}

// APIKeys resolves API keys to tenants. Keys are stored only as hashes.
type APIKeys interface {
	// TenantForKey returns the tenant owning the key with the given SHA-256
	// hex hash, or EUNAUTHORIZED.
	TenantForKey(ctx context.Context, keyHash string) (string, error)
	// PutKey records that the key with this hash belongs to tenant.
	PutKey(ctx context.Context, keyHash, tenant string) error
}

// Blobs stores opaque objects by key.
type Blobs interface {
	// Put stores body under key, replacing any object there.
	Put(ctx context.Context, key string, body []byte, contentType string) error
	// Get returns the object or ENOTFOUND.
	Get(ctx context.Context, key string) ([]byte, error)
	// Open streams the object or returns ENOTFOUND.
	Open(ctx context.Context, key string) (io.ReadCloser, error)
	// Delete removes the object; a missing object is not an error.
	Delete(ctx context.Context, key string) error
	// PutStream stores everything r yields under key and returns its size,
	// holding at most a small buffer in memory (large files, batch output).
	PutStream(ctx context.Context, key string, r io.Reader, contentType string) (int64, error)
	// PresignGet returns a URL that fetches the object without credentials
	// until ttl passes.
	PresignGet(ctx context.Context, key string, ttl time.Duration) (string, error)
}

// Message is one received queue message.
type Message struct {
	ID           string
	Receipt      string
	Body         []byte
	ReceiveCount int
	GroupID      string
}

// Sender puts messages on one queue.
type Sender interface {
	// Send enqueues body. groupID spreads work fairly across tenants; delay
	// postpones visibility (at most 15 minutes).
	Send(ctx context.Context, body []byte, groupID string, delay time.Duration) error
}

// BatchSender puts many messages on one queue in few calls.
type BatchSender interface {
	Sender
	// SendBatch enqueues every body with groupID; on error some may have
	// been sent (sending again is harmless for lull's idempotent consumers).
	SendBatch(ctx context.Context, bodies [][]byte, groupID string) error
}

// Queue is one queue a consumer works from.
type Queue interface {
	Sender
	// Receive waits up to wait for at most max messages, hiding each for
	// visibility.
	Receive(ctx context.Context, max int, wait, visibility time.Duration) ([]Message, error)
	// Delete acknowledges a message.
	Delete(ctx context.Context, receipt string) error
	// SetVisibility hides the message for d from now; 0 releases it at once.
	SetVisibility(ctx context.Context, receipt string, d time.Duration) error
	// Depth returns the approximate visible and in-flight message counts.
	Depth(ctx context.Context) (visible, inFlight int, err error)
}
