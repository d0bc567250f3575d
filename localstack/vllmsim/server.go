// Package vllmsim simulates a vLLM OpenAI-compatible server for local runs,
// tests and benchmarks. It serves the same endpoints with the same shapes —
// /v1/chat/completions and /v1/completions (plain and SSE streaming),
// /v1/models, /health, and Prometheus /metrics under vLLM's metric names —
// in front of a continuous-batching engine simulated in scaled time: a
// running batch capped at MaxNumSeqs, a KV-cache block budget, recompute
// preemption, optional priority scheduling, and a step cost that grows with
// the batch so throughput saturates like a GPU's.
//
// Answers are deterministic (see Expect), so tests can check them exactly.
// Faults (error statuses, extra latency, a down engine) can be injected over
// HTTP (POST /sim/faults) or with the Server's methods.
package vllmsim

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// maxBody bounds a request body.
const maxBody = 32 << 20

// Server is a simulated vLLM server: an http.Handler in front of a running
// engine. Its methods are safe for concurrent use.
type Server struct {
	cfg Config
	eng *engine
	mux *http.ServeMux

	mu          sync.Mutex
	down        bool
	delay       time.Duration
	faultStatus int
	faultCount  int
	record      func(Received)
}

// Received is one completion request as the simulator got it.
type Received struct {
	Path      string // /v1/chat/completions or /v1/completions
	RequestID string // the X-Request-Id header
	Body      []byte
}

// Record passes every completion request the server gets from now on to f
// (before faults, validation or the engine), so that tests can check what
// an engine client sends; nil stops recording. f must be safe for
// concurrent use.
func (s *Server) Record(f func(Received)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.record = f
}

var _ http.Handler = (*Server)(nil)

// New validates cfg (after filling defaults) and starts the engine. It
// returns an error naming the offending field when cfg is invalid. Call
// Close to stop the engine.
//
// Routes: POST /v1/chat/completions, POST /v1/completions, GET /v1/models,
// GET /health, GET /metrics, POST /sim/faults (JSON {"status":503,
// "count":3}, {"delay_ms":N}, {"down":true}, or several at once; 204) and
// GET /sim/stats (Stats as JSON).
func New(cfg Config) (*Server, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, eng: newEngine(cfg), mux: http.NewServeMux()}
	s.mux.HandleFunc("POST /v1/chat/completions", s.recorded(func(w http.ResponseWriter, r *http.Request) { s.complete(w, r, true) }))
	s.mux.HandleFunc("POST /v1/completions", s.recorded(func(w http.ResponseWriter, r *http.Request) { s.complete(w, r, false) }))
	s.mux.HandleFunc("POST /v1/embeddings", s.recorded(s.embeddings))
	s.mux.HandleFunc("POST /v1/responses", s.recorded(s.responses))
	s.mux.HandleFunc("GET /v1/models", s.models)
	s.mux.HandleFunc("GET /health", s.health)
	s.mux.HandleFunc("GET /metrics", s.metrics)
	s.mux.HandleFunc("POST /sim/faults", s.faults)
	s.mux.HandleFunc("GET /sim/stats", s.stats)
	return s, nil
}

// Config returns the effective configuration, defaults filled in.
func (s *Server) Config() Config { return s.cfg }

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Close stops the engine. Requests in flight get 503 (a stream already
// under way ends with an error event), later completion requests and
// /health get 503. Close is idempotent.
func (s *Server) Close() { s.eng.close() }

// InjectFaults makes the next count completion requests fail with status
// (an HTTP error status such as 500 or 503) and a vLLM error body, before
// they reach the engine. count <= 0 or status 0 clears pending faults.
func (s *Server) InjectFaults(status, count int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if status == 0 || count <= 0 {
		status, count = 0, 0
	}
	s.faultStatus, s.faultCount = status, count
}

// SetDown marks the engine down (true) or up (false). While down, /health
// answers 503 and new completion requests get 503; requests already in the
// engine carry on.
func (s *Server) SetDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
}

