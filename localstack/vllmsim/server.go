// Package vllmsim simulates a vLLM OpenAI-compatible server for local runs,
// tests and benchmarks: the same endpoints and response shapes
// (/v1/chat/completions and /v1/completions, plain and SSE streaming,
// /v1/models, /health), Prometheus /metrics with vLLM's metric names, a
// continuous-batching engine with a KV-cache block budget, preemption and
// optional priority scheduling, deterministic output (see Expect), fault
// injection, and a time-scale knob.
package vllmsim

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Server is a simulated vLLM server. It implements http.Handler.
type Server struct {
	cfg Config
	eng *engine
	mux *http.ServeMux

	mu        sync.Mutex
	down      bool
	delay     time.Duration
	failCode  int
	failCount int
	closed    bool
}

// New starts a simulator; Close stops its engine.
func New(cfg Config) (*Server, error) {
	cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, eng: newEngine(cfg), mux: http.NewServeMux()}
	s.mux.HandleFunc("POST /v1/chat/completions", func(w http.ResponseWriter, r *http.Request) { s.complete(w, r, true) })
	s.mux.HandleFunc("POST /v1/completions", func(w http.ResponseWriter, r *http.Request) { s.complete(w, r, false) })
	s.mux.HandleFunc("GET /v1/models", s.models)
	s.mux.HandleFunc("GET /health", s.health)
	s.mux.HandleFunc("GET /metrics", s.metrics)
	s.mux.HandleFunc("POST /sim/faults", s.faults)
	return s, nil
}

// Config returns the simulator's effective configuration.
func (s *Server) Config() Config { return s.cfg }

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Close stops the engine; running requests get 503.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.mu.Unlock()
	s.eng.close()
}

// InjectFaults makes the next count completion requests fail with status.
func (s *Server) InjectFaults(status, count int) {
	s.mu.Lock()
	s.failCode, s.failCount = status, count
	s.mu.Unlock()
}

// SetDown makes /health answer 503 and completion requests fail with 503.
func (s *Server) SetDown(down bool) { s.mu.Lock(); s.down = down; s.mu.Unlock() }

// SetDelay adds latency before each completion request enters the engine.
func (s *Server) SetDelay(d time.Duration) { s.mu.Lock(); s.delay = d; s.mu.Unlock() }

// Stats returns a snapshot of the engine.
func (s *Server) Stats() Stats { return s.eng.stats() }

func writeErr(w http.ResponseWriter, code int, typ, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{"object": "error", "message": msg, "type": typ, "param": nil, "code": code})
}

func randomHex() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

type request struct {
	Model         string          `json:"model"`
	Messages      json.RawMessage `json:"messages"`
	Prompt        json.RawMessage `json:"prompt"`
	N             *int            `json:"n"`
	MaxTokens     *int            `json:"max_tokens"`
	MaxCompletion *int            `json:"max_completion_tokens"`
	Stream        bool            `json:"stream"`
	StreamOptions *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	Priority  *int `json:"priority"`
	IgnoreEOS bool `json:"ignore_eos"`
}

type choice struct {
	prompt string
	want   Completion
}

