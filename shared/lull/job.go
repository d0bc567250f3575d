package lull

import (
	"encoding/json"
	"time"
)

// Job is the body of a message on a model's request queue. It carries what a
// worker needs to run the generation without a read: the request itself when
// it is small (else RequestKey names the blob). The generation's state in the
// store remains the source of truth.
type Job struct {
	GenerationID string          `json:"generation_id"`
	Tenant       string          `json:"tenant"`
	Model        string          `json:"model"`
	Endpoint     Endpoint        `json:"endpoint"`
	Request      json.RawMessage `json:"request,omitempty"`
	RequestKey   string          `json:"request_key,omitempty"`
	ExpiresAt    time.Time       `json:"expires_at"`
}

// JobFor returns the job that runs g.
func JobFor(g *Generation) Job {
	return Job{
		GenerationID: g.ID, Tenant: g.Tenant, Model: g.Model, Endpoint: g.Endpoint,
		Request: g.Request, RequestKey: g.RequestKey, ExpiresAt: g.ExpiresAt,
	}
}

// Event types sent on the events queue when a generation ends.
const (
	EventGenerationCompleted = "generation.completed"
	EventGenerationFailed    = "generation.failed"
	EventGenerationExpired   = "generation.expired"
)

// EventTypeFor returns the event type announcing that a generation reached
// the terminal status s, or "" when none is sent (cancellation is the
// client's own act and is not announced).
func EventTypeFor(s Status) string {
	switch s {
	case StatusCompleted:
		return EventGenerationCompleted
	case StatusFailed:
		return EventGenerationFailed
	case StatusExpired:
		return EventGenerationExpired
	}
	return ""
}

// Event is the body of a message on the events queue. ID is stable across
// re-sends of the same event (it becomes the webhook-id), so receivers can
// de-duplicate.
type Event struct {
	ID           string    `json:"id"`
	Type         string    `json:"type"`
	Tenant       string    `json:"tenant"`
	GenerationID string    `json:"generation_id,omitempty"`
	BatchID      string    `json:"batch_id,omitempty"`
	WebhookID    string    `json:"webhook_id,omitempty"`
	CreatedAt    time.Time `json:"created_at"`
}

// EventFor returns the event announcing g's terminal status. Its ID depends
// only on the generation and the type, so every re-send has the same ID.
func EventFor(g *Generation) Event {
	typ := EventTypeOf(g)
	return Event{
		ID: "evt_" + g.ID[len("gen_"):] + "_" + string(g.Status), Type: typ, Tenant: g.Tenant,
		GenerationID: g.ID, BatchID: g.BatchID, WebhookID: g.WebhookID, CreatedAt: g.CompletedAt,
	}
}
