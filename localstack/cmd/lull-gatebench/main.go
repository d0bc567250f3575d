// Command lull-gatebench compares ways for a GPU worker to decide when to
// take async work (`make bench-gate`). One simulated vLLM engine (priority
// scheduling and prefix caching on) serves a bursty interactive trace sent
// straight to it and a deep async backlog in SQS consumed by one lull
// worker under each policy:
//
//	fixed           a fixed number of concurrent requests (SageMaker's
//	                MaxConcurrentInvocationsPerInstance style), no priority
//	fixed-priority  the same with async work at low priority (preempting
//	                engine only: there it is the simplest alternative)
//	queue-depth     budget = 1 − waiting/max-concurrency, no priority
//	lull            lull's headroom gate, async at low priority
//
// It measures two engine behaviours: "preempting", where a waiting request
// of better priority takes a running one's slot (vLLM V0, and V1 with the
// fix for vllm-project/vllm#40004, as the simulator asks for), and
// "v1", vLLM V1 today, where a waiting request never preempts a running
// one. The engine and the interactive trace run in a child process of their
// own (see engine.go). The trace (fixed seed) starts with the async
// consumer and both run for a warm-up longer than an async request lasts
// before measuring, so every policy is measured in its steady state on the
// same trace; the interactive-only baseline runs first and last.
//
// It prints, per policy and load: engine token throughput as a share of the
// measured saturation throughput, async tokens/s, interactive TTFT p50/p99
// and inflation over the baseline, the share of the idle capacity async work
// filled, messages hoarded (received, not yet sent to the engine),
// preemptions, the mean number of async requests at the engine, and the
// interactive tokens served. All durations are simulated time. A second
// part runs four workers on engines of different speeds on one queue.
package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lull-ai/lull/gpuworker/worker"
	"github.com/lull-ai/lull/localstack/devstack"
	"github.com/lull-ai/lull/localstack/vllmsim"
)

var (
	timeScale  = flag.Float64("time-scale", 1, "simulator speed (1 = real time)")
	runFor     = flag.Duration("duration", 40*time.Second, "wall time measured per scenario with interactive traffic (a quarter of it without: throughput settles fast, the interactive p99 does not)")
	warmup     = flag.Duration("warmup", 6*time.Second, "wall time each scenario runs before measuring (longer than an async request)")
	genTokens  = flag.Int("async-tokens", 512, "tokens per async generation")
	gateTarget = flag.Int("gate-target", 0, "lull gate: sequences to fill the engine to, reserve included (0: max-num-seqs)")
	burstGap   = flag.Duration("burst-gap", 300*time.Millisecond, "mean gap between interactive bursts (1-8 requests each)")
	maxSeqs    = flag.Int("max-num-seqs", 32, "engine's max running sequences")
	engines    = flag.String("engines", "preempting,v1", "engine behaviours to measure, in order: preempting (a better-priority waiting request takes a running one's slot: vLLM V0, V1 with the fix for vllm-project/vllm#40004) and v1 (vLLM V1 today)")
	reserveWin = flag.Duration("reserve-window", 0, "lull gate: LULL_GATE_RESERVE_WINDOW (0: the worker's default)")
	only       = flag.String("policies", "", "comma-separated policies to run (default all)")
	fixedConc  = flag.Int("fixed-concurrency", 0, "fixed policies: requests in flight (0: twice max-num-seqs)")
	fair       = flag.Bool("fairness", true, "run the four-worker check")
)

func simConfig(preempts bool) vllmsim.Config {
	return vllmsim.Config{MaxNumSeqs: *maxSeqs, KVBlocks: 2048, BlockSize: 16, PriorityScheduling: true, PreemptForWaiting: preempts, TimeScale: *timeScale}
}

func main() {
	flag.Parse()
	if *childEngine {
		if err := runEngineProcess(); err != nil {
			fmt.Fprintln(os.Stderr, "lull-gatebench engine process:", err)
			os.Exit(1)
		}
		return
	}
	if *gateTarget == 0 {
		*gateTarget = *maxSeqs
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "lull-gatebench:", err)
		os.Exit(1)
	}
}

// sim converts wall time to simulated time.
func sim(d time.Duration) time.Duration { return time.Duration(float64(d) / *timeScale) }

