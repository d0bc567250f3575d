package integration

import (
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lull-ai/lull/localstack/devstack"
	"github.com/lull-ai/lull/localstack/vllmsim"
)

// With the metrics gate, the worker takes work only as the engine has room:
// everything completes, and the worker never holds more received-but-unsent
// messages than the engine's free sequences.
func TestMetricsGate(t *testing.T) {
	t.Parallel()
	eng := newEngine(t, vllmsim.Config{Model: simModel, TimeScale: 0.5, MaxNumSeqs: 64})
	st := startStack(t, devstack.Config{VLLMURL: eng.URL(), Gate: "metrics", WorkerConcurrency: 256})
	w := st.Workers()[0]
	var maxRunning int
	var maxUnstarted int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			maxRunning = max(maxRunning, eng.sim.Stats().Running+eng.sim.Stats().Waiting)
			maxUnstarted = max(maxUnstarted, w.Stats().Unstarted.Load())
		}
	}()
	ids := make([]string, 150)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Go(func() {
			var acc struct{ ID string }
			postJSON(t, st.URL+"/v1/slow/chat/completions", "sk-lull-dev", chatBody(simModel, fmt.Sprintf("gated %d", i), 60), &acc)
			ids[i] = acc.ID
		})
	}
	wg.Wait()
	waitFor(t, time.Minute, "all completed", func() bool { return w.Stats().Completed.Load() == 150 })
	close(stop)
	<-sampled
	for id, g := range waitTerminal(t, st, "sk-lull-dev", ids, 30*time.Second) {
		if g.Status != "completed" {
			t.Fatalf("%s: %s", id, g.Status)
		}
	}
	// Concurrency 256 would flood a 64-sequence engine; the gate keeps the
	// engine's queue at its target (a scrape interval of slack allowed).
	if maxRunning > 64+10 || maxUnstarted > 64 {
		t.Fatalf("engine saw up to %d running+waiting, worker hoarded up to %d: the gate let too much through", maxRunning, maxUnstarted)
	}
	rec := httptest.NewRecorder()
	w.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{"lull_worker_gate_open", "lull_worker_gate_budget", "lull_worker_engine_scrape_age_seconds", "lull_worker_unstarted", "lull_worker_gate_reserve", "lull_worker_at_engine"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("worker metrics lack %s", want)
		}
	}
}
