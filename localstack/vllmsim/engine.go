package vllmsim

import (
	"cmp"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// errClosed is returned by submit once the engine has stopped.
var errClosed = errors.New("vllmsim: engine closed")

const (
	// minSleep is the smallest wait the loop sleeps for: shorter steps run
	// back to back and their simulated time is paid off in one sleep once
	// the debt reaches it, so throughput stays right below timer resolution.
	minSleep = time.Millisecond
	// maxLag bounds how far the loop may fall behind its simulated clock
	// (CPU starvation, GC) before it forgets the debt instead of catching
	// up in a burst.
	maxLag = 100 * time.Millisecond
)

// Sequence states.
const (
	stateWaiting = iota
	stateRunning
	stateDone
)

// seq is one sequence (one choice of one request) in the engine. Fields
// other than generated are guarded by engine.mu.
type seq struct {
	job      *job
	prompt   int    // prompt tokens
	target   int    // tokens to generate
	finish   string // finish reason once target is reached: "stop" or "length"
	priority int    // lower runs first under priority scheduling
	arrival  uint64 // engine-wide arrival order
	state    int
	blocks   int  // KV blocks held
	counted  bool // prompt tokens added to the counter (first admission)
	// cached is how many full blocks of this preempted sequence's computed
	// tokens are still in the prefix cache (freed, not yet reused): on
	// readmission their tokens are not recomputed. Always 0 unless waiting.
	cached int

	// generated only grows (recompute preemption keeps the output), so a
	// streaming handler may read it without the lock.
	generated atomic.Int32
}

// job is one HTTP request: its sequences, and how the handler learns of
// progress.
type job struct {
	seqs    []*seq
	arrived time.Time
	// notify (capacity 1, streaming only) receives after a step in which
	// one of the sequences produced a token.
	notify chan struct{}
	// done is closed once every sequence finished, the job was aborted, or
	// the engine stopped (failed).
	done      chan struct{}
	remaining int    // under engine.mu
	failed    bool   // under engine.mu until done is closed, then read-only
	finished  bool   // done is closed; under engine.mu
	ordinal   uint64 // 1 for the first job the engine completed, 2 for the next…; under engine.mu
}

// histogram is a Prometheus histogram: per-bucket counts, made cumulative
// when rendered.
type histogram struct {
	bounds []float64
	counts []uint64 // len(bounds)+1, the last is +Inf
	sum    float64
	n      uint64
}

func newHistogram(bounds ...float64) histogram {
	return histogram{bounds: bounds, counts: make([]uint64, len(bounds)+1)}
}

func (h *histogram) observe(v float64) {
	i, _ := slices.BinarySearch(h.bounds, v)
	h.counts[i]++
	h.sum += v
	h.n++
}

func (h histogram) clone() histogram {
	h.counts = slices.Clone(h.counts)
	return h
}

// Stats is a snapshot of the engine's state and counters. Counts are of
// sequences: a request with n choices (or n prompts) has n of them.
type Stats struct {
	Running     int     // sequences in the running batch
	Waiting     int     // sequences queued (new or preempted)
	KVUsage     float64 // fraction of KV blocks in use, 0..1
	Preemptions int64   // times a running sequence was sent back to waiting
	Completed   int64   // sequences that finished (stop or length)
	Aborted     int64   // sequences dropped because their client went away
	// PromptTokens counts each sequence's prompt once; recomputation after
	// a preemption is not counted again.
	PromptTokens     int64
	GenerationTokens int64 // tokens produced
	// PrefixCacheQueries and PrefixCacheHits count tokens looked up in and
	// found in the prefix cache when sequences are admitted (0 with
	// NoPrefixCaching). Hits come from preempted sequences' blocks.
	PrefixCacheQueries, PrefixCacheHits int64
	// BusyTime is the simulated time the engine spent stepping (before
	// TimeScale), so GenerationTokens/BusyTime is the simulated throughput.
	BusyTime time.Duration
}

// engine is the continuous-batching scheduler. It runs in its own goroutine
// and sleeps for each step's simulated duration.
type engine struct {
	cfg Config

	wake    chan struct{} // capacity 1: work was submitted
	quit    chan struct{} // closed by close
	stopped chan struct{} // closed when the loop has returned

	mu         sync.Mutex
	closed     bool
	waiting    []*seq // sorted by before
	running    []*seq // sorted by before; the last is the preemption victim
	usedBlocks int
	arrivals   uint64
	// evictable are the preempted sequences whose blocks are still cached,
	// least recently freed first; cachedBlocks is their sum. Cached blocks
	// count as free: allocating beyond the uncached free blocks evicts them
	// in this order, as vLLM's free-block queue does.
	evictable    []*seq
	cachedBlocks int

	jobsDone                        uint64
	preemptions, completed, aborted int64
	promptTokens, genTokens         int64
	cacheQueries, cacheHits         int64            // tokens looked up in / found in the prefix cache at admission
	finishedBy                      map[string]int64 // finish reason → sequences
	busy                            time.Duration
	ttft, e2e                       histogram
	// iterTokens is vllm:iteration_tokens_total: tokens each step computes
	// (prompt tokens prefilled plus one per decoding sequence); its count is
	// the number of steps.
	iterTokens histogram
}

// newEngine starts an engine's loop.
func newEngine(cfg Config) *engine {
	e := newEngineState(cfg)
	go e.loop()
	return e
}

// newEngineState returns an engine whose loop is not running.
func newEngineState(cfg Config) *engine {
	return &engine{
		cfg:        cfg,
		wake:       make(chan struct{}, 1),
		quit:       make(chan struct{}),
		stopped:    make(chan struct{}),
		finishedBy: map[string]int64{"stop": 0, "length": 0, "abort": 0},
		// vLLM's bucket boundaries.
		ttft: newHistogram(0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10,
			20, 40, 80, 160, 640, 2560),
		e2e: newHistogram(0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120, 240, 480, 960, 1920,
			7680),
		iterTokens: newHistogram(1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384),
	}
}

// before orders sequences: by priority when priority scheduling is on, then
// by arrival. The running batch's last element is the one to preempt.
func (e *engine) before(a, b *seq) int {
	if e.cfg.PriorityScheduling && a.priority != b.priority {
		return cmp.Compare(a.priority, b.priority)
	}
	return cmp.Compare(a.arrival, b.arrival)
}

func insertSorted(list []*seq, s *seq, order func(a, b *seq) int) []*seq {
	i, _ := slices.BinarySearchFunc(list, s, order)
	return slices.Insert(list, i, s)
}

func (e *engine) blocksFor(tokens int) int { return (tokens + e.cfg.BlockSize - 1) / e.cfg.BlockSize }

// submit queues every sequence of j; it fails once the engine is closed.
func (e *engine) submit(j *job) error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return errClosed
	}
	j.remaining = len(j.seqs)
	for _, s := range j.seqs {
		e.arrivals++
		s.job, s.arrival, s.state = j, e.arrivals, stateWaiting
		e.waiting = insertSorted(e.waiting, s, e.before)
	}
	e.mu.Unlock()
	select {
	case e.wake <- struct{}{}:
	default:
	}
	return nil
}

