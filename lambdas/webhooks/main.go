// Command webhooks is the SQS-triggered Lambda that delivers events to
// webhook endpoints (partial batch failures; retries scheduled through SQS
// delays). Configuration: settings.Webhooks.
package main

import (
	"context"
	"log/slog"
	"os"
	"time"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/lull-ai/lull/lambdas/batch/batchjob"
	"github.com/lull-ai/lull/lambdas/lambdaenv"
	"github.com/lull-ai/lull/lambdas/webhooks/delivery"
	"github.com/lull-ai/lull/shared/dynamodb"
	"github.com/lull-ai/lull/shared/netguard"
	"github.com/lull-ai/lull/shared/s3"
	"github.com/lull-ai/lull/shared/settings"
	"github.com/lull-ai/lull/shared/sqs"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	var cfg settings.Webhooks
	c, err := lambdaenv.Load(context.Background(), &cfg)
	if err != nil {
		log.Error("webhooks init failed", "err", err)
		os.Exit(1)
	}
	store := dynamodb.New(c.DynamoDB, cfg.Table)
	guard := &netguard.Guard{AllowInsecure: cfg.AllowInsecureWebhooks}
	if cfg.AllowInsecureWebhooks {
		log.Warn("LULL_WEBHOOK_ALLOW_INSECURE is on: http:// and internal webhook destinations are allowed")
	}
	h := &delivery.Handler{
		Webhooks: store, Generations: store, Blobs: s3.New(c.S3, cfg.Bucket), Events: sqs.New(c.SQS, cfg.EventsQueueURL),
		Client: guard.Client(cfg.Timeout), Logger: log, Now: time.Now, MaxPayloadBytes: cfg.MaxPayloadBytes, PublicURL: cfg.PublicURL,
	}
	if cfg.BatchQueueURL != "" {
		h.Batches = store
		h.Lines = &batchjob.Counter{Batches: store, Generations: store, BatchQueue: sqs.New(c.SQS, cfg.BatchQueueURL), Logger: log}
	}
	lambda.Start(h.Handle)
}
