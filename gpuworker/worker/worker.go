package worker

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lull-ai/lull/gpuworker/gate"
	"github.com/lull-ai/lull/gpuworker/vllm"
	"github.com/lull-ai/lull/shared/dispatch"
	"github.com/lull-ai/lull/shared/lull"
	"github.com/lull-ai/lull/shared/request"
)

// Engine runs one request on the inference engine.
type Engine interface {
	Do(ctx context.Context, endpoint lull.Endpoint, body []byte) (*vllm.Result, error)
}

// Deps are the worker's collaborators.
type Deps struct {
	Generations lull.Generations
	Queue       lull.Queue
	Events      lull.Sender // nil disables events
	Blobs       lull.Blobs
	Engine      Engine
	Logger      *slog.Logger
	Now         func() time.Time // time.Now when nil
	// EngineUp, when set, pauses receiving while it reports false (the
	// supervised engine is restarting).
	EngineUp func() bool
	// Gate, when set, limits receives to the engine's headroom (on top of
	// the Concurrency slots) and the caller runs it. When nil and
	// Config.Gate is "metrics", the worker builds and runs its own over
	// VLLM_URL/metrics.
	Gate *gate.Gate
}

// Worker pulls jobs from one model queue and runs them on the engine.
//
// Guarantees: a message is deleted only after its generation is terminal in
// the store (and its response is in the blob store); every status change is
// a conditional write, so duplicate deliveries never complete a generation
// twice; on shutdown or engine trouble, messages are released for another
// worker instead of being held.
type Worker struct {
	cfg  Config
	deps Deps
	id   string
	// ownGate says the worker built its gate and runs it.
	ownGate bool

	// drain stops receiving early (spot notice, scale-in); drainBy is the
	// deadline by which unfinished generations must be released (set by
	// the first Drain, moved only earlier).
	drainOnce sync.Once
	drain     chan struct{}
	drainMu   sync.Mutex
	drainBy   time.Time

	// started receives (capacity 1) when a message stops being unstarted.
	started chan struct{}

	// running holds the IDs of the generations this worker runs now: a
	// duplicate delivery of one of them waits instead of running it again
	// (the lease alone does not stop it: the owner is the same).
	runningMu sync.Mutex
	running   map[string]bool

	stats Stats
}

// Stats are the worker's counters, exported on /metrics.
type Stats struct {
	Received  atomic.Int64 // messages received
	InFlight  atomic.Int64 // generations running now
	Unstarted atomic.Int64 // messages received and not yet sent to the engine
	AtEngine  atomic.Int64 // requests sent to the engine whose response is not back yet
	Completed atomic.Int64 // generations this worker completed
	Failed    atomic.Int64 // generations this worker marked failed
	Released  atomic.Int64 // messages handed back to the queue unfinished
	Skipped   atomic.Int64 // deliveries of already-terminal or foreign-leased generations
}