// abort removes a job whose client went away, freeing its KV blocks.
func (e *engine) abort(j *job) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if j.finished {
		return
	}
	for _, s := range j.seqs {
		switch s.state {
		case stateWaiting:
			e.waiting = slices.DeleteFunc(e.waiting, func(x *seq) bool { return x == s })
			e.uncacheLocked(s)
		case stateRunning:
			e.running = slices.DeleteFunc(e.running, func(x *seq) bool { return x == s })
		default:
			continue
		}
		e.usedBlocks -= s.blocks
		s.blocks, s.state = 0, stateDone
		e.aborted++
		e.finishedBy["abort"]++
	}
	j.finished = true
	close(j.done)
}

// close stops the loop and fails every unfinished job.
func (e *engine) close() {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		<-e.stopped
		return
	}
	e.closed = true
	e.mu.Unlock()
	close(e.quit)
	<-e.stopped
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, s := range slices.Concat(e.waiting, e.running) {
		s.state, s.blocks = stateDone, 0
		if j := s.job; !j.finished {
			j.failed, j.finished = true, true
			close(j.done)
		}
	}
	e.waiting, e.running, e.usedBlocks = nil, nil, 0
	e.evictable, e.cachedBlocks = nil, 0
}

func (e *engine) isClosed() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.closed
}

