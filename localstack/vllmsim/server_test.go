package vllmsim

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

const model = "lull-sim-1"

// newSim starts a simulator (TimeScale 0.01 unless set) behind an httptest
// server, both closed when the test ends.
func newSim(t *testing.T, cfg Config) (*Server, string) {
	t.Helper()
	cfg.TimeScale = cmp.Or(cfg.TimeScale, 0.01)
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s)
	t.Cleanup(func() {
		hs.CloseClientConnections()
		s.Close()
		hs.Close()
	})
	return s, hs.URL
}

// post sends body and returns the status and the response body.
func post(ctx context.Context, t *testing.T, url, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Error(err)
		return 0, nil
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			t.Error(err)
		}
		return 0, nil
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil && ctx.Err() == nil {
		t.Error(err)
	}
	return resp.StatusCode, data
}

func get(t *testing.T, url string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data
}

func decode[T any](t *testing.T, data []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("decode %s: %v", data, err)
	}
	return v
}

// waitFor polls cond until it holds, failing the test after 10s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// response is a non-streaming answer of either endpoint.
type response struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	Model   string `json:"model"`
	Choices []struct {
		Index   int `json:"index"`
		Message *struct {
			Role    string `json:"role"`
			Content string `json:"content"`
		} `json:"message"`
		Text         *string         `json:"text"`
		Logprobs     json.RawMessage `json:"logprobs"`
		FinishReason string          `json:"finish_reason"`
	} `json:"choices"`
	Usage usageBody `json:"usage"`
}

func (r response) texts() []string {
	var out []string
	for _, c := range r.Choices {
		if c.Message != nil {
			out = append(out, c.Message.Content)
		} else if c.Text != nil {
			out = append(out, *c.Text)
		}
	}
	return out
}

// planned is what a request should produce: per choice, the prompt Expect
// is asked about, and the prompt's tokens counted once.
type planned struct {
	prompts      []string
	promptTokens int
}

func (p planned) check(t *testing.T, r response, chat bool, maxTokens int) {
	t.Helper()
	wantObject, wantPrefix := "text_completion", "cmpl-"
	if chat {
		wantObject, wantPrefix = "chat.completion", "chatcmpl-"
	}
	if r.Object != wantObject || !strings.HasPrefix(r.ID, wantPrefix) || len(r.ID) != len(wantPrefix)+32 ||
		r.Model != model || r.Created < time.Now().Add(-time.Hour).Unix() {
		t.Errorf("envelope id=%q object=%q model=%q created=%d", r.ID, r.Object, r.Model, r.Created)
	}
	if len(r.Choices) != len(p.prompts) {
		t.Fatalf("%d choices, want %d", len(r.Choices), len(p.prompts))
	}
	completion := 0
	for i, prompt := range p.prompts {
		want, c := Expect(model, prompt, maxTokens), r.Choices[i]
		if c.Index != i || r.texts()[i] != want.Text || c.FinishReason != want.FinishReason || string(c.Logprobs) != "null" {
			t.Errorf("choice %d = %d %q %s logprobs=%s, want %q %s", i, c.Index, r.texts()[i], c.FinishReason, c.Logprobs, want.Text, want.FinishReason)
		}
		if chat && (c.Message == nil || c.Message.Role != "assistant") {
			t.Errorf("choice %d message %+v", i, c.Message)
		}
		completion += want.CompletionTokens
	}
	if want := (usageBody{PromptTokens: p.promptTokens, CompletionTokens: completion, TotalTokens: p.promptTokens + completion}); r.Usage != want {
		t.Errorf("usage %+v, want %+v", r.Usage, want)
	}
}