type policy struct {
	name     string
	gate     string // "", "fixed", "metrics", "queue-depth"
	priority int
}

var policies = []policy{
	{"fixed", "fixed", 0},
	{"queue-depth", "queue-depth", 0},
	{"lull", "metrics", 10},
}

// fixedPriority is the fixed consumer with async work sent at low priority:
// on an engine that preempts for priority it is the simplest alternative
// to a gate, so the preempting engine's table shows it too.
var fixedPriority = policy{"fixed-priority", "fixed", 10}

type outcome struct {
	policy, load    string
	engineTokS      float64 // simulated-time tokens per second
	asyncTokS       float64
	ttft50, ttft99  time.Duration
	hoarded         int64
	preemptions     int64
	asyncSeqs       float64 // mean async requests at the engine
	interactiveTokS float64
}

// engineMode is one engine behaviour the benchmark measures.
type engineMode struct {
	name     string
	preempts bool
	title    string
}

var engineModes = map[string]engineMode{
	"preempting": {"preempting", true, "engine preempts for priority (vLLM V0, or V1 with the fix for vllm-project/vllm#40004)"},
	"v1":         {"v1", false, "vLLM V1 today: a waiting request never preempts a running one (vllm-project/vllm#40004 open)"},
}

func run() error {
	quiet := slog.New(slog.DiscardHandler)
	var modes []engineMode
	for _, name := range strings.Split(*engines, ",") {
		m, ok := engineModes[name]
		if !ok {
			return fmt.Errorf("unknown engine %q (preempting, v1)", name)
		}
		modes = append(modes, m)
	}
	satur, err := saturation()
	if err != nil {
		return err
	}
	fmt.Printf("engine: max-num-seqs %d, priority scheduling, prefix caching; saturation %.0f tokens/s (simulated time); lull gate target %d\n",
		*maxSeqs, satur, *gateTarget)
	// The interactive trace alone never preempts (its requests share one
	// priority), so one baseline serves every engine behaviour. It is
	// measured at the start and again at the end; inflation is over their
	// mean, and their difference shows how noisy a p99 of this trace is.
	base, err := scenario(policy{name: "interactive only"}, modes[0], true, quiet)
	if err != nil {
		return err
	}
	var tables [][]outcome
	idle := satur - base.interactiveTokS
	for i, m := range modes {
		results := []outcome{base}
		loads := []bool{true}
		if i == 0 { // without interactive traffic the engines behave alike
			loads = []bool{false, true}
		}
		for _, load := range loads {
			ps := policies
			if m.preempts && load { // right after fixed
				ps = slices.Insert(slices.Clone(policies), 1, fixedPriority)
			}
			for _, p := range ps {
				if *only != "" && !slices.Contains(strings.Split(*only, ","), p.name) {
					continue
				}
				o, err := scenario(p, m, load, quiet)
				if err != nil {
					return err
				}
				results = append(results, o)
			}
		}
		tables = append(tables, results)
	}
	again, err := scenario(policy{name: "interactive only"}, modes[0], true, quiet)
	if err != nil {
		return err
	}
	fmt.Printf("interactive trace alone: TTFT p50 %s / %s, p99 %s / %s (first / last run); it leaves %.0f tokens/s idle (%.0f%% of saturation)\n",
		base.ttft50.Round(time.Millisecond), again.ttft50.Round(time.Millisecond), base.ttft99.Round(time.Millisecond),
		again.ttft99.Round(time.Millisecond), idle, 100*idle/satur)
	base.ttft50, base.ttft99 = (base.ttft50+again.ttft50)/2, (base.ttft99+again.ttft99)/2
	for i, m := range modes {
		tables[i][0] = base
		fmt.Printf("\n%s\n", m.title)
		printTable(tables[i], base, satur, idle)
	}
	if !*fair {
		return nil
	}
	return fairness(quiet)
}

