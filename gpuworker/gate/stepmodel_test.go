package gate

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// stepTime is the engine the tests learn: 8 ms per step, 40 µs per async
// sequence (long contexts), 25 µs per other sequence, 50 µs per prefilled
// token.
func stepTime(ours, others, p float64) float64 { return 0.008 + 40e-6*ours + 25e-6*others + 50e-6*p }

func TestStepModelFit(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1000, 0)
	at := func(i int) time.Time { return t0.Add(time.Duration(i) * 50 * time.Millisecond) }
	type adder func(at time.Time, x [3]float64, y float64)
	for _, tc := range []struct {
		name    string
		samples func(add adder)
		ok      bool
		want    stepFit // when ok; perOther/perTok zero: not checked
	}{
		{"Recovers", func(add adder) {
			rng := rand.New(rand.NewPCG(1, 2))
			for i := range 400 {
				o, n, p := float64(rng.IntN(25)), float64(rng.IntN(8)), float64(rng.IntN(120))
				add(at(i), [3]float64{o, n, p}, stepTime(o, n, p)*(1+0.01*rng.NormFloat64()))
			}
		}, true, stepFit{base: 0.008, perOurs: 40e-6, perOther: 25e-6, perTok: 50e-6}},
		// Prefill always proportional to the worker's batch: it cannot be
		// told apart, so it is folded into the cost per sequence.
		{"CollinearPrefill", func(add adder) {
			for i := range 100 {
				o := float64(4 + i%20)
				add(at(i), [3]float64{o, 0, 10 * o}, stepTime(o, 0, 10*o))
			}
		}, true, stepFit{base: 0.008, perOurs: 540e-6}},
		{"OursConstant", func(add adder) {
			for i := range 100 {
				n := float64(i % 8)
				add(at(i), [3]float64{20, n, 0}, stepTime(20, n, 0))
			}
		}, false, stepFit{}},
		{"TooFewSamples", func(add adder) {
			for i := range minSamples - 1 {
				o := float64(4 + i)
				add(at(i), [3]float64{o, 0, 0}, stepTime(o, 0, 0))
			}
		}, false, stepFit{}},
		// The engine got slower per sequence (longer contexts): ten time
		// constants later the fit follows the new engine.
		{"Forgets", func(add adder) {
			for i := range 100 {
				o := float64(4 + i%20)
				add(at(i), [3]float64{o, 0, 0}, 0.004+200e-6*o)
			}
			for i := range 100 {
				o := float64(4 + i%20)
				add(at(i).Add(10*stepModelTau), [3]float64{o, 0, 0}, stepTime(o, 0, 0))
			}
		}, true, stepFit{base: 0.008, perOurs: 40e-6}},
		// Steps that got faster with more sequences: not a real engine.
		{"NegativeSlope", func(add adder) {
			for i := range 100 {
				o := float64(4 + i%20)
				add(at(i), [3]float64{o, 0, 0}, 0.012-100e-6*o)
			}
		}, false, stepFit{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := stepModel{tau: stepModelTau}
			tc.samples(m.add)
			f := m.fit()
			if f.ok != tc.ok {
				t.Fatalf("fit %+v, want ok %v", f, tc.ok)
			}
			if !f.ok {
				return
			}
			near := func(got, want, tol float64) bool { return want == 0 || math.Abs(got/want-1) <= tol }
			if !near(f.base, tc.want.base, 0.03) || !near(f.perOurs, tc.want.perOurs, 0.05) ||
				!near(f.perOther, tc.want.perOther, 0.1) || !near(f.perTok, tc.want.perTok, 0.1) {
				t.Fatalf("fit %+v, want %+v", f, tc.want)
			}
		})
	}
}

// A fit survives samples that no longer determine one: the worker's count
// held steady (the bound binding) must not drop the bound.
func TestStepModelKeepsLastFit(t *testing.T) {
	t.Parallel()
	m := stepModel{tau: stepModelTau}
	t0 := time.Unix(1000, 0)
	for i := range 100 {
		o := float64(4 + i%20)
		m.add(t0.Add(time.Duration(i)*50*time.Millisecond), [3]float64{o, 0, 0}, stepTime(o, 0, 0))
	}
	before := m.fit()
	later := t0.Add(20 * stepModelTau) // the varied samples have faded away
	for i := range 100 {
		m.add(later.Add(time.Duration(i)*50*time.Millisecond), [3]float64{20, 0, 0}, stepTime(20, 0, 0))
	}
	if m.solve().ok || m.fit() != before || !before.ok {
		t.Fatalf("fit %+v after steady samples (solve %+v), want the earlier %+v", m.fit(), m.solve(), before)
	}
}

