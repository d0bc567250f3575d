// Command vllmsim serves the vLLM simulator on its own, for trying the worker
// or the load gate against an engine you can watch (curl its /metrics).
package main

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/lull-ai/lull/localstack/vllmsim"
)

func main() {
	var cfg vllmsim.Config
	addr := flag.String("addr", "127.0.0.1:8000", "listen address")
	flag.StringVar(&cfg.Model, "model", "lull-sim-1", "served model name")
	flag.IntVar(&cfg.MaxModelLen, "max-model-len", 8192, "prompt + completion token limit")
	flag.IntVar(&cfg.MaxNumSeqs, "max-num-seqs", 64, "most running sequences")
	flag.IntVar(&cfg.KVBlocks, "kv-blocks", 2048, "KV-cache blocks")
	flag.IntVar(&cfg.BlockSize, "block-size", 16, "tokens per KV block")
	flag.DurationVar(&cfg.DecodeStepBase, "decode-step", 8*time.Millisecond, "fixed cost of a decode step")
	flag.DurationVar(&cfg.DecodePerSeq, "decode-per-seq", 250*time.Microsecond, "step cost per running sequence")
	flag.DurationVar(&cfg.PrefillPerToken, "prefill-per-token", 50*time.Microsecond, "cost per admitted prompt token")
	flag.BoolVar(&cfg.PriorityScheduling, "priority", false, "priority scheduling (--scheduling-policy priority)")
	flag.BoolVar(&cfg.LegacyCacheMetric, "legacy-cache-metric", false, "emit vllm:gpu_cache_usage_perc instead of vllm:kv_cache_usage_perc")
	flag.Float64Var(&cfg.TimeScale, "time-scale", 1, "multiplier of simulated durations (0.01 = 100x faster)")
	flag.Parse()

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	sim, err := vllmsim.New(cfg)
	if err != nil {
		log.Error("vllmsim", "err", err)
		os.Exit(1)
	}
	defer sim.Close()
	srv := &http.Server{Addr: *addr, Handler: sim, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Info("vllmsim listening", "addr", *addr, "model", sim.Config().Model)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("vllmsim", "err", err)
		os.Exit(1)
	}
}