// SetDelay adds d of wall-clock latency (not scaled by TimeScale) before
// each completion request enters the engine; 0 removes it. A client that
// goes away during the delay never reaches the engine.
func (s *Server) SetDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = max(d, 0)
}

// Stats returns a snapshot of the engine's state and counters.
func (s *Server) Stats() Stats { return s.eng.stats() }

// errorBody is vLLM's error response.
type errorBody struct {
	Object  string `json:"object"`
	Message string `json:"message"`
	Type    string `json:"type"`
	Param   any    `json:"param"`
	Code    int    `json:"code"`
}

func newErrorBody(status int, msg string) errorBody {
	typ := strings.ReplaceAll(http.StatusText(status), " ", "")
	if !strings.HasSuffix(typ, "Error") {
		typ += "Error"
	}
	return errorBody{Object: "error", Message: msg, Type: typ, Code: status}
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, newErrorBody(status, msg))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func randomID(prefix string) string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// request holds the fields of both completion endpoints that the simulator
// reads; other fields are accepted and ignored.
type request struct {
	Model               string          `json:"model"`
	Messages            []Message       `json:"messages"`
	Prompt              json.RawMessage `json:"prompt"`
	N                   *int            `json:"n"`
	MaxTokens           *int            `json:"max_tokens"`
	MaxCompletionTokens *int            `json:"max_completion_tokens"`
	Stream              bool            `json:"stream"`
	StreamOptions       *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	Priority  int  `json:"priority"`
	IgnoreEOS bool `json:"ignore_eos"`
}

// choice is one planned output of a request.
type choice struct {
	index  int
	words  []string
	finish string
	seq    *seq
}

// badRequest is a client error with vLLM's status and message.
type badRequest struct {
	status int
	msg    string
}

func (e *badRequest) Error() string { return e.msg }

func invalid(format string, args ...any) error {
	return &badRequest{http.StatusBadRequest, fmt.Sprintf(format, args...)}
}

// admit applies down mode and injected faults to a completion request.
func (s *Server) admit() (int, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.down:
		return http.StatusServiceUnavailable, "The engine is down."
	case s.faultCount > 0:
		s.faultCount--
		return s.faultStatus, fmt.Sprintf("Injected fault: status %d.", s.faultStatus)
	}
	return 0, ""
}

// recorded passes each request's body to the recorder (Record) before h
// handles it.
func (s *Server) recorded(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		record := s.record
		s.mu.Unlock()
		if record != nil {
			body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
			if err != nil {
				writeError(w, http.StatusBadRequest, "Invalid body: "+err.Error())
				return
			}
			record(Received{Path: r.URL.Path, RequestID: r.Header.Get("X-Request-Id"), Body: body})
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		h(w, r)
	}
}

// take applies what every engine endpoint checks first — the model serves
// the API (serves), the engine runs, injected faults — then decodes the
// JSON body into v. It writes the error and returns false when the request
// goes no further.
func (s *Server) take(w http.ResponseWriter, r *http.Request, serves bool, api string, v any) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		writeError(w, http.StatusBadRequest, "Invalid body: "+err.Error())
		return false
	}
	if !serves {
		writeError(w, http.StatusBadRequest, "The model does not support the "+api+" API.")
		return false
	}
	if s.eng.isClosed() {
		writeError(w, http.StatusServiceUnavailable, "The engine has stopped.")
		return false
	}
	if status, msg := s.admit(); status != 0 {
		writeError(w, status, msg)
		return false
	}
	if err := json.Unmarshal(body, v); err != nil {
		writeError(w, http.StatusBadRequest, "Invalid JSON body: "+err.Error())
		return false
	}
	return true
}