var responseCases = []struct {
	name, path, body string
	want             planned
	maxTokens        int
}{
	{"Chat", "/v1/chat/completions",
		`{"model":"lull-sim-1","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hello there"}]}`,
		planned{[]string{"system: be brief\nuser: hello there"}, 6}, 0},
	{"ChatParts", "/v1/chat/completions",
		`{"model":"lull-sim-1","max_tokens":5,"messages":[{"role":"user","content":[{"type":"text","text":"a b"},{"type":"text","text":"c"}]}]}`,
		planned{[]string{"user: a b c"}, 4}, 5},
	{"ChatN", "/v1/chat/completions",
		`{"model":"lull-sim-1","n":3,"messages":[{"role":"user","content":"many"}]}`,
		planned{[]string{"user: many", "user: many#1", "user: many#2"}, 2}, 0},
	{"ChatMaxCompletionTokens", "/v1/chat/completions",
		`{"model":"lull-sim-1","max_completion_tokens":4,"max_tokens":50,"messages":[{"role":"user","content":"cap"}]}`,
		planned{[]string{"user: cap"}, 2}, 4},
	{"ChatNoModel", "/v1/chat/completions",
		`{"messages":[{"role":"user","content":"whoever"}],"temperature":0.7,"metadata":{"x":1}}`,
		planned{[]string{"user: whoever"}, 2}, 0},
	{"Completion", "/v1/completions",
		`{"model":"lull-sim-1","prompt":"once upon a time","max_tokens":7}`,
		planned{[]string{"once upon a time"}, 4}, 7},
	{"CompletionBatch", "/v1/completions",
		`{"model":"lull-sim-1","prompt":["one","two words","one"]}`,
		planned{[]string{"one", "two words", "one"}, 4}, 0},
	{"CompletionBatchN", "/v1/completions",
		`{"model":"lull-sim-1","prompt":["x y","z"],"n":2,"max_tokens":30}`,
		planned{[]string{"x y", "x y#1", "z", "z#1"}, 3}, 30},
}

func TestResponsesMatchExpect(t *testing.T) {
	t.Parallel()
	_, url := newSim(t, Config{})
	for _, tc := range responseCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, data := post(t.Context(), t, url+tc.path, tc.body)
			if code != http.StatusOK {
				t.Fatalf("status %d: %s", code, data)
			}
			tc.want.check(t, decode[response](t, data), strings.Contains(tc.path, "chat"), tc.maxTokens)
		})
	}
}

// sse is a parsed event stream.
type sse struct {
	texts, finish map[int]string
	chunks        map[int]int // content chunks per choice
	roles         int
	usage         *usageBody
	errEvent      string
	done          bool
}

