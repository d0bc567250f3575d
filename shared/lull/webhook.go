package lull

import (
	"context"
	"slices"
	"time"
)

// Webhook is an endpoint a tenant registered to receive events.
type Webhook struct {
	ID          string
	Tenant      string
	URL         string
	Description string
	// Events lists the event types delivered; empty means all.
	Events []string
	// Secret signs deliveries ("whsec_" + base64 key). After a rotation,
	// PrevSecret also signs until PrevSecretUntil so receivers can switch.
	Secret          string
	PrevSecret      string
	PrevSecretUntil time.Time
	// Disabled endpoints get no deliveries (set when a receiver answers 410).
	Disabled       bool
	DisabledReason string
	CreatedAt      time.Time
	// UpdatedAt is the last change of URL, events, description or secret
	// (zero: never changed since CreatedAt).
	UpdatedAt time.Time
}

// EventTypes lists every event type a webhook can subscribe to.
var EventTypes = []string{EventGenerationCompleted, EventGenerationFailed, EventGenerationExpired,
	EventBatchCompleted, EventBatchFailed, EventBatchExpired, EventBatchCancelled,
	EventResponseCompleted, EventResponseFailed, EventResponseCancelled, EventResponseIncomplete}

// Wants reports whether the webhook subscribes to events of type typ.
func (w *Webhook) Wants(typ string) bool {
	return len(w.Events) == 0 || slices.Contains(w.Events, typ)
}

// Delivery statuses.
const (
	DeliveryPending   = "pending"
	DeliverySucceeded = "succeeded"
	DeliveryFailed    = "failed"
)

// Delivery is one event sent (or being sent) to one webhook, with every
// attempt made. It keeps what rebuilds its event (Event), so a manual
// retry sends the same payload.
type Delivery struct {
	ID           string
	WebhookID    string
	Tenant       string
	EventID      string // the webhook-id header: stable across attempts
	EventType    string
	GenerationID string // set for generation.* events
	BatchID      string // set for batch.* events
	// EventAt is when the event happened (the payload's timestamp); zero
	// in records written before it was kept.
	EventAt       time.Time
	Status        string
	CreatedAt     time.Time
	UpdatedAt     time.Time
	NextAttemptAt time.Time
	// Parked marks a pending delivery whose next attempt is further away
	// than a queue message can be delayed (SQS: 15 minutes): no message
	// carries it; the scaler's sweep queues it once NextAttemptAt comes
	// (Webhooks.DueDeliveries).
	Parked   bool
	Attempts []Attempt
}

// Event returns the event d delivers, rebuilt from the record (for a
// manual retry). Records without EventAt give CreatedAt as its time.
func (d *Delivery) Event() Event {
	at := d.EventAt
	if at.IsZero() {
		at = d.CreatedAt
	}
	return Event{ID: d.EventID, Type: d.EventType, Tenant: d.Tenant, GenerationID: d.GenerationID, BatchID: d.BatchID,
		WebhookID: d.WebhookID, CreatedAt: at}
}

// Attempt is one HTTP POST of a delivery.
type Attempt struct {
	N          int
	At         time.Time
	StatusCode int // 0 when no response arrived
	Latency    time.Duration
	Error      string
}

// DeliveryTask is the body of a message on the events queue: a fresh event
// (Attempt 0, no DeliveryID), or a scheduled attempt of one delivery. The
// webhook dispatcher consumes them; it and the API's manual retry send the
// scheduled ones.
type DeliveryTask struct {
	Event
	DeliveryID string    `json:"delivery_id,omitempty"`
	Attempt    int       `json:"attempt,omitempty"`
	DueAt      time.Time `json:"due_at,omitzero"`
}

// Webhooks stores webhook endpoints and their deliveries.
type Webhooks interface {
	// CreateWebhook stores a new endpoint; EINVALID when the tenant has
	// MaxWebhooksPerTenant already (checked atomically with the write).
	CreateWebhook(ctx context.Context, w *Webhook) error
	// GetWebhook returns the endpoint or ENOTFOUND.
	GetWebhook(ctx context.Context, id string) (*Webhook, error)
	// ListWebhooks returns the tenant's endpoints, oldest first.
	ListWebhooks(ctx context.Context, tenant string) ([]*Webhook, error)
	// DisableWebhook marks the endpoint disabled with reason, changing
	// nothing else (a concurrent rotation stands); ENOTFOUND if deleted.
	DisableWebhook(ctx context.Context, id, reason string) error
	// RotateSecret makes newSecret the signing secret at time at and keeps
	// oldSecret signing until prevUntil (a zero prevUntil drops it at once),
	// only if oldSecret is still the current secret (ECONFLICT otherwise: a
	// concurrent rotation won); ENOTFOUND if deleted. Nothing else (a
	// concurrent disable or edit) is written.
	RotateSecret(ctx context.Context, id, oldSecret, newSecret string, at, prevUntil time.Time) error
	// EditWebhook writes w's URL, description, events and UpdatedAt onto the
	// stored endpoint, and nothing else (its secret and disabled state as
	// they are now stand); ENOTFOUND if deleted.
	EditWebhook(ctx context.Context, w *Webhook) error
	// DeleteWebhook removes the endpoint; ENOTFOUND if missing.
	DeleteWebhook(ctx context.Context, id string) error
	// CreateDelivery stores a new delivery; created is false (and nothing
	// changes) when one with the same ID exists.
	CreateDelivery(ctx context.Context, d *Delivery) (created bool, err error)
	// SaveDelivery stores the delivery's state (not its attempts). A pending
	// state never replaces a finished one (a late writer loses to the attempt
	// that finished the delivery); ReopenDelivery does that on purpose.
	SaveDelivery(ctx context.Context, d *Delivery) error
	// ReopenDelivery stores d (pending again) whatever the stored state, for
	// a manual retry.
	ReopenDelivery(ctx context.Context, d *Delivery) error
	// AddAttempt records an attempt of a delivery.
	AddAttempt(ctx context.Context, webhookID, deliveryID string, a Attempt) error
	// GetDelivery returns a delivery with its attempts, or ENOTFOUND.
	GetDelivery(ctx context.Context, webhookID, deliveryID string) (*Delivery, error)
	// ListDeliveries returns a page of the webhook's deliveries, newest
	// first, older than the delivery after (when set; EINVALID when it is
	// not one of the webhook's), each with its most recent attempts, and the
	// after cursor that continues the listing ("" at its end). A store may
	// return fewer than limit per page; the work per call is bounded.
	ListDeliveries(ctx context.Context, webhookID, after string, limit int) (ds []*Delivery, next string, err error)
	// DueDeliveries returns up to limit parked pending deliveries whose
	// NextAttemptAt is not after now, soonest first, without attempts.
	DueDeliveries(ctx context.Context, now time.Time, limit int) ([]*Delivery, error)
	// Unpark clears the parked mark of a delivery whose next attempt is
	// still due at due (its task is on the queue now); a delivery saved
	// since with another due time, or gone, is left alone without error.
	Unpark(ctx context.Context, webhookID, deliveryID string, due time.Time) error
}
