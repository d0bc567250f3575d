// Package scale is the scaler Lambda's per-minute scaling step: for each
// served model it samples the request queue's depth and the Auto Scaling
// group's capacity, computes a backlog.Decision and publishes
// Decision.Data with the dimension backlog.DimensionModel = the model name.
// The group's target tracking and scale-from-zero policies (infra) act on
// what it publishes.
package scale

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/lull-ai/lull/lambdas/scaler/backlog"
)

// Queue is a model's request queue, as the scaler reads it.
type Queue interface {
	// URL names the queue in logs.
	URL() string
	// Depth returns the approximate visible and in-flight message counts.
	Depth(ctx context.Context) (visible, inFlight int, err error)
}

// Groups reads Auto Scaling groups.
type Groups interface {
	// Capacity returns the group's desired capacity and its InService plus
	// Pending instances.
	Capacity(ctx context.Context, group string) (desired, serving int, err error)
}

// Sink publishes metrics.
type Sink interface {
	// Publish records data at time at with the given dimensions.
	Publish(ctx context.Context, at time.Time, dims map[string]string, data []backlog.Datum) error
}

// Model is what the scaler samples for one model.
type Model struct {
	// Name is the model name clients send (the metric's dimension value).
	Name string
	// Queue is the model's request queue.
	Queue Queue
	// Group is the name of the model's Auto Scaling group.
	Group string
}

// Models pairs each queue with its model's group name. A model with a queue
// but no group, or a group but no queue, is returned with the empty side
// left empty (nil Queue or "" Group): Scale reports it every run instead of
// the configuration failing the whole Lambda (and the sweep with it).
// The result is sorted by model name.
func Models(queues map[string]Queue, groups map[string]string) []Model {
	var out []Model
	for name, q := range queues {
		out = append(out, Model{Name: name, Queue: q, Group: groups[name]})
	}
	for name, g := range groups {
		if _, ok := queues[name]; !ok {
			out = append(out, Model{Name: name, Group: g})
		}
	}
	slices.SortFunc(out, func(a, b Model) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// Config wires a Scaler to its dependencies. Groups, Metrics and Logger
// are required.
type Config struct {
	// Models are the models to scale (see Models).
	Models  []Model
	Groups  Groups
	Metrics Sink
	Logger  *slog.Logger
	// Now stamps the published metrics; time.Now when nil.
	Now func() time.Time
}

func (c *Config) withDefaults() {
	if c.Now == nil {
		c.Now = time.Now
	}
}

func (c *Config) validate() error {
	var errs []error
	if c.Groups == nil {
		errs = append(errs, errors.New("missing Groups"))
	}
	if c.Metrics == nil {
		errs = append(errs, errors.New("missing Metrics"))
	}
	if c.Logger == nil {
		errs = append(errs, errors.New("missing Logger"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("scale: config: %w", err)
	}
	return nil
}

// Scaler runs the scaling step. Build it with New.
type Scaler struct {
	Config
}

// New returns a Scaler with cfg's defaults applied, or an error naming
// every missing dependency.
func New(cfg Config) (*Scaler, error) {
	cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Scaler{Config: cfg}, nil
}

// Result is what one step did, by model.
type Result struct {
	// Decisions holds the decision published for each model that succeeded.
	Decisions map[string]backlog.Decision
	// Failed lists the models for which nothing was published.
	Failed []string
}

// Scale samples, decides and publishes for every model, one after another.
// A failure for one model (its queue, its group, the publish) is logged
// with the model, queue and group and does not stop the others; Scale then
// returns all such errors joined, each naming its model. Nothing is
// published for a failed model: a missing datum leaves the alarms and
// target tracking where they were, whereas a guessed one could scale a
// fleet to zero with work queued.
func (s *Scaler) Scale(ctx context.Context) (Result, error) {
	now := s.Now
	res := Result{Decisions: make(map[string]backlog.Decision, len(s.Models))}
	var errs []error
	for _, m := range s.Models {
		d, err := s.model(ctx, m, now)
		queue := ""
		if m.Queue != nil {
			queue = m.Queue.URL()
		}
		if err != nil {
			res.Failed = append(res.Failed, m.Name)
			errs = append(errs, fmt.Errorf("scale %s: %w", m.Name, err))
			s.Logger.ErrorContext(ctx, "scaling metric not published", "model", m.Name, "queue", queue, "group", m.Group, "err", err)
			continue
		}
		res.Decisions[m.Name] = d
		s.Logger.InfoContext(ctx, "scaling metric published", "model", m.Name, "queue", queue, "group", m.Group,
			"backlog", d.Backlog, "backlog_per_instance", d.BacklogPerInstance, "unserved_backlog", d.UnservedBacklog,
			"scale_from_zero", d.ScaleFromZero)
	}
	return res, errors.Join(errs...)
}

func (s *Scaler) model(ctx context.Context, m Model, now func() time.Time) (backlog.Decision, error) {
	switch {
	case m.Queue == nil:
		return backlog.Decision{}, errors.New("no request queue configured (LULL_MODEL_QUEUES)")
	case m.Group == "":
		return backlog.Decision{}, errors.New("no Auto Scaling group configured (LULL_ASG_NAMES)")
	}
	visible, inFlight, err := m.Queue.Depth(ctx)
	if err != nil {
		return backlog.Decision{}, err
	}
	desired, instances, err := s.Groups.Capacity(ctx, m.Group)
	if err != nil {
		return backlog.Decision{}, err
	}
	d := backlog.Decide(backlog.Sample{Visible: visible, InFlight: inFlight, Instances: instances, Desired: desired})
	if err := s.Metrics.Publish(ctx, now(), map[string]string{backlog.DimensionModel: m.Name}, d.Data()); err != nil {
		return backlog.Decision{}, err
	}
	return d, nil
}
