// Package interrupt runs a GPU worker on an instance that EC2 or Auto
// Scaling may take away. It drains the worker when the instance is going
// away (a spot interruption: until shortly before its deadline; a scale-in:
// as long as the running generations need, extending the termination
// lifecycle hook meanwhile), completes the hook once drained, and then idles
// until SIGTERM: a drained worker that exited would be restarted by systemd
// into the same notice, and would count as capacity while draining again.
// Rebalance recommendations are logged, not drained for: with capacity
// rebalancing the group launches a replacement and then terminates the
// instance through the hook, which arrives here as a scale-in.
package interrupt

import (
	"cmp"
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/lull-ai/lull/gpuworker/imds"
	"github.com/lull-ai/lull/gpuworker/worker"
)

// Hook is the instance's termination lifecycle hook (lifecycle.Hook).
type Hook interface {
	// Heartbeat extends the pending lifecycle action's timeout.
	Heartbeat(ctx context.Context) error
	// Complete lets Auto Scaling go on with termination.
	Complete(ctx context.Context) error
}

// Worker is what Runner drives (worker.Worker).
type Worker interface {
	Run(ctx context.Context) error
	DrainOn(ctx context.Context, watch func(context.Context) *worker.Notice, safety time.Duration) *worker.Notice
}

// Runner runs a worker until SIGTERM, draining it on notices.
type Runner struct {
	Worker Worker
	// Watch blocks until the instance is going away and returns the notice
	// (nil when ctx ends); nil never drains. See FromIMDS.
	Watch func(ctx context.Context) *worker.Notice
	// Hook, when set, is extended during a scale-in drain and completed
	// after any drain.
	Hook Hook
	// Heartbeat is how often a scale-in drain extends Hook; 5m when zero.
	Heartbeat time.Duration
	// Safety is kept back from a spot interruption's deadline to release
	// unfinished generations; 15s when zero.
	Safety time.Duration
	Logger *slog.Logger
}

// Run runs the worker until ctx ends (SIGTERM). A notice from Watch drains
// it; once drained, Run completes the hook and waits for ctx. When ctx ends
// without a notice, the worker drains as Worker.Run does and the hook is
// completed too (the instance may be shutting down for a termination). Run
// returns the worker's error, or nil.
func (r *Runner) Run(ctx context.Context) error {
	log := r.Logger
	if log == nil {
		log = slog.Default()
	}
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	runDone := make(chan struct{})
	var notice *worker.Notice // set before bg finishes
	var bg sync.WaitGroup
	if r.Watch != nil {
		bg.Go(func() {
			n := r.Worker.DrainOn(watchCtx, r.Watch, cmp.Or(r.Safety, 15*time.Second))
			if n == nil {
				return
			}
			notice = n
			if n.Deadline.IsZero() && r.Hook != nil {
				r.extend(runDone, log)
			}
		})
	}
	err := r.Worker.Run(ctx)
	close(runDone)
	stopWatch()
	bg.Wait()
	if err != nil {
		return err
	}
	if r.Hook != nil && (notice != nil || ctx.Err() != nil) {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		if err := r.Hook.Complete(cctx); err != nil {
			log.Warn("lifecycle hook not completed; Auto Scaling proceeds at the hook's timeout", "err", err)
		} else {
			log.Info("lifecycle hook completed")
		}
		cancel()
	}
	if notice != nil && ctx.Err() == nil {
		log.Info("drained; idling until the instance terminates", "kind", notice.Kind)
		<-ctx.Done()
	}
	return nil
}

// extend heartbeats the hook every Heartbeat until done closes, so a
// scale-in waits for the longest running generation.
func (r *Runner) extend(done <-chan struct{}, log *slog.Logger) {
	t := time.NewTicker(cmp.Or(r.Heartbeat, 5*time.Minute))
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := r.Hook.Heartbeat(ctx); err != nil {
			log.Warn("lifecycle hook heartbeat failed", "err", err)
		} else {
			log.Info("lifecycle hook extended while draining")
		}
		cancel()
	}
}

// FromIMDS adapts the metadata service to Runner.Watch: it polls md every
// interval, logs rebalance recommendations (once each) without draining,
// logs metadata errors at debug level, and returns the first spot
// interruption or scale-in.
func FromIMDS(md *imds.Client, interval time.Duration, log *slog.Logger) func(context.Context) *worker.Notice {
	return func(ctx context.Context) *worker.Notice {
		n := md.Watch(ctx, interval,
			func(err error) { log.Debug("metadata service", "err", err) },
			func(n *imds.Notice) {
				log.Info("rebalance recommendation: not draining; with capacity rebalancing Auto Scaling replaces the instance through its lifecycle hook",
					"kind", n.Kind, "detail", n.Detail)
			})
		if n == nil {
			return nil
		}
		return &worker.Notice{Kind: n.Kind, Deadline: n.Deadline}
	}
}