func (s *Server) complete(w http.ResponseWriter, r *http.Request, chat bool) {
	var req request
	if !s.take(w, r, s.cfg.Task != TaskEmbed, "Completions", &req) {
		return
	}
	choices, usage, err := s.plan(&req, chat)
	if err != nil {
		var br *badRequest
		if errors.As(err, &br) {
			writeError(w, br.status, br.msg)
		} else {
			writeError(w, http.StatusInternalServerError, "Internal error.")
		}
		return
	}
	j, ok := s.submit(w, r, choices, req.Stream)
	if !ok {
		return
	}
	out := &responder{
		s: s, chat: chat, created: time.Now().Unix(), choices: choices, usage: usage, job: j,
		includeUsage: req.StreamOptions != nil && req.StreamOptions.IncludeUsage,
	}
	if chat {
		out.id = randomID("chatcmpl-")
	} else {
		out.id = randomID("cmpl-")
	}
	if req.Stream {
		out.stream(w, r)
		return
	}
	out.whole(w, r)
}

// submit waits out an injected delay, then puts the choices' sequences on
// the engine as one job. It writes the error and returns false when the
// client left or the engine stopped.
func (s *Server) submit(w http.ResponseWriter, r *http.Request, choices []choice, stream bool) (*job, bool) {
	s.mu.Lock()
	delay := s.delay
	s.mu.Unlock()
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return nil, false
		}
	}
	j := &job{arrived: time.Now(), done: make(chan struct{}), seqs: make([]*seq, len(choices))}
	if stream {
		j.notify = make(chan struct{}, 1)
	}
	for i := range choices {
		j.seqs[i] = choices[i].seq
	}
	if err := s.eng.submit(j); err != nil {
		writeError(w, http.StatusServiceUnavailable, "The engine has stopped.")
		return nil, false
	}
	return j, true
}

// plan validates a request the way vLLM does and computes every choice's
// answer (see Expect) and the usage.
func (s *Server) plan(req *request, chat bool) ([]choice, usageBody, error) {
	cfg := s.cfg
	if req.Model != "" && req.Model != cfg.Model {
		return nil, usageBody{}, &badRequest{http.StatusNotFound, fmt.Sprintf("The model `%s` does not exist.", req.Model)}
	}
	n := 1
	if req.N != nil {
		if n = *req.N; n < 1 {
			return nil, usageBody{}, invalid("n must be at least 1, got %d.", n)
		}
	}
	maxTokens := 0
	for _, v := range []*int{req.MaxCompletionTokens, req.MaxTokens} {
		if v != nil {
			if maxTokens = *v; maxTokens < 1 {
				return nil, usageBody{}, invalid("max_tokens must be at least 1, got %d.", maxTokens)
			}
			break
		}
	}
	if req.Priority != 0 && !cfg.PriorityScheduling {
		return nil, usageBody{}, invalid("Got priority %d but Priority scheduling is not enabled.", req.Priority)
	}
	if req.StreamOptions != nil && !req.Stream {
		return nil, usageBody{}, invalid("Stream options can only be defined when `stream=True`.")
	}
	var prompts []string
	if chat {
		if len(req.Messages) == 0 {
			return nil, usageBody{}, invalid("'messages' must be a non-empty array of messages.")
		}
		prompts = []string{ChatPrompt(req.Messages)}
	} else {
		var one string
		if len(req.Prompt) == 0 || string(req.Prompt) == "null" {
			return nil, usageBody{}, invalid("'prompt' is required.")
		}
		if err := json.Unmarshal(req.Prompt, &one); err == nil {
			prompts = []string{one}
		} else if err := json.Unmarshal(req.Prompt, &prompts); err != nil || len(prompts) == 0 {
			return nil, usageBody{}, invalid("'prompt' must be a string or a non-empty array of strings.")
		}
	}
	var usage usageBody
	choices := make([]choice, 0, len(prompts)*n)
	for _, p := range prompts {
		promptTokens := Tokens(p)
		limit := maxTokens
		switch {
		case maxTokens > 0 && promptTokens+maxTokens > cfg.MaxModelLen:
			return nil, usageBody{}, invalid("This model's maximum context length is %d tokens. However, you requested %d tokens "+
				"(%d in the messages, %d in the completion). Please reduce the length of the messages or completion.",
				cfg.MaxModelLen, promptTokens+maxTokens, promptTokens, maxTokens)
		case maxTokens == 0 && promptTokens >= cfg.MaxModelLen:
			return nil, usageBody{}, invalid("This model's maximum context length is %d tokens. However, your request has %d input tokens. "+
				"Please reduce the length of the input messages.", cfg.MaxModelLen, promptTokens)
		case maxTokens == 0:
			limit = cfg.MaxModelLen - promptTokens
		}
		usage.PromptTokens += promptTokens
		for i := range n {
			cp := p
			if i > 0 {
				cp = p + "#" + strconv.Itoa(i)
			}
			words, finish := answer(cfg.Model, cp, limit, req.IgnoreEOS)
			usage.CompletionTokens += len(words)
			choices = append(choices, choice{
				index: len(choices), words: words, finish: finish,
				seq: &seq{prompt: promptTokens, target: len(words), finish: finish, priority: req.Priority},
			})
		}
	}
	usage.TotalTokens = usage.PromptTokens + usage.CompletionTokens
	return choices, usage, nil
}

