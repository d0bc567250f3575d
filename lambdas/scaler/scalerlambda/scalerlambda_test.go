package scalerlambda

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/lull-ai/lull/lambdas/scaler/scale"
	"github.com/lull-ai/lull/lambdas/scaler/sweep"
)

// TestRun: the sweep runs whatever the scaling step returned, and the run
// fails when either did.
func TestRun(t *testing.T) {
	t.Parallel()
	errScale, errSweep := errors.New("scale failed"), errors.New("sweep failed")
	for _, tc := range []struct {
		name               string
		scaleErr, sweepErr error
	}{
		{"OK", nil, nil},
		{"ScaleFails", errScale, nil},
		{"SweepFails", nil, errSweep},
		{"BothFail", errScale, errSweep},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			swept := false
			err := run(context.Background(),
				func(context.Context) (scale.Result, error) { return scale.Result{Failed: []string{"m"}}, tc.scaleErr },
				func(context.Context) (sweep.Result, error) { swept = true; return sweep.Result{}, tc.sweepErr },
				slog.New(slog.NewTextHandler(io.Discard, nil)))
			if !swept {
				t.Fatal("the sweep did not run")
			}
			for _, want := range []error{tc.scaleErr, tc.sweepErr} {
				if want != nil && !errors.Is(err, want) {
					t.Errorf("err = %v, want it to wrap %v", err, want)
				}
			}
			if (tc.scaleErr == nil && tc.sweepErr == nil) != (err == nil) {
				t.Errorf("err = %v", err)
			}
		})
	}
}
