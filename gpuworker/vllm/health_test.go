package vllm_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/lull-ai/lull/gpuworker/vllm"
)

// TestHealthyIsBounded holds issue 13 g: the start-up health check of an
// engine that accepts the connection and never answers returns (not
// healthy) after vllm.HealthTimeout instead of waiting forever.
func TestHealthyIsBounded(t *testing.T) {
	t.Parallel()
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-done:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(done)
	c := vllm.New(srv.URL, nil)
	result := make(chan bool, 1)
	start := time.Now()
	go func() { result <- c.Healthy(context.Background()) }()
	select {
	case ok := <-result:
		if ok {
			t.Fatal("a silent engine is healthy")
		}
		if took := time.Since(start); took > vllm.HealthTimeout+2*time.Second {
			t.Fatalf("Healthy took %s", took)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Healthy did not return within 20s for an engine that never answers")
	}
}
