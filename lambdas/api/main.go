// Command api is the API Lambda: API Gateway (HTTP API, payload v2) in front
// of httpapi.Server. Configuration comes from the environment (settings.API).
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/awslabs/aws-lambda-go-api-proxy/httpadapter"

	"github.com/lull-ai/lull/lambdas/api/httpapi"
	"github.com/lull-ai/lull/lambdas/lambdaenv"
	"github.com/lull-ai/lull/shared/dynamodb"
	"github.com/lull-ai/lull/shared/lull"
	"github.com/lull-ai/lull/shared/netguard"
	"github.com/lull-ai/lull/shared/s3"
	"github.com/lull-ai/lull/shared/settings"
	"github.com/lull-ai/lull/shared/sqs"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	h, err := build(context.Background(), log)
	if err != nil {
		log.Error("api init failed", "err", err)
		os.Exit(1)
	}
	lambda.Start(httpadapter.NewV2(h).ProxyWithContext)
}

func build(ctx context.Context, log *slog.Logger) (*httpapi.Server, error) {
	var cfg settings.API
	c, err := lambdaenv.Load(ctx, &cfg)
	if err != nil {
		return nil, err
	}
	tasks, err := cfg.Tasks()
	if err != nil {
		return nil, err
	}
	store := dynamodb.New(c.DynamoDB, cfg.Table)
	store.Retention = cfg.Retention
	return httpapi.New(httpapi.Config{
		Generations: store, Keys: store, Blobs: s3.New(c.S3, cfg.Bucket),
		Queues: sqs.Senders(c.SQS, cfg.ModelQueues), Tasks: tasks, Logger: log,
		DefaultWindow: cfg.DefaultWindow, MaxWindow: cfg.MaxWindow, MaxBodyBytes: int64(cfg.MaxBodyBytes),
		Webhooks: webhooks(store, cfg), Guard: &netguard.Guard{AllowInsecure: cfg.AllowInsecureWebhooks},
		Events:  sqs.Optional(c.SQS, cfg.EventsQueueURL),
		Batches: batches(store, cfg), BatchQueue: sqs.Optional(c.SQS, cfg.BatchQueueURL),
	})
}

// batches enables the Files and Batch APIs when a batch queue is configured.
func batches(store *dynamodb.Store, cfg settings.API) lull.Batches {
	if cfg.BatchQueueURL == "" {
		return nil
	}
	return store
}

// webhooks enables the webhook API when an events queue is configured.
func webhooks(store *dynamodb.Store, cfg settings.API) lull.Webhooks {
	if cfg.EventsQueueURL == "" {
		return nil
	}
	return store
}
