package genview

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/lull-ai/lull/shared/lull"
)

// ResponseStatus is the Responses API status of a generation: queued,
// in_progress, completed, failed, cancelled or incomplete. An expired
// generation never ran to its end and reads as failed (error code
// "expired"); a completed one keeps the status the engine gave its
// response (completed, or incomplete when it stopped at
// max_output_tokens).
func ResponseStatus(g *lull.Generation, engineStatus string) string {
	switch g.Status {
	case lull.StatusExpired:
		return "failed"
	case lull.StatusCompleted:
		if engineStatus != "" {
			return engineStatus
		}
	}
	return string(g.Status)
}

// requestEcho is what a Response object repeats of its request.
type requestEcho struct {
	Instructions    json.RawMessage   `json:"instructions"`
	MaxOutputTokens *int              `json:"max_output_tokens"`
	Temperature     *float64          `json:"temperature"`
	TopP            *float64          `json:"top_p"`
	Tools           json.RawMessage   `json:"tools"`
	Metadata        map[string]string `json:"metadata"`
}

// Response renders g, a generation of the Responses endpoint, as OpenAI's
// Response object with ID lull.ResponseID(g.ID) and "background": true.
// Once g is completed it is the engine's response object with lull's ID
// and times; before that (and when it failed, was cancelled or expired) it
// is the same object with an empty output, the status, and the error.
func Response(ctx context.Context, blobs lull.Blobs, g *lull.Generation) (map[string]any, error) {
	obj := map[string]any{}
	engineStatus := ""
	if g.Status == lull.StatusCompleted && g.ResponseKey != "" {
		body, err := blobs.Get(ctx, g.ResponseKey)
		if err != nil {
			return nil, fmt.Errorf("genview: load response of %s: %w", g.ID, err)
		}
		if err := json.Unmarshal(body, &obj); err != nil {
			return nil, fmt.Errorf("genview: response of %s is not a JSON object: %w", g.ID, err)
		}
		engineStatus, _ = obj["status"].(string)
	} else {
		var echo requestEcho
		req := g.Request
		if g.RequestKey != "" {
			body, err := blobs.Get(ctx, g.RequestKey)
			if err != nil {
				return nil, fmt.Errorf("genview: load request of %s: %w", g.ID, err)
			}
			req = body
		}
		_ = json.Unmarshal(req, &echo) // validated at acceptance; best effort
		obj["output"] = []any{}
		obj["usage"] = nil
		obj["incomplete_details"] = nil
		obj["instructions"] = echo.Instructions
		obj["max_output_tokens"] = echo.MaxOutputTokens
		obj["temperature"] = echo.Temperature
		obj["top_p"] = echo.TopP
		obj["tools"] = []any{}
		if len(echo.Tools) > 0 && string(echo.Tools) != "null" {
			obj["tools"] = echo.Tools
		}
		obj["metadata"] = map[string]string{}
		if echo.Metadata != nil {
			obj["metadata"] = echo.Metadata
		}
		obj["parallel_tool_calls"] = true
		obj["tool_choice"] = "auto"
	}
	obj["id"] = lull.ResponseID(g.ID)
	obj["object"] = "response"
	obj["created_at"] = g.CreatedAt.Unix()
	obj["model"] = g.Model
	obj["background"] = true
	obj["status"] = ResponseStatus(g, engineStatus)
	obj["error"] = nil
	if g.Failure != nil && g.Status != lull.StatusCompleted {
		obj["error"] = map[string]string{"code": g.Failure.Code, "message": g.Failure.Message}
	}
	if !g.CompletedAt.IsZero() {
		obj["completed_at"] = g.CompletedAt.Unix()
	}
	return obj, nil
}
