package integration

import (
	"fmt"
	"testing"
	"time"

	"github.com/lull-ai/lull/localstack/devstack"
	"github.com/lull-ai/lull/localstack/extemu"
	"github.com/lull-ai/lull/shared/awsclients"
)

// TestEndToEndExternalEmulators runs the whole stack against DynamoDB Local
// and fauxqs (the stricter SQS) when they are running (make test starts
// them): 100 generations complete, and a duplicate-free completion count.
func TestEndToEndExternalEmulators(t *testing.T) {
	t.Parallel()
	ext := extemu.Require(t)
	ep := awsclients.Endpoints{DynamoDB: ext.DynamoDB, SQS: ext.SQS, S3: ext.S3}
	eng := newEngine(t, vllmsimConfig())
	st := startStack(t, devstack.Config{Endpoints: ep, VLLMURL: eng.URL(), Workers: 2})
	var ids []string
	for i := range 100 {
		ids = append(ids, submit(t, st.URL, "sk-lull-dev", fmt.Sprintf("external %d", i)))
	}
	for id, g := range waitTerminal(t, st, "sk-lull-dev", ids, 2*time.Minute) {
		if g.Status != "completed" || g.Attempts != 1 {
			t.Fatalf("%s: %s after %d attempts", id, g.Status, g.Attempts)
		}
	}
	var completed int64
	for _, w := range st.Workers() {
		completed += w.Stats().Completed.Load()
	}
	if completed != 100 || eng.requests.Load() != 100 {
		t.Fatalf("workers completed %d, engine ran %d; want 100 each", completed, eng.requests.Load())
	}
}
