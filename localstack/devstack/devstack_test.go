package devstack_test

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lull-ai/lull/gpuworker/worker"
	"github.com/lull-ai/lull/localstack/devstack"
	"github.com/lull-ai/lull/shared/envconfig"
	"github.com/lull-ai/lull/shared/lull"
)

func start(t *testing.T, cfg devstack.Config) *devstack.Stack {
	t.Helper()
	cfg.APIAddr = "127.0.0.1:0"
	cfg.Prefix = "ds-" + strings.ToLower(lull.NewID("s")[2:10])
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	st, err := devstack.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// closeWithin closes st and fails the test when that takes longer than d.
func closeWithin(t *testing.T, st *devstack.Stack, d time.Duration) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- st.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(d):
		t.Fatalf("Close did not return within %s", d)
	}
}

// TestCloseStopsWorkersStartedOnLongerContexts: a worker started on a
// context that outlives the stack stops when the stack closes, so Close
// returns.
func TestCloseStopsWorkersStartedOnLongerContexts(t *testing.T) {
	t.Parallel()
	st := start(t, devstack.Config{Workers: -1})
	if _, err := st.StartWorker(context.Background(), func(c *worker.Config) { c.DrainTimeout = time.Second }); err != nil {
		t.Fatal(err)
	}
	closeWithin(t, st, 30*time.Second)
}

// TestWorkerStopsWithItsContext: a worker started on a shorter context
// stops when that context ends, while the stack runs on.
func TestWorkerStopsWithItsContext(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	st := start(t, devstack.Config{Workers: -1, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	defer closeWithin(t, st, 30*time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	if _, err := st.StartWorker(ctx, func(c *worker.Config) { c.DrainTimeout = time.Second; c.WorkerID = "short-lived" }); err != nil {
		t.Fatal(err)
	}
	cancel()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(logs.String(), "worker stopped") {
		if time.Now().After(deadline) {
			t.Fatalf("the worker did not stop with its context; logs:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond) // polling the logs: no other signal that Run returned
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent writes and reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestWorkerEnvLoadsAsWorkerConfig: a separate worker process reads exactly
// the in-process workers' configuration from WorkerEnv.
func TestWorkerEnvLoadsAsWorkerConfig(t *testing.T) {
	t.Parallel()
	st := start(t, devstack.Config{Workers: -1, Gate: "metrics", WorkerConcurrency: 3, DrainTimeout: 7 * time.Second})
	defer closeWithin(t, st, 30*time.Second)
	env := map[string]string{}
	for _, kv := range st.WorkerEnv() {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	var got worker.Config
	if err := envconfig.Load(&got, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	want := st.WorkerConfig()
	if got != want {
		t.Fatalf("WorkerEnv loads as\n%+v\nwant\n%+v", got, want)
	}
	if want.Gate != "metrics" || want.Concurrency != 3 || want.DrainTimeout != 7*time.Second || want.QueueURL != st.QueueURL {
		t.Fatalf("WorkerConfig = %+v: the stack's settings were not applied", want)
	}
	if !slices.Contains(st.WorkerEnv(), "AWS_ENDPOINT_URL_SQS="+st.Endpoints.SQS) {
		t.Fatalf("WorkerEnv names no SQS endpoint: %q", st.WorkerEnv())
	}
}
