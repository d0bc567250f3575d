// Command dlq is the Lambda consuming the request queues' dead-letter queues
// (it marks their generations failed) and the batch queue's (it fails the
// batch). Configuration: settings.DLQ.
package main

import (
	"context"
	"log/slog"
	"os"
	"time"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/lull-ai/lull/lambdas/dlq/deadletter"
	"github.com/lull-ai/lull/lambdas/lambdaenv"
	"github.com/lull-ai/lull/shared/dynamodb"
	"github.com/lull-ai/lull/shared/settings"
	"github.com/lull-ai/lull/shared/sqs"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	var cfg settings.DLQ
	c, err := lambdaenv.Load(context.Background(), &cfg)
	if err != nil {
		log.Error("dlq init failed", "err", err)
		os.Exit(1)
	}
	store := dynamodb.New(c.DynamoDB, cfg.Table)
	h := &deadletter.Handler{
		Generations: store, Batches: store, Events: sqs.Optional(c.SQS, cfg.EventsQueueURL),
		Logger: log, Now: time.Now,
	}
	lambda.Start(h.Handle)
}
