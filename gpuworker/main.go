// Command gpuworker runs lull's GPU worker next to a vLLM server: it pulls
// generations from the model's SQS queue, runs them on vLLM and records the
// results. Configuration comes from the environment (see worker.Config).
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"

	"github.com/lull-ai/lull/gpuworker/awsworker"
	"github.com/lull-ai/lull/gpuworker/imds"
	"github.com/lull-ai/lull/gpuworker/lifecycle"
	"github.com/lull-ai/lull/gpuworker/supervisor"
	"github.com/lull-ai/lull/gpuworker/worker"
	"github.com/lull-ai/lull/shared/awsclients"
	"github.com/lull-ai/lull/shared/envconfig"
	"github.com/lull-ai/lull/shared/lull"
	"github.com/lull-ai/lull/shared/sqs"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	if err := run(ctx, log); err != nil {
		log.Error("gpuworker failed", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger) error {
	var cfg worker.Config
	if err := envconfig.Load(&cfg, os.LookupEnv); err != nil {
		return err
	}
	clients, err := awsclients.New(ctx, awsclients.Endpoints{})
	if err != nil {
		return err
	}
	engine := worker.NewEngine(cfg) // for the health wait; the worker has its own client
	var opts awsworker.Options
	if cfg.VLLMCommand != "" {
		fields := strings.Fields(cfg.VLLMCommand)
		sup := &supervisor.Supervisor{Command: fields[0], Args: fields[1:], HealthURL: strings.TrimRight(cfg.VLLMURL, "/") + "/health", Logger: log}
		opts.EngineUp = sup.Healthy
		// The engine outlives the drain: it stops only after Run returns.
		supCtx, stopSup := context.WithCancel(context.WithoutCancel(ctx))
		supDone := make(chan struct{})
		go func() { defer close(supDone); _ = sup.Run(supCtx) }()
		defer func() { stopSup(); <-supDone }()
	}
	w, err := awsworker.New(cfg, clients, log, opts)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.MetricsAddr)
	if err != nil {
		return fmt.Errorf("metrics listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", w.MetricsHandler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server failed", "err", err)
		}
	}()
	defer srv.Close()
	log.Info("waiting for engine", "url", cfg.VLLMURL)
	for !engine.Healthy(ctx) {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
	if cfg.IMDSURL != "" {
		md := imds.New(cfg.IMDSURL)
		go w.DrainOn(ctx, func(ctx context.Context) *worker.Notice {
			n := md.Watch(ctx, cfg.IMDSInterval, func(err error) { log.Debug("metadata service", "err", err) })
			if n == nil {
				return nil
			}
			return &worker.Notice{Kind: n.Kind, Deadline: n.Deadline}
		}, 15*time.Second)
	}
	if err := w.Run(ctx); err != nil {
		return err
	}
	// Drained (notice or SIGTERM): let Auto Scaling go on with termination.
	if cfg.IMDSURL != "" && cfg.ASGName != "" && cfg.LifecycleHook != "" {
		if err := completeHook(context.WithoutCancel(ctx), cfg, log); err != nil {
			log.Warn("lifecycle hook not completed; Auto Scaling proceeds at the hook's timeout", "err", err)
		}
	}
	return nil
}

// completeHook tells Auto Scaling the worker has drained.
func completeHook(ctx context.Context, cfg worker.Config, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	id, ok, err := imds.New(cfg.IMDSURL).Get(ctx, "instance-id")
	if err != nil || !ok {
		return fmt.Errorf("lifecycle hook: instance id: %v", err)
	}
	awsCfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return err
	}
	if err := lifecycle.New(autoscaling.NewFromConfig(awsCfg), cfg.ASGName, cfg.LifecycleHook, id).Complete(ctx); err != nil {
		return err
	}
	log.Info("lifecycle hook completed", "instance", id, "group", cfg.ASGName)
	return nil
}

var _ lull.Queue = (*sqs.Queue)(nil)
