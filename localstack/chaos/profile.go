package chaos

import (
	"fmt"
	"strings"
	"time"

	"github.com/lull-ai/lull/localstack/faultproxy"
)

// Profile sizes one chaos run: the load, the faults and the bounds.
type Profile struct {
	Name string
	// Seed seeds every fault draw (proxies, engine, receiver, kills).
	Seed uint64
	// Requests is the number of slow requests, sent by Clients concurrent
	// clients spread over SubmitOver.
	Requests   int
	Clients    int
	SubmitOver time.Duration
	// MaxTokens bounds each slow request's answer.
	MaxTokens int
	// Batches are created at the start of the run.
	Batches []BatchSpec
	// Workers is the number of GPU worker processes, each running up to
	// WorkerConcurrency generations; Kills of them are SIGKILLed (and
	// replaced) during the fault window, spread evenly.
	Workers           int
	WorkerConcurrency int
	Kills             int
	// AWS is the fault rule of every DynamoDB, SQS and S3 call.
	AWS faultproxy.Rule
	// Engine is the fault rule of the engine's completion calls: 5xx before
	// they run, and stalls past EngineTimeout.
	Engine        faultproxy.Rule
	EngineTimeout time.Duration
	// SimTimeScale is the vLLM simulator's speed (1 = real time).
	SimTimeScale float64
	// WebhookFail is the share of webhook deliveries the receiver answers
	// badly while faults are on; WebhookTimeout bounds one attempt and
	// WebhookTimeScale speeds up the retry schedule.
	WebhookFail      float64
	WebhookTimeout   time.Duration
	WebhookTimeScale float64
	// MinFaultWindow is the least time faults stay on.
	MinFaultWindow time.Duration
	// Converge bounds the wait, after healing, for every invariant to hold.
	Converge time.Duration
}

// BatchSpec is one batch of a run.
type BatchSpec struct {
	Name  string
	Lines int
	// Cancel cancels the batch once a quarter of its lines ended (judged
	// from a sample of its lines).
	Cancel bool
	// Window is the batch's completion window; 24h when zero. A short one
	// with long lines (MaxTokens, IgnoreEOS) makes the batch expire midway.
	Window    time.Duration
	MaxTokens int
	IgnoreEOS bool
}

// awsRule fails share of the calls, half before they reach the emulator and
// half after they took effect (a fifth of those by cutting the connection),
// and slows as many again.
func awsRule(share float64) faultproxy.Rule {
	return faultproxy.Rule{Before: share / 2, After: share * 0.4, Cut: share * 0.1, Slow: share, SlowFor: 300 * time.Millisecond}
}

// engineCalls limits engine faults to completion requests (not /health or
// /metrics).
func engineCalls(op string) bool { return strings.HasPrefix(op, "POST /v1/") }

// Short is the profile `make test` runs (about one to two minutes on two
// cores): every kind of fault a few times.
func Short() Profile {
	return Profile{
		Name: "short", Seed: 12, Requests: 150, Clients: 8, SubmitOver: 15 * time.Second, MaxTokens: 16,
		Batches: []BatchSpec{
			{Name: "plain", Lines: 60},
			{Name: "cancelled", Lines: 30, Cancel: true, MaxTokens: 2000, IgnoreEOS: true},
			{Name: "expiring", Lines: 30, Window: 12 * time.Second, MaxTokens: 1000, IgnoreEOS: true},
		},
		Workers: 2, WorkerConcurrency: 8, Kills: 2,
		AWS:           awsRule(0.06),
		Engine:        faultproxy.Rule{Before: 0.05, Stall: 0.02, StallFor: 6 * time.Second, Only: engineCalls},
		EngineTimeout: 3 * time.Second, SimTimeScale: 0.1,
		WebhookFail: 0.3, WebhookTimeout: time.Second, WebhookTimeScale: 0.0005,
		MinFaultWindow: 20 * time.Second, Converge: 4 * time.Minute,
	}
}

// Long is the on-demand profile (`make chaos`): 5,000 slow requests, three
// batches of 600 lines (one cancelled midway, one expiring), 10 % of AWS
// calls failed (half after taking effect), four worker SIGKILLs, 5 % engine
// 5xx plus stalls, 30 % of webhook deliveries failed.
func Long() Profile {
	return Profile{
		Name: "long", Seed: 2026, Requests: 5000, Clients: 16, SubmitOver: 4 * time.Minute, MaxTokens: 16,
		Batches: []BatchSpec{
			{Name: "plain", Lines: 600},
			{Name: "cancelled", Lines: 600, Cancel: true, MaxTokens: 2000, IgnoreEOS: true},
			{Name: "expiring", Lines: 600, Window: time.Minute, MaxTokens: 1000, IgnoreEOS: true},
		},
		Workers: 3, WorkerConcurrency: 16, Kills: 4,
		AWS:           awsRule(0.10),
		Engine:        faultproxy.Rule{Before: 0.05, Stall: 0.01, StallFor: 8 * time.Second, Only: engineCalls},
		EngineTimeout: 4 * time.Second, SimTimeScale: 0.1,
		WebhookFail: 0.3, WebhookTimeout: time.Second, WebhookTimeScale: 0.0005,
		MinFaultWindow: time.Minute, Converge: 30 * time.Minute,
	}
}

// ProfileByName returns the named profile ("short" or "long").
func ProfileByName(name string) (Profile, error) {
	switch name {
	case "short":
		return Short(), nil
	case "long":
		return Long(), nil
	}
	return Profile{}, fmt.Errorf("chaos: unknown profile %q (want short or long)", name)
}
