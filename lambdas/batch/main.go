// Command batch is the SQS-triggered Lambda that runs Batch API jobs: it
// validates input files and splits them into generations, cancels the
// queued lines of cancelled batches, and writes the output and error files
// when a batch's last line ends. Configuration: settings.Batch; batchlambda.New
// wires it.
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/lull-ai/lull/lambdas/batch/batchlambda"
	"github.com/lull-ai/lull/lambdas/lambdaenv"
	"github.com/lull-ai/lull/shared/settings"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	var cfg settings.Batch
	c, err := lambdaenv.Load(context.Background(), &cfg)
	if err != nil {
		log.Error("batch init failed", "err", err)
		os.Exit(1)
	}
	h, err := batchlambda.New(cfg, c, log)
	if err != nil {
		log.Error("batch init failed", "err", err)
		os.Exit(1)
	}
	lambda.Start(h.Handle)
}
