// Package genview renders a generation as the JSON object clients see, the
// same in GET /v1/generation/{id} and in webhook payloads.
package genview

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/lull-ai/lull/shared/lull"
)

// View is the JSON form of a generation.
type View struct {
	ID          string          `json:"id"`
	Object      string          `json:"object"`
	Status      lull.Status     `json:"status"`
	Model       string          `json:"model"`
	Endpoint    string          `json:"endpoint"`
	CreatedAt   int64           `json:"created_at"`
	StartedAt   *int64          `json:"started_at"`
	CompletedAt *int64          `json:"completed_at"`
	ExpiresAt   int64           `json:"expires_at"`
	Request     json.RawMessage `json:"request,omitempty"`
	Response    json.RawMessage `json:"response"`
	Usage       *lull.Usage     `json:"usage"`
	Error       *lull.Failure   `json:"error"`
	WebhookID   *string         `json:"webhook_id,omitempty"`
	Attempts    int             `json:"attempts"`
}

func unix(t time.Time) *int64 {
	if t.IsZero() {
		return nil
	}
	v := t.Unix()
	return &v
}

// Of returns the summary view of g, without request and response bodies.
func Of(g *lull.Generation) View {
	v := View{
		ID: g.ID, Object: "generation", Status: g.Status, Model: g.Model, Endpoint: "/v1" + string(g.Endpoint),
		CreatedAt: g.CreatedAt.Unix(), StartedAt: unix(g.StartedAt), CompletedAt: unix(g.CompletedAt),
		ExpiresAt: g.ExpiresAt.Unix(), Usage: g.Usage, Error: g.Failure, Attempts: g.Attempts,
	}
	if g.WebhookID != "" {
		v.WebhookID = &g.WebhookID
	}
	return v
}

// Full returns the view of g with its request and, once completed, the
// engine's full response, loading them from blobs when stored there.
func Full(ctx context.Context, blobs lull.Blobs, g *lull.Generation) (View, error) {
	v := Of(g)
	v.Request = g.Request
	if g.RequestKey != "" {
		body, err := blobs.Get(ctx, g.RequestKey)
		if err != nil {
			return v, fmt.Errorf("genview: load request of %s: %w", g.ID, err)
		}
		v.Request = body
	}
	if g.Status == lull.StatusCompleted && g.ResponseKey != "" {
		body, err := blobs.Get(ctx, g.ResponseKey)
		if err != nil {
			return v, fmt.Errorf("genview: load response of %s: %w", g.ID, err)
		}
		v.Response = body
	}
	return v, nil
}
