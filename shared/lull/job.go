package lull

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Message kinds: what the message_kind field of a request-queue or
// batch-queue message declares, so that a consumer of both (the
// dead-letter consumer) tells them apart by a declared kind.
const (
	KindJob      = "job"       // a Job, on a model's request queue
	KindBatchJob = "batch_job" // a BatchJob, on the batch queue
)

// MessageKindOf returns the kind a queue message body declares (KindJob or
// KindBatchJob). Messages sent before kinds were declared carry none; they
// are told apart by their required fields (a batch job has kind and
// batch_id, a job generation_id) so that messages already queued at an
// upgrade are still understood. It fails for a body that is not a JSON
// object or that declares or shows no known kind.
func MessageKindOf(body []byte) (string, error) {
	var m struct {
		MessageKind  string `json:"message_kind"`
		Kind         string `json:"kind"`
		BatchID      string `json:"batch_id"`
		GenerationID string `json:"generation_id"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		return "", fmt.Errorf("lull: message body: %w", err)
	}
	switch {
	case m.MessageKind == KindJob || m.MessageKind == KindBatchJob:
		return m.MessageKind, nil
	case m.MessageKind != "":
		return "", fmt.Errorf("lull: unknown message kind %q", m.MessageKind)
	case m.Kind != "" && m.BatchID != "": // before message_kind
		return KindBatchJob, nil
	case m.GenerationID != "": // before message_kind
		return KindJob, nil
	}
	return "", fmt.Errorf("lull: message declares no kind")
}

// Job is the body of a message on a model's request queue. It carries what a
// worker needs to run the generation without a read: the request itself when
// it is small (else RequestKey names the blob). The generation's state in the
// store remains the source of truth.
type Job struct {
	// MessageKind is KindJob (empty in messages sent by older versions).
	MessageKind  string          `json:"message_kind,omitempty"`
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
		MessageKind: KindJob, GenerationID: g.ID, Tenant: g.Tenant, Model: g.Model, Endpoint: g.Endpoint,
		Request: g.Request, RequestKey: g.RequestKey, ExpiresAt: g.ExpiresAt,
	}
}

// Event types sent on the events queue when a generation ends.
const (
	EventGenerationCompleted = "generation.completed"
	EventGenerationFailed    = "generation.failed"
	EventGenerationExpired   = "generation.expired"
	// EventLineCancelled announces a batch line cancelled on its own
	// (POST /v1/generation/{id}/cancel) so that its batch counts it. Like
	// every batch line's event it is counted, never delivered to webhooks.
	EventLineCancelled = "generation.cancelled"
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

// Announced reports whether g's terminal status is announced on the events
// queue: every status with an event type, and every terminal status of a
// batch line (its batch counts it).
func Announced(g *Generation) bool {
	return g.Status.Terminal() && (EventTypeOf(g) != "" || g.BatchID != "")
}

// EventFor returns the event announcing g's terminal status. Its ID depends
// only on the generation and the status, so every re-send has the same ID;
// the generation ID's "gen_" prefix, when present, is left out of it.
func EventFor(g *Generation) Event {
	typ := EventTypeOf(g)
	if typ == "" && g.BatchID != "" && g.Status == StatusCancelled {
		typ = EventLineCancelled
	}
	return Event{
		ID: "evt_" + strings.TrimPrefix(g.ID, "gen_") + "_" + string(g.Status), Type: typ, Tenant: g.Tenant,
		GenerationID: g.ID, BatchID: g.BatchID, WebhookID: g.WebhookID, CreatedAt: g.CompletedAt,
	}
}
