// Package emf publishes CloudWatch metrics as Embedded Metric Format (EMF)
// log lines: one JSON object per line on a writer (the Lambda's stdout),
// from which CloudWatch Logs extracts the metrics as the log event arrives.
//
// The scaler publishes this way rather than with PutMetricData: no API call
// in the minute's critical path (no throttling, no retries, no per-request
// charge), no cloudwatch:PutMetricData grant (the role already may write
// its own log group), and the output is testable byte for byte without an
// emulator. The metric identity (namespace, name, dimensions) is the same
// either way, so alarms and scaling policies do not care.
//
// Format: https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html
package emf

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/lull-ai/lull/lambdas/scaler/backlog"
)

// Limits of the specification.
const (
	// MaxMetrics is the most metric definitions one directive may hold.
	MaxMetrics = 100
	// MaxDimensions is the most dimension keys one dimension set may hold.
	MaxDimensions = 9
)

// Writer writes EMF documents to W, one per line, each in a single Write so
// that concurrent output never interleaves inside a line.
type Writer struct {
	// W receives the lines; on Lambda, os.Stdout.
	W io.Writer
	// Namespace is the CloudWatch namespace of every metric.
	Namespace string

	mu sync.Mutex
}

// Publish writes one document: data as metrics of Writer.Namespace at time
// at, with a single dimension set, dims (name → value; every metric of the
// document carries all of them). Values must be finite. It returns an error,
// and writes nothing, when the document breaks the specification (no
// namespace, no metrics, too many metrics or dimensions, a non-finite value,
// a dimension named like a metric or "_aws"), and the writer's error when
// the write fails.
func (w *Writer) Publish(_ context.Context, at time.Time, dims map[string]string, data []backlog.Datum) error {
	line, err := marshal(w.Namespace, at, dims, data)
	if err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, err := w.W.Write(line); err != nil {
		return fmt.Errorf("emf: write: %w", err)
	}
	return nil
}

// marshal returns the EMF document Publish writes, newline included.
func marshal(namespace string, at time.Time, dims map[string]string, data []backlog.Datum) ([]byte, error) {
	switch {
	case namespace == "":
		return nil, errors.New("emf: no namespace")
	case len(data) == 0:
		return nil, errors.New("emf: no metrics")
	case len(data) > MaxMetrics:
		return nil, fmt.Errorf("emf: %d metrics, at most %d", len(data), MaxMetrics)
	case len(dims) > MaxDimensions:
		return nil, fmt.Errorf("emf: %d dimensions, at most %d", len(dims), MaxDimensions)
	}
	root := make(map[string]any, len(dims)+len(data)+1)
	keys := make([]string, 0, len(dims))
	for k, v := range dims {
		if k == "" || k == "_aws" {
			return nil, fmt.Errorf("emf: dimension name %q", k)
		}
		keys = append(keys, k)
		root[k] = v
	}
	defs := make([]definition, 0, len(data))
	for _, d := range data {
		if d.Name == "" || d.Name == "_aws" {
			return nil, fmt.Errorf("emf: metric name %q", d.Name)
		}
		if math.IsNaN(d.Value) || math.IsInf(d.Value, 0) {
			return nil, fmt.Errorf("emf: metric %s = %v, not finite", d.Name, d.Value)
		}
		if _, dup := root[d.Name]; dup {
			return nil, fmt.Errorf("emf: %s is both a dimension and a metric, or twice a metric", d.Name)
		}
		root[d.Name] = d.Value
		defs = append(defs, definition{Name: d.Name, Unit: "None"})
	}
	slices.Sort(keys)
	root["_aws"] = metadata{
		Timestamp: at.UnixMilli(),
		CloudWatchMetrics: []directive{{
			Namespace: namespace, Dimensions: [][]string{keys}, Metrics: defs,
		}},
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf) // Encode ends the document with '\n'
	enc.SetEscapeHTML(false)
	if err := enc.Encode(root); err != nil {
		return nil, fmt.Errorf("emf: encode: %w", err)
	}
	return buf.Bytes(), nil
}

// metadata is the "_aws" member of the root node.
type metadata struct {
	Timestamp         int64       `json:"Timestamp"`
	CloudWatchMetrics []directive `json:"CloudWatchMetrics"`
}

// directive is one MetricDirective.
type directive struct {
	Namespace  string       `json:"Namespace"`
	Dimensions [][]string   `json:"Dimensions"`
	Metrics    []definition `json:"Metrics"`
}

// definition is one MetricDefinition.
type definition struct {
	Name string `json:"Name"`
	Unit string `json:"Unit"`
}
