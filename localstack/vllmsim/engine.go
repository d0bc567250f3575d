package vllmsim

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Config shapes the simulated engine. Zero values take the defaults noted.
type Config struct {
	Model       string // served model name; "lull-sim-1"
	MaxModelLen int    // prompt + completion token limit; 8192
	MaxNumSeqs  int    // most sequences running at once (vLLM --max-num-seqs); 64
	KVBlocks    int    // KV-cache blocks; 2048
	BlockSize   int    // tokens per KV block; 16

	DecodeStepBase  time.Duration // fixed cost of one decode step; 8ms
	DecodePerSeq    time.Duration // extra step cost per running sequence; 250µs
	PrefillPerToken time.Duration // cost per prompt token admitted in a step; 50µs

	// PriorityScheduling mimics --scheduling-policy priority: lower
	// "priority" values run first and preempt worse ones. Without it, a
	// non-zero priority is rejected like vLLM does.
	PriorityScheduling bool
	// LegacyCacheMetric names the KV usage gauge vllm:gpu_cache_usage_perc
	// (older vLLM) instead of vllm:kv_cache_usage_perc.
	LegacyCacheMetric bool
	// TimeScale multiplies every simulated duration: 1 is real time, 0.01
	// runs 100× faster. 1 when zero.
	TimeScale float64
}

func (c *Config) withDefaults() {
	c.Model = cmp.Or(c.Model, "lull-sim-1")
	c.MaxModelLen = cmp.Or(c.MaxModelLen, 8192)
	c.MaxNumSeqs = cmp.Or(c.MaxNumSeqs, 64)
	c.KVBlocks = cmp.Or(c.KVBlocks, 2048)
	c.BlockSize = cmp.Or(c.BlockSize, 16)
	c.DecodeStepBase = cmp.Or(c.DecodeStepBase, 8*time.Millisecond)
	c.DecodePerSeq = cmp.Or(c.DecodePerSeq, 250*time.Microsecond)
	c.PrefillPerToken = cmp.Or(c.PrefillPerToken, 50*time.Microsecond)
	c.TimeScale = cmp.Or(c.TimeScale, 1)
}

