package vllmsim

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// family is one parsed metric family of the Prometheus text format.
type family struct {
	typ     string
	samples map[string]float64 // labels (without model_name/engine) → value
}

// parseMetrics parses Prometheus text exposition strictly: every sample
// belongs to a family announced by # HELP and # TYPE and carries the
// model_name and engine labels.
func parseMetrics(t *testing.T, text, modelName string) map[string]*family {
	t.Helper()
	fams := map[string]*family{}
	helps := map[string]bool{}
	prefix := fmt.Sprintf(`model_name=%q,engine="0"`, modelName)
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "# HELP "); ok {
			name, help, _ := strings.Cut(rest, " ")
			helps[name] = help != ""
			continue
		}
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			name, typ, _ := strings.Cut(rest, " ")
			if !helps[name] || fams[name] != nil {
				t.Fatalf("TYPE of %s without HELP, or repeated", name)
			}
			fams[name] = &family{typ: typ, samples: map[string]float64{}}
			continue
		}
		open, closing := strings.IndexByte(line, '{'), strings.LastIndexByte(line, '}')
		if open < 0 || closing < open {
			t.Fatalf("sample without labels: %q", line)
		}
		name, labels := line[:open], line[open+1:closing]
		v, err := strconv.ParseFloat(strings.TrimSpace(line[closing+1:]), 64)
		if err != nil {
			t.Fatalf("sample %q: %v", line, err)
		}
		rest, ok := strings.CutPrefix(labels, prefix)
		if !ok {
			t.Fatalf("sample %q lacks %s", line, prefix)
		}
		base := name
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(name, suffix); ok && fams[b] != nil && fams[b].typ == "histogram" {
				base = b
			}
		}
		f := fams[base]
		if f == nil {
			t.Fatalf("sample %q before its TYPE", line)
		}
		f.samples[strings.TrimSpace(strings.TrimPrefix(name, base)+" "+strings.TrimPrefix(rest, ","))] = v
	}
	return fams
}

func scrape(t *testing.T, url string, modelName string) map[string]*family {
	t.Helper()
	code, data := get(t, url+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	return parseMetrics(t, string(data), modelName)
}

func TestMetricsFamilies(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		cfg        Config
		kv, legacy bool
		prefix     bool
	}{
		{"Default", Config{}, true, false, true},
		{"Both", Config{LegacyCacheMetric: true}, true, true, true},
		{"LegacyOnly", Config{LegacyCacheMetricOnly: true}, false, true, true},
		{"NoPrefixCaching", Config{NoPrefixCaching: true}, true, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, url := newSim(t, tc.cfg)
			if code, data := post(t.Context(), t, url+"/v1/completions", `{"model":"lull-sim-1","prompt":"a b c","max_tokens":5}`); code != 200 {
				t.Fatalf("%d %s", code, data)
			}
			m := scrape(t, url, model)
			want := map[string]string{
				"vllm:num_requests_running": "gauge", "vllm:num_requests_waiting": "gauge",
				"vllm:num_preemptions_total": "counter", "vllm:prompt_tokens_total": "counter",
				"vllm:generation_tokens_total": "counter", "vllm:request_success_total": "counter",
				"vllm:time_to_first_token_seconds": "histogram", "vllm:e2e_request_latency_seconds": "histogram",
				"vllm:iteration_tokens_total": "histogram",
			}
			if tc.kv {
				want["vllm:kv_cache_usage_perc"] = "gauge"
			}
			if tc.legacy {
				want["vllm:gpu_cache_usage_perc"] = "gauge"
			}
			if tc.prefix {
				want["vllm:prefix_cache_queries_total"] = "counter"
				want["vllm:prefix_cache_hits_total"] = "counter"
			}
			if len(m) != len(want) {
				t.Errorf("%d families, want %d", len(m), len(want))
			}
			for name, typ := range want {
				if m[name] == nil || m[name].typ != typ {
					t.Fatalf("family %s missing or not a %s", name, typ)
				}
			}
			counts := map[string]float64{"vllm:prompt_tokens_total": 3, "vllm:generation_tokens_total": 5}
			if tc.prefix {
				counts["vllm:prefix_cache_queries_total"], counts["vllm:prefix_cache_hits_total"] = 3, 0
			}
			for name, v := range counts {
				if got := m[name].samples[""]; got != v {
					t.Errorf("%s = %v, want %v", name, got, v)
				}
			}
			if got := m["vllm:request_success_total"].samples; got[`finished_reason="length"`] != 1 || got[`finished_reason="stop"`] != 0 {
				t.Errorf("request_success_total %v", got)
			}
			// Five steps: the prefill of 3 prompt tokens, then 4 decodes of 1.
			if it := m["vllm:iteration_tokens_total"].samples; it["_count"] != 5 || it["_sum"] != 7 || it[`_bucket le="1"`] != 4 {
				t.Errorf("iteration_tokens_total: %v", it)
			}
			for _, h := range []string{"vllm:time_to_first_token_seconds", "vllm:e2e_request_latency_seconds"} {
				s := m[h].samples
				// One step at least: 8ms + 250µs + 3×50µs of simulated time.
				if s["_count"] != 1 || s[`_bucket le="+Inf"`] != 1 || s["_sum"] < 0.0084 {
					t.Errorf("%s: %v", h, s)
				}
			}
		})
	}
}