func readSSE(t *testing.T, r io.Reader, chat bool) sse {
	t.Helper()
	out := sse{texts: map[int]string{}, finish: map[int]string{}, chunks: map[int]int{}}
	wantObject := "text_completion"
	if chat {
		wantObject = "chat.completion.chunk"
	}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			t.Fatalf("not an SSE data line: %q", line)
		}
		if out.done {
			t.Fatalf("event after [DONE]: %q", line)
		}
		if data == "[DONE]" {
			out.done = true
			continue
		}
		var chunk struct {
			Object  string `json:"object"`
			Message string `json:"message"`
			Choices []struct {
				Index int `json:"index"`
				Delta *struct {
					Role    string  `json:"role"`
					Content *string `json:"content"`
				} `json:"delta"`
				Text         *string `json:"text"`
				FinishReason *string `json:"finish_reason"`
			} `json:"choices"`
			Usage *usageBody `json:"usage"`
		}
		if err := json.Unmarshal([]byte(data), &chunk); err != nil {
			t.Fatalf("chunk %q: %v", data, err)
		}
		if chunk.Object == "error" {
			out.errEvent = chunk.Message
			continue
		}
		if chunk.Object != wantObject {
			t.Fatalf("chunk object %q, want %q", chunk.Object, wantObject)
		}
		if chunk.Usage != nil {
			if len(chunk.Choices) != 0 || out.usage != nil {
				t.Fatalf("usage chunk %s", data)
			}
			out.usage = chunk.Usage
		}
		for _, c := range chunk.Choices {
			if out.finish[c.Index] != "" {
				t.Fatalf("chunk after the finish of choice %d: %s", c.Index, data)
			}
			text := ""
			switch {
			case chat && c.Delta != nil && c.Delta.Role == "assistant":
				if out.chunks[c.Index] > 0 {
					t.Fatalf("role after content: %s", data)
				}
				out.roles++
			case chat && c.Delta != nil && c.Delta.Content != nil:
				text = *c.Delta.Content
			case !chat && c.Text != nil:
				text = *c.Text
			default:
				t.Fatalf("malformed choice in %s", data)
			}
			if text != "" {
				out.texts[c.Index] += text
				out.chunks[c.Index]++
			}
			if c.FinishReason != nil {
				out.finish[c.Index] = *c.FinishReason
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestStreamingMatchesPlain(t *testing.T) {
	t.Parallel()
	_, url := newSim(t, Config{TimeScale: 0.05})
	for _, tc := range responseCases {
		for _, includeUsage := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/usage=%v", tc.name, includeUsage), func(t *testing.T) {
				t.Parallel()
				chat := strings.Contains(tc.path, "chat")
				code, data := post(t.Context(), t, url+tc.path, tc.body)
				if code != http.StatusOK {
					t.Fatalf("plain: status %d: %s", code, data)
				}
				plain := decode[response](t, data)
				body := strings.Replace(tc.body, "{", fmt.Sprintf(`{"stream":true,"stream_options":{"include_usage":%v},`, includeUsage), 1)
				req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, url+tc.path, strings.NewReader(body))
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
					t.Fatalf("stream: status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
				}
				got := readSSE(t, resp.Body, chat)
				if !got.done || got.errEvent != "" {
					t.Fatalf("stream ended without [DONE] or with an error: %+v", got)
				}
				if chat && got.roles != len(plain.Choices) {
					t.Errorf("%d role chunks, want %d", got.roles, len(plain.Choices))
				}
				for i, text := range plain.texts() {
					if got.texts[i] != text || got.finish[i] != plain.Choices[i].FinishReason {
						t.Errorf("choice %d streamed %q (%s), plain %q (%s)", i, got.texts[i], got.finish[i], text, plain.Choices[i].FinishReason)
					}
				}
				switch {
				case includeUsage && (got.usage == nil || *got.usage != plain.Usage):
					t.Errorf("usage %+v, want %+v", got.usage, plain.Usage)
				case !includeUsage && got.usage != nil:
					t.Errorf("usage chunk without include_usage: %+v", got.usage)
				}
			})
		}
	}
}

func TestStreamingIsIncremental(t *testing.T) {
	t.Parallel()
	// Real-time steps (8ms): the handler has ample time to send each token
	// on its own, so it must not wait for the end.
	_, url := newSim(t, Config{TimeScale: 1})
	body := `{"model":"lull-sim-1","stream":true,"max_tokens":8,"messages":[{"role":"user","content":"drip"}]}`
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, url+"/v1/chat/completions", strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got := readSSE(t, resp.Body, true)
	if want := Expect(model, "user: drip", 8); got.texts[0] != want.Text || got.chunks[0] < 4 {
		t.Fatalf("8 tokens arrived in %d chunks as %q, want %q one step at a time", got.chunks[0], got.texts[0], want.Text)
	}
}

// errorResponse is vLLM's error body; Param is raw to check it is null.
type errorResponse struct {
	Object  string          `json:"object"`
	Message string          `json:"message"`
	Type    string          `json:"type"`
	Param   json.RawMessage `json:"param"`
	Code    int             `json:"code"`
}

