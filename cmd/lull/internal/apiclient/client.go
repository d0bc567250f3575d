// Package apiclient is the command line's client for lull's HTTP API: the
// wire types it reads, decoded independently of the server's own structs,
// and one method per call it makes. Errors in OpenAI's envelope come back as
// *APIError with the status, code and message the server sent.
package apiclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Client calls one lull deployment with one API key.
type Client struct {
	base string
	key  string
	http *http.Client
}

// New returns a client for the API at baseURL (e.g. http://127.0.0.1:8080)
// authenticating with key. httpClient may be nil for a client that waits at
// most 60 s for an answer to start (and has no limit on reading it, so large
// result files can stream). It fails when baseURL is not an http(s) URL or
// key is empty.
func New(baseURL, key string, httpClient *http.Client) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("apiclient: API URL %q is not an http(s) URL", baseURL)
	}
	if key == "" {
		return nil, errors.New("apiclient: no API key (set LULL_API_KEY)")
	}
	if httpClient == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.ResponseHeaderTimeout = 60 * time.Second
		httpClient = &http.Client{Transport: tr}
	}
	return &Client{base: strings.TrimRight(baseURL, "/"), key: key, http: httpClient}, nil
}

// APIError is an error answer from the API.
type APIError struct {
	Status  int
	Code    string
	Param   string
	Message string
}

func (e *APIError) Error() string {
	msg := fmt.Sprintf("API answered %d", e.Status)
	if e.Code != "" {
		msg += " " + e.Code
	}
	if e.Param != "" {
		msg += " (param " + e.Param + ")"
	}
	if e.Message != "" {
		msg += ": " + e.Message
	}
	return msg
}

// IsStatus reports whether err is an API answer with the given status.
func IsStatus(err error, status int) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status == status
}

// do sends one request and decodes a 2xx JSON answer into out (when non-nil).
func (c *Client) do(ctx context.Context, method, path string, body io.Reader, contentType string, out any) error {
	resp, err := c.send(ctx, method, path, body, contentType)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("apiclient: %s %s: decode answer: %w", method, path, err)
	}
	return nil
}

// doRequest sends a prepared request and decodes a 2xx JSON answer into out.
func (c *Client) doRequest(req *http.Request, contentType string, out any) error {
	resp, err := c.sendRequest(req, contentType)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("apiclient: %s %s: decode answer: %w", req.Method, req.URL.Path, err)
	}
	return nil
}

// send sends one request and returns a 2xx response, whose body the caller
// closes, or the API's error.
func (c *Client) send(ctx context.Context, method, path string, body io.Reader, contentType string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, fmt.Errorf("apiclient: %s %s: %w", method, path, err)
	}
	return c.sendRequest(req, contentType)
}

func (c *Client) sendRequest(req *http.Request, contentType string) (*http.Response, error) {
	method, path := req.Method, req.URL.Path
	req.Header.Set("Authorization", "Bearer "+c.key)
	req.Header.Set("User-Agent", "lull-cli")
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("apiclient: %s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var env struct {
		Error struct {
			Message string  `json:"message"`
			Param   *string `json:"param"`
			Code    *string `json:"code"`
		} `json:"error"`
	}
	ae := &APIError{Status: resp.StatusCode}
	if json.Unmarshal(data, &env) == nil && env.Error.Message != "" {
		ae.Message = env.Error.Message
		if env.Error.Code != nil {
			ae.Code = *env.Error.Code
		}
		if env.Error.Param != nil {
			ae.Param = *env.Error.Param
		}
	} else {
		ae.Message = strings.TrimSpace(string(data))
		if len(ae.Message) > 200 {
			ae.Message = ae.Message[:200] + "…"
		}
	}
	return nil, ae
}

func (c *Client) postJSON(ctx context.Context, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("apiclient: POST %s: %w", path, err)
		}
		body = bytes.NewReader(data)
	}
	return c.do(ctx, http.MethodPost, path, body, "application/json", out)
}

