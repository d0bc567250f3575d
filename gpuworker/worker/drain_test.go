package worker_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/lull-ai/lull/gpuworker/worker"
	"github.com/lull-ai/lull/shared/lull"
)

// A drain without a deadline (scale-in: the lifecycle hook waits for the
// worker) lets a running generation finish however long past
// LULL_DRAIN_TIMEOUT it takes; SIGTERM during such a drain cuts it to
// LULL_DRAIN_TIMEOUT from then.
func TestWorkerScaleInDrain(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		sigterm bool // SIGTERM arrives during the drain
	}{
		{"FinishesPastDrainTimeout", false},
		{"SIGTERMCutsIt", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			finish := make(chan struct{})
			f := newFixture(t, func(w http.ResponseWriter, r *http.Request, prompt string) {
				select {
				case <-finish:
					answer(w, prompt)
				case <-r.Context().Done():
				}
			})
			g := f.submit(t, "long", nil)
			w := f.newWorker(t, func(c *worker.Config) { c.DrainTimeout = 200 * time.Millisecond })
			ctx, sigterm := context.WithCancel(context.Background())
			defer sigterm()
			done := make(chan error, 1)
			go func() { done <- w.Run(ctx) }()
			f.engine.waitArrived(t, 1)

			w.Drain(time.Time{})
			select {
			case <-done:
				t.Fatal("Run returned while a generation ran, before the drain's cap (LULL_SCALE_IN_DRAIN_MAX)")
			case <-time.After(5 * 200 * time.Millisecond): // five drain timeouts
			}
			began := time.Now()
			if tc.sigterm {
				sigterm()
			} else {
				close(finish)
			}
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Run did not return")
			}
			want, released := lull.StatusCompleted, int64(0)
			if tc.sigterm {
				want, released = lull.StatusInProgress, 1
				if el := time.Since(began); el < 150*time.Millisecond || el > 5*time.Second {
					t.Errorf("released %s after SIGTERM, want about LULL_DRAIN_TIMEOUT (200ms)", el)
				}
			}
			if got := f.get(t, g.ID).Status; got != want || w.Stats().Released.Load() != released {
				t.Fatalf("generation %s, released %d; want %s, %d", got, w.Stats().Released.Load(), want, released)
			}
		})
	}
}
