package vllmsim

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

func newSim(t *testing.T, cfg Config) (*Server, string) {
	t.Helper()
	if cfg.TimeScale == 0 {
		cfg.TimeScale = 0.01
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s)
	t.Cleanup(func() { hs.CloseClientConnections(); hs.Close(); s.Close() })
	return s, hs.URL
}

func post(t *testing.T, url, body string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	data, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatalf("not JSON: %s", data)
	}
	return resp.StatusCode, out
}

func TestResponsesMatchExpect(t *testing.T) {
	t.Parallel()
	_, url := newSim(t, Config{})
	for _, tc := range []struct {
		name, path, body string
		prompts          []string
		max              int
		chat             bool
	}{
		{"Chat", "/v1/chat/completions", `{"model":"lull-sim-1","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hello there"}]}`,
			[]string{"system: be brief\nuser: hello there"}, 0, true},
		{"ChatParts", "/v1/chat/completions", `{"model":"lull-sim-1","max_tokens":5,"messages":[{"role":"user","content":[{"type":"text","text":"a b"},{"type":"text","text":"c"}]}]}`,
			[]string{"user: a b c"}, 5, true},
		{"ChatN", "/v1/chat/completions", `{"model":"lull-sim-1","n":3,"messages":[{"role":"user","content":"many"}]}`,
			[]string{"user: many", "user: many#1", "user: many#2"}, 0, true},
		{"Completion", "/v1/completions", `{"model":"lull-sim-1","prompt":"once upon a time","max_completion_tokens":7}`,
			[]string{"once upon a time"}, 7, false},
		{"CompletionBatch", "/v1/completions", `{"model":"lull-sim-1","prompt":["one","two words"]}`,
			[]string{"one", "two words"}, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, out := post(t, url+tc.path, tc.body)
			if code != 200 {
				t.Fatalf("status %d: %v", code, out)
			}
			choices := out["choices"].([]any)
			if len(choices) != len(tc.prompts) {
				t.Fatalf("%d choices, want %d", len(choices), len(tc.prompts))
			}
			completion := 0
			for i, p := range tc.prompts {
				want := Expect("lull-sim-1", p, tc.max)
				c := choices[i].(map[string]any)
				var got string
				if tc.chat {
					got = c["message"].(map[string]any)["content"].(string)
				} else {
					got = c["text"].(string)
				}
				if got != want.Text || c["finish_reason"] != want.FinishReason {
					t.Fatalf("choice %d = %q/%v, want %q/%s", i, got, c["finish_reason"], want.Text, want.FinishReason)
				}
				completion += want.CompletionTokens
			}
			usage := out["usage"].(map[string]any)
			if int(usage["completion_tokens"].(float64)) != completion {
				t.Fatalf("usage %v, want %d completion tokens", usage, completion)
			}
			if obj := out["object"]; tc.chat && obj != "chat.completion" || !tc.chat && obj != "text_completion" {
				t.Fatalf("object %v", obj)
			}
		})
	}
}

func TestExpectDeterministic(t *testing.T) {
	t.Parallel()
	a, b := Expect("m", "p", 0), Expect("m", "p", 0)
	if a != b || a.CompletionTokens < 8 || a.CompletionTokens > 64 || a.PromptTokens != 1 {
		t.Fatalf("Expect = %+v / %+v", a, b)
	}
	if c := Expect("m", "q", 0); c.Text == a.Text {
		t.Fatal("different prompts give the same text")
	}
	if d := Expect("m", "p", 3); d.CompletionTokens != 3 || d.FinishReason != "length" || !strings.HasPrefix(a.Text, d.Text) {
		t.Fatalf("truncated = %+v", d)
	}
}

func TestStreamingMatchesPlain(t *testing.T) {
	t.Parallel()
	_, url := newSim(t, Config{})
	body := `{"model":"lull-sim-1","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"stream me"}]}`
	resp, err := http.Post(url+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var text strings.Builder
	var usage map[string]any
	done := false
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		if line == "[DONE]" {
			done = true
			break
		}
		var chunk struct {
			Object  string `json:"object"`
			Choices []struct {
				Delta struct{ Content string } `json:"delta"`
			} `json:"choices"`
			Usage map[string]any `json:"usage"`
		}
		if err := json.Unmarshal([]byte(line), &chunk); err != nil || chunk.Object != "chat.completion.chunk" {
			t.Fatalf("chunk %q: %v", line, err)
		}
		for _, c := range chunk.Choices {
			text.WriteString(c.Delta.Content)
		}
		if chunk.Usage != nil {
			usage = chunk.Usage
		}
	}
	want := Expect("lull-sim-1", "user: stream me", 0)
	if !done || text.String() != want.Text || usage == nil || int(usage["completion_tokens"].(float64)) != want.CompletionTokens {
		t.Fatalf("stream = %q (done %v, usage %v), want %q", text.String(), done, usage, want.Text)
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	s, url := newSim(t, Config{MaxModelLen: 32})
	for _, tc := range []struct {
		name, body string
		code       int
	}{
		{"BadJSON", `{`, 400},
		{"UnknownModel", `{"model":"other","prompt":"x"}`, 404},
		{"NoMessages", `{"model":"lull-sim-1","messages":[]}`, 400},
		{"TooLong", `{"model":"lull-sim-1","prompt":"x","max_tokens":100}`, 400},
		{"PriorityWithoutPolicy", `{"model":"lull-sim-1","prompt":"x","priority":5}`, 400},
	} {
		code, out := post(t, url+"/v1/completions", tc.body)
		if code != tc.code || out["object"] != "error" || out["message"] == "" {
			t.Errorf("%s: %d %v, want %d with a vLLM error body", tc.name, code, out, tc.code)
		}
	}
	s.InjectFaults(503, 2)
	for i := range 3 {
		code, _ := post(t, url+"/v1/completions", `{"model":"lull-sim-1","prompt":"x","max_tokens":2}`)
		if want := map[bool]int{true: 503, false: 200}[i < 2]; code != want {
			t.Fatalf("request %d after InjectFaults: %d, want %d", i, code, want)
		}
	}
	s.SetDown(true)
	if resp, _ := http.Get(url + "/health"); resp.StatusCode != 503 {
		t.Fatalf("health while down: %d", resp.StatusCode)
	}
	s.SetDown(false)
	if resp, _ := http.Get(url + "/health"); resp.StatusCode != 200 {
		t.Fatalf("health: %d", resp.StatusCode)
	}
}

// run sends n concurrent completion requests and returns the wall time.
func run(t *testing.T, url string, n int, body func(i int) string) time.Duration {
	t.Helper()
	start := time.Now()
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			resp, err := http.Post(url+"/v1/completions", "application/json", strings.NewReader(body(i)))
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		})
	}
	wg.Wait()
	return time.Since(start)
}

