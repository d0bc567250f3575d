// Package batchlambda builds the batch Lambda's handler from its settings:
// the one wiring of the Batch API's jobs, shared by lambdas/batch's main and
// the dev stack.
package batchlambda

import (
	"log/slog"

	"github.com/lull-ai/lull/lambdas/batch/batchjob"
	"github.com/lull-ai/lull/shared/awsclients"
	"github.com/lull-ai/lull/shared/dynamodb"
	"github.com/lull-ai/lull/shared/lull"
	"github.com/lull-ai/lull/shared/s3"
	"github.com/lull-ai/lull/shared/settings"
	"github.com/lull-ai/lull/shared/sqs"
)

// New returns the batch job handler that cfg describes over the AWS
// clients c. cfg must name the batch queue (finalize jobs go back to it).
func New(cfg settings.Batch, c *awsclients.Clients, log *slog.Logger) (*batchjob.Handler, error) {
	tasks, err := cfg.Tasks()
	if err != nil {
		return nil, err
	}
	store := dynamodb.New(c.DynamoDB, cfg.Table)
	store.Retention, store.FileRetention = cfg.Retention, cfg.FileRetention
	queues := make(map[string]lull.BatchSender, len(cfg.ModelQueues))
	for model, url := range cfg.ModelQueues {
		queues[model] = sqs.New(c.SQS, url)
	}
	return batchjob.New(batchjob.Config{
		Batches: store, Generations: store, Blobs: s3.New(c.S3, cfg.Bucket), Queues: queues, Tasks: tasks,
		BatchQueue: sqs.Optional(c.SQS, cfg.BatchQueueURL), Events: sqs.Optional(c.SQS, cfg.EventsQueueURL), Logger: log,
		Limits: cfg.Limits,
	})
}