func checkError(t *testing.T, code int, data []byte, wantCode int, wantType string) {
	t.Helper()
	e := decode[errorResponse](t, data)
	if code != wantCode || e.Object != "error" || e.Type != wantType || e.Code != wantCode || string(e.Param) != "null" || e.Message == "" {
		t.Errorf("got %d %s, want %d with type %s", code, data, wantCode, wantType)
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	_, url := newSim(t, Config{MaxModelLen: 32})
	_, prio := newSim(t, Config{PriorityScheduling: true})
	long := strings.Repeat("w ", 32)
	for _, tc := range []struct {
		name, url, path, body string
		code                  int
		typ                   string
	}{
		{"BadJSON", url, "/v1/completions", `{`, 400, "BadRequestError"},
		{"WrongType", url, "/v1/completions", `{"model":"lull-sim-1","prompt":"x","n":"two"}`, 400, "BadRequestError"},
		{"UnknownModel", url, "/v1/chat/completions", `{"model":"other","messages":[{"role":"user","content":"x"}]}`, 404, "NotFoundError"},
		{"NoMessages", url, "/v1/chat/completions", `{"model":"lull-sim-1","messages":[]}`, 400, "BadRequestError"},
		{"MissingMessages", url, "/v1/chat/completions", `{"model":"lull-sim-1"}`, 400, "BadRequestError"},
		{"MissingPrompt", url, "/v1/completions", `{"model":"lull-sim-1"}`, 400, "BadRequestError"},
		{"NullPrompt", url, "/v1/completions", `{"model":"lull-sim-1","prompt":null}`, 400, "BadRequestError"},
		{"EmptyPromptList", url, "/v1/completions", `{"model":"lull-sim-1","prompt":[]}`, 400, "BadRequestError"},
		{"PromptPlusMaxTooLong", url, "/v1/completions", `{"model":"lull-sim-1","prompt":"x y","max_tokens":31}`, 400, "BadRequestError"},
		{"PromptTooLong", url, "/v1/completions", fmt.Sprintf(`{"model":"lull-sim-1","prompt":%q}`, long), 400, "BadRequestError"},
		{"MaxTokensZero", url, "/v1/completions", `{"model":"lull-sim-1","prompt":"x","max_tokens":0}`, 400, "BadRequestError"},
		{"NZero", url, "/v1/completions", `{"model":"lull-sim-1","prompt":"x","n":0}`, 400, "BadRequestError"},
		{"StreamOptionsWithoutStream", url, "/v1/completions", `{"model":"lull-sim-1","prompt":"x","stream_options":{"include_usage":true}}`, 400, "BadRequestError"},
		{"PriorityWithoutPolicy", url, "/v1/completions", `{"model":"lull-sim-1","prompt":"x","priority":5}`, 400, "BadRequestError"},
		{"BadFaultStatus", url, "/sim/faults", `{"status":200}`, 400, "BadRequestError"},
		{"BadFaultJSON", url, "/sim/faults", `[`, 400, "BadRequestError"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, data := post(t.Context(), t, tc.url+tc.path, tc.body)
			checkError(t, code, data, tc.code, tc.typ)
		})
	}
	t.Run("PriorityWithPolicy", func(t *testing.T) {
		t.Parallel()
		if code, data := post(t.Context(), t, prio+"/v1/completions", `{"model":"lull-sim-1","prompt":"x","priority":5,"max_tokens":2}`); code != 200 {
			t.Fatalf("status %d: %s", code, data)
		}
	})
	t.Run("ExactlyMaxModelLen", func(t *testing.T) {
		t.Parallel()
		if code, data := post(t.Context(), t, url+"/v1/completions", `{"model":"lull-sim-1","prompt":"x y","max_tokens":30}`); code != 200 {
			t.Fatalf("status %d: %s", code, data)
		}
	})
	t.Run("ContextCapsAnswer", func(t *testing.T) {
		t.Parallel()
		// 29 prompt tokens leave 3 for the answer, as vLLM's default max_tokens.
		prompt := strings.TrimSpace(strings.Repeat("w ", 29))
		code, data := post(t.Context(), t, url+"/v1/completions", fmt.Sprintf(`{"model":"lull-sim-1","prompt":%q}`, prompt))
		if code != 200 {
			t.Fatalf("status %d: %s", code, data)
		}
		planned{[]string{prompt}, 29}.check(t, decode[response](t, data), false, 3)
	})
}

