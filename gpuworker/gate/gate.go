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
}

// Decision is the gate's answer at one moment.
type Decision struct {
	Open   bool
	Budget int    // how many more requests may be taken now (0 when closed)
	Reason string // why it is closed, or "headroom"
}

// Gate tracks the engine and decides.
type Gate struct {
	policy  Policy
	url     string
	client  *http.Client
	now     func() time.Time
	pending func() int // requests taken but not yet visible to the engine

	mu          sync.Mutex
	last        Snapshot
	lastOK      bool
	lastErr     error
	preemptedAt time.Time
	changed     chan struct{}
	// sent holds when requests were sent to the engine that the latest good
	// scrape may not show yet (sent after that scrape began).
	sent []time.Time
}

// Sent records that the worker just sent a request to the engine, so the
// budget accounts for it until a scrape that began later shows it.
func (g *Gate) Sent() {
	g.mu.Lock()
	g.sent = append(g.sent, g.now())
	g.mu.Unlock()
}

// New returns a gate over the engine's metrics at metricsURL. pending
// reports how many requests the worker holds that the engine does not count
// yet (received, not yet sent); nil means none.
func New(metricsURL string, p Policy, pending func() int) *Gate {
	p.withDefaults()
	if pending == nil {
		pending = func() int { return 0 }
	}
	return &Gate{policy: p, url: metricsURL, client: &http.Client{Timeout: 2 * time.Second}, now: time.Now,
		pending: pending, changed: make(chan struct{})}
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
	case !g.preemptedAt.IsZero() && now.Sub(g.preemptedAt) < p.PreemptionCooldown:
		return Decision{Reason: "recent preemption"}
	}
	budget := p.TargetRunning - int(math.Ceil(s.Running)) - len(g.sent) - g.pending()
	if budget <= 0 {
		return Decision{Reason: "engine full"}
	}
	return Decision{Open: true, Budget: budget, Reason: "headroom"}
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
	return Parse(resp.Body, began)
}