func (s *Server) complete(w http.ResponseWriter, r *http.Request, chat bool) {
	s.mu.Lock()
	down, delay, closed := s.down, s.delay, s.closed
	fail := 0
	if s.failCount > 0 {
		s.failCount--
		fail = s.failCode
	}
	s.mu.Unlock()
	switch {
	case closed || down:
		writeErr(w, http.StatusServiceUnavailable, "ServiceUnavailableError", "The engine is not available.")
		return
	case fail != 0:
		writeErr(w, fail, "InjectedError", fmt.Sprintf("injected failure %d", fail))
		return
	}
	var req request
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeErr(w, http.StatusBadRequest, "BadRequestError", "Invalid JSON body: "+err.Error())
		return
	}
	if req.Model != s.cfg.Model {
		writeErr(w, http.StatusNotFound, "NotFoundError", fmt.Sprintf("The model `%s` does not exist.", req.Model))
		return
	}
	priority := 0
	if req.Priority != nil {
		priority = *req.Priority
		if priority != 0 && !s.cfg.PriorityScheduling {
			writeErr(w, http.StatusBadRequest, "BadRequestError", "Priority scheduling is not enabled.")
			return
		}
	}
	maxTokens := 0
	for _, v := range []*int{req.MaxCompletion, req.MaxTokens} {
		if v != nil {
			maxTokens = *v
			break
		}
	}
	prompts, err := s.prompts(req, chat)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "BadRequestError", err.Error())
		return
	}
	n := 1
	if req.N != nil && *req.N > 1 {
		n = *req.N
	}
	var choices []choice
	for _, p := range prompts {
		for i := range n {
			cp := p
			if i > 0 {
				cp = fmt.Sprintf("%s#%d", p, i)
			}
			want := expect(s.cfg.Model, cp, maxTokens, req.IgnoreEOS)
			if want.PromptTokens+max(maxTokens, want.CompletionTokens) > s.cfg.MaxModelLen {
				writeErr(w, http.StatusBadRequest, "BadRequestError", fmt.Sprintf(
					"This model's maximum context length is %d tokens. However, you requested %d tokens.", s.cfg.MaxModelLen, want.PromptTokens+max(maxTokens, want.CompletionTokens)))
				return
			}
			choices = append(choices, choice{prompt: cp, want: want})
		}
	}
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	seqs := make([]*seq, len(choices))
	for i, c := range choices {
		seqs[i] = s.eng.submit(c.want.PromptTokens, c.want.CompletionTokens, priority)
	}
	created := time.Now().Unix()
	id := "cmpl-" + randomHex()
	if chat {
		id = "chatcmpl-" + randomHex()
	}
	if req.Stream {
		s.stream(w, r, chat, id, created, choices, seqs, req.StreamOptions != nil && req.StreamOptions.IncludeUsage)
		return
	}
	for _, q := range seqs {
		select {
		case <-q.done:
		case <-r.Context().Done():
			for _, q := range seqs {
				s.eng.cancel(q)
			}
			return
		}
		if !q.running && q.generated < q.target {
			writeErr(w, http.StatusServiceUnavailable, "ServiceUnavailableError", "The engine stopped.")
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(responseBody(chat, id, created, s.cfg.Model, choices))
}

func (s *Server) prompts(req request, chat bool) ([]string, error) {
	if chat {
		var msgs []Message
		if err := json.Unmarshal(req.Messages, &msgs); err != nil || len(msgs) == 0 {
			return nil, fmt.Errorf("'messages' must be a non-empty array of messages")
		}
		return []string{ChatPrompt(msgs)}, nil
	}
	var one string
	if json.Unmarshal(req.Prompt, &one) == nil {
		return []string{one}, nil
	}
	var many []string
	if err := json.Unmarshal(req.Prompt, &many); err != nil || len(many) == 0 {
		return nil, fmt.Errorf("'prompt' must be a string or a non-empty array of strings")
	}
	return many, nil
}

func usageOf(choices []choice) map[string]int {
	prompt, completion := 0, 0
	seen := map[string]bool{}
	for _, c := range choices {
		base, _, _ := strings.Cut(c.prompt, "#")
		if !seen[base] {
			seen[base] = true
			prompt += c.want.PromptTokens
		}
		completion += c.want.CompletionTokens
	}
	return map[string]int{"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
}

func responseBody(chat bool, id string, created int64, model string, choices []choice) map[string]any {
	out := make([]map[string]any, len(choices))
	for i, c := range choices {
		if chat {
			out[i] = map[string]any{"index": i, "message": map[string]any{"role": "assistant", "content": c.want.Text},
				"logprobs": nil, "finish_reason": c.want.FinishReason}
		} else {
			out[i] = map[string]any{"index": i, "text": c.want.Text, "logprobs": nil, "finish_reason": c.want.FinishReason}
		}
	}
	object := "text_completion"
	if chat {
		object = "chat.completion"
	}
	return map[string]any{"id": id, "object": object, "created": created, "model": model, "choices": out, "usage": usageOf(choices)}
}

// stream sends SSE chunks: the role (chat) once the first token exists, then
// each choice's words, the finish reasons, usage if asked, and [DONE].
func (s *Server) stream(w http.ResponseWriter, r *http.Request, chat bool, id string, created int64, choices []choice, seqs []*seq, includeUsage bool) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	flusher, _ := w.(http.Flusher)
	object := "text_completion"
	if chat {
		object = "chat.completion.chunk"
	}
	send := func(chs []map[string]any, usage map[string]int) {
		body := map[string]any{"id": id, "object": object, "created": created, "model": s.cfg.Model, "choices": chs}
		if usage != nil {
			body["usage"] = usage
		}
		data, _ := json.Marshal(body)
		fmt.Fprintf(w, "data: %s\n\n", data)
		if flusher != nil {
			flusher.Flush()
		}
	}
	cancelAll := func() {
		for _, q := range seqs {
			s.eng.cancel(q)
		}
	}
	for i, q := range seqs {
		select {
		case <-q.first:
		case <-q.done:
		case <-r.Context().Done():
			cancelAll()
			return
		}
		if chat {
			send([]map[string]any{{"index": i, "delta": map[string]any{"role": "assistant", "content": ""}, "logprobs": nil, "finish_reason": nil}}, nil)
		}
	}
	for i, q := range seqs {
		select {
		case <-q.done:
		case <-r.Context().Done():
			cancelAll()
			return
		}
		words := strings.Fields(choices[i].want.Text)
		for j, word := range words {
			if j > 0 {
				word = " " + word
			}
			if chat {
				send([]map[string]any{{"index": i, "delta": map[string]any{"content": word}, "logprobs": nil, "finish_reason": nil}}, nil)
			} else {
				send([]map[string]any{{"index": i, "text": word, "logprobs": nil, "finish_reason": nil}}, nil)
			}
		}
		if chat {
			send([]map[string]any{{"index": i, "delta": map[string]any{}, "logprobs": nil, "finish_reason": choices[i].want.FinishReason}}, nil)
		} else {
			send([]map[string]any{{"index": i, "text": "", "logprobs": nil, "finish_reason": choices[i].want.FinishReason}}, nil)
		}
	}
	if includeUsage {
		send([]map[string]any{}, usageOf(choices))
	}
	fmt.Fprint(w, "data: [DONE]\n\n")
	if flusher != nil {
		flusher.Flush()
	}
}

func (s *Server) models(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"object": "list", "data": []map[string]any{{
		"id": s.cfg.Model, "object": "model", "created": time.Now().Unix(), "owned_by": "vllm", "root": s.cfg.Model,
		"max_model_len": s.cfg.MaxModelLen,
	}}})
}