// New returns a worker; cfg is validated.
func New(cfg Config, deps Deps) (*Worker, error) {
	cfg.AWSTimeout = cmp.Or(cfg.AWSTimeout, 30*time.Second)
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	if deps.Generations == nil || deps.Queue == nil || deps.Blobs == nil || deps.Engine == nil {
		return nil, errors.New("worker: Generations, Queue, Blobs and Engine are required")
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if cfg.ScaleInDrainMax == 0 {
		cfg.ScaleInDrainMax = DefaultScaleInDrainMax
	}
	id := cfg.WorkerID
	if id == "" {
		host, _ := os.Hostname()
		id = cmp.Or(host, "worker") + "-" + lull.NewID("w")[2:8]
	}
	w := &Worker{cfg: cfg, deps: deps, id: id, drain: make(chan struct{}), started: make(chan struct{}, 1), running: map[string]bool{}}
	if deps.Gate == nil && cfg.Gate != "fixed" {
		p := gate.Policy{TargetRunning: cfg.GateTarget, KVHigh: cfg.GateKVHigh, Interval: cfg.GateInterval,
			Reserve: cfg.GateReserve, ReserveWindow: cfg.GateReserveWindow, EnginePreempts: cfg.GatePreempts}
		c := gate.Counters{
			Pending:  func() int { return int(w.stats.Unstarted.Load()) },
			AtEngine: func() int { return int(w.stats.AtEngine.Load()) },
		}
		if cfg.Gate == "queue-depth" { // the comparison policy counts all its own work
			p.QueueDepthOnly = true
			c = gate.Counters{Pending: func() int { return int(w.stats.Unstarted.Load() + w.stats.InFlight.Load()) }}
		}
		w.deps.Gate = gate.New(strings.TrimRight(cfg.VLLMURL, "/")+"/metrics", p, c)
		w.ownGate = true
	}
	w.deps.Logger = deps.Logger.With("worker", id, "model", cfg.Model)
	return w, nil
}

// ID returns the name the worker leases generations under.
func (w *Worker) ID() string { return w.id }

// Stats returns the worker's live counters.
func (w *Worker) Stats() *Stats { return &w.stats }

// DefaultScaleInDrainMax is Config.ScaleInDrainMax when zero: a day, under
// the global timeout of the construct's lifecycle hook (25 hours).
const DefaultScaleInDrainMax = 24 * time.Hour

// Run receives and runs jobs until ctx is cancelled or Drain is called,
// then drains: it stops receiving, lets running generations finish and
// releases the rest to the queue. After Drain, generations may run until its
// deadline; after ctx ends (SIGTERM), for DrainTimeout more at most. It
// returns nil after a clean drain.
func (w *Worker) Run(ctx context.Context) error {
	stopped := ctx.Done() // SIGTERM: bounds the drain by DrainTimeout
	log := w.deps.Logger
	log.InfoContext(ctx, "worker started", "concurrency", w.cfg.Concurrency, "visibility", w.cfg.Visibility.String(), "gate", w.cfg.Gate)
	if w.ownGate {
		gctx, stopGate := context.WithCancel(ctx)
		defer stopGate()
		go w.deps.Gate.Run(gctx)
		go w.logGate(gctx)
	}
	// runCtx outlives ctx by the drain timeout so running generations can finish.
	runCtx, cancelRuns := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRuns()
	// Receiving stops when ctx ends or Drain is called.
	ctx, stopReceiving := context.WithCancel(ctx)
	defer stopReceiving()
	go func() {
		select {
		case <-w.drain:
			stopReceiving()
		case <-ctx.Done():
		}
	}()
	slots := make(chan struct{}, w.cfg.Concurrency)
	var wg sync.WaitGroup
	backoff := time.Duration(0)
	for ctx.Err() == nil {
		// Wait for at least one free slot, then ask for as many messages as are free.
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			continue
		}
		if up := w.deps.EngineUp; up != nil && !up() {
			<-slots
			sleep(ctx, 250*time.Millisecond)
			continue
		}
		free := 1
		limit := min(10, cap(slots))
		if w.deps.Gate != nil {
			// Take more only once everything taken has reached the engine,
			// so the gate's budget counts it and nothing waits here that
			// another worker could start.
			if !w.waitAllStarted(ctx) {
				<-slots
				continue
			}
			budget, err := w.deps.Gate.Wait(ctx)
			if err != nil {
				<-slots
				continue
			}
			limit = min(limit, budget)
		}
		for free < limit {
			select {
			case slots <- struct{}{}:
				free++
				continue
			default:
			}
			break
		}
		rctx, cancelReceive := context.WithTimeout(ctx, receiveWait+w.cfg.AWSTimeout)
		msgs, err := w.deps.Queue.Receive(rctx, free, receiveWait, w.cfg.Visibility)
		cancelReceive()
		for range free - len(msgs) {
			<-slots
		}
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			backoff = min(max(2*backoff, 100*time.Millisecond), 5*time.Second)
			log.WarnContext(ctx, "receive failed", "err", err, "retry_in", backoff.String())
			sleep(ctx, backoff)
			continue
		}
		backoff = 0
		for _, m := range msgs {
			w.stats.Received.Add(1)
			w.stats.Unstarted.Add(1)
			wg.Go(func() {
				defer func() { <-slots }()
				w.handle(runCtx, m)
			})
		}
	}
	w.drainMu.Lock()
	deadline := w.drainBy
	w.drainMu.Unlock()
	if deadline.IsZero() { // no notice: ctx ended (SIGTERM)
		deadline, stopped = time.Now().Add(w.cfg.DrainTimeout), nil
	}
	log.Info("draining", "in_flight", w.stats.InFlight.Load(), "release_by", deadline, "timeout", time.Until(deadline).Round(time.Millisecond).String())
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for done != nil {
		select {
		case <-done:
			done = nil
		case <-stopped:
			// SIGTERM during a notice's drain: systemd waits only so long.
			stopped = nil
			if d := time.Now().Add(w.cfg.DrainTimeout); d.Before(deadline) {
				deadline = d
				timer.Reset(time.Until(d))
				log.Info("stopping while draining", "in_flight", w.stats.InFlight.Load(), "release_by", deadline)
			}
		case <-timer.C:
			log.Warn("drain deadline: releasing unfinished generations", "in_flight", w.stats.InFlight.Load())
			cancelRuns()
			<-done
			done = nil
		}
	}
	log.Info("worker stopped", "completed", w.stats.Completed.Load(), "released", w.stats.Released.Load())
	return nil
}