func printTable(results []outcome, base outcome, satur, idle float64) {
	fmt.Printf("%-17s %-12s %9s %10s %10s %10s %10s %10s %8s %8s %11s %10s\n", "policy", "load", "engine%", "async t/s", "TTFT p50", "TTFT p99", "p99 infl.", "idle fill", "hoarded", "preempt", "async seqs", "int. tok/s")
	for _, o := range results {
		infl, fill := "-", "-"
		p50, p99 := "-", "-"
		async, itok := fmt.Sprintf("%.0f", o.asyncTokS), "-"
		if o.policy == base.policy {
			async = "-"
		}
		if o.load == "mixed" {
			itok = fmt.Sprintf("%.0f", o.interactiveTokS)
		}
		if o.load == "mixed" && o.policy != base.policy {
			fill = fmt.Sprintf("%.0f%%", 100*o.asyncTokS/idle)
			infl = "starved"
		}
		if o.ttft50 > 0 {
			p50, p99 = o.ttft50.Round(time.Millisecond).String(), o.ttft99.Round(time.Millisecond).String()
			if o.load == "mixed" && o.policy != base.policy {
				infl = fmt.Sprintf("%+.1f%%", 100*(float64(o.ttft99)/float64(base.ttft99)-1))
			}
		}
		fmt.Printf("%-17s %-12s %8.0f%% %10s %10s %10s %10s %10s %8d %8d %11.1f %10s\n", o.policy, o.load, 100*o.engineTokS/satur, async, p50, p99, infl, fill, o.hoarded, o.preemptions, o.asyncSeqs, itok)
	}
}

// saturation floods the engine and measures its token throughput.
func saturation() (float64, error) {
	s, err := vllmsim.New(simConfig(true))
	if err != nil {
		return 0, err
	}
	defer s.Close()
	srv := httptest.NewServer(s)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *runFor/8)
	defer cancel()
	var wg sync.WaitGroup
	for i := range 2 * *maxSeqs {
		wg.Go(func() {
			for n := 0; ctx.Err() == nil; n++ {
				complete(ctx, srv.URL, fmt.Sprintf("flood %d %d", i, n), *genTokens, 0)
			}
		})
	}
	time.Sleep(*runFor / 32)
	start, t0 := s.Stats(), time.Now()
	<-ctx.Done()
	end, el := s.Stats(), time.Since(t0)
	wg.Wait()
	return float64(end.GenerationTokens-start.GenerationTokens) / sim(el).Seconds(), nil
}

func complete(ctx context.Context, url, prompt string, maxTokens, priority int) {
	body := fmt.Sprintf(`{"model":"lull-sim-1","prompt":%q,"max_tokens":%d,"priority":%d,"ignore_eos":true}`, prompt, maxTokens, priority)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/completions", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
	}
}

// interactive replays a bursty trace (fixed seed) and returns TTFTs and tokens.
// Only requests sent at or after from count.
func interactive(ctx context.Context, url string, from time.Time) ([]time.Duration, *atomic.Int64) {
	rng := rand.New(rand.NewPCG(7, 7))
	var mu sync.Mutex
	var ttfts []time.Duration
	tokens := &atomic.Int64{}
	var wg sync.WaitGroup
	for n := 0; ctx.Err() == nil; n++ {
		gap := time.Duration(rng.ExpFloat64() * float64(*burstGap))
		select {
		case <-ctx.Done():
		case <-time.After(gap):
		}
		burst := 1 + rng.IntN(8)
		counted := !time.Now().Before(from)
		for b := range burst {
			maxTok := 24 + rng.IntN(48)
			wg.Go(func() {
				t, tok := streamTTFT(ctx, url, fmt.Sprintf("interactive %d.%d please answer", n, b), maxTok)
				if t > 0 && counted {
					mu.Lock()
					ttfts = append(ttfts, t)
					mu.Unlock()
					tokens.Add(int64(tok))
				}
			})
		}
	}
	wg.Wait()
	return ttfts, tokens
}

func streamTTFT(ctx context.Context, url, prompt string, maxTokens int) (time.Duration, int) {
	body := fmt.Sprintf(`{"model":"lull-sim-1","stream":true,"stream_options":{"include_usage":true},"max_tokens":%d,"messages":[{"role":"user","content":%q}]}`, maxTokens, prompt)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, 0
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	var ttft time.Duration
	tokens := 0
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok || line == "[DONE]" {
			continue
		}
		if ttft == 0 {
			ttft = time.Since(start)
		}
		var chunk struct {
			Usage *struct {
				CompletionTokens int `json:"completion_tokens"`
			} `json:"usage"`
		}
		if json.Unmarshal([]byte(line), &chunk) == nil && chunk.Usage != nil {
			tokens = chunk.Usage.CompletionTokens
		}
	}
	if tokens == 0 {
		return 0, 0 // cut off by the end of the run
	}
	return sim(ttft), tokens
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[min(len(d)-1, int(p*float64(len(d))))]
}

