package gate

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"net/http"
	"sync"
	"time"
)

// Policy are the gate's knobs.
type Policy struct {
	// TargetRunning is how many sequences the engine should run at once
	// (vLLM's --max-num-seqs or a little less). The budget fills up to it.
	TargetRunning int
	// KVHigh closes the gate when KV-cache usage is at or above it (0..1).
	KVHigh float64
	// PreemptionCooldown keeps the gate closed this long after the
	// preemption counter last rose.
	PreemptionCooldown time.Duration
	// MaxAge closes the gate when the latest good scrape is older than this.
	MaxAge time.Duration
	// Interval is the scrape period.
	Interval time.Duration
	// Reserve is the least number of sequences kept free for traffic that
	// is not this worker's (interactive requests sent straight to the
	// engine). Default 0.
	Reserve int
	// ReserveWindow is how long the gate remembers the peak of that other
	// traffic: it keeps as many sequences free as other traffic ran at once
	// within the window (at least Reserve). It should be longer than an
	// async request runs, since a slot given to one is held that long and
	// the engine does not preempt it for a newly arriving request.
	// Default 30s, or the latest scrape alone with EnginePreempts. Only
	// with Counters.AtEngine.
	ReserveWindow time.Duration
	// EnginePreempts says the engine gives a running request's slot to a
	// waiting one of better priority (vLLM V0 under --scheduling-policy
	// priority, and V1 with the fix for vllm-project/vllm#40004), so async
	// work sent at a low priority never keeps interactive requests from a
	// slot. The gate then fills the engine up to TargetRunning around what
	// other traffic runs now rather than its recent peak, and preemptions
	// (the engine making room, cheap with the prefix cache) do not close it;
	// the KV watermark and the waiting queue still do.
	EnginePreempts bool
	// QueueDepthOnly replaces the headroom policy with the common
	// queue-depth budget (allowed = TargetRunning × (1 − waiting/TargetRunning),
	// minus what pending reports). Kept for comparison in benchmarks.
	QueueDepthOnly bool
}

func (p *Policy) withDefaults() {
	p.TargetRunning = cmp.Or(p.TargetRunning, 64)
	p.KVHigh = cmp.Or(p.KVHigh, 0.90)
	p.PreemptionCooldown = cmp.Or(p.PreemptionCooldown, 2*time.Second)
	p.Interval = cmp.Or(p.Interval, 200*time.Millisecond)
	p.MaxAge = cmp.Or(p.MaxAge, 5*p.Interval)
	if !p.EnginePreempts {
		p.ReserveWindow = cmp.Or(p.ReserveWindow, 30*time.Second)
	}
}

// Counters are what the worker tells the gate about its own requests.
// Either may be nil.
type Counters struct {
	// Pending reports requests taken but not yet sent to the engine.
	Pending func() int
	// AtEngine reports this worker's requests at the engine now (sent,
	// response not yet back). With it the gate tells its own load from
	// other traffic and reserves room for the other traffic's recent peak;
	// without it every running request counts as the worker's.
	AtEngine func() int
}

// Decision is the gate's answer at one moment.
type Decision struct {
	Open   bool
	Budget int    // how many more requests may be taken now (0 when closed)
	Reason string // why it is closed, or "headroom"
	// Reserve is how many sequences the gate keeps free for other traffic.
	Reserve int
}

// Gate tracks the engine and decides.
type Gate struct {
	policy   Policy
	url      string
	client   *http.Client
	now      func() time.Time
	pending  func() int // requests taken but not yet visible to the engine
	atEngine func() int // nil: unknown

	mu          sync.Mutex
	last        Snapshot
	lastOK      bool
	lastErr     error
	preemptedAt time.Time
	changed     chan struct{}
	// sent holds when requests were sent to the engine that the latest good
	// scrape may not show yet (sent after that scrape began).
	sent []time.Time
	// sends counts every Sent call.
	sends int
	// foreign holds recent samples of other traffic's concurrency, oldest
	// first, for the reserve.
	foreign []otherLoad
}

// otherLoad is other traffic's concurrency at one scrape.
type otherLoad struct {
	at time.Time
	n  float64
}

// Sent records that the worker just sent a request to the engine, so the
// budget accounts for it until a scrape that began later shows it.
func (g *Gate) Sent() {
	g.mu.Lock()
	g.sent = append(g.sent, g.now())
	g.sends++
	g.mu.Unlock()
}

func (g *Gate) sendCount() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.sends
}

// New returns a gate over the engine's metrics at metricsURL.
func New(metricsURL string, p Policy, c Counters) *Gate {
	p.withDefaults()
	if c.Pending == nil {
		c.Pending = func() int { return 0 }
	}
	return &Gate{policy: p, url: metricsURL, client: &http.Client{Timeout: 2 * time.Second}, now: time.Now,
		pending: c.Pending, atEngine: c.AtEngine, changed: make(chan struct{})}
}

// Policy returns the effective policy.
func (g *Gate) Policy() Policy { return g.policy }