func TestContinuousBatchingSaturates(t *testing.T) {
	t.Parallel()
	// Fixed 32-token outputs; throughput = tokens per second of wall time.
	body := func(i int) string { return fmt.Sprintf(`{"model":"lull-sim-1","prompt":"x%d","max_tokens":32}`, i) }
	tput := map[int]float64{}
	for _, n := range []int{1, 8, 16, 32} {
		_, url := newSim(t, Config{MaxNumSeqs: 8, TimeScale: 0.1})
		tput[n] = float64(n*32) / run(t, url, n, body).Seconds()
	}
	if tput[8] < 4*tput[1] {
		t.Fatalf("batching does not raise throughput: %v", tput)
	}
	if tput[32] > 1.5*tput[8] {
		t.Fatalf("throughput keeps growing past MaxNumSeqs=8: %v", tput)
	}
}

func TestPreemptionUnderKVPressure(t *testing.T) {
	t.Parallel()
	s, url := newSim(t, Config{KVBlocks: 12, BlockSize: 4, MaxNumSeqs: 16})
	run(t, url, 8, func(i int) string { return fmt.Sprintf(`{"model":"lull-sim-1","prompt":"p%d","max_tokens":20}`, i) })
	st := s.Stats()
	if st.Preemptions == 0 || st.Finished != 8 || st.Running != 0 || st.KVUsage != 0 {
		t.Fatalf("stats after KV pressure: %+v", st)
	}
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		fmt.Sprintf(`vllm:num_preemptions_total{model_name="lull-sim-1",engine="0"} %d`, st.Preemptions),
		`vllm:num_requests_running{model_name="lull-sim-1",engine="0"} 0`,
		`vllm:kv_cache_usage_perc{model_name="lull-sim-1",engine="0"} 0`,
		"# TYPE vllm:time_to_first_token_seconds histogram",
	} {
		if !strings.Contains(string(data), want) {
			t.Errorf("metrics lack %q:\n%s", want, data)
		}
	}
}

func TestPriorityScheduling(t *testing.T) {
	t.Parallel()
	s, url := newSim(t, Config{MaxNumSeqs: 2, PriorityScheduling: true, TimeScale: 0.05})
	var mu sync.Mutex
	var order []string
	var wg sync.WaitGroup
	send := func(name string, prio int) {
		wg.Go(func() {
			resp, err := http.Post(url+"/v1/completions", "application/json",
				strings.NewReader(fmt.Sprintf(`{"model":"lull-sim-1","prompt":"%s","max_tokens":30,"priority":%d}`, name, prio)))
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			mu.Lock()
			order = append(order, name)
			mu.Unlock()
		})
	}
	for i := range 6 {
		send(fmt.Sprintf("low%d", i), 10)
	}
	waitUntil(t, func() bool { st := s.Stats(); return st.Running == 2 && st.Waiting == 4 })
	send("urgent", 0)
	wg.Wait()
	// The urgent request preempts one of the two running low ones; only the
	// other, already running, may finish before it.
	if order[0] != "urgent" && order[1] != "urgent" {
		t.Fatalf("finish order %v: the priority-0 request should overtake every waiting one", order)
	}
	if p := s.Stats().Preemptions; p == 0 || p > 2 {
		t.Fatalf("%d preemptions: want the urgent request to preempt one low-priority request (and no storm)", p)
	}
}

func TestClientCancelFreesSlot(t *testing.T) {
	t.Parallel()
	s, url := newSim(t, Config{MaxNumSeqs: 1, TimeScale: 1})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/completions", strings.NewReader(`{"model":"lull-sim-1","prompt":"long","max_tokens":5000}`))
	go func() {
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	waitUntil(t, func() bool { return s.Stats().Running == 1 })
	cancel()
	waitUntil(t, func() bool { st := s.Stats(); return st.Running == 0 && st.KVUsage == 0 })
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(2 * time.Millisecond)
	}
}
