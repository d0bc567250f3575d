// Package backlog is the scaling arithmetic of lull's GPU fleet. The scaler
// Lambda samples each model's request queue and Auto Scaling group once a
// minute, computes a Decision here and publishes Decision.Data as CloudWatch
// metrics (namespace settings.Scaler.MetricNamespace, one dimension
// DimensionModel = the model name). The infra construct builds the group's
// scaling policies from the same constants, so the two cannot disagree:
//
//   - a target tracking policy keeps MetricBacklogPerInstance at the model's
//     target (DefaultTargetBacklogPerInstance unless the deployment sets one);
//   - a step policy adds ScaleFromZeroInstances instances when
//     MetricUnservedBacklog reaches ScaleFromZeroThreshold, because target
//     tracking multiplies the current capacity by the metric ratio and so
//     can never leave zero on its own.
//
// The package imports only the standard library.
package backlog

import "math"

// Names of the metrics and their dimension. The infra construct reads these
// when it builds the Auto Scaling policies.
const (
	// MetricBacklogPerInstance is Decision.BacklogPerInstance; target
	// tracking keeps it at the model's target.
	MetricBacklogPerInstance = "BacklogPerInstance"
	// MetricUnservedBacklog is Decision.UnservedBacklog: the backlog while the
	// group has no capacity, else 0. Its alarm drives the scale-from-zero
	// step policy.
	MetricUnservedBacklog = "UnservedBacklog"
	// DimensionModel is the only dimension of both metrics: the model name
	// as clients send it (the key of LULL_MODEL_QUEUES).
	DimensionModel = "Model"
)

// Thresholds the infra construct uses.
const (
	// DefaultTargetBacklogPerInstance is the target of the target tracking
	// policy when a model sets none: messages (waiting plus running) one GPU
	// instance should hold. 128 is two full engine batches at the worker's
	// default gate target of 64 running sequences: one batch on the GPU and
	// one ready to take its place, so an instance never idles for lack of
	// work yet nothing waits long for a second instance that could exist.
	DefaultTargetBacklogPerInstance = 128.0
	// ScaleFromZeroThreshold is the UnservedBacklog at or above which the
	// step policy launches instances: one message is enough, since an empty
	// group never drains anything.
	ScaleFromZeroThreshold = 1.0
	// ScaleFromZeroInstances is how many instances the step policy adds to
	// an empty group; target tracking sizes the group from there.
	ScaleFromZeroInstances = 1
)

// Sample is one observation of a model's queue and group.
type Sample struct {
	// Visible is the queue's ApproximateNumberOfMessages: messages waiting
	// for a worker.
	Visible int
	// InFlight is the queue's ApproximateNumberOfMessagesNotVisible:
	// messages a worker has received and not yet deleted (running, or
	// released by a dead worker and waiting out their visibility timeout).
	InFlight int
	// Instances is the capacity Auto Scaling counts for the group: the
	// instances InService plus those Pending (launching). Counting launching
	// instances keeps a backlog seen while the first instances boot from
	// being multiplied by every instance already on its way.
	Instances int
	// Desired is the group's desired capacity: it counts, besides
	// Instances, the instances Auto Scaling has decided on and not launched
	// yet (the step policy's scale-out of a minute ago, or spot capacity
	// that is short). A group is empty, for the scale-from-zero policy, only
	// when both are 0; counting Instances alone would fire the step policy
	// again every minute until the first launch shows, adding an instance
	// each time.
	Desired int
}

// Decision is what the scaler publishes for one model.
type Decision struct {
	// Backlog is Visible + InFlight: every message the group still owes. In-
	// flight messages count so that a fleet busy with long generations is
	// not scaled in merely because the queue itself is empty.
	Backlog int
	// BacklogPerInstance is Backlog / Instances. With no instances it is
	// Backlog itself (as if one instance existed): target tracking then
	// asks for ceil(capacity × Backlog / target) as soon as the first
	// instance is counted, and the metric is never +Inf or NaN.
	BacklogPerInstance float64
	// UnservedBacklog is Backlog when the group is empty (Instances and
	// Desired both 0), else 0.
	UnservedBacklog float64
	// ScaleFromZero reports that UnservedBacklog reaches
	// ScaleFromZeroThreshold: the group is empty and owes work, so the step
	// policy's alarm fires.
	ScaleFromZero bool
}

// Decide computes the Decision for s. Negative counts (never reported by
// SQS or Auto Scaling) are treated as 0.
func Decide(s Sample) Decision {
	visible, inFlight, instances := max(s.Visible, 0), max(s.InFlight, 0), max(s.Instances, 0)
	d := Decision{Backlog: visible + inFlight}
	d.BacklogPerInstance = float64(d.Backlog) / float64(max(instances, 1))
	if instances == 0 && s.Desired <= 0 {
		d.UnservedBacklog = float64(d.Backlog)
	}
	d.ScaleFromZero = d.UnservedBacklog >= ScaleFromZeroThreshold
	return d
}

// Datum is one metric value to publish with dimension DimensionModel.
type Datum struct {
	Name  string
	Value float64
}

// Data lists the metrics the scaler publishes for d, in a fixed order. The
// scaler publishes them every minute, zeros included, so that target
// tracking can scale in and the scale-from-zero alarm can return to OK.
func (d Decision) Data() []Datum {
	return []Datum{
		{Name: MetricBacklogPerInstance, Value: d.BacklogPerInstance},
		{Name: MetricUnservedBacklog, Value: d.UnservedBacklog},
	}
}

// DesiredInstances is the capacity target tracking converges to for
// backlog at target, bounded by [minInstances, maxInstances]: the ceiling of
// backlog / target. The scaler does not call it; it documents (and its
// tests check) what a Decision makes the group do.
func DesiredInstances(backlog int, target float64, minInstances, maxInstances int) int {
	if target <= 0 {
		return maxInstances
	}
	n := int(math.Ceil(float64(max(backlog, 0)) / target))
	return min(max(n, minInstances), maxInstances)
}

// NextCapacity is one minute of the two policies the infra construct
// attaches to a model's group, acting on data as the scaler published it
// (Decision.Data): the step policy adds ScaleFromZeroInstances while
// MetricUnservedBacklog reaches ScaleFromZeroThreshold; otherwise target
// tracking, which cannot act on an empty group, sets capacity to
// ceil(capacity × MetricBacklogPerInstance / target). The result is bounded
// by [0, maxInstances]. Like DesiredInstances it models what Auto Scaling
// does, for tests and documentation; the scaler does not call it.
func NextCapacity(capacity int, data []Datum, target float64, maxInstances int) int {
	var perInstance, unserved float64
	for _, d := range data {
		switch d.Name {
		case MetricBacklogPerInstance:
			perInstance = d.Value
		case MetricUnservedBacklog:
			unserved = d.Value
		}
	}
	next := capacity
	switch {
	case unserved >= ScaleFromZeroThreshold:
		next = capacity + ScaleFromZeroInstances
	case capacity > 0 && target > 0:
		next = int(math.Ceil(float64(capacity) * perInstance / target))
	}
	return min(max(next, 0), maxInstances)
}
