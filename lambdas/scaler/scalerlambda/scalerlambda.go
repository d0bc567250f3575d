// Package scalerlambda builds the scaler Lambda's scheduled run from its
// settings: the one wiring of the scaling step and the sweep, shared by
// lambdas/scaler's main and the dev stack (which runs only the sweep: no
// Auto Scaling groups there).
package scalerlambda

import (
	"context"
	"errors"
	"io"
	"log/slog"

	"github.com/lull-ai/lull/lambdas/batch/batchjob"
	"github.com/lull-ai/lull/lambdas/scaler/emf"
	"github.com/lull-ai/lull/lambdas/scaler/scale"
	"github.com/lull-ai/lull/lambdas/scaler/sweep"
	"github.com/lull-ai/lull/shared/autoscaling"
	"github.com/lull-ai/lull/shared/awsclients"
	"github.com/lull-ai/lull/shared/dynamodb"
	"github.com/lull-ai/lull/shared/settings"
	"github.com/lull-ai/lull/shared/sqs"
)

var (
	_ scale.Groups = (*autoscaling.Groups)(nil)
	_ scale.Queue  = (*sqs.Queue)(nil)
	_ scale.Sink   = (*emf.Writer)(nil)
)

// Scaler is the scaler Lambda's work: the scaling step and the sweep.
type Scaler struct {
	// Scaler publishes every model's scaling metrics.
	Scaler *scale.Scaler
	// Sweeper re-sends accepted-but-unenqueued generations, expires those
	// past their window, announces those whose event may be missing and
	// re-derives stalled open batches.
	Sweeper *sweep.Sweeper
	log     *slog.Logger
}

// New returns the scaler that cfg describes over the AWS clients c; the
// metrics go to metrics as CloudWatch Embedded Metric Format lines (stdout
// in Lambda, which CloudWatch extracts them from).
func New(cfg settings.Scaler, c *awsclients.Clients, log *slog.Logger, metrics io.Writer) (*Scaler, error) {
	queues := make(map[string]scale.Queue, len(cfg.ModelQueues))
	for model, url := range cfg.ModelQueues {
		queues[model] = sqs.New(c.SQS, url)
	}
	sc, err := scale.New(scale.Config{
		Models: scale.Models(queues, cfg.ASGNames), Groups: autoscaling.New(c.AutoScaling),
		Metrics: &emf.Writer{W: metrics, Namespace: cfg.MetricNamespace}, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	store := dynamodb.New(c.DynamoDB, cfg.Table)
	store.Retention, store.FileRetention = cfg.Retention, cfg.FileRetention
	swCfg := sweep.Config{
		Generations: store, Queues: sqs.Senders(c.SQS, cfg.ModelQueues),
		Events: sqs.Optional(c.SQS, cfg.EventsQueueURL), Logger: log, Grace: cfg.SweepGrace,
		Announcements: store, BatchQuiet: cfg.BatchQuiet, Webhooks: store,
	}
	if cfg.BatchQueueURL != "" {
		// The Batch API is on: open batches are re-derived too.
		r, err := batchjob.NewReconciler(batchjob.ReconcilerConfig{Batches: store, BatchQueue: sqs.New(c.SQS, cfg.BatchQueueURL), Logger: log})
		if err != nil {
			return nil, err
		}
		swCfg.Batches, swCfg.Reconciler = store, r
	}
	sw, err := sweep.New(swCfg)
	if err != nil {
		return nil, err
	}
	return &Scaler{Scaler: sc, Sweeper: sw, log: log}, nil
}

// Run is one scheduled run: the scaling metrics first (cheap, and they
// drive the fleet), then the sweep (it may page through many items), which
// runs whatever the metrics step returned. The result joins both errors.
func (s *Scaler) Run(ctx context.Context) error {
	return run(ctx, s.Scaler.Scale, s.Sweeper.Sweep, s.log)
}

func run(ctx context.Context, scaleStep func(context.Context) (scale.Result, error), sweepStep func(context.Context) (sweep.Result, error),
	log *slog.Logger) error {
	sres, serr := scaleStep(ctx)
	log.InfoContext(ctx, "scaling done", "published", len(sres.Decisions), "failed", sres.Failed, "err", serr)
	res, err := sweepStep(ctx)
	log.InfoContext(ctx, "sweep done", "reenqueued", res.Reenqueued, "expired", res.Expired,
		"reannounced", res.Reannounced, "batches", res.Batches, "err", err)
	return errors.Join(serr, err)
}
