// Package httpapi is lull's public HTTP API as a plain http.Handler. Lambda
// serves it behind API Gateway (HTTP API, payload v2) and the dev stack
// serves it with net/http.
package httpapi

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/lull-ai/lull/shared/lull"
	"github.com/lull-ai/lull/shared/netguard"
	"github.com/lull-ai/lull/shared/request"
)

// Config wires a Server to its dependencies.
type Config struct {
	Generations lull.Generations
	Keys        lull.APIKeys
	Blobs       lull.Blobs
	// Queues maps each served model to its request queue.
	Queues map[string]lull.Sender
	// Tasks says what each served model does; a model missing here
	// generates (chat, completions, responses).
	Tasks  map[string]lull.Task
	Logger *slog.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time

	DefaultWindow time.Duration // completion window when none is asked for; 24h when zero
	MinWindow     time.Duration // shortest window a client may ask for; 1m when zero
	MaxWindow     time.Duration // longest window a client may ask for; 168h when zero
	MaxBodyBytes  int64         // largest request body; 2 MiB when zero
	// InlineLimit is the largest request body kept inline in the store and
	// the queue message; larger ones go to the blob store. 64 KiB when zero.
	InlineLimit int
	// Webhooks stores webhook endpoints; nil disables the webhook API.
	Webhooks lull.Webhooks
	// Guard checks webhook URLs (SSRF); a production guard when nil.
	Guard *netguard.Guard
	// Events is the events queue, used to schedule manual delivery retries.
	Events lull.Sender
	// Batches stores batches; nil disables the Files, Uploads and Batch
	// APIs. With it, Files, Uploads and BatchQueue are required.
	Batches lull.Batches
	// Files stores file records (the Files API and batches' input files).
	Files lull.Files
	// Uploads stores uploads in progress (the Uploads API).
	Uploads lull.Uploads
	// BatchQueue takes the batch jobs (split, cancel); required with Batches.
	BatchQueue lull.Sender
	// MaxFileBytes is the largest file (or upload part) sent in one
	// request: what API Gateway and Lambda carry. 4 MiB when zero.
	MaxFileBytes int64
	// MaxUploadBytes is the largest file assembled through /v1/uploads
	// (OpenAI's batch input limit, 200 MB, when zero).
	MaxUploadBytes int64
	// ContentInlineLimit is the largest file content served in the
	// response itself; larger content is a redirect to a presigned URL.
	// 3 MiB when zero: Lambda's 6 MB response limit applies after API
	// Gateway's encoding (base64 for binary bodies, a third larger).
	ContentInlineLimit int64
	// ViewInlineLimit is the largest engine response GET
	// /v1/generation/{id} carries inline; a larger one is answered with a
	// redirect to a presigned copy of the same object. 2 MiB when zero (with
	// a request of up to MaxBodyBytes and JSON escaping it stays under 6 MB).
	ViewInlineLimit int64
	// KeyCacheTTL is how long a resolved API key is trusted without a
	// lookup; 60s when zero, negative disables the cache.
	KeyCacheTTL time.Duration
	// Limits bound what one request may ask of the engine (zero fields:
	// request.DefaultLimits).
	Limits request.Limits
}

func (c *Config) withDefaults() {
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	c.DefaultWindow = cmp.Or(c.DefaultWindow, 24*time.Hour)
	c.MinWindow = cmp.Or(c.MinWindow, time.Minute)
	c.MaxWindow = cmp.Or(c.MaxWindow, 168*time.Hour)
	c.MaxBodyBytes = cmp.Or(c.MaxBodyBytes, 2<<20)
	c.InlineLimit = cmp.Or(c.InlineLimit, 64<<10)
	c.KeyCacheTTL = cmp.Or(c.KeyCacheTTL, time.Minute)
	c.MaxFileBytes = cmp.Or(c.MaxFileBytes, 4<<20)
	c.MaxUploadBytes = cmp.Or(c.MaxUploadBytes, 200_000_000)
	c.ContentInlineLimit = cmp.Or(c.ContentInlineLimit, 3<<20)
	c.ViewInlineLimit = cmp.Or(c.ViewInlineLimit, 2<<20)
	c.Limits = c.Limits.WithDefaults()
	if c.Guard == nil {
		c.Guard = &netguard.Guard{}
	}
}

