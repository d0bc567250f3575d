package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lull-ai/lull/localstack/chaos"
	"github.com/lull-ai/lull/localstack/extemu"
	"github.com/lull-ai/lull/shared/awsclients"
)

// TestChaosShort runs the fault-injection harness's short profile on DynamoDB
// Local and fauxqs (make test starts them): 150 slow requests and three
// batches (plain, cancelled midway, expiring) while a share of AWS calls
// fail before and after taking effect, two worker processes are SIGKILLed
// mid-generation, the engine answers 5xx and stalls past the worker's
// timeout and the webhook receiver fails 30 % of deliveries; then every
// guarantee must hold (see localstack/chaos). Not parallel: it measures
// convergence times and wants the machine to itself within this package.
// Logs stay in the directory it names when it fails.
func TestChaosShort(t *testing.T) {
	ext := extemu.Require(t)
	dir, err := os.MkdirTemp("", "lull-chaos-short-")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "gpuworker")
	if out, err := exec.Command("go", "build", "-o", bin, "../gpuworker").CombinedOutput(); err != nil {
		t.Fatalf("build gpuworker: %v\n%s", err, out)
	}
	rep, err := chaos.Run(t.Context(), chaos.Config{
		Profile: chaos.Short(), Endpoints: awsclients.Endpoints{DynamoDB: ext.DynamoDB, SQS: ext.SQS, S3: ext.S3},
		WorkerBinary: bin, LogDir: dir,
	})
	if err != nil {
		t.Fatal(err)
	}
	var table strings.Builder
	rep.Table(&table)
	t.Log("\n" + table.String())
	if len(rep.Failures) > 0 {
		t.Fatalf("%d guarantees broken under faults; logs in %s:\n%s", len(rep.Failures), dir, strings.Join(rep.Failures, "\n"))
	}
	_ = os.RemoveAll(dir)
}