func (s *Server) health(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	down := s.down || s.closed
	s.mu.Unlock()
	if down {
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
	if err := json.NewDecoder(r.Body).Decode(&f); err != nil {
		writeErr(w, http.StatusBadRequest, "BadRequestError", "Invalid JSON body.")
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

func (s *Server) metrics(w http.ResponseWriter, _ *http.Request) {
	st := s.eng.stats()
	s.eng.mu.Lock()
	ttft, e2e := s.eng.ttft, s.eng.e2e
	ttft.counts, e2e.counts = append([]int64(nil), ttft.counts...), append([]int64(nil), e2e.counts...)
	s.eng.mu.Unlock()
	labels := fmt.Sprintf(`model_name=%q,engine="0"`, s.cfg.Model)
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	gauge := func(name, help string, v float64) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s gauge\n%s{%s} %g\n", name, help, name, name, labels, v)
	}
	counter := func(name, help string, v int64) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n%s{%s} %d\n", name, help, name, name, labels, v)
	}
	gauge("vllm:num_requests_running", "Number of requests in model execution batches.", float64(st.Running))
	gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.", float64(st.Waiting))
	if s.cfg.LegacyCacheMetric {
		gauge("vllm:gpu_cache_usage_perc", "GPU KV-cache usage. 1 means 100 percent usage.", st.KVUsage)
	} else {
		gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", st.KVUsage)
	}
	counter("vllm:num_preemptions_total", "Cumulative number of preemption from the engine.", st.Preemptions)
	counter("vllm:prompt_tokens_total", "Number of prefill tokens processed.", st.PromptTokens)
	counter("vllm:generation_tokens_total", "Number of generation tokens processed.", st.GenerationTokens)
	fmt.Fprintf(w, "# HELP vllm:request_success_total Count of successfully processed requests.\n# TYPE vllm:request_success_total counter\n")
	fmt.Fprintf(w, "vllm:request_success_total{%s,finished_reason=\"stop\"} %d\n", labels, st.Finished)
	for _, h := range []struct {
		name, help string
		h          histogram
	}{
		{"vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", ttft},
		{"vllm:e2e_request_latency_seconds", "Histogram of end to end request latency in seconds.", e2e},
	} {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s histogram\n", h.name, h.help, h.name)
		for i, b := range h.h.bounds {
			fmt.Fprintf(w, "%s_bucket{%s,le=\"%g\"} %d\n", h.name, labels, b, h.h.counts[i])
		}
		fmt.Fprintf(w, "%s_bucket{%s,le=\"+Inf\"} %d\n%s_sum{%s} %g\n%s_count{%s} %d\n", h.name, labels, h.h.n, h.name, labels, h.h.sum, h.name, labels, h.h.n)
	}
}