// backlog puts n async jobs on the stack's queue through the API.
func backlog(url string, n, tokens int) error {
	var wg sync.WaitGroup
	var failed atomic.Int64
	next := atomic.Int64{}
	for range 16 {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				body := fmt.Sprintf(`{"model":"lull-sim-1","max_tokens":%d,"ignore_eos":true,"messages":[{"role":"user","content":"async job %d"}]}`, tokens, i)
				req, _ := http.NewRequest(http.MethodPost, url+"/v1/slow/chat/completions", bytes.NewBufferString(body))
				req.Header.Set("Authorization", "Bearer sk-lull-dev")
				req.Header.Set("Content-Type", "application/json")
				resp, err := http.DefaultClient.Do(req)
				if err != nil || resp.StatusCode != http.StatusAccepted {
					failed.Add(1)
				}
				if resp != nil {
					resp.Body.Close()
				}
			}
		})
	}
	wg.Wait()
	if failed.Load() > 0 {
		return fmt.Errorf("%d backlog submissions failed", failed.Load())
	}
	return nil
}

func startWorker(ctx context.Context, st *devstack.Stack, p policy, engineURL string, target int, preempts bool) (*worker.Worker, error) {
	return st.StartWorker(ctx, func(c *worker.Config) {
		c.VLLMURL = engineURL
		c.AsyncPriority = p.priority
		c.DrainTimeout = time.Second
		c.GateTarget = target
		c.GateInterval = 50 * time.Millisecond
		c.GateReserveWindow = *reserveWin
		c.GatePreempts = preempts
		switch p.gate {
		case "fixed":
			c.Gate, c.Concurrency = "fixed", cmp.Or(*fixedConc, 2*target)
		case "metrics":
			c.Gate, c.Concurrency = "metrics", 4*target
		case "queue-depth":
			c.Gate, c.Concurrency = "queue-depth", 4*target
		}
	})
}

func scenario(p policy, m engineMode, withInteractive bool, log *slog.Logger) (o outcome, err error) {
	o = outcome{policy: p.name, load: "async only"}
	if withInteractive {
		o.load = "mixed"
	}
	began := time.Now()
	defer func() {
		if err == nil { // progress: the tables come at the end
			fmt.Fprintf(os.Stderr, "  %s engine, %s, %s: %.0f async tokens/s, interactive TTFT p99 %s (took %s)\n", m.name, p.name, o.load,
				o.asyncTokS, o.ttft99.Round(time.Millisecond), time.Since(began).Round(time.Second))
		}
	}()
	measure := *runFor
	if !withInteractive {
		measure /= 4
	}
	eng, err := startEngine(m.preempts, withInteractive, measure)
	if err != nil {
		return o, err
	}
	defer eng.close()
	st, err := devstack.Start(context.Background(), devstack.Config{APIAddr: "127.0.0.1:0", Prefix: "gb", Workers: -1,
		VLLMURL: eng.url, Logger: log, SweepEvery: time.Hour, Visibility: 60 * time.Second})
	if err != nil {
		return o, err
	}
	defer st.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var w *worker.Worker
	if p.gate != "" {
		// Enough jobs that the backlog never runs dry within the run.
		if err := backlog(st.URL, 400, *genTokens); err != nil {
			return o, err
		}
		target := *maxSeqs
		if p.gate == "metrics" {
			target = *gateTarget
		}
		if w, err = startWorker(ctx, st, p, eng.url, target, m.preempts); err != nil {
			return o, err
		}
	}
	// The interactive trace starts now, with the consumer; measuring starts
	// after the warm-up.
	measureFrom := time.Now().Add(*warmup)
	results, err := eng.begin()
	if err != nil {
		return o, err
	}
	time.Sleep(time.Until(measureFrom))
	samples := 0
	var res engineResult
wait:
	for {
		select {
		case r, ok := <-results:
			if !ok {
				return o, fmt.Errorf("engine process: %w", eng.err())
			}
			res = r
			break wait
		case <-time.After(5 * time.Millisecond):
		}
		if w != nil {
			o.hoarded = max(o.hoarded, w.Stats().Unstarted.Load())
			o.asyncSeqs += float64(w.Stats().AtEngine.Load())
			samples++
		}
	}
	if samples > 0 {
		o.asyncSeqs /= float64(samples)
	}
	o.engineTokS, o.interactiveTokS, o.preemptions = res.EngineTokS, res.InteractiveTokS, res.Preemptions
	o.asyncTokS = max(0, o.engineTokS-o.interactiveTokS)
	o.ttft50, o.ttft99 = percentile(res.TTFTs, 0.50), percentile(res.TTFTs, 0.99)
	return o, nil
}