// load sends n concurrent completion requests of exactly maxTokens tokens
// and returns once all are answered.
func load(ctx context.Context, t *testing.T, url string, n, maxTokens int, extra string) {
	t.Helper()
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			body := fmt.Sprintf(`{"model":"lull-sim-1","prompt":"req %d","max_tokens":%d,"ignore_eos":true%s}`, i, maxTokens, extra)
			code, data := post(ctx, t, url+"/v1/completions", body)
			if ctx.Err() != nil {
				return
			}
			var r response
			want := ExpectIgnoreEOS(model, fmt.Sprintf("req %d", i), maxTokens).Text
			if code != 200 || json.Unmarshal(data, &r) != nil || len(r.texts()) != 1 || r.texts()[0] != want {
				t.Errorf("request %d: %d %s", i, code, data)
			}
		})
	}
	wg.Wait()
}

func TestMetricsMoveUnderLoad(t *testing.T) {
	t.Parallel()
	_, url := newSim(t, Config{MaxNumSeqs: 2, TimeScale: 0.05})
	gauge := func(m map[string]*family, name string) float64 { return m[name].samples[""] }
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); load(ctx, t, url, 6, 2000, "") }()
	waitFor(t, "running and waiting to rise", func() bool {
		m := scrape(t, url, model)
		return gauge(m, "vllm:num_requests_running") == 2 && gauge(m, "vllm:num_requests_waiting") == 4 &&
			gauge(m, "vllm:kv_cache_usage_perc") > 0
	})
	cancel()
	<-done
	waitFor(t, "the engine to drain", func() bool {
		m := scrape(t, url, model)
		return gauge(m, "vllm:num_requests_running") == 0 && gauge(m, "vllm:num_requests_waiting") == 0 &&
			gauge(m, "vllm:kv_cache_usage_perc") == 0 && m["vllm:request_success_total"].samples[`finished_reason="abort"`] == 6
	})
}

func TestPreemptionUnderKVPressure(t *testing.T) {
	t.Parallel()
	// 16 blocks of 4 tokens; each request grows to 11 blocks.
	s, url := newSim(t, Config{KVBlocks: 16, BlockSize: 4, MaxModelLen: 64, MaxNumSeqs: 16})
	load(t.Context(), t, url, 8, 40, "")
	st := s.Stats()
	if st.Preemptions == 0 || st.Completed != 8 || st.Running != 0 || st.Waiting != 0 || st.KVUsage != 0 ||
		st.GenerationTokens != 8*40 || st.PromptTokens != 8*2 {
		t.Fatalf("stats after KV pressure: %+v", st)
	}
	m := scrape(t, url, model)
	if got := m["vllm:num_preemptions_total"].samples[""]; got != float64(st.Preemptions) {
		t.Fatalf("num_preemptions_total %v, Stats %d", got, st.Preemptions)
	}
}

