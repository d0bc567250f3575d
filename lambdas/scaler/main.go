// Command scaler is the Lambda run every minute by EventBridge. Each run it
// publishes every model's scaling metrics (scale: BacklogPerInstance and
// UnservedBacklog, as CloudWatch Embedded Metric Format lines on stdout),
// then re-sends accepted-but-unenqueued generations and expires those past
// their window (sweep). A failure in one model's metrics or in the sweep
// does not stop the rest; the run then returns the joined errors, which the
// scaler errors alarm counts. Configuration: settings.Scaler;
// scalerlambda.New wires it.
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/lull-ai/lull/lambdas/lambdaenv"
	"github.com/lull-ai/lull/lambdas/scaler/scalerlambda"
	"github.com/lull-ai/lull/shared/settings"
)

func main() {
	// Logs go to stderr, metrics to stdout: Lambda sends both to the
	// function's log group, and CloudWatch extracts metrics from the EMF
	// lines only.
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	var cfg settings.Scaler
	c, err := lambdaenv.Load(context.Background(), &cfg)
	if err != nil {
		log.Error("scaler init failed", "err", err)
		os.Exit(1)
	}
	s, err := scalerlambda.New(cfg, c, log, os.Stdout)
	if err != nil {
		log.Error("scaler init failed", "err", err)
		os.Exit(1)
	}
	lambda.Start(s.Run)
}
