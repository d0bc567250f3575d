package emf_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/lull-ai/lull/lambdas/scaler/backlog"
	"github.com/lull-ai/lull/lambdas/scaler/emf"
)

// TestPublish checks a document against the specification's rules: one
// line, a root object whose _aws member has a millisecond Timestamp and one
// directive, whose dimension keys and metric names are root members of the
// right types.
func TestPublish(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	w := &emf.Writer{W: &buf, Namespace: "Lull"}
	at := time.Date(2026, 12, 1, 20, 0, 0, 123e6, time.UTC)
	data := []backlog.Datum{{Name: "BacklogPerInstance", Value: 12.5}, {Name: "UnservedBacklog", Value: 0}}
	if err := w.Publish(context.Background(), at, map[string]string{"Model": "qwen-7b", "Env": "prod"}, data); err != nil {
		t.Fatal(err)
	}
	line := buf.String()
	if strings.Count(line, "\n") != 1 || !strings.HasSuffix(line, "\n") {
		t.Fatalf("not one line: %q", line)
	}
	var root map[string]any
	if err := json.Unmarshal([]byte(line), &root); err != nil {
		t.Fatal(err)
	}
	aws := root["_aws"].(map[string]any)
	if ts := aws["Timestamp"].(float64); int64(ts) != at.UnixMilli() {
		t.Errorf("Timestamp = %v, want %d", ts, at.UnixMilli())
	}
	dirs := aws["CloudWatchMetrics"].([]any)
	if len(dirs) != 1 {
		t.Fatalf("%d directives", len(dirs))
	}
	dir := dirs[0].(map[string]any)
	if dir["Namespace"] != "Lull" {
		t.Errorf("Namespace = %v", dir["Namespace"])
	}
	sets := dir["Dimensions"].([]any)
	if len(sets) != 1 || len(sets[0].([]any)) != 2 || sets[0].([]any)[0] != "Env" || sets[0].([]any)[1] != "Model" {
		t.Errorf("Dimensions = %v, want [[Env Model]]", sets)
	}
	if root["Model"] != "qwen-7b" || root["Env"] != "prod" {
		t.Errorf("dimension members: %v", root)
	}
	metrics := dir["Metrics"].([]any)
	if len(metrics) != len(data) {
		t.Fatalf("Metrics = %v", metrics)
	}
	for i, m := range metrics {
		m := m.(map[string]any)
		if m["Name"] != data[i].Name || m["Unit"] != "None" {
			t.Errorf("Metrics[%d] = %v", i, m)
		}
		if v, ok := root[data[i].Name].(float64); !ok || v != data[i].Value {
			t.Errorf("member %s = %v, want %v", data[i].Name, root[data[i].Name], data[i].Value)
		}
	}
}

func TestPublishRejects(t *testing.T) {
	t.Parallel()
	many := make([]backlog.Datum, emf.MaxMetrics+1)
	for i := range many {
		many[i] = backlog.Datum{Name: "m" + string(rune('a'+i%26)) + string(rune('a'+i/26)), Value: 1}
	}
	dims := map[string]string{}
	for i := range emf.MaxDimensions + 1 {
		dims[string(rune('A'+i))] = "v"
	}
	one := []backlog.Datum{{Name: "X", Value: 1}}
	for _, tc := range []struct {
		name      string
		namespace string
		dims      map[string]string
		data      []backlog.Datum
	}{
		{"NoNamespace", "", nil, one},
		{"NoMetrics", "Lull", nil, nil},
		{"TooManyMetrics", "Lull", nil, many},
		{"TooManyDimensions", "Lull", dims, one},
		{"NaN", "Lull", nil, []backlog.Datum{{Name: "X", Value: math.NaN()}}},
		{"Inf", "Lull", nil, []backlog.Datum{{Name: "X", Value: math.Inf(1)}}},
		{"DimensionIsMetric", "Lull", map[string]string{"X": "v"}, one},
		{"DuplicateMetric", "Lull", nil, []backlog.Datum{{Name: "X", Value: 1}, {Name: "X", Value: 2}}},
		{"ReservedName", "Lull", map[string]string{"_aws": "v"}, one},
		{"EmptyMetricName", "Lull", nil, []backlog.Datum{{Value: 1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			w := &emf.Writer{W: &buf, Namespace: tc.namespace}
			if err := w.Publish(context.Background(), time.Now(), tc.dims, tc.data); err == nil {
				t.Fatal("no error")
			}
			if buf.Len() != 0 {
				t.Fatalf("wrote %q", buf.String())
			}
		})
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestPublishWriteError(t *testing.T) {
	t.Parallel()
	w := &emf.Writer{W: failingWriter{}, Namespace: "Lull"}
	err := w.Publish(context.Background(), time.Now(), nil, []backlog.Datum{{Name: "X", Value: 1}})
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("err = %v", err)
	}
}