func TestThroughputSaturates(t *testing.T) {
	t.Parallel()
	const maxSeqs = 8
	levels := []int{1, 4, 8, 32}
	tput := make([]float64, len(levels))
	t.Run("Levels", func(t *testing.T) {
		for i, n := range levels {
			t.Run(strconv.Itoa(n), func(t *testing.T) {
				t.Parallel()
				// A negligible KV-read cost keeps the expected step exact.
				s, url := newSim(t, Config{MaxNumSeqs: maxSeqs, TimeScale: 0.1, DecodePerSeq: 250 * time.Microsecond, DecodePerContextToken: time.Nanosecond})
				ctx, cancel := context.WithCancel(t.Context())
				done := make(chan struct{})
				go func() { defer close(done); load(ctx, t, url, n, 1000, "") }()
				defer func() { cancel(); <-done }()
				// Measure in steady state (everyone admitted, nobody done)
				// and in simulated time, so neither staggered arrivals nor
				// CPU contention in the test skew it.
				k := min(n, maxSeqs)
				waitFor(t, "all admitted", func() bool { st := s.Stats(); return st.Running == k && st.Waiting == n-k })
				a := s.Stats()
				waitFor(t, "100 steps", func() bool { return s.Stats().GenerationTokens-a.GenerationTokens >= int64(100*k) })
				b := s.Stats()
				tput[i] = float64(b.GenerationTokens-a.GenerationTokens) / (b.BusyTime - a.BusyTime).Seconds()
			})
		}
	})
	t.Logf("simulated tokens/s at concurrency %v: %.0f", levels, tput)
	for i, n := range levels {
		k := float64(min(n, maxSeqs))
		want := k / (8e-3 + k*250e-6) // k tokens per step of 8ms + k×250µs (+ ≤ 1µs per sequence of KV reads)
		if math.Abs(tput[i]-want) > 0.03*want {
			t.Errorf("concurrency %d: %.0f tokens/s, want %.0f", n, tput[i], want)
		}
	}
	if !(tput[0] < tput[1] && tput[1] < tput[2]) || math.Abs(tput[3]-tput[2]) > 0.03*tput[2] {
		t.Errorf("throughput %.0f: want growth up to MaxNumSeqs=%d, then flat", tput, maxSeqs)
	}
}

func TestTimeScalePacing(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		timeScale float64
		tokens    int
	}{
		{"Steps10x", 0.1, 100},            // 825µs steps: each below the sleep threshold
		{"Steps1000xFaster", 0.001, 2000}, // 8µs steps: accumulated into ~1ms sleeps
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, url := newSim(t, Config{TimeScale: tc.timeScale})
			start := time.Now()
			load(t.Context(), t, url, 1, tc.tokens, "")
			wall := time.Since(start)
			want := time.Duration(float64(s.Stats().BusyTime) * tc.timeScale)
			t.Logf("%d tokens: wall %v, simulated %v × %v = %v", tc.tokens, wall, s.Stats().BusyTime, tc.timeScale, want)
			if wall < want*9/10 || wall > 3*want+150*time.Millisecond {
				t.Fatalf("wall time %v, want about %v", wall, want)
			}
		})
	}
}

func TestPriorityOvertakes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		preempt     bool
		before      int   // low-priority requests that finish before the urgent one
		preemptions int64 // of running low-priority requests
	}{
		// V1: the urgent request jumps the queue but waits for a free slot:
		// the first running one (100 tokens) finishes, then the urgent one
		// (10 tokens) before the second (200).
		{"WaitsForSlot", false, 1, 0},
		// V0 / PreemptForWaiting: it takes a running one's slot at once.
		{"PreemptsForWaiting", true, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, url := newSim(t, Config{MaxNumSeqs: 2, PriorityScheduling: true, PreemptForWaiting: tc.preempt, TimeScale: 0.05})
			finished := make(chan string, 7)
			send := func(name string, priority, tokens int) {
				go func() {
					body := fmt.Sprintf(`{"model":"lull-sim-1","prompt":%q,"max_tokens":%d,"ignore_eos":true,"priority":%d}`, name, tokens, priority)
					if code, data := post(t.Context(), t, url+"/v1/completions", body); code != http.StatusOK {
						t.Errorf("%s: %d %s", name, code, data)
					}
					finished <- name
				}()
			}
			for i := range 6 {
				send(fmt.Sprintf("low%d", i), 10, 100*(i+1))
			}
			waitFor(t, "a full batch and a queue", func() bool { st := s.Stats(); return st.Running == 2 && st.Waiting == 4 })
			send("urgent", 0, 10)
			before := 0
			for name := <-finished; name != "urgent"; name = <-finished {
				before++
			}
			for range 6 - before {
				<-finished
			}
			if st := s.Stats(); before != tc.before || st.Preemptions != tc.preemptions || st.Completed != 7 {
				t.Fatalf("%d low-priority requests finished first, stats %+v: want %d first and %d preemptions",
					before, st, tc.before, tc.preemptions)
			}
		})
	}
}