// loop runs steps while there is work and blocks on wake when there is
// none. Each step is scheduled, then the loop sleeps until the step's
// simulated end, then its tokens appear — one step after their sequences
// were scheduled, as on a real engine. Steps shorter than minSleep run back
// to back until their summed time is worth a sleep.
func (e *engine) loop() {
	defer close(e.stopped)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var clock time.Time // wall time the simulated clock has reached; zero when idle
	for {
		e.mu.Lock()
		d, busy := e.scheduleLocked()
		e.mu.Unlock()
		if !busy {
			clock = time.Time{}
			select {
			case <-e.wake:
				continue
			case <-e.quit:
				return
			}
		}
		now := time.Now()
		if clock.IsZero() {
			clock = now
		} else if now.Sub(clock) > maxLag {
			clock = now.Add(-maxLag)
		}
		clock = clock.Add(time.Duration(float64(d) * e.cfg.TimeScale))
		if wait := clock.Sub(now); wait >= minSleep {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-e.quit:
				return
			}
		} else {
			select {
			case <-e.quit:
				return
			default:
			}
		}
		e.mu.Lock()
		e.emitLocked(clock)
		e.mu.Unlock()
	}
}

// scheduleLocked prepares one step. It grows every running sequence by the
// KV blocks its next token needs, preempting the worst running sequences
// when blocks run out; then, if nothing was preempted, it admits waiting
// sequences in order while the batch and the KV cache allow, and with
// PreemptForWaiting beyond that for each one that is strictly better than
// the worst running sequence, which it preempts. It
// returns the step's simulated duration and whether anything runs.
func (e *engine) scheduleLocked() (time.Duration, bool) {
	cfg := e.cfg
	preempted := false
	for i := 0; i < len(e.running); i++ {
		s := e.running[i]
		need := e.blocksFor(s.prompt+int(s.generated.Load())+1) - s.blocks
		for need > 0 && e.usedBlocks+need > cfg.KVBlocks {
			victim := e.running[len(e.running)-1]
			e.preemptLocked(victim)
			preempted = true
			if victim == s {
				break
			}
		}
		if s.state != stateRunning {
			break // s was the last one and preempted itself
		}
		e.allocLocked(s, max(need, 0))
	}
	prefill, admitted := 0, 0
	if !preempted {
		for len(e.waiting) > 0 {
			s := e.waiting[0]
			if len(e.running) >= cfg.MaxNumSeqs || !e.fitsLocked(s) {
				// Full batch or no blocks: with PreemptForWaiting a waiting
				// sequence of strictly better priority takes the worst
				// running one's place, each in turn, so a burst of urgent
				// requests is admitted in one step. A sequence admitted
				// this step is never the victim: it is at least as good.
				if !cfg.PriorityScheduling || !cfg.PreemptForWaiting || len(e.running) == 0 ||
					s.priority >= e.running[len(e.running)-1].priority {
					break // head-of-line: vLLM does not skip ahead either
				}
				e.preemptLocked(e.running[len(e.running)-1])
				continue
			}
			e.waiting[0] = nil
			e.waiting = e.waiting[1:]
			tokens := s.prompt + int(s.generated.Load())
			// Cached blocks are reused; vLLM recomputes at least the last token.
			hit := min(s.cached*cfg.BlockSize, tokens-1)
			e.uncacheLocked(s)
			e.allocLocked(s, e.blocksFor(tokens+1))
			s.state = stateRunning
			e.running = insertSorted(e.running, s, e.before)
			prefill += tokens - hit
			admitted++
			if !cfg.NoPrefixCaching {
				e.cacheQueries += int64(tokens)
				e.cacheHits += int64(hit)
			}
			if !s.counted {
				s.counted = true
				e.promptTokens += int64(s.prompt)
			}
		}
	}
	if len(e.running) == 0 {
		return 0, false
	}
	context := 0 // tokens of KV the step reads
	for _, s := range e.running {
		context += s.prompt + int(s.generated.Load())
	}
	d := cfg.DecodeStepBase + time.Duration(len(e.running))*cfg.DecodePerSeq +
		time.Duration(context)*cfg.DecodePerContextToken + time.Duration(prefill)*cfg.PrefillPerToken
	e.busy += d
	e.iterTokens.observe(float64(prefill + len(e.running) - admitted))
	return d, true
}

// fitsLocked reports whether s can be admitted now: its prompt, the output
// it already has and its next token must fit in the blocks not in use
// (its own cached blocks among them, reused; others' cached blocks are
// evicted as needed), with one block to spare when others run.
func (e *engine) fitsLocked(s *seq) bool {
	need := e.blocksFor(s.prompt + int(s.generated.Load()) + 1)
	if len(e.running) > 0 {
		need++
	}
	return e.usedBlocks+need <= e.cfg.KVBlocks
}

