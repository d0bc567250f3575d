package backlog_test

import (
	"math"
	"testing"

	"github.com/lull-ai/lull/lambdas/scaler/backlog"
)

func TestDecide(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		sample backlog.Sample
		want   backlog.Decision
	}{
		{"Idle", backlog.Sample{}, backlog.Decision{}},
		{"IdleWithInstances", backlog.Sample{Instances: 3}, backlog.Decision{}},
		{"FromZeroVisible", backlog.Sample{Visible: 1}, backlog.Decision{Backlog: 1, BacklogPerInstance: 1, UnservedBacklog: 1, ScaleFromZero: true}},
		{"FromZeroLarge", backlog.Sample{Visible: 1000, InFlight: 24}, backlog.Decision{Backlog: 1024, BacklogPerInstance: 1024, UnservedBacklog: 1024, ScaleFromZero: true}},
		// Messages held by a worker that has gone away come back visible;
		// launching now saves their visibility timeout.
		{"FromZeroOrphanedInFlight", backlog.Sample{InFlight: 2}, backlog.Decision{Backlog: 2, BacklogPerInstance: 2, UnservedBacklog: 2, ScaleFromZero: true}},
		{"PerInstance", backlog.Sample{Visible: 300, InFlight: 100, Instances: 4}, backlog.Decision{Backlog: 400, BacklogPerInstance: 100}},
		{"Fractional", backlog.Sample{Visible: 1, Instances: 3}, backlog.Decision{Backlog: 1, BacklogPerInstance: 1.0 / 3}},
		{"BusyEmptyQueue", backlog.Sample{InFlight: 128, Instances: 1}, backlog.Decision{Backlog: 128, BacklogPerInstance: 128}},
		// Scale-out decided, nothing launched yet: not empty, the step policy stays quiet.
		{"DesiredNotLaunched", backlog.Sample{Visible: 5, Desired: 1}, backlog.Decision{Backlog: 5, BacklogPerInstance: 5}},
		{"NegativeCountsIgnored", backlog.Sample{Visible: -5, InFlight: 3, Instances: -1}, backlog.Decision{Backlog: 3, BacklogPerInstance: 3, UnservedBacklog: 3, ScaleFromZero: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := backlog.Decide(tc.sample)
			if got.Backlog != tc.want.Backlog || got.ScaleFromZero != tc.want.ScaleFromZero ||
				math.Abs(got.BacklogPerInstance-tc.want.BacklogPerInstance) > 1e-9 || got.UnservedBacklog != tc.want.UnservedBacklog {
				t.Fatalf("Decide(%+v) = %+v, want %+v", tc.sample, got, tc.want)
			}
			if math.IsInf(got.BacklogPerInstance, 0) || math.IsNaN(got.BacklogPerInstance) {
				t.Fatalf("BacklogPerInstance = %v", got.BacklogPerInstance)
			}
		})
	}
}

func TestData(t *testing.T) {
	t.Parallel()
	got := backlog.Decide(backlog.Sample{Visible: 10, Instances: 0}).Data()
	want := []backlog.Datum{{Name: "BacklogPerInstance", Value: 10}, {Name: "UnservedBacklog", Value: 10}}
	if len(got) != len(want) {
		t.Fatalf("Data = %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("Data[%d] = %+v, want %+v", i, got[i], want[i])
		}
	}
	// Zeros are published too, so alarms return to OK and target tracking scales in.
	for _, d := range backlog.Decide(backlog.Sample{Instances: 2}).Data() {
		if d.Value != 0 {
			t.Fatalf("idle datum %+v, want 0", d)
		}
	}
}

func TestDesiredInstances(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name               string
		backlog            int
		target             float64
		minN, maxN, wanted int
	}{
		{"Empty", 0, 128, 0, 10, 0},
		{"One", 1, 128, 0, 10, 1},
		{"ExactMultiple", 256, 128, 0, 10, 2},
		{"RoundsUp", 257, 128, 0, 10, 3},
		{"CappedAtMax", 100000, 128, 0, 10, 10},
		{"FloorAtMin", 0, 128, 2, 10, 2},
		{"ZeroTarget", 5, 0, 0, 4, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := backlog.DesiredInstances(tc.backlog, tc.target, tc.minN, tc.maxN); got != tc.wanted {
				t.Fatalf("DesiredInstances(%d, %v, %d, %d) = %d, want %d", tc.backlog, tc.target, tc.minN, tc.maxN, got, tc.wanted)
			}
		})
	}
}

// TestScalingLoop runs the two policies the infra construct attaches to a
// model's group against the scaler's metrics, minute by minute: the step
// policy (UnservedBacklog >= ScaleFromZeroThreshold adds
// ScaleFromZeroInstances) and target tracking (capacity × metric / target,
// rounded up, never from zero). The group must leave zero, settle at
// ceil(backlog / target) and return to zero when the queue drains.
func TestScalingLoop(t *testing.T) {
	t.Parallel()
	const target, maxN = backlog.DefaultTargetBacklogPerInstance, 20
	step := func(capacity int, s backlog.Sample) int {
		return backlog.NextCapacity(capacity, backlog.Decide(s).Data(), target, maxN)
	}
	for _, tc := range []struct {
		name    string
		backlog int
		want    int
	}{
		{"OneMessage", 1, 1},
		{"Thousand", 1000, 8},
		{"Huge", 1 << 20, maxN},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			capacity := 0
			for range 10 {
				capacity = step(capacity, backlog.Sample{Visible: tc.backlog, Instances: capacity})
			}
			if capacity != tc.want {
				t.Fatalf("capacity after 10 minutes = %d, want %d", capacity, tc.want)
			}
			if want := backlog.DesiredInstances(tc.backlog, target, 0, maxN); capacity != want {
				t.Fatalf("loop settled at %d, DesiredInstances says %d", capacity, want)
			}
			// Once in service, the step policy stays quiet.
			if backlog.Decide(backlog.Sample{Visible: tc.backlog, Instances: capacity}).ScaleFromZero {
				t.Fatal("ScaleFromZero with instances in service")
			}
			if capacity = step(capacity, backlog.Sample{Instances: capacity}); capacity != 0 {
				t.Fatalf("capacity with an empty queue = %d, want 0", capacity)
			}
		})
	}
}

func TestNextCapacity(t *testing.T) {
	t.Parallel()
	data := func(perInstance, unserved float64) []backlog.Datum {
		return []backlog.Datum{{Name: backlog.MetricBacklogPerInstance, Value: perInstance}, {Name: backlog.MetricUnservedBacklog, Value: unserved}}
	}
	for _, tc := range []struct {
		name     string
		capacity int
		data     []backlog.Datum
		target   float64
		want     int
	}{
		{"IdleStaysZero", 0, data(0, 0), 128, 0},
		{"FromZero", 0, data(500, 500), 128, backlog.ScaleFromZeroInstances},
		{"BelowThresholdStaysZero", 0, data(0.5, 0.5), 128, 0},
		{"TargetTracking", 1, data(1000, 0), 128, 8},
		{"ScaleIn", 4, data(10, 0), 128, 1},
		{"ToZero", 3, data(0, 0), 128, 0},
		{"Capped", 1, data(1e9, 0), 128, 20},
		{"ZeroTargetHolds", 2, data(1000, 0), 0, 2},
		{"NoData", 2, nil, 128, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := backlog.NextCapacity(tc.capacity, tc.data, tc.target, 20); got != tc.want {
				t.Fatalf("NextCapacity(%d, %v) = %d, want %d", tc.capacity, tc.data, got, tc.want)
			}
		})
	}
}
