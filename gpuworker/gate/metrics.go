// Package gate decides when a GPU worker may take more work: it scrapes the
// engine's Prometheus /metrics (vLLM names) several times a second and opens
// only while the engine has headroom — nothing waiting, KV cache below a
// watermark, no fresh preemptions — with a budget of how many more requests
// fit. The budget fills the engine to a target number of sequences less a
// reserve: the most sequences that other traffic (requests that are not the
// worker's, e.g. interactive ones sent straight to the engine) ran at once
// lately, so that traffic finds free slots when it comes back. Stale or
// missing metrics close it.
package gate

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Metric names read from the engine.
const (
	MetricRunning     = "vllm:num_requests_running"
	MetricWaiting     = "vllm:num_requests_waiting"
	MetricKV          = "vllm:kv_cache_usage_perc"
	MetricKVLegacy    = "vllm:gpu_cache_usage_perc"
	MetricPreemptions = "vllm:num_preemptions_total"
)

// Snapshot is one scrape of the engine's metrics. Gauges and counters are
// summed over label sets (engines, models); KV usage takes the highest.
type Snapshot struct {
	At             time.Time
	Running        float64
	Waiting        float64
	KVUsage        float64
	HasKV          bool
	Preemptions    float64
	HasPreemptions bool
	// Ours is how many of the worker's own requests were at the engine
	// when the scrape began (set by the gate, not by Parse).
	Ours float64
}

// Parse reads Prometheus text exposition. Lines may carry any labels or
// none. It fails when the required running/waiting gauges are absent;
// KV usage (either name) and preemptions are optional.
func Parse(r io.Reader, at time.Time) (Snapshot, error) {
	s := Snapshot{At: at}
	var hasRunning, hasWaiting bool
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		name, value, ok := sample(line)
		if !ok {
			continue
		}
		switch name {
		case MetricRunning:
			s.Running += value
			hasRunning = true
		case MetricWaiting:
			s.Waiting += value
			hasWaiting = true
		case MetricKV, MetricKVLegacy:
			s.KVUsage = max(s.KVUsage, value)
			s.HasKV = true
		case MetricPreemptions:
			s.Preemptions += value
			s.HasPreemptions = true
		}
	}
	if err := sc.Err(); err != nil {
		return s, fmt.Errorf("gate: read metrics: %w", err)
	}
	if !hasRunning || !hasWaiting {
		return s, fmt.Errorf("gate: engine metrics lack %s or %s", MetricRunning, MetricWaiting)
	}
	return s, nil
}

// sample splits `name{labels} value [timestamp]`.
func sample(line string) (string, float64, bool) {
	name, rest := line, ""
	if i := strings.IndexAny(line, "{ "); i >= 0 {
		name, rest = line[:i], line[i:]
	}
	if strings.HasPrefix(rest, "{") {
		end := strings.LastIndexByte(rest, '}')
		if end < 0 {
			return "", 0, false
		}
		rest = rest[end+1:]
	}
	fields := strings.Fields(rest)
	if len(fields) == 0 {
		return "", 0, false
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	if err != nil {
		return "", 0, false
	}
	return name, v, true
}
