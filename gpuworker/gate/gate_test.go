package gate

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lull-ai/lull/localstack/vllmsim"
)

func TestParse(t *testing.T) {
	t.Parallel()
	at := time.Unix(100, 0)
	for _, tc := range []struct {
		name, text string
		want       Snapshot
		wantErr    bool
	}{
		{"Labels", `# HELP vllm:num_requests_running x
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="m",engine="0"} 3
vllm:num_requests_running{model_name="m",engine="1"} 2
vllm:num_requests_waiting{model_name="m",engine="0"} 1
vllm:kv_cache_usage_perc{model_name="m",engine="0"} 0.25
vllm:kv_cache_usage_perc{model_name="m",engine="1"} 0.5
vllm:num_preemptions_total{model_name="m"} 7
vllm:generation_tokens_total{model_name="m"} 99`,
			Snapshot{At: at, Running: 5, Waiting: 1, KVUsage: 0.5, HasKV: true, Preemptions: 7, HasPreemptions: true}, false},
		{"NoLabelsLegacyKV", "vllm:num_requests_running 4\nvllm:num_requests_waiting 0 1700000000\nvllm:gpu_cache_usage_perc 0.75\n",
			Snapshot{At: at, Running: 4, KVUsage: 0.75, HasKV: true}, false},
		{"OptionalAbsent", "vllm:num_requests_running 0\nvllm:num_requests_waiting 0\n", Snapshot{At: at}, false},
		{"LabelWithBraceAndSpace", `vllm:num_requests_running{model_name="a} b"} 2` + "\nvllm:num_requests_waiting{} 0\n", Snapshot{At: at, Running: 2}, false},
		{"MissingRequired", "vllm:kv_cache_usage_perc 0.1\n", Snapshot{}, true},
		{"Garbage", "not metrics at all\n", Snapshot{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := Parse(strings.NewReader(tc.text), at)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if !tc.wantErr && got != tc.want {
				t.Fatalf("Parse = %+v, want %+v", got, tc.want)
			}
		})
	}
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func TestDecide(t *testing.T) {
	t.Parallel()
	base := Snapshot{Running: 10, HasKV: true, KVUsage: 0.5, HasPreemptions: true, Preemptions: 3}
	for _, tc := range []struct {
		name    string
		prep    func(g *Gate, c *clock)
		pending int
		open    bool
		budget  int
		reason  string
	}{
		{"NoMetrics", func(g *Gate, c *clock) {}, 0, false, 0, "no engine metrics"},
		{"Headroom", func(g *Gate, c *clock) { g.Observe(snap(base, c), nil) }, 0, true, 22, "headroom"},
		{"PendingCounts", func(g *Gate, c *clock) { g.Observe(snap(base, c), nil) }, 20, true, 2, "headroom"},
		{"Full", func(g *Gate, c *clock) { s := base; s.Running = 32; g.Observe(snap(s, c), nil) }, 0, false, 0, "engine full"},
		{"Waiting", func(g *Gate, c *clock) { s := base; s.Waiting = 1; g.Observe(snap(s, c), nil) }, 0, false, 0, "queueing"},
		{"KVHigh", func(g *Gate, c *clock) { s := base; s.KVUsage = 0.9; g.Observe(snap(s, c), nil) }, 0, false, 0, "KV cache"},
		{"KVAbsentIsFine", func(g *Gate, c *clock) { s := base; s.HasKV, s.KVUsage = false, 0; g.Observe(snap(s, c), nil) }, 0, true, 22, "headroom"},
		{"Stale", func(g *Gate, c *clock) { g.Observe(snap(base, c), nil); c.add(2 * time.Second) }, 0, false, 0, "stale"},
		{"ScrapeErrorsGoStale", func(g *Gate, c *clock) {
			g.Observe(snap(base, c), nil)
			c.add(2 * time.Second)
			g.Observe(Snapshot{}, errors.New("connection refused"))
		}, 0, false, 0, "stale"},
		{"Preempted", func(g *Gate, c *clock) {
			g.Observe(snap(base, c), nil)
			c.add(100 * time.Millisecond)
			s := base
			s.Preemptions = 4
			g.Observe(snap(s, c), nil)
		}, 0, false, 0, "preemption"},
		{"PreemptionCooledDown", func(g *Gate, c *clock) {
			g.Observe(snap(base, c), nil)
			s := base
			s.Preemptions = 4
			g.Observe(snap(s, c), nil)
			for range 5 { // keep metrics fresh while the cooldown passes
				c.add(500 * time.Millisecond)
				g.Observe(snap(s, c), nil)
			}
		}, 0, true, 22, "headroom"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := &clock{t: time.Unix(1000, 0)}
			g := New("http://unused", Policy{TargetRunning: 32, Interval: 200 * time.Millisecond}, Counters{Pending: func() int { return tc.pending }})
			g.now = c.now
			tc.prep(g, c)
			d := g.Decide()
			if d.Open != tc.open || d.Budget != tc.budget || !strings.Contains(d.Reason, tc.reason) {
				t.Fatalf("Decide = %+v, want open=%v budget=%d reason~%q", d, tc.open, tc.budget, tc.reason)
			}
		})
	}
}

