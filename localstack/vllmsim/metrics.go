package vllmsim

import (
	"bytes"
	"fmt"
	"maps"
	"net/http"
	"strconv"
)

// metricsSnapshot is what /metrics renders, copied under the engine lock.
type metricsSnapshot struct {
	Stats
	finishedBy map[string]int64
	ttft, e2e  histogram
	iterTokens histogram
}

func (e *engine) metricsSnapshot() metricsSnapshot {
	e.mu.Lock()
	defer e.mu.Unlock()
	return metricsSnapshot{Stats: e.statsLocked(), finishedBy: maps.Clone(e.finishedBy), ttft: e.ttft.clone(), e2e: e.e2e.clone(),
		iterTokens: e.iterTokens.clone()}
}

// metrics writes Prometheus text exposition (version 0.0.4) with vLLM's
// metric names, every sample labelled model_name and engine="0". Request
// counts are of sequences (a request with n choices counts n, as vLLM's
// parallel sampling does); latency histograms are in simulated seconds
// (wall time / TimeScale).
func (s *Server) metrics(w http.ResponseWriter, _ *http.Request) {
	m := s.eng.metricsSnapshot()
	labels := `model_name=` + strconv.Quote(s.cfg.Model) + `,engine="0"`
	var b bytes.Buffer
	family := func(name, typ, help string) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
	}
	sample := func(name, extra string, v float64) {
		fmt.Fprintf(&b, "%s{%s%s} %s\n", name, labels, extra, strconv.FormatFloat(v, 'g', -1, 64))
	}
	gauge := func(name, help string, v float64) {
		family(name, "gauge", help)
		sample(name, "", v)
	}
	gauge("vllm:num_requests_running", "Number of requests in model execution batches.", float64(m.Running))
	gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.", float64(m.Waiting))
	if !s.cfg.LegacyCacheMetricOnly {
		gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", m.KVUsage)
	}
	if s.cfg.LegacyCacheMetric {
		gauge("vllm:gpu_cache_usage_perc", "GPU KV-cache usage. 1 means 100 percent usage.", m.KVUsage)
	}
	counter := func(name, help string, v int64) {
		family(name, "counter", help)
		sample(name, "", float64(v))
	}
	counter("vllm:num_preemptions_total", "Cumulative number of preemption from the engine.", m.Preemptions)
	counter("vllm:prompt_tokens_total", "Number of prefill tokens processed.", m.PromptTokens)
	counter("vllm:generation_tokens_total", "Number of generation tokens processed.", m.GenerationTokens)
	if !s.cfg.NoPrefixCaching {
		counter("vllm:prefix_cache_queries_total", "Prefix cache queries, in terms of number of queried tokens.", m.PrefixCacheQueries)
		counter("vllm:prefix_cache_hits_total", "Prefix cache hits, in terms of number of cached tokens.", m.PrefixCacheHits)
	}
	family("vllm:request_success_total", "counter", "Count of successfully processed requests.")
	for _, reason := range []string{"stop", "length", "abort"} {
		sample("vllm:request_success_total", `,finished_reason="`+reason+`"`, float64(m.finishedBy[reason]))
	}
	for _, h := range []struct {
		name, help string
		h          histogram
	}{
		{"vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", m.ttft},
		{"vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", m.e2e},
		{"vllm:iteration_tokens_total", "Histogram of number of tokens per engine_step.", m.iterTokens},
	} {
		family(h.name, "histogram", h.help)
		var cum uint64
		for i, bound := range h.h.bounds {
			cum += h.h.counts[i]
			sample(h.name+"_bucket", `,le="`+strconv.FormatFloat(bound, 'g', -1, 64)+`"`, float64(cum))
		}
		sample(h.name+"_bucket", `,le="+Inf"`, float64(h.h.n))
		sample(h.name+"_sum", "", h.h.sum)
		sample(h.name+"_count", "", float64(h.h.n))
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	_, _ = w.Write(b.Bytes())
}
