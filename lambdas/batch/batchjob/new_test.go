package batchjob_test

import (
	"strings"
	"testing"

	"github.com/lull-ai/lull/lambdas/batch/batchjob"
	"github.com/lull-ai/lull/shared/lull"
)

// TestNewNamesMissingDependencies: a handler without its stores, queues or
// logger fails at start-up, naming each missing field.
func TestNewNamesMissingDependencies(t *testing.T) {
	t.Parallel()
	_, err := batchjob.New(batchjob.Config{Queues: map[string]lull.BatchSender{"m": nil}})
	for _, want := range []string{"Batches", "Generations", "Blobs", "BatchQueue", "Logger", `model "m"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("New(empty) = %v; want an error naming %s", err, want)
		}
	}
}