// submitJob puts a request of one sequence straight into the engine.
func submitJob(t *testing.T, e *engine, prompt, tokens, priority int) *job {
	t.Helper()
	j := &job{arrived: time.Now(), done: make(chan struct{}),
		seqs: []*seq{{prompt: prompt, target: tokens, finish: "length", priority: priority}}}
	if err := e.submit(j); err != nil {
		t.Fatal(err)
	}
	return j
}

// TestSchedulingOrder checks the engine's own completion order, free of
// client-side timing: with a full batch (MaxNumSeqs 2) and two requests
// queued, a late short request of better priority jumps the queue under
// priority scheduling (taking the first free slot), and with
// PreemptForWaiting takes a running request's slot at once.
func TestSchedulingOrder(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		priority    bool
		preempt     bool
		latePrio    int
		wantOrdinal uint64 // of the late request
		preemptions int64
	}{
		{"FCFS", false, false, 0, 5, 0},
		{"PrioritySame", true, false, 10, 5, 0},
		{"PriorityBetter", true, false, 0, 3, 0},
		{"PriorityBetterPreempting", true, true, 0, 1, 1},
		{"PrioritySamePreempting", true, true, 10, 5, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEngine(Config{MaxNumSeqs: 2, PriorityScheduling: tc.priority, PreemptForWaiting: tc.preempt, TimeScale: 0.1}.withDefaults())
			defer e.close()
			var early []*job
			for range 4 {
				early = append(early, submitJob(t, e, 5, 100, 10))
			}
			waitFor(t, "a full batch and a queue", func() bool { st := e.stats(); return st.Running == 2 && st.Waiting == 2 })
			late := submitJob(t, e, 5, 10, tc.latePrio)
			for _, j := range append(early, late) {
				<-j.done
			}
			e.mu.Lock()
			defer e.mu.Unlock()
			if late.ordinal != tc.wantOrdinal || e.preemptions != tc.preemptions {
				t.Fatalf("late request finished #%d with %d preemptions, want #%d with %d",
					late.ordinal, e.preemptions, tc.wantOrdinal, tc.preemptions)
			}
		})
	}
}

func TestConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, field string
		cfg         Config
	}{
		{"Defaults", "", Config{}},
		{"NegativeSeqs", "MaxNumSeqs", Config{MaxNumSeqs: -1}},
		{"NegativeBlocks", "KVBlocks", Config{KVBlocks: -3}},
		{"NegativeStep", "DecodePerSeq", Config{DecodePerSeq: -time.Millisecond}},
		{"NegativeTimeScale", "TimeScale", Config{TimeScale: -1}},
		{"ModelLenOverKV", "MaxModelLen", Config{KVBlocks: 10, BlockSize: 16, MaxModelLen: 161}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, err := New(tc.cfg)
			if tc.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				c := s.Config()
				if c.Model != "lull-sim-1" || c.MaxModelLen != 8192 || c.MaxNumSeqs != 64 || c.KVBlocks != 2048 || c.BlockSize != 16 ||
					c.DecodeStepBase != 8*time.Millisecond || c.DecodePerSeq != 25*time.Microsecond || c.DecodePerContextToken != 65*time.Nanosecond ||
					c.PrefillPerToken != 50*time.Microsecond || c.TimeScale != 1 {
					t.Fatalf("defaults %+v", c)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("New(%+v) = %v, want an error naming %s", tc.cfg, err, tc.field)
			}
		})
	}
}