// waitAllStarted blocks until no received message is unstarted; false
// when ctx ended first.
func (w *Worker) waitAllStarted(ctx context.Context) bool {
	for w.stats.Unstarted.Load() > 0 {
		select {
		case <-w.started:
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// Drain makes Run stop receiving at once and return after letting running
// generations finish until deadline, releasing the rest to the queue. A
// zero deadline lets them run as long as they need, up to ScaleInDrainMax
// from now. Later calls only move the deadline earlier. SIGTERM (the end of
// Run's context) cuts the drain to DrainTimeout from then.
func (w *Worker) Drain(deadline time.Time) {
	if deadline.IsZero() {
		deadline = time.Now().Add(w.cfg.ScaleInDrainMax)
	}
	w.drainMu.Lock()
	if w.drainBy.IsZero() || deadline.Before(w.drainBy) {
		w.drainBy = deadline
	}
	w.drainMu.Unlock()
	w.drainOnce.Do(func() { close(w.drain) })
}

// Notice is an instruction to stop taking work: a spot interruption (with
// the time the instance goes away) or a scale-in (no deadline: Auto Scaling
// waits in the termination lifecycle hook until the worker completes it).
type Notice struct {
	Kind     string
	Deadline time.Time // zero when there is no hard deadline
}

// DrainOn drains the worker when watch reports a notice. A notice with a
// deadline drains until safety before it, so that unfinished work is
// released while the instance still runs; one without drains as long as
// the running generations need (up to ScaleInDrainMax). It returns the
// notice, or nil when ctx ended first.
func (w *Worker) DrainOn(ctx context.Context, watch func(context.Context) *Notice, safety time.Duration) *Notice {
	n := watch(ctx)
	if n == nil {
		return nil
	}
	deadline := n.Deadline
	if !deadline.IsZero() {
		deadline = deadline.Add(-safety)
	}
	w.deps.Logger.Warn("interruption notice: draining", "kind", n.Kind, "deadline", n.Deadline, "release_by", deadline,
		"in_flight", w.stats.InFlight.Load())
	w.Drain(deadline)
	return n
}

// logGate logs each change of the gate's state, so operators see it work.
func (w *Worker) logGate(ctx context.Context) {
	last := ""
	t := time.NewTicker(w.cfg.GateInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		d := w.deps.Gate.Decide()
		state := "closed: " + d.Reason
		if d.Open {
			state = "open"
		}
		if state != last {
			w.deps.Logger.InfoContext(ctx, "load gate "+state, "budget", d.Budget, "reserve", d.Reserve)
			last = state
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// receiveWait is how long one receive long-polls.
const receiveWait = 10 * time.Second

// call bounds one DynamoDB, SQS or S3 call made under ctx: a dependency
// that accepts the connection and never answers cannot hold a slot, a
// heartbeat or the drain.
func (w *Worker) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, w.cfg.AWSTimeout)
}

// cleanup returns a context for bookkeeping that must happen even when the
// run context is cancelled (releasing a message, recording a failure),
// bounded like every other call.
func (w *Worker) cleanup() (context.Context, context.CancelFunc) {
	return w.call(context.Background())
}

// handle runs one delivery to its end: deleted when the generation is
// terminal, released (visible again) otherwise.
func (w *Worker) handle(ctx context.Context, m lull.Message) {
	// The message counts as unstarted (hoarded) until it reaches the engine
	// or its handling ends; only a real send is reported to the gate.
	started := false
	markStarted := func(sent bool) {
		if !started {
			started = true
			if sent {
				w.stats.AtEngine.Add(1)
				if w.deps.Gate != nil {
					w.deps.Gate.Sent()
				}
			}
			w.stats.Unstarted.Add(-1)
			select {
			case w.started <- struct{}{}:
			default:
			}
		}
	}
	defer markStarted(false)
	log := w.deps.Logger.With("message_id", m.ID)
	var job lull.Job
	if err := json.Unmarshal(m.Body, &job); err != nil || !lull.ValidID("gen", job.GenerationID) {
		// Not ours to interpret; keeping it would only loop it to the DLQ.
		log.ErrorContext(ctx, "dropping malformed job message", "err", err, "body_bytes", len(m.Body))
		w.ack(ctx, log, m)
		return
	}
	log = log.With("generation_id", job.GenerationID, "tenant", job.Tenant)
	if !w.claim(job.GenerationID) {
		// Another delivery of this generation is being handled here: never
		// start it a second time (Start would let this worker, the lease
		// owner, in again). Acknowledge it if terminal, else defer it until
		// the lease would lapse.
		log.InfoContext(ctx, "generation already handled here; not starting the duplicate")
		w.notStartable(ctx, log, m, job)
		return
	}
	defer w.unclaim(job.GenerationID)
	now := w.deps.Now()
	sctx, cancel := w.call(ctx)
	g, err := w.deps.Generations.Start(sctx, job.GenerationID, w.id, now, now.Add(w.cfg.Visibility))
	cancel()
	if lull.IsConflict(err) {
		w.notStartable(ctx, log, m, job)
		return
	}
	if err != nil {
		log.WarnContext(ctx, "cannot start generation; releasing", "err", err)
		w.release(log, m, 5*time.Second, "")
		return
	}
	w.stats.InFlight.Add(1)
	defer w.stats.InFlight.Add(-1)
	log = log.With("attempt", g.Attempts)
	log.InfoContext(ctx, "generation started")
	w.run(ctx, log, m, job, g, markStarted)
}

// claim marks id running on this worker; false when it already is.
func (w *Worker) claim(id string) bool {
	w.runningMu.Lock()
	defer w.runningMu.Unlock()
	if w.running[id] {
		return false
	}
	w.running[id] = true
	return true
}

func (w *Worker) unclaim(id string) {
	w.runningMu.Lock()
	defer w.runningMu.Unlock()
	delete(w.running, id)
}

// notStartable handles a delivery whose generation could not move to
// in_progress: it is terminal, expired, gone, or leased by a live worker.
func (w *Worker) notStartable(ctx context.Context, log *slog.Logger, m lull.Message, job lull.Job) {
	gctx, cancel := w.call(ctx)
	defer cancel()
	g, err := w.deps.Generations.Get(gctx, job.GenerationID)
	switch {
	case lull.IsNotFound(err):
		log.WarnContext(ctx, "job for unknown generation; dropping")
		w.ack(ctx, log, m)
	case err != nil:
		log.WarnContext(ctx, "cannot read generation; releasing", "err", err)
		w.release(log, m, 5*time.Second, "")
	case g.Status.Terminal():
		// A duplicate or late delivery: never run it again. Announce again in
		// case the previous handler died between finishing and announcing.
		w.stats.Skipped.Add(1)
		log.InfoContext(ctx, "generation already terminal; acknowledging", "status", string(g.Status))
		if err := w.announce(gctx, g); err != nil {
			log.WarnContext(ctx, "re-announce failed; releasing", "err", err)
			w.release(log, m, 5*time.Second, "")
			return
		}
		w.ack(ctx, log, m)
	case g.Expired(w.deps.Now()):
		w.finish(ctx, log, m, g.ID, lull.StatusExpired, lull.Outcome{Failure: &lull.Failure{
			Code: "expired", Message: "The completion window ended before the generation could run."}})
	default:
		// Another worker holds a live lease: this message is a duplicate (a
		// sweeper re-send, an SDK retry of SendMessage, a re-sent batch
		// chunk) or the holder's own, back after a lost visibility
		// extension. Come back when the lease would have lapsed, as a fresh
		// message: releasing this one would add a receive each time, and
		// enough of them would push a healthy generation's job to the DLQ.
		// A copy stays queued in case the holder dies.
		w.stats.Skipped.Add(1)
		wait := min(max(g.LeaseUntil.Sub(w.deps.Now())+time.Second, time.Second), 15*time.Minute)
		log.InfoContext(ctx, "generation leased by another worker; deferring", "owner", g.LeaseOwner, "retry_in", wait.String())
		if err := w.deps.Queue.Send(ctx, m.Body, cmp.Or(m.GroupID, job.Tenant), wait); err != nil {
			log.WarnContext(ctx, "cannot re-queue deferred job; releasing", "err", err)
			w.release(log, m, wait, "")
			return
		}
		w.ack(ctx, log, m)
	}
}

// announce sends g's terminal event and records that it was sent.
func (w *Worker) announce(ctx context.Context, g *lull.Generation) error {
	return dispatch.AnnounceFinished(ctx, w.deps.Generations, w.deps.Events, g)
}

// run executes a started generation.
// started is called with true when the request goes to the engine.
func (w *Worker) run(ctx context.Context, log *slog.Logger, m lull.Message, job lull.Job, g *lull.Generation, started func(sent bool)) {
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var hb sync.WaitGroup
	hb.Go(func() { w.heartbeat(runCtx, cancel, log, m, g.ID) })
	defer hb.Wait()
	defer cancel()

	body := []byte(job.Request)
	if job.RequestKey != "" {
		var err error
		bctx, endCall := w.call(runCtx)
		body, err = w.deps.Blobs.Get(bctx, job.RequestKey)
		endCall()
		if err != nil {
			log.WarnContext(ctx, "cannot load request body; releasing", "err", err)
			w.release(log, m, 5*time.Second, g.ID)
			return
		}
	}
	// The engine runs only what passes validation now, re-encoded: never
	// the stored bytes as such.
	anyModel := func(string) (lull.Task, bool) {
		if g.Endpoint == lull.EndpointEmbeddings {
			return lull.TaskEmbed, true
		}
		return lull.TaskGenerate, true
	}
	req, err := request.Check(g.Endpoint, body, anyModel, w.cfg.Limits)
	if err != nil {
		log.WarnContext(ctx, "stored request fails validation; failing it", "err", err)
		w.finish(ctx, log, m, g.ID, lull.StatusFailed, lull.Outcome{Failure: &lull.Failure{Code: "invalid_request", Message: lull.ErrorMessage(err)}})
		return
	}
	started(true)
	res, err := w.callEngine(vllm.WithRequestID(runCtx, g.ID), log, g, req.Canonical)
	w.stats.AtEngine.Add(-1)
	switch {
	case err == nil:
	case runCtx.Err() != nil:
		log.InfoContext(ctx, "generation interrupted; releasing", "cause", context.Cause(runCtx))
		w.release(log, m, 0, g.ID)
		return
	case vllm.IsTransient(err):
		// The engine is struggling: let the message come back later (and reach
		// the DLQ consumer, which fails it, after the queue's max receives).
		log.WarnContext(ctx, "engine failed repeatedly; releasing", "err", err)
		w.release(log, m, 10*time.Second, g.ID)
		return
	default:
		log.InfoContext(ctx, "engine rejected the request", "err", err)
		w.finish(ctx, log, m, g.ID, lull.StatusFailed, lull.Outcome{Failure: &lull.Failure{Code: "invalid_request", Message: engineMessage(err)}})
		return
	}
	key := lull.OutputKey(g.Tenant, g.ID, g.Attempts)
	pctx, cancelPut := w.call(runCtx)
	err = w.deps.Blobs.Put(pctx, key, res.Body, "application/json")
	cancelPut()
	if err != nil {
		log.WarnContext(ctx, "cannot store output; releasing", "err", err)
		w.release(log, m, 5*time.Second, g.ID)
		return
	}
	w.finish(ctx, log, m, g.ID, lull.StatusCompleted, lull.Outcome{ResponseKey: key, ResponseBytes: int64(len(res.Body)), Usage: &res.Usage})
}

func engineMessage(err error) string {
	var e *vllm.Error
	if errors.As(err, &e) {
		return e.Message
	}
	return err.Error()
}

// callEngine runs the request, retrying transient errors with backoff.
func (w *Worker) callEngine(ctx context.Context, log *slog.Logger, g *lull.Generation, body []byte) (*vllm.Result, error) {
	var err error
	for attempt := 1; attempt <= w.cfg.EngineRetries; attempt++ {
		callCtx, cancel := context.WithTimeout(ctx, w.cfg.RequestTimeout)
		var res *vllm.Result
		res, err = w.deps.Engine.Do(callCtx, g.Endpoint, body)
		if err != nil && ctx.Err() == nil && errors.Is(callCtx.Err(), context.DeadlineExceeded) {
			// Our own RequestTimeout, not the run's end: the engine is slow,
			// which is transient, not the request's fault.
			err = &vllm.Error{Message: fmt.Sprintf("no response within %s", w.cfg.RequestTimeout), Transient: true, Err: err}
		}
		cancel()
		if err == nil || ctx.Err() != nil || !vllm.IsTransient(err) {
			return res, err
		}
		log.WarnContext(ctx, "transient engine error", "err", err, "try", attempt)
		nctx, endCall := w.call(ctx)
		nerr := w.deps.Generations.NoteError(nctx, g.ID, err.Error())
		endCall()
		if nerr != nil {
			log.WarnContext(ctx, "cannot record engine error", "err", nerr)
		}
		if attempt < w.cfg.EngineRetries {
			d := time.Duration(1<<(attempt-1)) * 500 * time.Millisecond
			sleep(ctx, d+rand.N(d/2+1))
		}
	}
	return nil, err
}

// heartbeat keeps the message hidden and the lease alive while a generation
// runs; it cancels the run if the lease is lost.
func (w *Worker) heartbeat(ctx context.Context, cancel context.CancelFunc, log *slog.Logger, m lull.Message, id string) {
	t := time.NewTicker(w.cfg.Visibility / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		vctx, endCall := w.call(ctx)
		if err := w.deps.Queue.SetVisibility(vctx, m.Receipt, w.cfg.Visibility); err != nil && ctx.Err() == nil {
			log.WarnContext(ctx, "visibility extension failed", "err", err)
		}
		err := w.deps.Generations.Renew(vctx, id, w.id, w.deps.Now().Add(w.cfg.Visibility))
		endCall()
		if lull.IsConflict(err) {
			log.WarnContext(ctx, "lease lost; abandoning generation")
			cancel()
			return
		}
		if err != nil && ctx.Err() == nil {
			log.WarnContext(ctx, "lease renewal failed", "err", err)
		}
	}
}

// finish records a terminal status, announces it and acknowledges the
// message. If another path finished the generation first, the message is
// acknowledged all the same: it is terminal either way.
func (w *Worker) finish(ctx context.Context, log *slog.Logger, m lull.Message, id string, to lull.Status, out lull.Outcome) {
	cctx, cancel := w.cleanup()
	defer cancel()
	out.At = w.deps.Now().UTC()
	out.Announce = true
	g, err := w.deps.Generations.Finish(cctx, id, to, out)
	if lull.IsConflict(err) {
		// Finished elsewhere, or by this very write when its answer was
		// lost and the retry found it done. Whoever finished it may have
		// died before announcing: announce what is stored again (the event
		// ID is stable, receivers de-duplicate) before acknowledging.
		log.InfoContext(ctx, "generation already finished elsewhere", "wanted", string(to))
		cur, gerr := w.deps.Generations.Get(cctx, id)
		if gerr != nil {
			log.WarnContext(ctx, "cannot read finished generation; releasing", "err", gerr)
			w.release(log, m, 5*time.Second, "")
			return
		}
		if cur.Status.Terminal() {
			if aerr := w.announce(cctx, cur); aerr != nil {
				log.WarnContext(ctx, "re-announce failed; releasing", "err", aerr)
				w.release(log, m, 5*time.Second, "")
				return
			}
		}
		w.ack(cctx, log, m)
		return
	}
	if err != nil {
		log.WarnContext(ctx, "cannot record terminal status; releasing", "status", string(to), "err", err)
		w.release(log, m, 5*time.Second, id)
		return
	}
	switch to {
	case lull.StatusCompleted:
		w.stats.Completed.Add(1)
	case lull.StatusFailed:
		w.stats.Failed.Add(1)
	}
	log.InfoContext(ctx, "generation finished", "status", string(to), "prompt_tokens", usage(g).PromptTokens, "completion_tokens", usage(g).CompletionTokens)
	if err := w.announce(cctx, g); err != nil {
		// Keep the message: its redelivery sees the terminal status and announces again.
		log.WarnContext(ctx, "announce failed; releasing so a redelivery announces", "err", err)
		w.release(log, m, 5*time.Second, "")
		return
	}
	w.ack(cctx, log, m)
}

func usage(g *lull.Generation) lull.Usage {
	if g.Usage == nil {
		return lull.Usage{}
	}
	return *g.Usage
}

func (w *Worker) ack(ctx context.Context, log *slog.Logger, m lull.Message) {
	cctx, cancel := w.cleanup()
	defer cancel()
	if err := w.deps.Queue.Delete(cctx, m.Receipt); err != nil {
		log.WarnContext(ctx, "delete failed; a redelivery will be skipped", "err", err)
	}
}

// release makes the message visible again after d and, when id is set, gives
// up this worker's lease so the next delivery can start at once.
func (w *Worker) release(log *slog.Logger, m lull.Message, d time.Duration, id string) {
	cctx, cancel := w.cleanup()
	defer cancel()
	w.stats.Released.Add(1)
	if id != "" {
		if err := w.deps.Generations.Renew(cctx, id, w.id, w.deps.Now()); err != nil && !lull.IsConflict(err) {
			log.Warn("cannot give up lease", "err", err)
		}
	}
	if err := w.deps.Queue.SetVisibility(cctx, m.Receipt, d); err != nil {
		log.Warn("release failed; the message returns after its visibility timeout", "err", err)
	}
}
