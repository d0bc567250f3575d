package worker_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/lull-ai/lull/gpuworker/vllm"
	"github.com/lull-ai/lull/gpuworker/worker"
	"github.com/lull-ai/lull/shared/awsclients"
	"github.com/lull-ai/lull/shared/dynamodb"
)

// hangingServer accepts every request and never answers until the test
// ends: a dependency that is reachable but stuck.
func hangingServer(t *testing.T) string {
	t.Helper()
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-done:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(done); srv.Close() })
	return srv.URL
}

// TestWorkerBoundsAWSCalls holds issue 13 g: a DynamoDB that accepts the
// connection and never answers does not hold the worker: the call gives up
// after LULL_AWS_TIMEOUT and the message goes back to the queue.
func TestWorkerBoundsAWSCalls(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	clients, err := awsclients.New(context.Background(), awsclients.Endpoints{DynamoDB: hangingServer(t), SQS: "http://127.0.0.1:1", S3: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	stuck := dynamodb.New(clients.DynamoDB, "stuck")
	f.submit(t, "hello", nil)
	w, err := worker.New(worker.Config{
		Model: "m", WorkerID: "w1", Gate: "fixed", Concurrency: 1, Visibility: 30 * time.Second,
		RequestTimeout: 10 * time.Second, EngineRetries: 1, DrainTimeout: 10 * time.Second, AWSTimeout: 300 * time.Millisecond,
	}, worker.Deps{Generations: stuck, Queue: f.queue, Events: f.events, Blobs: f.blobs,
		Engine: vllm.New(f.engine.srv.URL, nil), Logger: testLogger(t), Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	start(t, w)
	f.waitQueue(t, "message released after the stuck Start", f.releasedFor(5*time.Second))
	if n := f.engine.count("hello"); n != 0 {
		t.Fatalf("engine called %d times for a generation that never started", n)
	}
}