func (c *Config) validate() error {
	var errs []error
	if c.MaxNumSeqs < 1 {
		errs = append(errs, errors.New("MaxNumSeqs must be at least 1"))
	}
	if c.BlockSize < 1 || c.KVBlocks < 2 {
		errs = append(errs, errors.New("BlockSize must be at least 1 and KVBlocks at least 2"))
	}
	if c.TimeScale < 0 {
		errs = append(errs, errors.New("TimeScale must be positive"))
	}
	if c.MaxModelLen < 16 {
		errs = append(errs, errors.New("MaxModelLen must be at least 16"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("vllmsim: config: %w", err)
	}
	return nil
}

// seq is one sequence (one choice of one request) in the engine.
type seq struct {
	prompt, target int
	priority       int
	arrival        uint64
	arrived        time.Time

	generated int
	blocks    int
	running   bool
	first     chan struct{} // closed at the first token
	done      chan struct{} // closed when finished or dropped
	firstAt   time.Time
	dropped   bool
}

// engine is the continuous-batching scheduler.
type engine struct {
	cfg  Config
	mu   sync.Mutex
	wake chan struct{}
	stop chan struct{}
	wg   sync.WaitGroup

	waiting, running []*seq
	usedBlocks       int
	arrivals         uint64

	// counters, under mu
	preemptions, promptTokens, genTokens, finished int64
	ttft, e2e                                      histogram
}

func newEngine(cfg Config) *engine {
	e := &engine{cfg: cfg, wake: make(chan struct{}, 1), stop: make(chan struct{}),
		ttft: newHistogram(), e2e: newHistogram()}
	e.wg.Go(e.loop)
	return e
}

func (e *engine) close() {
	close(e.stop)
	e.wg.Wait()
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, s := range append(e.waiting, e.running...) {
		e.dropLocked(s)
	}
	e.waiting, e.running = nil, nil
}

func (e *engine) blocksFor(tokens int) int { return (tokens + e.cfg.BlockSize - 1) / e.cfg.BlockSize }

// submit queues a sequence.
func (e *engine) submit(prompt, target, priority int) *seq {
	e.mu.Lock()
	e.arrivals++
	s := &seq{prompt: prompt, target: max(target, 1), priority: priority, arrival: e.arrivals, arrived: time.Now(),
		first: make(chan struct{}), done: make(chan struct{})}
	e.waiting = append(e.waiting, s)
	e.mu.Unlock()
	select {
	case e.wake <- struct{}{}:
	default:
	}
	return s
}

// cancel removes a sequence whose client went away.
func (e *engine) cancel(s *seq) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.waiting = slices.DeleteFunc(e.waiting, func(x *seq) bool { return x == s })
	e.running = slices.DeleteFunc(e.running, func(x *seq) bool { return x == s })
	e.dropLocked(s)
}

func (e *engine) dropLocked(s *seq) {
	if s.dropped {
		return
	}
	s.dropped = true
	e.usedBlocks -= s.blocks
	s.blocks = 0
	select {
	case <-s.done:
	default:
		close(s.done)
	}
}

// worse reports whether a should be preempted before b.
func (e *engine) worse(a, b *seq) bool {
	if e.cfg.PriorityScheduling && a.priority != b.priority {
		return a.priority > b.priority
	}
	return a.arrival > b.arrival
}

func (e *engine) loop() {
	var debt time.Duration // simulated time not yet slept
	for {
		e.mu.Lock()
		idle := len(e.waiting) == 0 && len(e.running) == 0
		e.mu.Unlock()
		if idle {
			debt = 0
			select {
			case <-e.stop:
				return
			case <-e.wake:
			}
			continue
		}
		debt += e.step()
		if debt >= time.Millisecond {
			t := time.NewTimer(debt)
			select {
			case <-e.stop:
				t.Stop()
				return
			case <-t.C:
			}
			debt = 0
		}
	}
}

// step runs one scheduler iteration and returns its scaled duration.
func (e *engine) step() time.Duration {
	e.mu.Lock()
	defer e.mu.Unlock()
	cfg := e.cfg
	order := func() {
		slices.SortStableFunc(e.waiting, func(a, b *seq) int {
			if cfg.PriorityScheduling && a.priority != b.priority {
				return cmp.Compare(a.priority, b.priority)
			}
			return cmp.Compare(a.arrival, b.arrival)
		})
	}
	// Order waiting: by priority (when on) then arrival.
	order()
	// With priority scheduling, a better waiting sequence preempts the worst
	// running one when the batch is full.
	if cfg.PriorityScheduling && len(e.waiting) > 0 && len(e.running) >= cfg.MaxNumSeqs {
		worst := slices.MaxFunc(e.running, func(a, b *seq) int {
			if e.worse(a, b) {
				return 1
			}
			return -1
		})
		if e.waiting[0].priority < worst.priority {
			e.preemptLocked(worst)
			order() // the victim goes behind the better request, not back in at once
		}
	}
	// Admit.
	prefill := 0
	for len(e.waiting) > 0 && len(e.running) < cfg.MaxNumSeqs {
		s := e.waiting[0]
		need := e.blocksFor(s.prompt + 1)
		if e.usedBlocks+need > cfg.KVBlocks {
			break
		}
		e.waiting = e.waiting[1:]
		s.blocks, s.running = need, true
		e.usedBlocks += need
		e.running = append(e.running, s)
		prefill += s.prompt
		e.promptTokens += int64(s.prompt)
	}
	// Decode one token for each running sequence, preempting when KV runs out.
	now := time.Now()
	for _, s := range slices.Clone(e.running) {
		if !s.running {
			continue // preempted earlier in this step
		}
		need := e.blocksFor(s.prompt+s.generated+1) - s.blocks
		for need > 0 && e.usedBlocks+need > cfg.KVBlocks {
			victim := slices.MaxFunc(e.running, func(a, b *seq) int {
				if e.worse(a, b) {
					return 1
				}
				return -1
			})
			e.preemptLocked(victim)
			if victim == s {
				break
			}
		}
		if !s.running {
			continue
		}
		if need > 0 {
			s.blocks += need
			e.usedBlocks += need
		}
		s.generated++
		e.genTokens++
		if s.firstAt.IsZero() { // a preempted sequence keeps its first-token time
			s.firstAt = now
			e.ttft.observe(now.Sub(s.arrived).Seconds())
			close(s.first)
		}
	}
	// Retire finished sequences.
	kept := e.running[:0]
	for _, s := range e.running {
		if s.generated >= s.target {
			e.finished++
			e.e2e.observe(now.Sub(s.arrived).Seconds())
			s.running = false
			e.dropLocked(s)
			continue
		}
		kept = append(kept, s)
	}
	e.running = kept
	d := cfg.DecodeStepBase + time.Duration(len(e.running))*cfg.DecodePerSeq + time.Duration(prefill)*cfg.PrefillPerToken
	return time.Duration(float64(d) * cfg.TimeScale)
}

// preemptLocked sends a running sequence back to the head of the waiting
// queue (recompute: its progress is lost), freeing its blocks.
func (e *engine) preemptLocked(s *seq) {
	e.running = slices.DeleteFunc(e.running, func(x *seq) bool { return x == s })
	e.usedBlocks -= s.blocks
	s.blocks, s.running = 0, false
	s.generated = 0
	e.preemptions++
	e.waiting = append([]*seq{s}, e.waiting...)
}

// Stats is a snapshot of the engine.
type Stats struct {
	Running, Waiting int
	KVUsage          float64 // 0..1
	Preemptions      int64
	Finished         int64 // sequences completed
	PromptTokens     int64
	GenerationTokens int64
}

func (e *engine) stats() Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	return Stats{Running: len(e.running), Waiting: len(e.waiting), KVUsage: float64(e.usedBlocks) / float64(e.cfg.KVBlocks),
		Preemptions: e.preemptions, Finished: e.finished, PromptTokens: e.promptTokens, GenerationTokens: e.genTokens}
}

// histogram is a Prometheus-style cumulative histogram.
type histogram struct {
	bounds []float64
	counts []int64
	sum    float64
	n      int64
}

func newHistogram() histogram {
	b := []float64{0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80}
	return histogram{bounds: b, counts: make([]int64, len(b))}
}

func (h *histogram) observe(v float64) {
	for i, b := range h.bounds {
		if v <= b {
			h.counts[i]++
		}
	}
	h.sum += v
	h.n++
}
