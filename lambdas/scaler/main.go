// Command scaler is the Lambda run every minute by EventBridge. Each run it
// publishes every model's scaling metrics (scale: BacklogPerInstance and
// UnservedBacklog, as CloudWatch Embedded Metric Format lines on stdout),
// then re-sends accepted-but-unenqueued generations and expires those past
// their window (sweep). A failure in one model's metrics or in the sweep
// does not stop the rest; the run then returns the joined errors, which the
// scaler errors alarm counts. Configuration: settings.Scaler.
package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"time"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/lull-ai/lull/lambdas/lambdaenv"
	"github.com/lull-ai/lull/lambdas/scaler/emf"
	"github.com/lull-ai/lull/lambdas/scaler/scale"
	"github.com/lull-ai/lull/lambdas/scaler/sweep"
	"github.com/lull-ai/lull/shared/autoscaling"
	"github.com/lull-ai/lull/shared/dynamodb"
	"github.com/lull-ai/lull/shared/settings"
	"github.com/lull-ai/lull/shared/sqs"
)

var (
	_ scale.Groups = (*autoscaling.Groups)(nil)
	_ scale.Queue  = (*sqs.Queue)(nil)
	_ scale.Sink   = (*emf.Writer)(nil)
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
	queues := make(map[string]scale.Queue, len(cfg.ModelQueues))
	for model, url := range cfg.ModelQueues {
		queues[model] = sqs.New(c.SQS, url)
	}
	sc := &scale.Scaler{
		Models: scale.Models(queues, cfg.ASGNames), Groups: autoscaling.New(c.AutoScaling),
		Metrics: &emf.Writer{W: os.Stdout, Namespace: cfg.MetricNamespace}, Logger: log, Now: time.Now,
	}
	sw := &sweep.Sweeper{
		Generations: dynamodb.New(c.DynamoDB, cfg.Table), Queues: sqs.Senders(c.SQS, cfg.ModelQueues),
		Events: sqs.Optional(c.SQS, cfg.EventsQueueURL), Logger: log, Now: time.Now,
	}
	lambda.Start(handler(sc.Scale, sw.Sweep, log))
}

// handler is one scheduled run: the scaling metrics first (cheap, and they
// drive the fleet), then the sweep (it may page through many items), which
// runs whatever the metrics step returned. The result joins both errors.
func handler(scaleStep func(context.Context) (scale.Result, error), sweepStep func(context.Context) (sweep.Result, error),
	log *slog.Logger) func(context.Context) error {
	return func(ctx context.Context) error {
		sres, serr := scaleStep(ctx)
		log.InfoContext(ctx, "scaling done", "published", len(sres.Decisions), "failed", sres.Failed, "err", serr)
		res, err := sweepStep(ctx)
		log.InfoContext(ctx, "sweep done", "reenqueued", res.Reenqueued, "expired", res.Expired, "err", err)
		return errors.Join(serr, err)
	}
}