// List is a page of a list endpoint.
type List[T any] struct {
	Data    []T    `json:"data"`
	FirstID string `json:"first_id"`
	LastID  string `json:"last_id"`
	HasMore bool   `json:"has_more"`
}

// Usage is a generation's token counts.
type Usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

// Failure says why a generation did not complete.
type Failure struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Generation is GET /v1/generation/{id}'s object.
type Generation struct {
	ID          string          `json:"id"`
	Status      string          `json:"status"`
	Model       string          `json:"model"`
	Endpoint    string          `json:"endpoint"`
	CreatedAt   int64           `json:"created_at"`
	StartedAt   *int64          `json:"started_at"`
	CompletedAt *int64          `json:"completed_at"`
	ExpiresAt   int64           `json:"expires_at"`
	Request     json.RawMessage `json:"request,omitempty"`
	Response    json.RawMessage `json:"response"`
	Usage       *Usage          `json:"usage"`
	Error       *Failure        `json:"error"`
	Attempts    int             `json:"attempts"`
}

// Terminal reports whether a generation status never changes again.
func Terminal(status string) bool {
	switch status {
	case "completed", "failed", "cancelled", "expired":
		return true
	}
	return false
}

// Queued is the answer to a slow request.
type Queued struct {
	ID        string `json:"id"`
	Status    string `json:"status"`
	Model     string `json:"model"`
	ExpiresAt int64  `json:"expires_at"`
}

// Chat submits a slow chat completion (POST /v1/slow/chat/completions). body
// is the request as /v1/chat/completions takes it; window, when set, is the
// completion window (X-Lull-Completion-Window).
func (c *Client) Chat(ctx context.Context, body any, window string) (*Queued, error) {
	data, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("apiclient: chat: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/v1/slow/chat/completions", bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("apiclient: chat: %w", err)
	}
	if window != "" {
		req.Header.Set("X-Lull-Completion-Window", window)
	}
	var q Queued
	return &q, c.doRequest(req, "application/json", &q)
}

// Generation reads one generation.
func (c *Client) Generation(ctx context.Context, id string) (*Generation, error) {
	var g Generation
	return &g, c.do(ctx, http.MethodGet, "/v1/generation/"+url.PathEscape(id), nil, "", &g)
}

// Model is one served model.
type Model struct {
	ID string `json:"id"`
	// Task is what the model serves: "generate" (chat, completions,
	// responses) or "embed" (embeddings); empty from servers that do not
	// say, which generate.
	Task string `json:"task"`
}

// Models lists the models the deployment serves.
func (c *Client) Models(ctx context.Context) ([]Model, error) {
	var l List[Model]
	return l.Data, c.do(ctx, http.MethodGet, "/v1/models", nil, "", &l)
}

// File is OpenAI's file object.
type File struct {
	ID       string `json:"id"`
	Bytes    int64  `json:"bytes"`
	Filename string `json:"filename"`
	Purpose  string `json:"purpose"`
}

// UploadFile stores a batch input file in one request (POST /v1/files); the
// API takes up to 4 MiB this way.
func (c *Client) UploadFile(ctx context.Context, name string, content io.Reader) (*File, error) {
	var f File
	body, ctype, err := multipartBody("file", name, content, map[string]string{"purpose": "batch"})
	if err != nil {
		return nil, err
	}
	return &f, c.do(ctx, http.MethodPost, "/v1/files", body, ctype, &f)
}

// multipartBody builds a multipart form with small fields first, then the
// file part.
func multipartBody(field, name string, content io.Reader, fields map[string]string) (io.Reader, string, error) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for k, v := range fields {
		if err := mw.WriteField(k, v); err != nil {
			return nil, "", err
		}
	}
	fw, err := mw.CreateFormFile(field, name)
	if err != nil {
		return nil, "", err
	}
	if _, err := io.Copy(fw, content); err != nil {
		return nil, "", fmt.Errorf("apiclient: read %s: %w", name, err)
	}
	if err := mw.Close(); err != nil {
		return nil, "", err
	}
	return &buf, mw.FormDataContentType(), nil
}