// uncacheLocked takes s's cached blocks out of the evictable pool (it is
// readmitted, or gone).
func (e *engine) uncacheLocked(s *seq) {
	if s.cached == 0 {
		return
	}
	e.cachedBlocks -= s.cached
	s.cached = 0
	e.evictable = slices.DeleteFunc(e.evictable, func(x *seq) bool { return x == s })
}

// allocLocked gives s n more KV blocks, evicting cached ones as the free
// blocks they sit in are taken.
func (e *engine) allocLocked(s *seq, n int) {
	s.blocks += n
	e.usedBlocks += n
	e.evictLocked()
}

// evictLocked evicts cached blocks, least recently freed first and from the
// end of a sequence's tokens (its prefix stays usable longest), until the
// cached blocks fit in the blocks not in use.
func (e *engine) evictLocked() {
	for over := e.cachedBlocks - (e.cfg.KVBlocks - e.usedBlocks); over > 0; {
		s := e.evictable[0]
		n := min(over, s.cached)
		s.cached -= n
		e.cachedBlocks -= n
		over -= n
		if s.cached == 0 {
			e.evictable[0] = nil
			e.evictable = e.evictable[1:]
		}
	}
}

// preemptLocked sends a running sequence back to the waiting queue and
// frees its blocks (vLLM's recompute preemption: the output so far is kept
// and recomputed with the prompt on readmission, except for the full blocks
// the prefix cache still holds then). Being the earliest arrival of its
// priority still waiting, it lands ahead of later requests.
func (e *engine) preemptLocked(s *seq) {
	if last := len(e.running) - 1; e.running[last] == s {
		e.running[last] = nil
		e.running = e.running[:last]
	} else {
		e.running = slices.DeleteFunc(e.running, func(x *seq) bool { return x == s })
	}
	e.usedBlocks -= s.blocks
	if !e.cfg.NoPrefixCaching {
		// The full blocks of computed tokens keep their contents until reused.
		s.cached = (s.prompt + int(s.generated.Load())) / e.cfg.BlockSize
		e.cachedBlocks += s.cached
		if s.cached > 0 {
			e.evictable = append(e.evictable, s)
		}
	}
	s.blocks, s.state = 0, stateWaiting
	e.preemptions++
	e.waiting = insertSorted(e.waiting, s, e.before)
}

// emitLocked produces one token for every running sequence and retires
// those that reached their target. at is the step's end on the simulated
// clock (as wall time), which latencies are measured to: it is exact even
// when short steps run ahead of the wall clock or the loop lags behind.
func (e *engine) emitLocked(at time.Time) {
	if len(e.running) == 0 {
		return
	}
	kept := e.running[:0]
	for _, s := range e.running {
		g := int(s.generated.Add(1))
		e.genTokens++
		j := s.job
		if g == 1 {
			e.ttft.observe(e.simSeconds(at.Sub(j.arrived)))
		}
		if j.notify != nil {
			select {
			case j.notify <- struct{}{}:
			default:
			}
		}
		if g < s.target {
			kept = append(kept, s)
			continue
		}
		e.usedBlocks -= s.blocks
		s.blocks, s.state = 0, stateDone
		e.completed++
		e.finishedBy[s.finish]++
		e.e2e.observe(e.simSeconds(at.Sub(j.arrived)))
		if j.remaining--; j.remaining == 0 {
			e.jobsDone++
			j.finished, j.ordinal = true, e.jobsDone
			close(j.done)
		}
	}
	clear(e.running[len(kept):])
	e.running = kept
}

// simSeconds converts a wall-clock duration to simulated seconds.
func (e *engine) simSeconds(d time.Duration) float64 { return max(d, 0).Seconds() / e.cfg.TimeScale }

func (e *engine) stats() Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.statsLocked()
}

func (e *engine) statsLocked() Stats {
	return Stats{
		Running: len(e.running), Waiting: len(e.waiting),
		KVUsage:     float64(e.usedBlocks) / float64(e.cfg.KVBlocks),
		Preemptions: e.preemptions, Completed: e.completed, Aborted: e.aborted,
		PromptTokens: e.promptTokens, GenerationTokens: e.genTokens, BusyTime: e.busy,
		PrefixCacheQueries: e.cacheQueries, PrefixCacheHits: e.cacheHits,
	}
}
