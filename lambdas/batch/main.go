// Command batch is the SQS-triggered Lambda that runs Batch API jobs: it
// validates input files and splits them into generations, cancels the
// queued lines of cancelled batches, and writes the output and error files
// when a batch's last line ends. Configuration: settings.Batch.
package main

import (
	"context"
	"log/slog"
	"os"
	"time"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/lull-ai/lull/lambdas/batch/batchjob"
	"github.com/lull-ai/lull/lambdas/lambdaenv"
	"github.com/lull-ai/lull/shared/dynamodb"
	"github.com/lull-ai/lull/shared/lull"
	"github.com/lull-ai/lull/shared/s3"
	"github.com/lull-ai/lull/shared/settings"
	"github.com/lull-ai/lull/shared/sqs"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	var cfg settings.Batch
	c, err := lambdaenv.Load(context.Background(), &cfg)
	if err != nil {
		log.Error("batch init failed", "err", err)
		os.Exit(1)
	}
	tasks, err := cfg.Tasks()
	if err != nil {
		log.Error("batch init failed", "err", err)
		os.Exit(1)
	}
	store := dynamodb.New(c.DynamoDB, cfg.Table)
	queues := map[string]lull.BatchSender{}
	for model, url := range cfg.ModelQueues {
		queues[model] = sqs.New(c.SQS, url)
	}
	h := &batchjob.Handler{
		Counter: batchjob.Counter{Batches: store, Generations: store, BatchQueue: sqs.New(c.SQS, cfg.BatchQueueURL), Logger: log},
		Blobs:   s3.New(c.S3, cfg.Bucket), Queues: queues, Tasks: tasks, Events: sqs.Optional(c.SQS, cfg.EventsQueueURL), Now: time.Now,
	}
	lambda.Start(h.Handle)
}