func (c *Config) validate() error {
	var errs []error
	for _, f := range []struct {
		name    string
		missing bool
	}{
		{"Generations", c.Generations == nil}, {"Keys", c.Keys == nil}, {"Blobs", c.Blobs == nil},
		{"Files (with Batches)", c.Batches != nil && c.Files == nil},
		{"Uploads (with Batches)", c.Batches != nil && c.Uploads == nil},
		{"BatchQueue (with Batches)", c.Batches != nil && c.BatchQueue == nil},
		{"Events (with Webhooks)", c.Webhooks != nil && c.Events == nil},
	} {
		if f.missing {
			errs = append(errs, fmt.Errorf("missing %s", f.name))
		}
	}
	if len(c.Queues) == 0 {
		errs = append(errs, errors.New("no model in Queues"))
	}
	if c.DefaultWindow < c.MinWindow || c.DefaultWindow > c.MaxWindow {
		errs = append(errs, fmt.Errorf("DefaultWindow %s outside [%s, %s]", c.DefaultWindow, c.MinWindow, c.MaxWindow))
	}
	if err := c.Limits.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("httpapi: config: %w", err)
	}
	return nil
}

// Server serves the API.
type Server struct {
	cfg    Config
	mux    *http.ServeMux
	models []string

	keysMu sync.Mutex
	keys   map[string]cachedKey
}

type cachedKey struct {
	tenant string
	until  time.Time
}

// New returns a Server or an error naming the invalid setting.
func New(cfg Config) (*Server, error) {
	cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, mux: http.NewServeMux(), keys: map[string]cachedKey{}}
	for m := range cfg.Queues {
		s.models = append(s.models, m)
	}
	sort.Strings(s.models)
	s.routes()
	return s, nil
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := r.Header.Get("X-Request-Id")
	if id == "" || len(id) > 128 {
		id = lull.NewID("req")
	}
	w.Header().Set("X-Request-Id", id)
	r = r.WithContext(context.WithValue(r.Context(), requestIDKey{}, id))
	s.mux.ServeHTTP(w, r)
}

type requestIDKey struct{}
type tenantKey struct{}

func requestID(ctx context.Context) string { id, _ := ctx.Value(requestIDKey{}).(string); return id }

// tenant returns the authenticated tenant of a request that passed auth.
func tenant(r *http.Request) string { t, _ := r.Context().Value(tenantKey{}).(string); return t }

// handler is an API endpoint: it writes a success response itself or
// returns an error for writeError.
type handler func(w http.ResponseWriter, r *http.Request) error

// route registers path with one handler per method; other methods get 405.
// Every handler requires a valid API key.
func (s *Server) route(path string, methods map[string]handler) {
	s.mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
		h, ok := methods[r.Method]
		if !ok {
			allowed := make([]string, 0, len(methods))
			for m := range methods {
				allowed = append(allowed, m)
			}
			sort.Strings(allowed)
			w.Header().Set("Allow", strings.Join(allowed, ", "))
			s.writeError(w, r, &lull.Error{Code: codeMethodNotAllowed, Message: fmt.Sprintf("Method %s is not allowed on %s.", r.Method, r.URL.Path)})
			return
		}
		t, err := s.authenticate(r)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		r = r.WithContext(context.WithValue(r.Context(), tenantKey{}, t))
		if err := h(w, r); err != nil {
			s.writeError(w, r, err)
		}
	})
}

