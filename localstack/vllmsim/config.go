package vllmsim

import (
	"cmp"
	"errors"
	"fmt"
	"time"
)

// Config shapes the simulated engine. Every zero field takes the default
// noted beside it; negative values are rejected by New.
type Config struct {
	// Model is the served model name (vLLM --served-model-name). Requests
	// naming another model get 404. Default "lull-sim-1".
	Model string
	// MaxModelLen is the prompt + completion token limit (--max-model-len).
	// It must fit in the KV cache: MaxModelLen <= KVBlocks*BlockSize, as
	// vLLM refuses to start otherwise. Default 8192.
	MaxModelLen int
	// MaxNumSeqs is the most sequences running at once (--max-num-seqs).
	// Default 64.
	MaxNumSeqs int
	// KVBlocks is the number of KV-cache blocks. Default 2048.
	KVBlocks int
	// BlockSize is the number of tokens one KV block holds. Default 16.
	BlockSize int

	// DecodeStepBase is the fixed cost of one engine step. Default 8ms.
	DecodeStepBase time.Duration
	// DecodePerSeq is the extra cost of a step per running sequence, so
	// per-token latency grows with the batch and throughput saturates.
	// Default 250µs.
	DecodePerSeq time.Duration
	// PrefillPerToken is the cost of each prompt token admitted (or
	// recomputed after a preemption) in a step. Default 50µs.
	PrefillPerToken time.Duration

	// PriorityScheduling mimics --scheduling-policy priority: waiting
	// requests are ordered by (priority, arrival), lower first, and one
	// with a better priority preempts worse running ones when the batch (or
	// the KV cache) is full.
	// Without it a non-zero "priority" is rejected with 400, as vLLM does.
	PriorityScheduling bool
	// LegacyCacheMetric also emits the KV usage gauge under its older name
	// vllm:gpu_cache_usage_perc, next to vllm:kv_cache_usage_perc (vLLM
	// releases during the rename emitted both).
	LegacyCacheMetric bool
	// LegacyCacheMetricOnly emits only vllm:gpu_cache_usage_perc (vLLM
	// before the rename). It implies LegacyCacheMetric.
	LegacyCacheMetricOnly bool

	// TimeScale multiplies every simulated duration: 1 is real time, 0.01
	// runs 100× faster. Fault delays (SetDelay) are not scaled. Default 1.
	TimeScale float64
}

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	c.Model = cmp.Or(c.Model, "lull-sim-1")
	c.MaxModelLen = cmp.Or(c.MaxModelLen, 8192)
	c.MaxNumSeqs = cmp.Or(c.MaxNumSeqs, 64)
	c.KVBlocks = cmp.Or(c.KVBlocks, 2048)
	c.BlockSize = cmp.Or(c.BlockSize, 16)
	c.DecodeStepBase = cmp.Or(c.DecodeStepBase, 8*time.Millisecond)
	c.DecodePerSeq = cmp.Or(c.DecodePerSeq, 250*time.Microsecond)
	c.PrefillPerToken = cmp.Or(c.PrefillPerToken, 50*time.Microsecond)
	c.TimeScale = cmp.Or(c.TimeScale, 1)
	c.LegacyCacheMetric = c.LegacyCacheMetric || c.LegacyCacheMetricOnly
	return c
}

// validate checks a defaulted config and names the offending field.
func (c Config) validate() error {
	var errs []error
	positive := func(name string, v int) {
		if v < 1 {
			errs = append(errs, fmt.Errorf("%s must be at least 1, got %d", name, v))
		}
	}
	positive("MaxModelLen", c.MaxModelLen)
	positive("MaxNumSeqs", c.MaxNumSeqs)
	positive("KVBlocks", c.KVBlocks)
	positive("BlockSize", c.BlockSize)
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"DecodeStepBase", c.DecodeStepBase}, {"DecodePerSeq", c.DecodePerSeq}, {"PrefillPerToken", c.PrefillPerToken}} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s must not be negative, got %v", d.name, d.v))
		}
	}
	if !(c.TimeScale > 0) {
		errs = append(errs, fmt.Errorf("TimeScale must be positive, got %v", c.TimeScale))
	}
	if c.KVBlocks > 0 && c.BlockSize > 0 && c.MaxModelLen > c.KVBlocks*c.BlockSize {
		errs = append(errs, fmt.Errorf("MaxModelLen %d exceeds the KV cache (KVBlocks*BlockSize = %d tokens)",
			c.MaxModelLen, c.KVBlocks*c.BlockSize))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("vllmsim: config: %w", err)
	}
	return nil
}
