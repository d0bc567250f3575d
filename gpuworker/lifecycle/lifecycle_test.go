package lifecycle_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"

	"github.com/lull-ai/lull/gpuworker/lifecycle"
	"github.com/lull-ai/lull/localstack/asgemu"
)

// newHook returns a hook for instance i-1 of group grp, talking to an
// awsquery Auto Scaling emulator over HTTP with the real SDK client.
func newHook(t *testing.T) (*lifecycle.Hook, *asgemu.Server) {
	t.Helper()
	emu := asgemu.New()
	ts := httptest.NewServer(emu)
	t.Cleanup(ts.Close)
	c := autoscaling.New(autoscaling.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(ts.URL),
		Credentials:      credentials.NewStaticCredentialsProvider("test", "test", ""),
		RetryMaxAttempts: 1,
	})
	return lifecycle.New(c, "grp", "lull-drain", "i-1"), emu
}

func TestHook(t *testing.T) {
	t.Parallel()
	t.Run("HeartbeatThenComplete", func(t *testing.T) {
		t.Parallel()
		h, emu := newHook(t)
		emu.Terminate("grp", "i-1")
		ctx := context.Background()
		for range 2 {
			if err := h.Heartbeat(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if err := h.Complete(ctx); err != nil {
			t.Fatal(err)
		}
		if emu.Pending("i-1") {
			t.Fatal("lifecycle action still pending after Complete")
		}
		beats := emu.Calls("RecordLifecycleActionHeartbeat")
		done := emu.Calls("CompleteLifecycleAction")
		if len(beats) != 2 || len(done) != 1 {
			t.Fatalf("%d heartbeats, %d completions; want 2, 1", len(beats), len(done))
		}
		for _, c := range append(beats, done...) {
			if c.Params["AutoScalingGroupName"] != "grp" || c.Params["LifecycleHookName"] != "lull-drain" || c.Params["InstanceId"] != "i-1" {
				t.Errorf("%s params %v", c.Action, c.Params)
			}
		}
		if got := done[0].Params["LifecycleActionResult"]; got != "CONTINUE" {
			t.Errorf("LifecycleActionResult = %q, want CONTINUE", got)
		}
	})
	t.Run("ErrNoPendingAction", func(t *testing.T) {
		t.Parallel()
		h, _ := newHook(t)
		for name, call := range map[string]func(context.Context) error{"Heartbeat": h.Heartbeat, "Complete": h.Complete} {
			if err := call(context.Background()); err == nil || !strings.Contains(err.Error(), "No active Lifecycle Action") ||
				!strings.Contains(err.Error(), "i-1") {
				t.Errorf("%s without a pending action: %v", name, err)
			}
		}
	})
	t.Run("SetUnhealthy", func(t *testing.T) {
		t.Parallel()
		h, emu := newHook(t)
		if err := h.SetUnhealthy(context.Background()); err != nil {
			t.Fatal(err)
		}
		calls := emu.Calls("SetInstanceHealth")
		if emu.Health("i-1") != "Unhealthy" || len(calls) != 1 || calls[0].Params["ShouldRespectGracePeriod"] != "false" {
			t.Fatalf("health %q, calls %+v; want Unhealthy once, ignoring the grace period", emu.Health("i-1"), calls)
		}
	})
}