func snap(s Snapshot, c *clock) Snapshot { s.At = c.now(); return s }

// TestReserve: knowing its own requests at the engine, the gate keeps free
// as many sequences as other traffic recently ran at once.
func TestReserve(t *testing.T) {
	t.Parallel()
	// mixed is a scrape with ours of the worker's requests among running.
	mixed := func(running, ours float64) Snapshot { return Snapshot{Running: running, Ours: ours} }
	// preempting are scrapes across which the engine preempted 4 times.
	preempting := []Snapshot{{Running: 20, Ours: 12, HasPreemptions: true, Preemptions: 1}, {Running: 20, Ours: 12, HasPreemptions: true, Preemptions: 5}}
	for _, tc := range []struct {
		name    string
		policy  Policy
		scrapes []Snapshot // one per 100ms
		after   time.Duration
		ours    int // at the engine now
		pending int
		open    bool
		budget  int
		reserve int
		reason  string
	}{
		{"AllOurs", Policy{}, []Snapshot{mixed(20, 20)}, 0, 20, 0, true, 12, 0, "headroom"},
		{"OtherTrafficKeptFree", Policy{}, []Snapshot{mixed(20, 12)}, 0, 12, 0, true, 12, 8, "headroom"},
		{"Waiting", Policy{}, []Snapshot{{Running: 12, Ours: 12, Waiting: 3}}, 0, 12, 0, false, 0, 0, "queueing"},
		{"WaitingCountsAsOther", Policy{}, []Snapshot{{Running: 12, Ours: 12, Waiting: 3}, mixed(12, 12)}, 0, 12, 0, true, 17, 3, "headroom"},
		{"PeakRemembered", Policy{}, []Snapshot{mixed(30, 10), mixed(12, 10)}, time.Second, 10, 0, true, 2, 20, "headroom"},
		{"PeakForgotten", Policy{ReserveWindow: 2 * time.Second}, append([]Snapshot{mixed(30, 10)}, repeat(mixed(12, 10), 30)...), 0, 10, 0, true, 20, 2, "headroom"},
		{"MinimumReserve", Policy{Reserve: 6}, []Snapshot{mixed(10, 10)}, 0, 10, 0, true, 16, 6, "headroom"},
		{"PendingCounts", Policy{}, []Snapshot{mixed(14, 10)}, 0, 10, 5, true, 13, 4, "headroom"},
		{"FullWithReserve", Policy{}, []Snapshot{mixed(32, 16)}, 0, 16, 0, false, 0, 16, "kept for other traffic"},
		{"NewSendsCountAtOnce", Policy{}, []Snapshot{mixed(10, 10)}, 0, 25, 0, true, 7, 0, "headroom"},
		// An engine that preempts for priority takes slots back, so the gate
		// keeps free only what other traffic runs now, and its preemptions
		// do not close the gate; queueing still does.
		{"PreemptingEngineForgetsPeak", Policy{EnginePreempts: true}, []Snapshot{mixed(30, 10), mixed(12, 10)}, time.Second, 10, 0, true, 20, 2, "headroom"},
		{"PreemptingEngineMinimumReserve", Policy{EnginePreempts: true, Reserve: 4}, []Snapshot{mixed(30, 10), mixed(12, 10)}, 0, 10, 0, true, 18, 4, "headroom"},
		{"PreemptionsClose", Policy{}, preempting, 0, 12, 0, false, 0, 0, "recent preemption"},
		{"PreemptingEngineIgnoresPreemptions", Policy{EnginePreempts: true}, preempting, 0, 12, 0, true, 12, 8, "headroom"},
		{"PreemptingEngineQueueing", Policy{EnginePreempts: true}, []Snapshot{{Running: 32, Ours: 28, Waiting: 4}}, 0, 28, 0, false, 0, 0, "queueing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := &clock{t: time.Unix(1000, 0)}
			p := tc.policy
			p.TargetRunning, p.Interval, p.MaxAge = 32, 100*time.Millisecond, 10*time.Second
			g := New("http://unused", p, Counters{Pending: func() int { return tc.pending }, AtEngine: func() int { return tc.ours }})
			g.now = c.now
			for _, s := range tc.scrapes {
				g.Observe(snap(s, c), nil)
				c.add(100 * time.Millisecond)
			}
			c.add(tc.after)
			g.Observe(snap(tc.scrapes[len(tc.scrapes)-1], c), nil)
			d := g.Decide()
			if d.Open != tc.open || d.Budget != tc.budget || d.Reserve != tc.reserve || !strings.Contains(d.Reason, tc.reason) {
				t.Fatalf("Decide = %+v, want open=%v budget=%d reserve=%d reason~%q", d, tc.open, tc.budget, tc.reserve, tc.reason)
			}
		})
	}
}