// Response bodies, field for field as vLLM writes them.
type (
	usageBody struct {
		PromptTokens     int `json:"prompt_tokens"`
		TotalTokens      int `json:"total_tokens"`
		CompletionTokens int `json:"completion_tokens"`
	}
	messageBody struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	}
	deltaBody struct {
		Role    string `json:"role,omitempty"`
		Content string `json:"content"`
	}
	choiceBody struct {
		Index        int          `json:"index"`
		Message      *messageBody `json:"message,omitempty"` // chat
		Delta        *deltaBody   `json:"delta,omitempty"`   // chat stream
		Text         *string      `json:"text,omitempty"`    // completions
		Logprobs     any          `json:"logprobs"`
		FinishReason *string      `json:"finish_reason"`
		StopReason   any          `json:"stop_reason"`
	}
	responseBody struct {
		ID      string       `json:"id"`
		Object  string       `json:"object"`
		Created int64        `json:"created"`
		Model   string       `json:"model"`
		Choices []choiceBody `json:"choices"`
		Usage   *usageBody   `json:"usage,omitempty"`
	}
)

// responder writes the answer to one accepted request.
type responder struct {
	s            *Server
	chat         bool
	id           string
	created      int64
	choices      []choice
	usage        usageBody
	includeUsage bool
	job          *job
}

func (o *responder) body(object string, choices []choiceBody) responseBody {
	return responseBody{ID: o.id, Object: object, Created: o.created, Model: o.s.cfg.Model, Choices: choices}
}

// whole waits for every choice and writes one JSON response.
func (o *responder) whole(w http.ResponseWriter, r *http.Request) {
	select {
	case <-o.job.done:
	case <-r.Context().Done():
		o.s.eng.abort(o.job)
		return
	}
	if o.job.failed {
		writeError(w, http.StatusServiceUnavailable, "The engine stopped before the request finished.")
		return
	}
	choices := make([]choiceBody, len(o.choices))
	for i, c := range o.choices {
		text := strings.Join(c.words, " ")
		choices[i] = choiceBody{Index: c.index, FinishReason: &o.choices[i].finish}
		if o.chat {
			choices[i].Message = &messageBody{Role: "assistant", Content: text}
		} else {
			choices[i].Text = &text
		}
	}
	object := "text_completion"
	if o.chat {
		object = "chat.completion"
	}
	b := o.body(object, choices)
	b.Usage = &o.usage
	writeJSON(w, http.StatusOK, b)
}

