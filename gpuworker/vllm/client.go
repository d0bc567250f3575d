// Package vllm talks to a vLLM OpenAI-compatible server: it runs requests
// and classifies its failures as transient or permanent.
package vllm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/lull-ai/lull/shared/lull"
)

// Client calls one engine.
type Client struct {
	baseURL string
	http    *http.Client
	// Model, when set, replaces the request's model (the engine may serve
	// the model under another name than clients use).
	Model string
	// Priority, when non-nil, is sent as vLLM's "priority" request field
	// (lower runs first under --scheduling-policy priority).
	Priority *int
}

// New returns a client for the engine at baseURL (e.g. http://127.0.0.1:8000).
func New(baseURL string, hc *http.Client) *Client {
	if hc == nil {
		hc = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second}}
	}
	return &Client{baseURL: strings.TrimRight(baseURL, "/"), http: hc}
}

// Error is a failed engine call.
type Error struct {
	Status    int    // HTTP status, 0 when no response arrived
	Message   string // the engine's message or the transport error
	Transient bool   // retrying may succeed
	Err       error
}

// Error implements error.
func (e *Error) Error() string {
	if e.Status == 0 {
		return "engine unreachable: " + e.Message
	}
	return fmt.Sprintf("engine answered %d: %s", e.Status, e.Message)
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// IsTransient reports whether err is an engine error worth retrying.
func IsTransient(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Transient
}

// Result is a successful engine response.
type Result struct {
	Body  []byte // the full response object, as the engine sent it
	Usage lull.Usage
}

type requestIDKey struct{}

// WithRequestID returns a context whose engine calls carry id in the
// X-Request-Id header (vLLM logs it; the simulator records it).
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// Do runs the request body against endpoint. It removes fields that only
// lull understands (metadata, stream options) before sending.
func (c *Client) Do(ctx context.Context, endpoint lull.Endpoint, body []byte) (*Result, error) {
	payload, err := c.rewrite(endpoint, body)
	if err != nil {
		return nil, &Error{Status: 400, Message: "request body is not a JSON object", Err: err}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.baseURL+"/v1"+string(endpoint), bytes.NewReader(payload))
	if err != nil {
		return nil, fmt.Errorf("vllm: build request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if id, ok := ctx.Value(requestIDKey{}).(string); ok {
		req.Header.Set("X-Request-Id", id)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, &Error{Message: err.Error(), Transient: true, Err: err}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, &Error{Status: resp.StatusCode, Message: "reading response: " + err.Error(), Transient: true, Err: err}
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &Error{Status: resp.StatusCode, Message: engineMessage(data), Transient: transientStatus(resp.StatusCode)}
	}
	var parsed struct {
		Usage *engineUsage `json:"usage"`
	}
	if err := json.Unmarshal(data, &parsed); err != nil {
		return nil, &Error{Status: resp.StatusCode, Message: "response is not JSON", Transient: true, Err: err}
	}
	res := &Result{Body: data}
	if u := parsed.Usage; u != nil {
		res.Usage = lull.Usage{
			PromptTokens:     u.PromptTokens + u.InputTokens,
			CompletionTokens: u.CompletionTokens + u.OutputTokens,
			TotalTokens:      u.TotalTokens,
		}
	}
	return res, nil
}

// engineUsage reads both usage shapes: chat, completions and embeddings
// count prompt_tokens and completion_tokens, the Responses API input_tokens
// and output_tokens. lull records them as prompt and completion tokens.
type engineUsage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	InputTokens      int `json:"input_tokens"`
	OutputTokens     int `json:"output_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

func transientStatus(code int) bool {
	return code == http.StatusTooManyRequests || code == http.StatusRequestTimeout || code >= 500
}

// engineMessage extracts the message of a vLLM ({"message"}) or OpenAI
// ({"error":{"message"}}) error body.
func engineMessage(data []byte) string {
	var e struct {
		Message string `json:"message"`
		Error   *struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(data, &e) == nil {
		if e.Message != "" {
			return e.Message
		}
		if e.Error != nil && e.Error.Message != "" {
			return e.Error.Message
		}
	}
	s := strings.TrimSpace(string(data))
	if len(s) > 500 {
		s = s[:500]
	}
	return s
}

func (c *Client) rewrite(endpoint lull.Endpoint, body []byte) ([]byte, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, err
	}
	delete(m, "metadata")
	delete(m, "stream")
	delete(m, "stream_options")
	delete(m, "store")
	delete(m, "background")
	if endpoint == lull.EndpointResponses {
		// lull keeps the response; the engine must not hold a copy.
		m["store"] = json.RawMessage("false")
	}
	delete(m, "priority") // only the worker sets it
	delete(m, "request_id")
	if c.Model != "" {
		m["model"], _ = json.Marshal(c.Model)
	}
	if c.Priority != nil {
		m["priority"], _ = json.Marshal(*c.Priority)
	}
	return json.Marshal(m)
}

// HealthTimeout bounds one /health call: an engine that accepts the
// connection and never answers is not healthy.
const HealthTimeout = 5 * time.Second

// Healthy reports whether the engine's /health answers 200 within
// HealthTimeout.
func (c *Client) Healthy(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, HealthTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.baseURL+"/health", nil)
	if err != nil {
		return false
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
