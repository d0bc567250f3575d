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
	// Task is what the model serves: TaskGenerate (default: chat,
	// completions, responses) or TaskEmbed (embeddings only, as a vLLM
	// pooling model).
	Task string
	// EmbedDimensions is the length of an embedding model's vectors.
	// Default 32.
	EmbedDimensions int
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

	// Step costs. The defaults model an 8B-parameter model in BF16 (e.g.
	// Llama-3.1-8B: 16 GB of weights, 128 KiB of KV per token) on a GPU
	// with about 2 TB/s of effective memory bandwidth (A100-80GB class).
	// Decode is memory-bandwidth bound: every step reads all the weights
	// (the base cost) plus each running sequence's KV cache, so step time
	// grows only mildly with the batch. docs/gate.md lists the published
	// measurements they are checked against; in short, vLLM's inter-token
	// latency rises 1.7 % from 1 to 4 concurrent requests for Llama-3.1-8B
	// on an H100 (6.48 → 6.59 ms) and 39 % from 1 to 32 for a 0.5B model on
	// an L4 (5.1 → 7.1 ms, compute-bound, so an upper bound on the slope).
	// With the defaults a step is 8.0 ms for one short sequence and about
	// 9.4 ms for 32 sequences of 300 tokens of context (+18 %).

	// DecodeStepBase is the fixed cost of one engine step: reading the
	// weights once (16 GB at 2 TB/s). Default 8ms.
	DecodeStepBase time.Duration
	// DecodePerSeq is the extra cost of a step per running sequence
	// (sampling, scheduling, activations), apart from its KV reads.
	// Default 25µs.
	DecodePerSeq time.Duration
	// DecodePerContextToken is the cost per token of context (prompt and
	// output so far) of every running sequence in a step: reading its KV
	// cache (128 KiB per token at 2 TB/s is about 65 ns). Default 65ns.
	DecodePerContextToken time.Duration
	// PrefillPerToken is the cost of each prompt token admitted (or
	// recomputed after a preemption) in a step: compute bound, about
	// 2 × 8 GFLOP per token at 40 % of an A100/H100-class GPU's BF16
	// peak. Default 50µs.
	PrefillPerToken time.Duration

	// PriorityScheduling mimics --scheduling-policy priority as vLLM's V1
	// engine implements it: waiting requests are ordered by (priority,
	// arrival), lower first, and when a running sequence needs a KV block
	// and none is free the worst running sequence (by priority, then latest
	// arrival) is preempted. A waiting request never preempts a running
	// one: when the batch is full (MaxNumSeqs) or its blocks do not fit, it
	// waits for a slot, whatever its priority (vllm-project/vllm#40004).
	// Without it a non-zero "priority" is rejected with 400, as vLLM does.
	PriorityScheduling bool
	// PreemptForWaiting additionally lets a waiting request of strictly
	// better priority preempt the worst running sequence when the batch or
	// the KV cache is full (vLLM's older V0 engine, and what the open
	// proposals for #40004 add). Only with PriorityScheduling.
	PreemptForWaiting bool
	// NoPrefixCaching turns off the prefix cache (vLLM's
	// --no-enable-prefix-caching; V1 caches by default). With the cache a
	// preempted sequence's full KV blocks keep their contents until the
	// allocator reuses them, so a readmission soon after a preemption
	// recomputes only its last, partial block. Prompts are not shared
	// between requests here, so preemption is the cache's only source of hits.
	NoPrefixCaching bool
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
	c.Task = cmp.Or(c.Task, TaskGenerate)
	c.EmbedDimensions = cmp.Or(c.EmbedDimensions, 32)
	c.MaxModelLen = cmp.Or(c.MaxModelLen, 8192)
	c.MaxNumSeqs = cmp.Or(c.MaxNumSeqs, 64)
	c.KVBlocks = cmp.Or(c.KVBlocks, 2048)
	c.BlockSize = cmp.Or(c.BlockSize, 16)
	c.DecodeStepBase = cmp.Or(c.DecodeStepBase, 8*time.Millisecond)
	c.DecodePerSeq = cmp.Or(c.DecodePerSeq, 25*time.Microsecond)
	c.DecodePerContextToken = cmp.Or(c.DecodePerContextToken, 65*time.Nanosecond)
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
	positive("EmbedDimensions", c.EmbedDimensions)
	if c.Task != TaskGenerate && c.Task != TaskEmbed {
		errs = append(errs, fmt.Errorf("task must be %q or %q, got %q", TaskGenerate, TaskEmbed, c.Task))
	}
	positive("MaxNumSeqs", c.MaxNumSeqs)
	positive("KVBlocks", c.KVBlocks)
	positive("BlockSize", c.BlockSize)
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"DecodeStepBase", c.DecodeStepBase}, {"DecodePerSeq", c.DecodePerSeq}, {"DecodePerContextToken", c.DecodePerContextToken},
		{"PrefillPerToken", c.PrefillPerToken}} {
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
