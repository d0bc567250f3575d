// Package apilambda builds the API Lambda's handler from its settings: the
// one wiring of the API, shared by lambdas/api's main and the dev stack.
package apilambda

import (
	"log/slog"

	"github.com/lull-ai/lull/lambdas/api/httpapi"
	"github.com/lull-ai/lull/shared/awsclients"
	"github.com/lull-ai/lull/shared/dynamodb"
	"github.com/lull-ai/lull/shared/netguard"
	"github.com/lull-ai/lull/shared/s3"
	"github.com/lull-ai/lull/shared/sealing"
	"github.com/lull-ai/lull/shared/settings"
	"github.com/lull-ai/lull/shared/sqs"
)

// New returns the API that cfg describes over the AWS clients c. The
// webhook API is on when cfg names an events queue, the Files, Uploads and
// Batch APIs when it names a batch queue. It fails when the configuration
// is invalid (httpapi.Config's rules).
func New(cfg settings.API, c *awsclients.Clients, log *slog.Logger) (*httpapi.Server, error) {
	tasks, err := cfg.Tasks()
	if err != nil {
		return nil, err
	}
	store := dynamodb.New(c.DynamoDB, cfg.Table)
	store.Retention, store.FileRetention = cfg.Retention, cfg.FileRetention
	sealer, err := sealing.FromSetting(cfg.SecretsKey, c.KMS)
	if err != nil {
		return nil, err
	}
	store.Sealer = sealer
	hc := httpapi.Config{
		Generations: store, Keys: store, Blobs: s3.New(c.S3, cfg.Bucket),
		Queues: sqs.Senders(c.SQS, cfg.ModelQueues), Tasks: tasks, Logger: log,
		DefaultWindow: cfg.DefaultWindow, MinWindow: cfg.MinWindow, MaxWindow: cfg.MaxWindow, MaxBodyBytes: int64(cfg.MaxBodyBytes),
		Guard:  &netguard.Guard{AllowInsecure: cfg.AllowInsecureWebhooks},
		Limits: cfg.Limits,
	}
	if cfg.EventsQueueURL != "" {
		hc.Webhooks, hc.Events = store, sqs.New(c.SQS, cfg.EventsQueueURL)
	}
	if cfg.BatchQueueURL != "" {
		hc.Batches, hc.Files, hc.Uploads, hc.BatchQueue = store, store, store, sqs.New(c.SQS, cfg.BatchQueueURL)
	}
	return httpapi.New(hc)
}