// Upload is OpenAI's Upload object.
type Upload struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	File   *File  `json:"file"`
}

// UploadLarge stores a file of size bytes through the Uploads API, in parts
// of partSize bytes read from content, and returns the assembled file.
// progress, when non-nil, is called with the bytes sent so far. A failure
// cancels the upload.
func (c *Client) UploadLarge(ctx context.Context, name string, content io.Reader, size, partSize int64, progress func(int64)) (*File, error) {
	var u Upload
	if err := c.postJSON(ctx, "/v1/uploads", map[string]any{
		"filename": name, "purpose": "batch", "bytes": size, "mime_type": "application/jsonl",
	}, &u); err != nil {
		return nil, err
	}
	f, err := c.sendParts(ctx, &u, name, content, partSize, progress)
	if err != nil {
		// Best effort: free the parts already stored.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		_ = c.postJSON(cctx, "/v1/uploads/"+u.ID+"/cancel", nil, nil)
		cancel()
		return nil, err
	}
	return f, nil
}

func (c *Client) sendParts(ctx context.Context, u *Upload, name string, content io.Reader, partSize int64, progress func(int64)) (*File, error) {
	var ids []string
	var sent int64
	buf := make([]byte, partSize)
	for {
		n, err := io.ReadFull(content, buf)
		if n > 0 {
			body, ctype, merr := multipartBody("data", name, bytes.NewReader(buf[:n]), nil)
			if merr != nil {
				return nil, merr
			}
			var part struct {
				ID string `json:"id"`
			}
			if perr := c.do(ctx, http.MethodPost, "/v1/uploads/"+u.ID+"/parts", body, ctype, &part); perr != nil {
				return nil, perr
			}
			ids = append(ids, part.ID)
			sent += int64(n)
			if progress != nil {
				progress(sent)
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("apiclient: read %s: %w", name, err)
		}
	}
	var done Upload
	if err := c.postJSON(ctx, "/v1/uploads/"+u.ID+"/complete", map[string]any{"part_ids": ids}, &done); err != nil {
		return nil, err
	}
	if done.File == nil {
		return nil, fmt.Errorf("apiclient: upload %s completed without a file", u.ID)
	}
	return done.File, nil
}

// FileContent opens a file's bytes (following the redirect to storage for
// large files). The caller closes the reader.
func (c *Client) FileContent(ctx context.Context, id string) (io.ReadCloser, error) {
	resp, err := c.send(ctx, http.MethodGet, "/v1/files/"+url.PathEscape(id)+"/content", nil, "")
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// RequestCounts is a batch's progress.
type RequestCounts struct {
	Total     int `json:"total"`
	Completed int `json:"completed"`
	Failed    int `json:"failed"`
}

// BatchError is one reason a batch failed validation.
type BatchError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Line    *int   `json:"line"`
}

// Batch is OpenAI's batch object.
type Batch struct {
	ID               string            `json:"id"`
	Status           string            `json:"status"`
	Endpoint         string            `json:"endpoint"`
	InputFileID      string            `json:"input_file_id"`
	OutputFileID     *string           `json:"output_file_id"`
	ErrorFileID      *string           `json:"error_file_id"`
	CompletionWindow string            `json:"completion_window"`
	CreatedAt        int64             `json:"created_at"`
	ExpiresAt        *int64            `json:"expires_at"`
	RequestCounts    RequestCounts     `json:"request_counts"`
	Metadata         map[string]string `json:"metadata"`
	Errors           *struct {
		Data []BatchError `json:"data"`
	} `json:"errors"`
}

// Ended reports whether a batch status never changes again.
func (b *Batch) Ended() bool {
	switch b.Status {
	case "completed", "failed", "expired", "cancelled":
		return true
	}
	return false
}

// CreateBatch starts a batch over an uploaded file.
func (c *Client) CreateBatch(ctx context.Context, fileID, endpoint, window string, metadata map[string]string) (*Batch, error) {
	in := map[string]any{"input_file_id": fileID, "endpoint": endpoint, "completion_window": window}
	if len(metadata) > 0 {
		in["metadata"] = metadata
	}
	var b Batch
	return &b, c.postJSON(ctx, "/v1/batches", in, &b)
}

// Batch reads one batch.
func (c *Client) Batch(ctx context.Context, id string) (*Batch, error) {
	var b Batch
	return &b, c.do(ctx, http.MethodGet, "/v1/batches/"+url.PathEscape(id), nil, "", &b)
}

// CancelBatch asks a batch to stop; it moves to cancelling, then cancelled.
func (c *Client) CancelBatch(ctx context.Context, id string) (*Batch, error) {
	var b Batch
	return &b, c.postJSON(ctx, "/v1/batches/"+url.PathEscape(id)+"/cancel", nil, &b)
}

// Webhook is a webhook endpoint. Secret is set only when it is created.
type Webhook struct {
	ID             string   `json:"id"`
	URL            string   `json:"url"`
	Events         []string `json:"events"`
	Description    string   `json:"description"`
	Status         string   `json:"status"`
	DisabledReason *string  `json:"disabled_reason"`
	CreatedAt      int64    `json:"created_at"`
	Secret         string   `json:"secret,omitempty"`
}

// CreateWebhook registers an endpoint; events empty means every event.
func (c *Client) CreateWebhook(ctx context.Context, target string, events []string, description string) (*Webhook, error) {
	in := map[string]any{"url": target}
	if len(events) > 0 {
		in["events"] = events
	}
	if description != "" {
		in["description"] = description
	}
	var w Webhook
	return &w, c.postJSON(ctx, "/v1/webhooks", in, &w)
}

// Webhooks lists the caller's endpoints.
func (c *Client) Webhooks(ctx context.Context) ([]Webhook, error) {
	var l List[Webhook]
	return l.Data, c.do(ctx, http.MethodGet, "/v1/webhooks", nil, "", &l)
}

// DeleteWebhook removes an endpoint.
func (c *Client) DeleteWebhook(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/v1/webhooks/"+url.PathEscape(id), nil, "", nil)
}

// Attempt is one delivery attempt.
type Attempt struct {
	Attempt    int    `json:"attempt"`
	At         int64  `json:"at"`
	StatusCode *int   `json:"status_code"`
	LatencyMS  int64  `json:"latency_ms"`
	Error      string `json:"error,omitempty"`
}

// Delivery is one event's delivery to an endpoint.
type Delivery struct {
	ID            string    `json:"id"`
	WebhookID     string    `json:"webhook_id"`
	EventID       string    `json:"event_id"`
	EventType     string    `json:"event_type"`
	GenerationID  string    `json:"generation_id"`
	Status        string    `json:"status"`
	CreatedAt     int64     `json:"created_at"`
	NextAttemptAt *int64    `json:"next_attempt_at"`
	Attempts      []Attempt `json:"attempts"`
}

// Deliveries lists an endpoint's recent deliveries, newest first.
func (c *Client) Deliveries(ctx context.Context, webhookID string, limit int) ([]Delivery, error) {
	var l List[Delivery]
	path := "/v1/webhooks/" + url.PathEscape(webhookID) + "/deliveries?limit=" + strconv.Itoa(limit)
	return l.Data, c.do(ctx, http.MethodGet, path, nil, "", &l)
}

// RetryDelivery sends a delivery again now.
func (c *Client) RetryDelivery(ctx context.Context, webhookID, deliveryID string) (*Delivery, error) {
	var d Delivery
	path := "/v1/webhooks/" + url.PathEscape(webhookID) + "/deliveries/" + url.PathEscape(deliveryID) + "/retry"
	return &d, c.postJSON(ctx, path, nil, &d)
}
