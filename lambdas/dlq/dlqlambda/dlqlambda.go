// Package dlqlambda builds the dead-letter consumer's handler from its
// settings: the one wiring of the consumer, shared by lambdas/dlq's main and
// the dev stack.
package dlqlambda

import (
	"log/slog"

	"github.com/lull-ai/lull/lambdas/dlq/deadletter"
	"github.com/lull-ai/lull/shared/awsclients"
	"github.com/lull-ai/lull/shared/dynamodb"
	"github.com/lull-ai/lull/shared/settings"
	"github.com/lull-ai/lull/shared/sqs"
)

// New returns the consumer that cfg describes over the AWS clients c: it
// fails the generations of the request queues' dead letters (or queues
// again those a worker holds), the batches of the batch queue's, and sends
// the events queue's back to it.
func New(cfg settings.DLQ, c *awsclients.Clients, log *slog.Logger) (*deadletter.Handler, error) {
	store := dynamodb.New(c.DynamoDB, cfg.Table)
	store.Retention, store.FileRetention = cfg.Retention, cfg.FileRetention
	return deadletter.New(deadletter.Config{
		Generations: store, Batches: store, Events: sqs.Optional(c.SQS, cfg.EventsQueueURL),
		Queues: sqs.Senders(c.SQS, cfg.ModelQueues), EventRedriveDelay: cfg.EventRedriveDelay, Logger: log,
	})
}
