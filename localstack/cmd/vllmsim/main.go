// Command vllmsim serves the vLLM simulator (package vllmsim) on its own:
// an OpenAI-compatible engine with vLLM's /metrics for trying the GPU
// worker, the load gate or a benchmark against something you can watch and
// break (POST /sim/faults). It stops cleanly on SIGINT or SIGTERM.
//
//	go run ./localstack/cmd/vllmsim -time-scale 0.1 -priority
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/lull-ai/lull/localstack/vllmsim"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(ctx, os.Args[1:], log); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		log.Error("vllmsim failed", "err", err)
		os.Exit(1)
	}
}

// run parses args, serves the simulator until ctx is done, then shuts the
// HTTP server down (in-flight requests get a few seconds) and stops the
// engine.
func run(ctx context.Context, args []string, log *slog.Logger) error {
	fs := flag.NewFlagSet("vllmsim", flag.ContinueOnError)
	var cfg vllmsim.Config
	addr := fs.String("addr", "127.0.0.1:8000", "listen address")
	fs.StringVar(&cfg.Model, "model", "lull-sim-1", "served model name")
	fs.IntVar(&cfg.MaxModelLen, "max-model-len", 8192, "prompt + completion token limit")
	fs.IntVar(&cfg.MaxNumSeqs, "max-num-seqs", 64, "most sequences running at once")
	fs.IntVar(&cfg.KVBlocks, "kv-blocks", 2048, "KV-cache blocks")
	fs.IntVar(&cfg.BlockSize, "block-size", 16, "tokens per KV block")
	fs.DurationVar(&cfg.DecodeStepBase, "decode-step", 8*time.Millisecond, "fixed cost of an engine step")
	fs.DurationVar(&cfg.DecodePerSeq, "decode-per-seq", 25*time.Microsecond, "step cost per running sequence")
	fs.DurationVar(&cfg.DecodePerContextToken, "decode-per-context-token", 65*time.Nanosecond, "step cost per token of context of the running sequences (KV reads)")
	fs.DurationVar(&cfg.PrefillPerToken, "prefill-per-token", 50*time.Microsecond, "step cost per admitted prompt token")
	fs.BoolVar(&cfg.PriorityScheduling, "priority", false, "priority scheduling (vLLM --scheduling-policy priority, V1 engine)")
	fs.BoolVar(&cfg.PreemptForWaiting, "preempt-for-waiting", false, "with -priority: a better-priority waiting request preempts running ones (V0 engine)")
	fs.BoolVar(&cfg.NoPrefixCaching, "no-enable-prefix-caching", false, "recompute a preempted sequence from scratch on readmission (vLLM's flag of that name)")
	fs.BoolVar(&cfg.LegacyCacheMetric, "legacy-cache-metric", false, "also emit vllm:gpu_cache_usage_perc")
	fs.BoolVar(&cfg.LegacyCacheMetricOnly, "legacy-cache-metric-only", false, "emit vllm:gpu_cache_usage_perc instead of vllm:kv_cache_usage_perc")
	fs.Float64Var(&cfg.TimeScale, "time-scale", 1, "multiplier of simulated durations (0.01 = 100x faster)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}

	sim, err := vllmsim.New(cfg)
	if err != nil {
		return err
	}
	defer sim.Close()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{Handler: sim, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	c := sim.Config()
	log.Info("vllmsim listening", "addr", ln.Addr().String(), "model", c.Model, "max_num_seqs", c.MaxNumSeqs,
		"kv_blocks", c.KVBlocks, "priority", c.PriorityScheduling, "time_scale", c.TimeScale)

	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("vllmsim stopping")
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		// Requests still running past the grace period: stop the engine
		// so they get 503, then drop their connections.
		sim.Close()
		_ = srv.Close()
	}
	st := sim.Stats()
	log.Info("vllmsim stopped", "completed", st.Completed, "generation_tokens", st.GenerationTokens,
		"preemptions", st.Preemptions)
	return nil
}
