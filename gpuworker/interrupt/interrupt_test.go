package interrupt_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/lull-ai/lull/gpuworker/imds"
	"github.com/lull-ai/lull/gpuworker/interrupt"
	"github.com/lull-ai/lull/gpuworker/worker"
)

// fakeWorker drains like worker.Worker: DrainOn waits for the watch, then
// Run returns once the work still running (release) is done.
type fakeWorker struct {
	drained chan struct{}
	release chan struct{} // closed when the running generation ends
	once    sync.Once
}

func (w *fakeWorker) Run(ctx context.Context) error {
	select {
	case <-ctx.Done():
	case <-w.drained:
	}
	<-w.release
	return nil
}

func (w *fakeWorker) DrainOn(ctx context.Context, watch func(context.Context) *worker.Notice, _ time.Duration) *worker.Notice {
	n := watch(ctx)
	if n != nil {
		w.once.Do(func() { close(w.drained) })
	}
	return n
}

// hook records calls.
type hook struct {
	mu              sync.Mutex
	beats, complete int
	beatAfterDone   bool
}

func (h *hook) Heartbeat(context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.complete > 0 {
		h.beatAfterDone = true
	}
	h.beats++
	return nil
}

func (h *hook) Complete(context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.complete++
	return nil
}

func (h *hook) counts() (int, int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.beats, h.complete
}

func TestRunner(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		notice    *worker.Notice // nil: SIGTERM only
		wantBeats bool
	}{
		{"ScaleInExtendsHookThenIdles", &worker.Notice{Kind: imds.KindScaleIn}, true},
		{"SpotCompletesHookThenIdles", &worker.Notice{Kind: imds.KindSpotInterruption, Deadline: time.Now().Add(2 * time.Minute)}, false},
		{"SIGTERMCompletesHookAndReturns", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := &fakeWorker{drained: make(chan struct{}), release: make(chan struct{})}
			h := &hook{}
			notify := make(chan *worker.Notice, 1)
			r := &interrupt.Runner{
				Worker: w, Hook: h, Heartbeat: 20 * time.Millisecond, Logger: slog.New(slog.DiscardHandler),
				Watch: func(ctx context.Context) *worker.Notice {
					select {
					case n := <-notify:
						return n
					case <-ctx.Done():
						return nil
					}
				},
			}
			ctx, sigterm := context.WithCancel(context.Background())
			defer sigterm()
			done := make(chan error, 1)
			go func() { done <- r.Run(ctx) }()
			if tc.notice != nil {
				notify <- tc.notice
				<-w.drained
			} else {
				sigterm()
			}
			time.Sleep(150 * time.Millisecond) // the generation runs on: several heartbeat periods
			if beats, _ := h.counts(); (beats >= 3) != tc.wantBeats {
				t.Fatalf("%d heartbeats while the drain waited; want them: %v", beats, tc.wantBeats)
			}
			close(w.release)
			if tc.notice == nil {
				if err := <-done; err != nil {
					t.Fatal(err)
				}
				if _, c := h.counts(); c != 1 {
					t.Fatalf("hook completed %d times after SIGTERM, want 1", c)
				}
				return
			}
			deadline := time.Now().Add(5 * time.Second)
			for _, c := h.counts(); c != 1; _, c = h.counts() {
				if time.Now().After(deadline) {
					t.Fatal("hook not completed after the drain")
				}
				time.Sleep(5 * time.Millisecond)
			}
			select {
			case err := <-done:
				t.Fatalf("Run returned (%v) after a notice's drain, before SIGTERM: systemd would restart the worker", err)
			case <-time.After(100 * time.Millisecond):
			}
			sigterm()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if _, c := h.counts(); c != 1 || h.beatAfterDone {
				t.Fatalf("hook completed %d times (heartbeat after completion: %v), want once, last", c, h.beatAfterDone)
			}
		})
	}
}