func repeat(s Snapshot, n int) []Snapshot {
	out := make([]Snapshot, n)
	for i := range out {
		out[i] = s
	}
	return out
}

// Against the simulator: open when idle, closed while requests queue, open again after.
func TestGateOnSimulator(t *testing.T) {
	t.Parallel()
	sim, err := vllmsim.New(vllmsim.Config{MaxNumSeqs: 4, TimeScale: 0.2})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sim)
	defer func() { srv.CloseClientConnections(); srv.Close(); sim.Close() }()
	g := New(srv.URL+"/metrics", Policy{TargetRunning: 4, Interval: 20 * time.Millisecond}, Counters{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go g.Run(ctx)
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
	defer wcancel()
	if n, err := g.Wait(wctx); err != nil || n != 4 {
		t.Fatalf("idle engine: budget %d, %v; want 4", n, err)
	}
	var wg sync.WaitGroup
	for i := range 12 {
		wg.Go(func() {
			resp, err := http.Post(srv.URL+"/v1/completions", "application/json",
				strings.NewReader(`{"model":"lull-sim-1","prompt":"p`+string(rune('a'+i))+`","max_tokens":60}`))
			if err == nil {
				resp.Body.Close()
			}
		})
	}
	deadline := time.Now().Add(5 * time.Second)
	for g.Decide().Open {
		if time.Now().After(deadline) {
			t.Fatal("gate stayed open while 12 requests hit a 4-sequence engine")
		}
		time.Sleep(5 * time.Millisecond)
	}
	wg.Wait()
	deadline = time.Now().Add(5 * time.Second)
	for g.Decide().Budget != 4 { // the next scrapes see the engine drained
		if time.Now().After(deadline) {
			t.Fatalf("after the burst: %+v, want budget 4", g.Decide())
		}
		time.Sleep(5 * time.Millisecond)
	}
	srv.CloseClientConnections()
	srv.Close()
	deadline = time.Now().Add(5 * time.Second)
	for !strings.Contains(g.Decide().Reason, "stale") {
		if time.Now().After(deadline) {
			t.Fatalf("gate did not close on a dead engine: %+v", g.Decide())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A request the worker sends while a scrape is under way shows in the
// engine's answer; it must not count as other traffic.
func TestSendDuringScrapeIsOurs(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	atEngine := 5
	var g *Gate
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		atEngine += 3 // three sends land before the engine answers
		n := atEngine
		mu.Unlock()
		for range 3 {
			g.Sent()
		}
		fmt.Fprintf(w, "vllm:num_requests_running %d\nvllm:num_requests_waiting 0\n", n)
	}))
	defer srv.Close()
	g = New(srv.URL, Policy{TargetRunning: 32}, Counters{AtEngine: func() int { mu.Lock(); defer mu.Unlock(); return atEngine }})
	g.Observe(g.scrape(t.Context()))
	if d := g.Decide(); d.Reserve != 0 || d.Budget != 24 {
		t.Fatalf("Decide = %+v, want reserve 0 and budget 24", d)
	}
}