func TestModelsAndHealth(t *testing.T) {
	t.Parallel()
	_, url := newSim(t, Config{Model: "m-7b", MaxModelLen: 4096})
	code, data := get(t, url+"/v1/models")
	models := decode[struct {
		Object string `json:"object"`
		Data   []struct {
			ID          string `json:"id"`
			Object      string `json:"object"`
			OwnedBy     string `json:"owned_by"`
			MaxModelLen int    `json:"max_model_len"`
		} `json:"data"`
	}](t, data)
	if code != 200 || models.Object != "list" || len(models.Data) != 1 || models.Data[0].ID != "m-7b" ||
		models.Data[0].Object != "model" || models.Data[0].OwnedBy != "vllm" || models.Data[0].MaxModelLen != 4096 {
		t.Fatalf("models %d %s", code, data)
	}
	if code, data := get(t, url+"/health"); code != 200 || len(data) != 0 {
		t.Fatalf("health %d %q", code, data)
	}
	if code, data := post(t.Context(), t, url+"/v1/completions", `{"model":"m-7b","prompt":"p","max_tokens":2}`); code != 200 {
		t.Fatalf("completion %d %s", code, data)
	}
	if code, data := get(t, url+"/sim/stats"); code != 200 || decode[Stats](t, data).GenerationTokens != 2 {
		t.Fatalf("stats %d %s", code, data)
	}
}

func TestFaults(t *testing.T) {
	t.Parallel()
	const body = `{"model":"lull-sim-1","prompt":"x","max_tokens":2}`
	setFaults := func(t *testing.T, url, faults string) {
		t.Helper()
		if code, data := post(t.Context(), t, url+"/sim/faults", faults); code != http.StatusNoContent {
			t.Fatalf("POST /sim/faults %s: %d %s", faults, code, data)
		}
	}
	for _, tc := range []struct {
		name   string
		inject func(t *testing.T, s *Server, url string)
		codes  []int // of consecutive completion requests
		typ    string
	}{
		{"Method", func(t *testing.T, s *Server, url string) { s.InjectFaults(500, 2) }, []int{500, 500, 200}, "InternalServerError"},
		{"HTTP", func(t *testing.T, s *Server, url string) { setFaults(t, url, `{"status":503,"count":3}`) }, []int{503, 503, 503, 200}, "ServiceUnavailableError"},
		{"HTTPDefaultCount", func(t *testing.T, s *Server, url string) { setFaults(t, url, `{"status":429}`) }, []int{429, 200}, "TooManyRequestsError"},
		{"Cleared", func(t *testing.T, s *Server, url string) { s.InjectFaults(500, 5); setFaults(t, url, `{"status":0}`) }, []int{200}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, url := newSim(t, Config{})
			tc.inject(t, s, url)
			for i, want := range tc.codes {
				code, data := post(t.Context(), t, url+"/v1/completions", body)
				if want == 200 {
					if code != 200 {
						t.Fatalf("request %d: %d %s, want 200", i, code, data)
					}
					continue
				}
				checkError(t, code, data, want, tc.typ)
			}
			if st := s.Stats(); st.Completed != 1 {
				t.Fatalf("failed requests reached the engine: %+v", st)
			}
		})
	}
	for _, tc := range []struct {
		name     string
		down, up func(t *testing.T, s *Server, url string)
	}{
		{"DownMethod", func(t *testing.T, s *Server, url string) { s.SetDown(true) }, func(t *testing.T, s *Server, url string) { s.SetDown(false) }},
		{"DownHTTP", func(t *testing.T, s *Server, url string) { setFaults(t, url, `{"down":true}`) },
			func(t *testing.T, s *Server, url string) { setFaults(t, url, `{"down":false}`) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, url := newSim(t, Config{})
			tc.down(t, s, url)
			if code, _ := get(t, url+"/health"); code != 503 {
				t.Fatalf("health while down: %d", code)
			}
			code, data := post(t.Context(), t, url+"/v1/chat/completions", `{"model":"lull-sim-1","messages":[{"role":"user","content":"x"}]}`)
			checkError(t, code, data, 503, "ServiceUnavailableError")
			tc.up(t, s, url)
			if code, _ := get(t, url+"/health"); code != 200 {
				t.Fatalf("health after up: %d", code)
			}
			if code, data := post(t.Context(), t, url+"/v1/completions", body); code != 200 {
				t.Fatalf("after up: %d %s", code, data)
			}
		})
	}
	for _, tc := range []struct {
		name   string
		inject func(t *testing.T, s *Server, url string)
	}{
		{"DelayMethod", func(t *testing.T, s *Server, url string) { s.SetDelay(60 * time.Millisecond) }},
		{"DelayHTTP", func(t *testing.T, s *Server, url string) { setFaults(t, url, `{"delay_ms":60}`) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, url := newSim(t, Config{})
			tc.inject(t, s, url)
			start := time.Now()
			if code, data := post(t.Context(), t, url+"/v1/completions", body); code != 200 {
				t.Fatalf("%d %s", code, data)
			}
			if el := time.Since(start); el < 60*time.Millisecond {
				t.Fatalf("answered in %v despite a 60ms delay", el)
			}
		})
	}
}