// BenchmarkStep measures the engine's CPU cost of one step (schedule and
// emit, no sleeping) with a full batch: the floor under TimeScale.
func BenchmarkStep(b *testing.B) {
	for _, n := range []int{64, 256} {
		b.Run(fmt.Sprintf("seqs=%d", n), func(b *testing.B) {
			e := newEngineState(Config{MaxNumSeqs: n, KVBlocks: 1 << 20, MaxModelLen: 1 << 20}.withDefaults())
			for range n {
				j := &job{arrived: time.Now(), done: make(chan struct{}), notify: make(chan struct{}, 1),
					seqs: []*seq{{prompt: 100, target: 1 << 30, finish: "length"}}}
				if err := e.submit(j); err != nil {
					b.Fatal(err)
				}
			}
			now := time.Now()
			for b.Loop() {
				e.mu.Lock()
				e.scheduleLocked()
				e.emitLocked(now)
				e.mu.Unlock()
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}

// stepEngine runs one scheduling step of an engine whose loop is not
// running and returns the step's simulated duration.
func stepEngine(e *engine) time.Duration {
	e.mu.Lock()
	defer e.mu.Unlock()
	d, _ := e.scheduleLocked()
	e.emitLocked(time.Now())
	return d
}

// TestPrefixCacheOnReadmission preempts a long low-priority sequence for an
// urgent one and checks what its readmission recomputes: with the prefix
// cache only the tokens past its last full block, without it everything;
// and when the urgent sequence needs the freed blocks, only what was not
// evicted is reused.
func TestPrefixCacheOnReadmission(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name          string
		noCache       bool
		kvBlocks      int
		urgentPrompt  int
		wantHits      int64 // tokens found in the cache at readmission
		wantRecompute int   // tokens prefilled at readmission
	}{
		// 10 + 40 tokens computed: three full blocks of 16 stay cached.
		{"Cached", false, 64, 5, 48, 2},
		{"NoPrefixCaching", true, 64, 5, 0, 50},
		// 8 blocks: the urgent prompt (100 tokens, 7 blocks) leaves one
		// free block, so two of the three cached blocks are evicted.
		{"Evicted", false, 8, 100, 16, 34},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := Config{MaxNumSeqs: 1, KVBlocks: tc.kvBlocks, BlockSize: 16, PriorityScheduling: true,
				PreemptForWaiting: true, NoPrefixCaching: tc.noCache}.withDefaults()
			e := newEngineState(cfg)
			low := submitJob(t, e, 10, 100, 10)
			for range 40 {
				stepEngine(e)
			}
			urgent := submitJob(t, e, tc.urgentPrompt, 3, 0)
			for range 3 {
				stepEngine(e)
			}
			select {
			case <-urgent.done:
			default:
				t.Fatal("the urgent request did not finish in 3 steps")
			}
			if st := e.stats(); st.Preemptions != 1 || st.Waiting != 1 {
				t.Fatalf("after the urgent request: %+v", st)
			}
			d := stepEngine(e) // readmits the low-priority sequence
			want := cfg.DecodeStepBase + cfg.DecodePerSeq + 50*cfg.DecodePerContextToken + time.Duration(tc.wantRecompute)*cfg.PrefillPerToken
			if st := e.stats(); d != want || st.PrefixCacheHits != tc.wantHits || st.Running != 1 {
				t.Fatalf("readmission step %v with %d cache hits (%+v), want %v and %d", d, st.PrefixCacheHits, st, want, tc.wantHits)
			}
			for range 59 {
				stepEngine(e)
			}
			select {
			case <-low.done:
			default:
				t.Fatal("the low-priority request did not finish")
			}
			if st := e.stats(); st.GenerationTokens != 103 || st.KVUsage != 0 {
				t.Fatalf("at the end: %+v", st)
			}
			if e.cachedBlocks != 0 || len(e.evictable) != 0 {
				t.Fatalf("%d blocks of %d sequences still cached", e.cachedBlocks, len(e.evictable))
			}
		})
	}
}

// TestUrgentBurstAdmittedInOneStep fills the batch with low-priority
// sequences and submits a burst of urgent ones: with PreemptForWaiting all
// of them take a slot in the next step (one victim each), without it none
// does.
func TestUrgentBurstAdmittedInOneStep(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		preempt     bool
		wantRunning int // urgent sequences running after one step
	}{{"PreemptForWaiting", true, 3}, {"V1", false, 0}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEngineState(Config{MaxNumSeqs: 4, PriorityScheduling: true, PreemptForWaiting: tc.preempt}.withDefaults())
			for range 6 {
				submitJob(t, e, 5, 500, 10)
			}
			for range 10 {
				stepEngine(e)
			}
			var urgent []*job
			for range 3 {
				urgent = append(urgent, submitJob(t, e, 12, 30, 0))
			}
			stepEngine(e)
			got := 0
			for _, j := range urgent {
				if j.seqs[0].generated.Load() == 1 {
					got++
				}
			}
			st := e.stats()
			if got != tc.wantRunning || st.Running != 4 || st.Preemptions != int64(tc.wantRunning) {
				t.Fatalf("%d urgent sequences got their first token in one step (%+v), want %d", got, st, tc.wantRunning)
			}
		})
	}
}
