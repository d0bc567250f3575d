// Command webhooks is the SQS-triggered Lambda that delivers events to
// webhook endpoints (partial batch failures; retries scheduled through SQS
// delays). Configuration: settings.Webhooks; webhookslambda.New wires it.
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/lull-ai/lull/lambdas/lambdaenv"
	"github.com/lull-ai/lull/lambdas/webhooks/webhookslambda"
	"github.com/lull-ai/lull/shared/settings"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	var cfg settings.Webhooks
	c, err := lambdaenv.Load(context.Background(), &cfg)
	if err != nil {
		log.Error("webhooks init failed", "err", err)
		os.Exit(1)
	}
	h, err := webhookslambda.New(cfg, c, log)
	if err != nil {
		log.Error("webhooks init failed", "err", err)
		os.Exit(1)
	}
	lambda.Start(h.Handle)
}
