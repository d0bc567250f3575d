// Package webhookslambda builds the webhook dispatcher's handler from its
// settings: the one wiring of the dispatcher, shared by lambdas/webhooks'
// main and the dev stack.
package webhookslambda

import (
	"log/slog"
	"time"

	"github.com/lull-ai/lull/lambdas/webhooks/delivery"
	"github.com/lull-ai/lull/shared/awsclients"
	"github.com/lull-ai/lull/shared/dynamodb"
	"github.com/lull-ai/lull/shared/linecount"
	"github.com/lull-ai/lull/shared/netguard"
	"github.com/lull-ai/lull/shared/s3"
	"github.com/lull-ai/lull/shared/sealing"
	"github.com/lull-ai/lull/shared/settings"
	"github.com/lull-ai/lull/shared/sqs"
)

// New returns the dispatcher that cfg describes over the AWS clients c. It
// posts through the SSRF guard (lifted, with a warning, when
// cfg.AllowInsecureWebhooks) and, when cfg names a batch queue, counts batch
// lines (shared/linecount) instead of delivering their events.
func New(cfg settings.Webhooks, c *awsclients.Clients, log *slog.Logger) (*delivery.Handler, error) {
	store := dynamodb.New(c.DynamoDB, cfg.Table)
	store.Retention, store.FileRetention = cfg.Retention, cfg.FileRetention
	sealer, err := sealing.FromSetting(cfg.SecretsKey, c.KMS)
	if err != nil {
		return nil, err
	}
	store.Sealer = sealer
	guard := &netguard.Guard{AllowInsecure: cfg.AllowInsecureWebhooks}
	if cfg.AllowInsecureWebhooks {
		log.Warn("LULL_WEBHOOK_ALLOW_INSECURE is on: http:// and internal webhook destinations are allowed")
	}
	dc := delivery.Config{
		Webhooks: store, Generations: store, Blobs: s3.New(c.S3, cfg.Bucket), Events: sqs.Optional(c.SQS, cfg.EventsQueueURL),
		Client: guard.Client(cfg.Timeout), Logger: log, Now: time.Now, TimeScale: cfg.TimeScale,
		MaxPayloadBytes: cfg.MaxPayloadBytes, PublicURL: cfg.PublicURL,
	}
	if cfg.BatchQueueURL != "" {
		lines, err := linecount.New(linecount.Config{Lines: store, Generations: store, BatchQueue: sqs.New(c.SQS, cfg.BatchQueueURL), Logger: log})
		if err != nil {
			return nil, err
		}
		dc.Batches, dc.Lines = store, lines
	}
	return delivery.New(dc)
}
