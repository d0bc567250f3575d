// Command dlq is the Lambda consuming the request queues' dead-letter queues
// (it marks their generations failed, or queues again those a worker still
// holds), the batch queue's (it fails the batch) and the events queue's (it
// sends events back a few times). Configuration: settings.DLQ; dlqlambda.New
// wires it.
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/lull-ai/lull/lambdas/dlq/dlqlambda"
	"github.com/lull-ai/lull/lambdas/lambdaenv"
	"github.com/lull-ai/lull/shared/settings"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	var cfg settings.DLQ
	c, err := lambdaenv.Load(context.Background(), &cfg)
	if err != nil {
		log.Error("dlq init failed", "err", err)
		os.Exit(1)
	}
	h, err := dlqlambda.New(cfg, c, log)
	if err != nil {
		log.Error("dlq init failed", "err", err)
		os.Exit(1)
	}
	lambda.Start(h.Handle)
}
