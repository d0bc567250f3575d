package parallel_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/lull-ai/lull/shared/parallel"
)

func TestEach(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		limit, n int
	}{{"OK", 4, 100}, {"LimitZeroRunsOneAtATime", 0, 10}, {"None", 3, 0}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var running, peak, calls atomic.Int64
			seen := make([]atomic.Bool, tc.n)
			err := parallel.Each(context.Background(), tc.limit, tc.n, func(_ context.Context, i int) error {
				now := running.Add(1)
				for p := peak.Load(); now > p && !peak.CompareAndSwap(p, now); p = peak.Load() {
				}
				defer running.Add(-1)
				calls.Add(1)
				if seen[i].Swap(true) {
					t.Errorf("index %d called twice", i)
				}
				return nil
			})
			if err != nil || calls.Load() != int64(tc.n) {
				t.Fatalf("Each = %v after %d calls, want nil after %d", err, calls.Load(), tc.n)
			}
			if want := int64(max(tc.limit, 1)); peak.Load() > want {
				t.Fatalf("%d calls ran at once, limit %d", peak.Load(), want)
			}
		})
	}
	t.Run("ErrorsJoined", func(t *testing.T) {
		t.Parallel()
		a, b := errors.New("a"), errors.New("b")
		err := parallel.Each(context.Background(), 2, 5, func(_ context.Context, i int) error {
			switch i {
			case 1:
				return a
			case 3:
				return b
			}
			return nil
		})
		if !errors.Is(err, a) || !errors.Is(err, b) {
			t.Fatalf("Each = %v, want both errors", err)
		}
	})
	t.Run("CancelledStopsStarting", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(context.Background())
		var calls atomic.Int64
		err := parallel.Each(ctx, 1, 100, func(context.Context, int) error {
			if calls.Add(1) == 3 {
				cancel()
			}
			return nil
		})
		if !errors.Is(err, context.Canceled) || calls.Load() > 4 {
			t.Fatalf("Each = %v after %d calls, want Canceled after about 3", err, calls.Load())
		}
	})
}
