// Command scaler is the Lambda run every minute by EventBridge: it re-sends
// accepted-but-unenqueued generations and expires those past their window.
// Configuration: settings.Scaler.
package main

import (
	"context"
	"log/slog"
	"os"
	"time"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/lull-ai/lull/lambdas/lambdaenv"
	"github.com/lull-ai/lull/lambdas/scaler/sweep"
	"github.com/lull-ai/lull/shared/dynamodb"
	"github.com/lull-ai/lull/shared/settings"
	"github.com/lull-ai/lull/shared/sqs"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	var cfg settings.Scaler
	c, err := lambdaenv.Load(context.Background(), &cfg)
	if err != nil {
		log.Error("scaler init failed", "err", err)
		os.Exit(1)
	}
	s := &sweep.Sweeper{
		Generations: dynamodb.New(c.DynamoDB, cfg.Table), Queues: sqs.Senders(c.SQS, cfg.ModelQueues),
		Events: sqs.Optional(c.SQS, cfg.EventsQueueURL), Logger: log, Now: time.Now,
	}
	lambda.Start(func(ctx context.Context) error {
		res, err := s.Sweep(ctx)
		log.InfoContext(ctx, "sweep done", "reenqueued", res.Reenqueued, "expired", res.Expired, "err", err)
		return err
	})
}