// Observe records a scrape result (exported for tests and alternative
// scrapers).
func (g *Gate) Observe(s Snapshot, err error) {
	g.mu.Lock()
	if err != nil {
		g.lastErr = err
	} else {
		if g.lastOK && s.HasPreemptions && s.Preemptions > g.last.Preemptions {
			g.preemptedAt = s.At
		}
		g.last, g.lastOK, g.lastErr = s, true, nil
		// Forget sends the scrape saw: those before it began.
		keep := g.sent[:0]
		for _, t := range g.sent {
			if !t.Before(s.At) {
				keep = append(keep, t)
			}
		}
		g.sent = keep
		// Other traffic: what the engine holds beyond this worker's requests
		// (those at the engine when the scrape began or sent before it was answered).
		other := max(0, s.Running+s.Waiting-s.Ours)
		drop := 0
		for drop < len(g.foreign) && s.At.Sub(g.foreign[drop].at) > g.policy.ReserveWindow {
			drop++
		}
		g.foreign = append(g.foreign[drop:], otherLoad{s.At, other})
	}
	close(g.changed)
	g.changed = make(chan struct{})
	g.mu.Unlock()
}

// Age returns how old the latest good scrape is (a very large value before
// the first one).
func (g *Gate) Age() time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.lastOK {
		return time.Duration(math.MaxInt64)
	}
	return g.now().Sub(g.last.At)
}

// Decide returns the decision for now.
func (g *Gate) Decide() Decision {
	g.mu.Lock()
	defer g.mu.Unlock()
	now, p, s := g.now(), g.policy, g.last
	switch {
	case !g.lastOK:
		return Decision{Reason: "no engine metrics yet"}
	case now.Sub(s.At) > p.MaxAge:
		return Decision{Reason: fmt.Sprintf("engine metrics stale (%s old)", now.Sub(s.At).Round(time.Millisecond))}
	case p.QueueDepthOnly:
		allowed := int(float64(p.TargetRunning) * max(0, 1-s.Waiting/float64(p.TargetRunning)))
		if b := allowed - g.pending(); b > 0 {
			return Decision{Open: true, Budget: b, Reason: "queue-depth budget"}
		}
		return Decision{Reason: "queue-depth budget spent"}
	case s.Waiting > 0:
		return Decision{Reason: fmt.Sprintf("engine queueing (%g waiting)", s.Waiting)}
	case s.HasKV && s.KVUsage >= p.KVHigh:
		return Decision{Reason: fmt.Sprintf("KV cache at %.0f%%", 100*s.KVUsage)}
	case !p.EnginePreempts && !g.preemptedAt.IsZero() && now.Sub(g.preemptedAt) < p.PreemptionCooldown:
		return Decision{Reason: "recent preemption"}
	}
	if g.atEngine == nil {
		budget := p.TargetRunning - int(math.Ceil(s.Running)) - len(g.sent) - g.pending()
		if budget <= 0 {
			return Decision{Reason: "engine full"}
		}
		return Decision{Open: true, Budget: budget, Reason: "headroom"}
	}
	// Keep room for the most other traffic seen lately; fill the rest.
	peak := 0.0
	for _, f := range g.foreign {
		peak = max(peak, f.n)
	}
	reserve := max(p.Reserve, int(math.Ceil(peak)))
	budget := p.TargetRunning - reserve - g.atEngine() - g.pending()
	if budget <= 0 {
		return Decision{Reason: fmt.Sprintf("engine full (%d kept for other traffic)", reserve), Reserve: reserve}
	}
	return Decision{Open: true, Budget: budget, Reason: "headroom", Reserve: reserve}
}

// Wait blocks until the gate opens (or ctx ends) and returns the budget.
func (g *Gate) Wait(ctx context.Context) (int, error) {
	for {
		g.mu.Lock()
		changed := g.changed
		g.mu.Unlock()
		if d := g.Decide(); d.Open {
			return d.Budget, nil
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-changed:
		case <-time.After(g.policy.Interval):
		}
	}
}

// Run scrapes the engine every Interval until ctx ends.
func (g *Gate) Run(ctx context.Context) {
	t := time.NewTicker(g.policy.Interval)
	defer t.Stop()
	for {
		g.Observe(g.scrape(ctx))
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (g *Gate) scrape(ctx context.Context) (Snapshot, error) {
	began := g.now() // the snapshot shows what was sent before this
	// The engine may count requests sent while the scrape is under way, so
	// the worker's share is what was at the engine when it began plus what
	// it sent until the answer came; otherwise those sends would look like
	// other traffic and inflate the reserve for a whole window.
	ours, sendsBefore := 0, g.sendCount()
	if g.atEngine != nil {
		ours = g.atEngine()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.url, nil)
	if err != nil {
		return Snapshot{}, err
	}
	resp, err := g.client.Do(req)
	if err != nil {
		return Snapshot{}, fmt.Errorf("gate: scrape %s: %w", g.url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Snapshot{}, fmt.Errorf("gate: scrape %s: status %d", g.url, resp.StatusCode)
	}
	snap, err := Parse(resp.Body, began)
	snap.Ours = float64(ours + g.sendCount() - sendsBefore)
	return snap, err
}
