package integration

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lull-ai/lull/localstack/vllmsim"
)

// engine is a vLLM simulator behind a real HTTP server, with a counter of
// completion requests and test controls for latency and failures.
type engine struct {
	sim      *vllmsim.Server
	srv      *httptest.Server
	requests atomic.Int64 // completion requests that reached the simulator
	started  atomic.Int64 // completion requests received (before delay or failure)

	closed     chan struct{}
	mu         sync.Mutex
	delay      time.Duration
	failStatus int
	failLeft   int
}

func newEngine(t *testing.T, cfg vllmsim.Config) *engine {
	t.Helper()
	if cfg.TimeScale == 0 {
		cfg.TimeScale = 0.01
	}
	sim, err := vllmsim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e := &engine{sim: sim, closed: make(chan struct{})}
	e.srv = httptest.NewServer(e)
	t.Cleanup(func() { close(e.closed); e.srv.CloseClientConnections(); e.srv.Close(); sim.Close() })
	return e
}

func (e *engine) URL() string { return e.srv.URL }

// setDelay holds each completion request for d before the simulator runs it.
func (e *engine) setDelay(d time.Duration) { e.mu.Lock(); e.delay = d; e.mu.Unlock() }

// failNext answers the next n completion requests with status.
func (e *engine) failNext(status, n int) {
	e.mu.Lock()
	e.failStatus, e.failLeft = status, n
	e.mu.Unlock()
}

func (e *engine) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasSuffix(r.URL.Path, "completions") {
		e.sim.ServeHTTP(w, r)
		return
	}
	e.started.Add(1)
	e.mu.Lock()
	delay, fail := e.delay, 0
	if e.failLeft > 0 {
		e.failLeft--
		fail = e.failStatus
	}
	e.mu.Unlock()
	if fail != 0 {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(fail)
		fmt.Fprintf(w, `{"object":"error","message":"injected failure %d","type":"InjectedError","param":null,"code":%d}`, fail, fail)
		return
	}
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		case <-e.closed:
			return
		}
	}
	e.requests.Add(1)
	e.sim.ServeHTTP(w, r)
}

// vllmsimConfig is the simulator configuration the integration tests use:
// the served model at 100× real time.
func vllmsimConfig() vllmsim.Config {
	return vllmsim.Config{Model: simModel, TimeScale: 0.01}
}