// TestStepModelObserve: a sample needs two scrapes with steps counted in
// between and the engine running at both.
func TestStepModelObserve(t *testing.T) {
	t.Parallel()
	at := time.Unix(1000, 0)
	prev := Snapshot{At: at, Running: 10, Ours: 6, Steps: 100, StepTokens: 1000, HasSteps: true}
	for _, tc := range []struct {
		name string
		cur  Snapshot
		want int
	}{
		{"Counted", Snapshot{At: at.Add(90 * time.Millisecond), Running: 10, Ours: 8, Steps: 110, StepTokens: 1200, HasSteps: true}, 1},
		{"Idle", Snapshot{At: at.Add(90 * time.Millisecond), Running: 0, Steps: 110, StepTokens: 1200, HasSteps: true}, 0},
		{"NoCounter", Snapshot{At: at.Add(90 * time.Millisecond), Running: 10}, 0},
		{"Restarted", Snapshot{At: at.Add(90 * time.Millisecond), Running: 10, Steps: 3, StepTokens: 30, HasSteps: true}, 0},
		{"OneStep", Snapshot{At: at.Add(9 * time.Millisecond), Running: 10, Steps: 101, StepTokens: 1010, HasSteps: true}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := stepModel{tau: stepModelTau}
			m.observe(prev, tc.cur)
			if m.samples != tc.want {
				t.Fatalf("%d samples, want %d", m.samples, tc.want)
			}
			if tc.want == 1 {
				// 10 steps in 90 ms, 20 tokens a step of which 10 decode;
				// 7 of the worker's sequences on average, 3 others.
				if math.Abs(m.y-0.009) > 1e-12 || m.x != [3]float64{7, 3, 10} {
					t.Fatalf("sample step %g s, regressors %v; want 0.009 and [7 3 10]", m.y, m.x)
				}
			}
		})
	}
}

// learnEngine feeds the gate scrapes of an engine with steps of stepTime,
// its batch cycling between 4 and 23 sequences, all of them the worker's,
// 100 ms apart, and returns the last scrape. Between two scrapes the batch
// is taken as their mean, as the gate does.
func learnEngine(g *Gate, c *clock) Snapshot {
	s := Snapshot{HasSteps: true}
	for i := range 60 {
		n := float64(4 + i%20)
		mean := n
		if i > 0 {
			mean = (s.Running + n) / 2
		}
		s.Running, s.Ours = n, n
		s.Steps += 0.1 / stepTime(mean, 0, 0)
		s.StepTokens += mean * 0.1 / stepTime(mean, 0, 0)
		g.Observe(snap(s, c), nil)
		c.add(100 * time.Millisecond)
	}
	return s
}

// TestSlowdownBound: while other traffic is about, the gate lets the
// worker's sequences lengthen the engine's steps by at most MaxSlowdown;
// without other traffic it fills the engine to its target.
func TestSlowdownBound(t *testing.T) {
	t.Parallel()
	// The worker's sequences cost 40 µs each on 8 ms steps; the learning
	// saw no other traffic, so its cost is taken as 0 and 10 % allows
	// 0.1 × 8 ms / 40 µs = 20 of the worker's.
	for _, tc := range []struct {
		name     string
		policy   Policy
		learn    bool
		otherAgo time.Duration // other traffic last seen this long before the final scrape; <0: never
		other    float64       // other traffic's sequences in the final scrape
		ours     int
		open     bool
		budget   int
		limit    int
		reason   string
	}{
		{"AloneFillsToTarget", Policy{MaxSlowdown: 0.1}, true, -1, 0, 10, true, 22, -1, "headroom"},
		{"OtherTrafficBounds", Policy{MaxSlowdown: 0.1}, true, 0, 5, 10, true, 10, 20, "headroom"},
		{"BoundSpent", Policy{MaxSlowdown: 0.1}, true, 0, 5, 20, false, 0, 20, "slowdown bound"},
		{"LooserBound", Policy{MaxSlowdown: 0.25}, true, 0, 5, 10, true, 17, 50, "headroom"},
		{"RecentOtherTraffic", Policy{MaxSlowdown: 0.1, EnginePreempts: true}, true, 20 * time.Second, 0, 10, true, 10, 20, "headroom"},
		{"OtherTrafficLongGone", Policy{MaxSlowdown: 0.1, EnginePreempts: true}, true, 31 * time.Second, 0, 10, true, 22, -1, "headroom"},
		{"NoStepCounterNoBound", Policy{MaxSlowdown: 0.1}, false, 0, 5, 10, true, 17, -1, "headroom"},
		{"Off", Policy{}, true, 0, 5, 10, true, 17, -1, "headroom"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := &clock{t: time.Unix(1000, 0)}
			p := tc.policy
			p.TargetRunning, p.Interval, p.MaxAge, p.ReserveWindow = 32, 100*time.Millisecond, time.Minute, 100*time.Millisecond
			g := New("http://unused", p, Counters{AtEngine: func() int { return tc.ours }})
			g.now = c.now
			last := Snapshot{}
			if tc.learn {
				last = learnEngine(g, c)
			}
			final := Snapshot{Running: float64(tc.ours) + tc.other, Ours: float64(tc.ours), Steps: last.Steps, StepTokens: last.StepTokens, HasSteps: tc.learn}
			if tc.otherAgo > 0 {
				seen := final
				seen.Running++
				g.Observe(snap(seen, c), nil)
				c.add(tc.otherAgo)
			}
			g.Observe(snap(final, c), nil)
			d := g.Decide()
			if d.Open != tc.open || d.Budget != tc.budget || d.Limit != tc.limit || !strings.Contains(d.Reason, tc.reason) {
				st, ok := g.StepTimes()
				t.Fatalf("Decide = %+v (model %+v, %v), want open=%v budget=%d limit=%d reason~%q",
					d, st, ok, tc.open, tc.budget, tc.limit, tc.reason)
			}
		})
	}
}
