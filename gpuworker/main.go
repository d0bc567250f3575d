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

	"github.com/aws/aws-sdk-go-v2/service/autoscaling"

	"github.com/lull-ai/lull/gpuworker/awsworker"
	"github.com/lull-ai/lull/gpuworker/imds"
	"github.com/lull-ai/lull/gpuworker/interrupt"
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
	hook := instanceHook(ctx, cfg, clients.AutoScaling, log)
	engine := worker.NewEngine(cfg) // for the health wait; the worker has its own client
	var opts awsworker.Options
	if cfg.VLLMCommand != "" {
		fields := strings.Fields(cfg.VLLMCommand)
		sup := &supervisor.Supervisor{Command: fields[0], Args: fields[1:], HealthURL: strings.TrimRight(cfg.VLLMURL, "/") + "/health", Logger: log}
		if hook != nil {
			sup.MaxFailedStarts, sup.GiveUp = cfg.EngineMaxFailures, func() { markUnhealthy(ctx, hook, log) }
		}
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
	if cfg.VLLMCommand == "" {
		// Attached engine: nothing pauses intake while it is down. (A
		// supervised one pauses it through EngineUp, and the interruption
		// watch must run while it boots.)
		log.Info("waiting for engine", "url", cfg.VLLMURL)
		for !engine.Healthy(ctx) {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Second):
			}
		}
	}
	r := &interrupt.Runner{Worker: w, Heartbeat: cfg.LifecycleBeat, Logger: log}
	if cfg.IMDSURL != "" {
		r.Watch = interrupt.FromIMDS(imds.New(cfg.IMDSURL), cfg.IMDSInterval, log)
	}
	if hook != nil {
		r.Hook = hook
	}
	return r.Run(ctx)
}

// instanceHook returns this instance's termination lifecycle hook, or nil
// when the worker runs outside an Auto Scaling group (no IMDS, group or
// hook configured) or the instance ID cannot be read within 30 seconds.
func instanceHook(ctx context.Context, cfg worker.Config, c *autoscaling.Client, log *slog.Logger) *lifecycle.Hook {
	if cfg.IMDSURL == "" || cfg.ASGName == "" || cfg.LifecycleHook == "" {
		return nil
	}
	hook, err := lifecycle.ForInstance(ctx, imds.New(cfg.IMDSURL), c, cfg.ASGName, cfg.LifecycleHook, 30*time.Second)
	if err != nil {
		log.Warn("lifecycle hook and health reports off", "err", err)
		return nil
	}
	log.Info("instance", "instance_id", hook.InstanceID(), "group", cfg.ASGName, "lifecycle_hook", cfg.LifecycleHook)
	return hook
}

// markUnhealthy asks Auto Scaling to replace this instance: its engine
// cannot start, and an InService instance would count as capacity.
func markUnhealthy(ctx context.Context, hook *lifecycle.Hook, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := hook.SetUnhealthy(ctx); err != nil {
		log.Error("cannot mark the instance unhealthy", "err", err)
		return
	}
	log.Warn("engine cannot start: instance marked Unhealthy; Auto Scaling replaces it", "instance_id", hook.InstanceID())
}

var _ lull.Queue = (*sqs.Queue)(nil)