// stream writes SSE chunks as the engine produces tokens: for chat, a role
// chunk per choice at the first token; then each choice's new words (the
// last chunk of a choice carries its finish_reason); the usage chunk when
// stream_options.include_usage; then [DONE]. The 200 header waits for the
// first token, so a request that fails before it gets a plain error.
func (o *responder) stream(w http.ResponseWriter, r *http.Request) {
	ctx, j := r.Context(), o.job
	select {
	case <-j.notify:
	case <-j.done:
	case <-ctx.Done():
		o.s.eng.abort(j)
		return
	}
	if isClosed(j.done) && j.failed {
		writeError(w, http.StatusServiceUnavailable, "The engine stopped before the request finished.")
		return
	}
	w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	object := "text_completion"
	if o.chat {
		object = "chat.completion.chunk"
	}
	var buf []byte
	send := func(v any) bool {
		data, err := json.Marshal(v)
		if err != nil {
			return false
		}
		buf = append(append(append(buf[:0], "data: "...), data...), "\n\n"...)
		_, err = w.Write(buf)
		return err == nil
	}
	ok := true
	if o.chat {
		for _, c := range o.choices {
			ok = ok && send(o.body(object, []choiceBody{{Index: c.index, Delta: &deltaBody{Role: "assistant"}}}))
		}
	}
	sent := make([]int, len(o.choices))
	for ok {
		ended := isClosed(j.done)
		for i := range o.choices {
			c := &o.choices[i]
			g := min(int(c.seq.generated.Load()), len(c.words))
			if g <= sent[i] {
				continue
			}
			text := strings.Join(c.words[sent[i]:g], " ")
			if sent[i] > 0 {
				text = " " + text
			}
			cb := choiceBody{Index: c.index}
			if g == len(c.words) {
				cb.FinishReason = &c.finish
			}
			if o.chat {
				cb.Delta = &deltaBody{Content: text}
			} else {
				cb.Text = &text
			}
			sent[i] = g
			if ok = send(o.body(object, []choiceBody{cb})); !ok {
				break
			}
		}
		if flusher != nil {
			flusher.Flush()
		}
		if ended || !ok {
			break
		}
		select {
		case <-j.notify:
		case <-j.done:
		case <-ctx.Done():
			ok = false
		}
	}
	if !ok {
		o.s.eng.abort(j)
		return
	}
	if j.failed {
		send(newErrorBody(http.StatusServiceUnavailable, "The engine stopped before the request finished."))
	} else if o.includeUsage {
		b := o.body(object, []choiceBody{})
		b.Usage = &o.usage
		send(b)
	}
	_, _ = w.Write([]byte("data: [DONE]\n\n"))
	if flusher != nil {
		flusher.Flush()
	}
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func (s *Server) models(w http.ResponseWriter, _ *http.Request) {
	type model struct {
		ID          string `json:"id"`
		Object      string `json:"object"`
		Created     int64  `json:"created"`
		OwnedBy     string `json:"owned_by"`
		Root        string `json:"root"`
		Parent      any    `json:"parent"`
		MaxModelLen int    `json:"max_model_len"`
	}
	writeJSON(w, http.StatusOK, struct {
		Object string  `json:"object"`
		Data   []model `json:"data"`
	}{"list", []model{{
		ID: s.cfg.Model, Object: "model", Created: time.Now().Unix(), OwnedBy: "vllm", Root: s.cfg.Model,
		MaxModelLen: s.cfg.MaxModelLen,
	}}})
}

func (s *Server) health(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	down := s.down
	s.mu.Unlock()
	if down || s.eng.isClosed() {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (s *Server) faults(w http.ResponseWriter, r *http.Request) {
	var f struct {
		Status  *int  `json:"status"`
		Count   *int  `json:"count"`
		DelayMS *int  `json:"delay_ms"`
		Down    *bool `json:"down"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&f); err != nil {
		writeError(w, http.StatusBadRequest, "Invalid JSON body: "+err.Error())
		return
	}
	switch {
	case f.Status != nil && *f.Status != 0 && (*f.Status < 400 || *f.Status > 599):
		writeError(w, http.StatusBadRequest, "status must be an HTTP error status (400..599), or 0 to clear.")
		return
	case f.Count != nil && *f.Count < 0, f.DelayMS != nil && *f.DelayMS < 0:
		writeError(w, http.StatusBadRequest, "count and delay_ms must not be negative.")
		return
	}
	if f.Status != nil {
		count := 1
		if f.Count != nil {
			count = *f.Count
		}
		s.InjectFaults(*f.Status, count)
	}
	if f.DelayMS != nil {
		s.SetDelay(time.Duration(*f.DelayMS) * time.Millisecond)
	}
	if f.Down != nil {
		s.SetDown(*f.Down)
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) stats(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.Stats())
}