// fairness runs four workers with engines of different speeds on one queue
// and counts samples in which a worker held messages it could not start
// while another worker's engine had room. A worker holds the messages it
// received that neither run on its engine nor fit in the engine's free
// slots: those queued inside the engine, and unsent ones beyond its free
// slots (unsent ones that fit are being started: the lease write and the
// HTTP call take a few milliseconds). A worker is idle when its engine's
// running, queued and on-the-way requests leave a slot free.
func fairness(log *slog.Logger) error {
	fmt.Printf("\nfour workers, engines 1x/2x/3x/4x slower, one queue (samples every 5ms)\n")
	fmt.Printf("%-12s %12s %22s %22s %30s\n", "policy", "completed", "max unsent (1 worker)", "max held (1 worker)", "samples held-while-other-idle")
	for _, p := range []policy{{"fixed", "fixed", 0}, {"lull", "metrics", 10}} {
		if err := fairnessRun(p, log); err != nil {
			return err
		}
	}
	return nil
}

func fairnessRun(p policy, log *slog.Logger) error {
	{
		st, err := devstack.Start(context.Background(), devstack.Config{APIAddr: "127.0.0.1:0", Prefix: "fair", Workers: -1,
			VLLMURL: "http://127.0.0.1:1", Logger: log, SweepEvery: time.Hour, Visibility: 60 * time.Second})
		if err != nil {
			return err
		}
		if err := backlog(st.URL, 300, 64); err != nil {
			return err
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var ws []*worker.Worker
		var sims []*vllmsim.Server
		var servers []*httptest.Server
		const target = 8
		for i := range 4 {
			cfg := simConfig(true)
			cfg.MaxNumSeqs, cfg.TimeScale = target, *timeScale*float64(i+1)
			s, err := vllmsim.New(cfg)
			if err != nil {
				return err
			}
			srv := httptest.NewServer(s)
			sims, servers = append(sims, s), append(servers, srv)
			w, err := startWorker(ctx, st, p, srv.URL, target, true)
			if err != nil {
				return err
			}
			ws = append(ws, w)
		}
		held, unsent, heldWhileIdle, samples := int64(0), int64(0), 0, 0
		deadline := time.Now().Add(*runFor / 8)
		for time.Now().Before(deadline) {
			var holders, idlers []int
			for i, w := range ws {
				st, u := sims[i].Stats(), w.Stats().Unstarted.Load()
				free := int64(target - st.Running)
				h := max(0, u+int64(st.Waiting)-free)
				unsent, held = max(unsent, u), max(held, h)
				if h > 0 {
					holders = append(holders, i)
				}
				if int64(st.Running+st.Waiting)+u < target {
					idlers = append(idlers, i)
				}
			}
			if len(holders) > 0 && len(idlers) > 0 { // never the same worker: a holder has no free slot
				heldWhileIdle++
			}
			samples++
			time.Sleep(5 * time.Millisecond)
		}
		var completed int64
		for _, w := range ws {
			completed += w.Stats().Completed.Load()
		}
		fmt.Printf("%-12s %12d %22d %22d %24d of %d\n", p.name, completed, unsent, held, heldWhileIdle, samples)
		cancel()
		st.Close()
		for i := range sims {
			servers[i].Close()
			sims[i].Close()
		}
	}
	return nil
}