func (s *Server) routes() {
	s.route("/v1/slow/chat/completions", map[string]handler{http.MethodPost: s.accept(lull.EndpointChat)})
	s.route("/v1/slow/completions", map[string]handler{http.MethodPost: s.accept(lull.EndpointCompletions)})
	s.route("/v1/slow/embeddings", map[string]handler{http.MethodPost: s.accept(lull.EndpointEmbeddings)})
	s.responseRoutes()
	s.route("/v1/generation/{id}", map[string]handler{http.MethodGet: s.getGeneration})
	s.route("/v1/generation/{id}/cancel", map[string]handler{http.MethodPost: s.cancelGeneration})
	s.route("/v1/generations", map[string]handler{http.MethodGet: s.listGenerations})
	s.route("/v1/models", map[string]handler{http.MethodGet: s.listModels})
	s.route("/v1/slow/models", map[string]handler{http.MethodGet: s.listModels})
	if s.cfg.Webhooks != nil {
		s.webhookRoutes()
	}
	if s.cfg.Batches != nil {
		s.fileRoutes()
		s.batchRoutes()
	}
	s.consoleRoutes()
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, lull.Errorf(codeUnknownURL, "Invalid URL (%s %s).", r.Method, r.URL.Path))
	})
}

// authenticate resolves the bearer API key to a tenant.
func (s *Server) authenticate(r *http.Request) (string, error) {
	auth := r.Header.Get("Authorization")
	key, ok := strings.CutPrefix(auth, "Bearer ")
	key = strings.TrimSpace(key)
	if !ok || key == "" {
		return "", lull.Errorf(lull.EUNAUTHORIZED, "You didn't provide an API key. Provide it in the Authorization header as 'Bearer YOUR_KEY'.")
	}
	if len(key) > 256 {
		return "", lull.Errorf(lull.EUNAUTHORIZED, "Incorrect API key provided.")
	}
	hash := lull.HashKey(key)
	now := s.cfg.Now()
	if s.cfg.KeyCacheTTL > 0 {
		s.keysMu.Lock()
		c, hit := s.keys[hash]
		s.keysMu.Unlock()
		if hit && now.Before(c.until) {
			return c.tenant, nil
		}
	}
	t, err := s.cfg.Keys.TenantForKey(r.Context(), hash)
	if err != nil {
		return "", err
	}
	if s.cfg.KeyCacheTTL > 0 {
		s.keysMu.Lock()
		if len(s.keys) > 10000 {
			clear(s.keys)
		}
		s.keys[hash] = cachedKey{tenant: t, until: now.Add(s.cfg.KeyCacheTTL)}
		s.keysMu.Unlock()
	}
	return t, nil
}

// Codes used only at the HTTP layer.
const (
	codeMethodNotAllowed  = "method_not_allowed"
	codeUnknownURL        = "unknown_url"
	codeModelNotFound     = request.CodeModelNotFound
	codeModelNotSupported = request.CodeModelNotSupported
)

// status maps an error code to its HTTP status. It is the only place that
// does so.
func status(code string) int {
	switch code {
	case lull.EINVALID, codeModelNotSupported:
		return http.StatusBadRequest
	case lull.EUNAUTHORIZED:
		return http.StatusUnauthorized
	case lull.ENOTFOUND, codeUnknownURL, codeModelNotFound:
		return http.StatusNotFound
	case codeMethodNotAllowed:
		return http.StatusMethodNotAllowed
	case lull.ECONFLICT:
		return http.StatusConflict
	case lull.ETOOLARGE:
		return http.StatusRequestEntityTooLarge
	case lull.EUNSUPPORTED:
		return http.StatusUnsupportedMediaType
	case lull.EUNAVAILABLE:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// ErrorBody is OpenAI's error envelope.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is the inside of OpenAI's error envelope.
type ErrorDetail struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

// writeError writes err in OpenAI's envelope with the status its code maps
// to. Internal errors are logged with the request ID and never echoed.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	code := lull.ErrorCode(err)
	st := status(code)
	detail := ErrorDetail{Message: lull.ErrorMessage(err), Type: "invalid_request_error"}
	if code != lull.EINTERNAL {
		detail.Code = &code
	}
	var le *lull.Error
	if errors.As(err, &le) && le.Param != "" {
		detail.Param = &le.Param
	}
	switch {
	case st == http.StatusUnauthorized:
		detail.Type = "authentication_error"
	case st >= 500:
		detail.Type = "server_error"
		s.cfg.Logger.ErrorContext(r.Context(), "request failed", "request_id", requestID(r.Context()),
			"method", r.Method, "path", r.URL.Path, "tenant", tenant(r), "err", err)
	}
	if st == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, st, ErrorBody{Error: detail})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
