package lull

import (
	"crypto/rand"
	"encoding/json"
	"strings"
	"time"
)

// Status is where a generation is in its lifecycle.
type Status string

// The statuses of a generation. queued → in_progress → completed | failed;
// queued → cancelled; any non-terminal status → expired once the completion
// window passes. Terminal statuses never change again.
const (
	StatusQueued     Status = "queued"
	StatusInProgress Status = "in_progress"
	StatusCompleted  Status = "completed"
	StatusFailed     Status = "failed"
	StatusCancelled  Status = "cancelled"
	StatusExpired    Status = "expired"
)

// Statuses lists every status, in lifecycle order.
var Statuses = []Status{StatusQueued, StatusInProgress, StatusCompleted, StatusFailed, StatusCancelled, StatusExpired}

// Valid reports whether s is a known status.
func (s Status) Valid() bool {
	for _, v := range Statuses {
		if s == v {
			return true
		}
	}
	return false
}

// Terminal reports whether s is final.
func (s Status) Terminal() bool {
	switch s {
	case StatusCompleted, StatusFailed, StatusCancelled, StatusExpired:
		return true
	}
	return false
}

// From lists the statuses a generation may move to s from. Stores make every
// transition a conditional write on this list, which is what guarantees a
// single terminal transition. in_progress → in_progress is allowed so that a
// worker can take over a generation whose previous worker died.
func (s Status) From() []Status {
	switch s {
	case StatusInProgress:
		return []Status{StatusQueued, StatusInProgress}
	case StatusCompleted:
		return []Status{StatusInProgress}
	case StatusFailed, StatusExpired:
		return []Status{StatusQueued, StatusInProgress}
	case StatusCancelled:
		return []Status{StatusQueued}
	}
	return nil
}

// CanMoveTo reports whether a generation in status s may move to next.
func (s Status) CanMoveTo(next Status) bool {
	for _, f := range next.From() {
		if f == s {
			return true
		}
	}
	return false
}

// Endpoint is the OpenAI endpoint a generation runs against, as the path
// below /v1 (e.g. "/chat/completions").
type Endpoint string

// Supported endpoints.
const (
	EndpointChat        Endpoint = "/chat/completions"
	EndpointCompletions Endpoint = "/completions"
)

// Object is the OpenAI object name of the endpoint's response.
func (e Endpoint) Object() string {
	switch e {
	case EndpointCompletions:
		return "text_completion"
	case EndpointEmbeddings:
		return "list"
	case EndpointResponses:
		return "response"
	}
	return "chat.completion"
}

// Usage counts tokens, as in OpenAI responses.
type Usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

// Failure says why a generation failed or expired.
type Failure struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Generation is one asynchronous request and its result.
type Generation struct {
	ID       string
	Tenant   string
	Model    string
	Endpoint Endpoint
	Status   Status

	CreatedAt   time.Time
	StartedAt   time.Time // zero until first started
	CompletedAt time.Time // zero until terminal
	ExpiresAt   time.Time // end of the completion window

	// Request is the client's request body when stored inline; RequestKey
	// names the blob holding it otherwise.
	Request    json.RawMessage
	RequestKey string

	// ResponseKey names the blob holding the engine's full response object
	// once Status is completed; ResponseBytes is its size (0 when unknown:
	// generations finished before sizes were recorded), so readers can
	// decide how to serve it before loading it.
	ResponseKey   string
	ResponseBytes int64
	Usage         *Usage
	Failure       *Failure

	WebhookID      string
	IdempotencyKey string
	// BatchID, CustomID and Line (0-based line of the input file) are set
	// on the lines of a batch; Counted says the line is in its batch's
	// request_counts (Batches.CountLine).
	BatchID  string
	CustomID string
	Line     int
	Counted  bool

	// Attempts counts how many times a worker started the generation.
	Attempts int
	// LeaseOwner and LeaseUntil say which worker runs the generation and
	// until when that claim holds without renewal.
	LeaseOwner string
	LeaseUntil time.Time
	// LastError is the most recent transient error, kept for the DLQ consumer.
	LastError string
}

// Expired reports whether the completion window has passed at now.
func (g *Generation) Expired(now time.Time) bool {
	return !g.ExpiresAt.IsZero() && !now.Before(g.ExpiresAt)
}

// NewID returns a new random identifier with the given prefix, e.g.
// NewID("gen") → "gen_9x1...". IDs are 26 lowercase base32 characters after
// the prefix (130 bits of randomness).
func NewID(prefix string) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz234567"
	var b [26]byte
	_, _ = rand.Read(b[:])
	for i := range b {
		b[i] = alphabet[b[i]&31]
	}
	return prefix + "_" + string(b[:])
}

// ValidID reports whether id looks like an ID made by NewID(prefix), so that
// malformed IDs are rejected before touching storage.
func ValidID(prefix, id string) bool {
	rest, ok := strings.CutPrefix(id, prefix+"_")
	if !ok || len(rest) != 26 {
		return false
	}
	for _, c := range rest {
		if !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}
