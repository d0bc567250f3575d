// Package awsworker builds a GPU worker from its settings (worker.Config)
// over the AWS services: the one wiring of the worker, shared by the
// gpuworker command and the dev stack.
package awsworker

import (
	"log/slog"

	"github.com/lull-ai/lull/gpuworker/worker"
	"github.com/lull-ai/lull/shared/awsclients"
	"github.com/lull-ai/lull/shared/dynamodb"
	"github.com/lull-ai/lull/shared/s3"
	"github.com/lull-ai/lull/shared/sqs"
)

// Options are what a worker takes from its host rather than its settings.
type Options struct {
	// EngineUp, when set, pauses receiving while it reports false (a
	// supervised engine that is restarting).
	EngineUp func() bool
}

// New returns the worker cfg describes over the AWS clients c: the model's
// request queue, the table, the bucket, the events queue when cfg names one,
// and the engine at cfg.VLLMURL (worker.NewEngine). It fails when cfg is
// invalid (worker.New).
func New(cfg worker.Config, c *awsclients.Clients, log *slog.Logger, opts Options) (*worker.Worker, error) {
	store := dynamodb.New(c.DynamoDB, cfg.Table)
	store.Retention = cfg.Retention
	deps := worker.Deps{
		Generations: store,
		Queue:       sqs.New(c.SQS, cfg.QueueURL),
		Blobs:       s3.New(c.S3, cfg.Bucket),
		Engine:      worker.NewEngine(cfg),
		Logger:      log,
		EngineUp:    opts.EngineUp,
	}
	if cfg.EventsQueueURL != "" {
		deps.Events = sqs.New(c.SQS, cfg.EventsQueueURL)
	}
	return worker.New(cfg, deps)
}