func TestClientCancelFreesSlot(t *testing.T) {
	t.Parallel()
	for _, stream := range []bool{false, true} {
		t.Run(fmt.Sprintf("stream=%v", stream), func(t *testing.T) {
			t.Parallel()
			// 5000 tokens at real time would take 40s; the slot is the only one.
			s, url := newSim(t, Config{MaxNumSeqs: 1, TimeScale: 1})
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan struct{})
			go func() {
				defer close(done)
				post(ctx, t, url+"/v1/completions", fmt.Sprintf(`{"model":"lull-sim-1","prompt":"long","max_tokens":5000,"ignore_eos":true,"stream":%v}`, stream))
			}()
			waitFor(t, "the long request to run", func() bool { return s.Stats().Running == 1 })
			cancel()
			<-done
			waitFor(t, "the slot to be freed", func() bool {
				st := s.Stats()
				return st.Running == 0 && st.Waiting == 0 && st.KVUsage == 0 && st.Aborted == 1
			})
			if code, data := post(t.Context(), t, url+"/v1/completions", `{"model":"lull-sim-1","prompt":"short","max_tokens":2}`); code != 200 {
				t.Fatalf("next request: %d %s", code, data)
			}
			if _, data := get(t, url+"/metrics"); !strings.Contains(string(data), `finished_reason="abort"} 1`) {
				t.Fatalf("metrics lack the abort:\n%s", data)
			}
		})
	}
}

func TestCloseFailsInFlight(t *testing.T) {
	t.Parallel()
	for _, stream := range []bool{false, true} {
		t.Run(fmt.Sprintf("stream=%v", stream), func(t *testing.T) {
			t.Parallel()
			s, url := newSim(t, Config{MaxNumSeqs: 1, TimeScale: 1})
			type result struct {
				code int
				data []byte
			}
			results := make(chan result, 2)
			for _, prompt := range []string{"running", "waiting"} {
				go func() {
					code, data := post(t.Context(), t, url+"/v1/completions",
						fmt.Sprintf(`{"model":"lull-sim-1","prompt":%q,"max_tokens":5000,"ignore_eos":true,"stream":%v}`, prompt, stream))
					results <- result{code, data}
				}()
			}
			// The running one has streamed a token (so its 200 is out) when
			// the waiting one is queued and a second step has passed.
			waitFor(t, "one running, one waiting", func() bool {
				st := s.Stats()
				return st.Running == 1 && st.Waiting == 1 && st.GenerationTokens >= 2
			})
			s.Close()
			for range 2 {
				r := <-results
				switch {
				case r.code == 503:
					checkError(t, r.code, r.data, 503, "ServiceUnavailableError")
				case stream && r.code == 200:
					if got := readSSE(t, strings.NewReader(string(r.data)), false); got.errEvent == "" || !got.done {
						t.Errorf("stream cut by Close lacks an error event and [DONE]: %s", r.data)
					}
				default:
					t.Errorf("in-flight request after Close: %d %s", r.code, r.data)
				}
			}
			if code, _ := get(t, url+"/health"); code != 503 {
				t.Fatalf("health after Close: %d", code)
			}
			code, data := post(t.Context(), t, url+"/v1/completions", `{"model":"lull-sim-1","prompt":"late"}`)
			checkError(t, code, data, 503, "ServiceUnavailableError")
		})
	}
}
