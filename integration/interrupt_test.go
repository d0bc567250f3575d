package integration

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lull-ai/lull/gpuworker/imds"
	"github.com/lull-ai/lull/gpuworker/worker"
	"github.com/lull-ai/lull/localstack/asgemu"
	"github.com/lull-ai/lull/localstack/devstack"
)

// Metadata paths the tests hold back until the scenario is ready.
const (
	spotPath      = "/latest/meta-data/spot/instance-action"
	targetPath    = "/latest/meta-data/autoscaling/target-lifecycle-state"
	rebalancePath = "/latest/meta-data/events/recommendations/rebalance"
)

// heldIMDS runs amazon-ec2-metadata-mock with every notice active at once
// (a rebalance recommendation, a spot interruption two minutes out, ASG
// target lifecycle state Terminated) behind a proxy that answers 404 — as
// the metadata service does before a notice — for the held paths until
// the test releases them. The mock supplies the notices; the test decides
// when the worker sees each, so that generations are running by then
// whatever the machine's speed.
type heldIMDS struct {
	URL string
	mu  sync.Mutex
	// held paths answer 404
	held map[string]bool
	// served counts the mock's answers by path
	served map[string]int
}

func startHeldIMDS(t *testing.T, held ...string) *heldIMDS {
	t.Helper()
	bin := buildIMDSMock(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command(bin, "--imdsv2", "--port", strconv.Itoa(port),
		"--mock-delay-sec", "0", "--rebalance-delay-sec", "0", "--asg-termination-delay-sec", "0")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	target, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", port))
	h := &heldIMDS{held: map[string]bool{}, served: map[string]int{}}
	for _, p := range held {
		h.held[p] = true
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		hold := h.held[r.URL.Path]
		if !hold {
			h.served[r.URL.Path]++
		}
		h.mu.Unlock()
		if hold {
			http.NotFound(w, r)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	h.URL = srv.URL
	waitFor(t, 20*time.Second, "IMDS mock up", func() bool {
		_, _, err := imds.New(h.URL).Get(context.Background(), "instance-id")
		return err == nil
	})
	return h
}

// servedCount returns how often the mock answered path.
func (h *heldIMDS) servedCount(path string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.served[path]
}

// release lets the worker see the notice at path.
func (h *heldIMDS) release(path string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.held, path)
}

// instance is a gpuworker process as it runs on a GPU instance: it watches
// the metadata mock and talks to an Auto Scaling emulator about its hook.
type instance struct {
	cmd    *exec.Cmd
	logs   *syncBuffer
	asg    *asgemu.Server
	id     string // instance ID the mock reports
	exited chan error
}

const testGroup, testHook = "lull-test-gpu", "lull-drain"

func buildWorker(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "gpuworker")
	if out, err := exec.Command("go", "build", "-o", bin, "../gpuworker").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

func startInstance(t *testing.T, st *devstack.Stack, md *heldIMDS, env ...string) *instance {
	t.Helper()
	bin := buildWorker(t)
	asg := asgemu.New()
	asgSrv := httptest.NewServer(asg)
	t.Cleanup(asgSrv.Close)
	id, _, err := imds.New(md.URL).Get(context.Background(), "instance-id")
	if err != nil || id == "" {
		t.Fatalf("instance id: %q, %v", id, err)
	}
	in := &instance{logs: &syncBuffer{}, asg: asg, id: id, exited: make(chan error, 1)}
	in.cmd = exec.Command(bin)
	in.cmd.Env = append(append(os.Environ(), st.WorkerEnv()...),
		"LULL_IMDS_URL="+md.URL, "LULL_IMDS_INTERVAL=100ms",
		"LULL_ASG_NAME="+testGroup, "LULL_LIFECYCLE_HOOK="+testHook,
		"AWS_ENDPOINT_URL_AUTO_SCALING="+asgSrv.URL)
	in.cmd.Env = append(in.cmd.Env, env...)
	in.cmd.Stderr = in.logs
	if err := in.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { in.exited <- in.cmd.Wait() }()
	t.Cleanup(func() {
		_ = in.cmd.Process.Kill()
		if t.Failed() {
			t.Logf("worker logs:\n%s", in.logs.String())
		}
	})
	return in
}

// idles checks that the worker process is still running after it drained
// and completed its hook: exiting would have systemd restart it into the
// same notice.
func (in *instance) idles(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case err := <-in.exited:
		t.Fatalf("worker exited after draining (%v): systemd would restart it into the same notice", err)
	case <-time.After(d):
	}
	if !strings.Contains(in.logs.String(), "idling until the instance terminates") {
		t.Fatal("no idle logged after the drain")
	}
}

// stop sends SIGTERM and expects a clean exit.
func (in *instance) stop(t *testing.T) {
	t.Helper()
	if err := in.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-in.exited:
		if err != nil {
			t.Fatalf("worker exit after SIGTERM: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("worker did not exit on SIGTERM")
	}
}

func completedOnce(t *testing.T, st *devstack.Stack, ids []string, timeout time.Duration) {
	t.Helper()
	for id, g := range waitTerminal(t, st, "sk-lull-dev", ids, timeout) {
		if g.Status != "completed" || g.Attempts != 1 {
			t.Fatalf("%s: %s after %d attempts; want completed at the first", id, g.Status, g.Attempts)
		}
	}
}

// A rebalance recommendation, then nothing: the worker logs it and keeps
// working. It still receives and completes jobs, and it never completes
// the lifecycle hook (nothing is terminating).
func TestRebalanceThenNothing(t *testing.T) {
	t.Parallel()
	eng := newEngine(t, vllmsimConfig())
	st := startStack(t, devstack.Config{Workers: -1, VLLMURL: eng.URL(), Visibility: 10 * time.Second})
	md := startHeldIMDS(t, spotPath, targetPath)
	in := startInstance(t, st, md)
	waitFor(t, 20*time.Second, "rebalance recommendation read", func() bool { return md.servedCount(rebalancePath) >= 1 })
	var ids []string
	for i := range 3 {
		ids = append(ids, submit(t, st.URL, "sk-lull-dev", fmt.Sprintf("after rebalance %d", i)))
	}
	completedOnce(t, st, ids, 30*time.Second)
	// Polling goes on (a spot interruption or scale-in may still come), and
	// more jobs still complete.
	polled := md.servedCount(rebalancePath)
	ids = append(ids[:0], submit(t, st.URL, "sk-lull-dev", "later"))
	completedOnce(t, st, ids, 30*time.Second)
	waitFor(t, 5*time.Second, "metadata still polled", func() bool { return md.servedCount(rebalancePath) > polled })
	if n := strings.Count(in.logs.String(), "rebalance recommendation"); n != 1 {
		t.Errorf("rebalance logged %d times, want once", n)
	}
	if strings.Contains(in.logs.String(), "interruption notice") || len(in.asg.Calls("")) != 0 {
		t.Fatalf("drained or called Auto Scaling (%v) on a rebalance recommendation", in.asg.Calls(""))
	}
	select {
	case err := <-in.exited:
		t.Fatalf("worker exited: %v", err)
	default:
	}
	in.stop(t)
}

// Scale-in: the group terminates the instance (Terminating:Wait, IMDS
// target lifecycle state Terminated) while generations run that need
// longer than LULL_DRAIN_TIMEOUT (the SIGTERM bound). The worker stops
// receiving, extends the hook with heartbeats until they finish, completes
// them (nothing released), completes the hook, and idles until SIGTERM.
func TestScaleInWaitsForRunningGenerations(t *testing.T) {
	t.Parallel()
	eng := newEngine(t, vllmsimConfig())
	st := startStack(t, devstack.Config{Workers: -1, VLLMURL: eng.URL(), Visibility: 10 * time.Second})
	md := startHeldIMDS(t, spotPath, targetPath)
	in := startInstance(t, st, md, "LULL_LIFECYCLE_HEARTBEAT=400ms", "LULL_DRAIN_TIMEOUT=1s")
	eng.setDelay(4 * time.Second)
	var ids []string
	for i := range 2 {
		ids = append(ids, submit(t, st.URL, "sk-lull-dev", fmt.Sprintf("long %d", i)))
	}
	waitFor(t, 20*time.Second, "generations running", func() bool { return eng.started.Load() == 2 })
	in.asg.Terminate(testGroup, in.id)
	md.release(targetPath)
	waitFor(t, 5*time.Second, "scale-in noticed", func() bool { return strings.Contains(in.logs.String(), "interruption notice: draining") })
	// Work queued during the drain is left for other instances.
	late := submit(t, st.URL, "sk-lull-dev", "after the notice")
	completedOnce(t, st, ids, 30*time.Second)
	waitFor(t, 10*time.Second, "hook completed", func() bool { return !in.asg.Pending(in.id) })
	beats, done := in.asg.Calls("RecordLifecycleActionHeartbeat"), in.asg.Calls("CompleteLifecycleAction")
	if len(beats) < 2 || len(done) != 1 {
		t.Fatalf("%d heartbeats and %d completions; want at least 2 heartbeats while the generations ran, then 1 completion", len(beats), len(done))
	}
	for _, c := range append(beats, done...) {
		if c.Params["InstanceId"] != in.id || c.Params["AutoScalingGroupName"] != testGroup || c.Params["LifecycleHookName"] != testHook {
			t.Fatalf("%s for %v", c.Action, c.Params)
		}
	}
	in.idles(t, 2*time.Second)
	if eng.started.Load() != 2 {
		t.Fatalf("engine got %d requests; the job queued after the notice was taken", eng.started.Load())
	}
	if g, err := st.Store.Get(t.Context(), late); err != nil || g.Status != "queued" {
		t.Fatalf("job queued after the notice: %+v, %v", g, err)
	}
	in.stop(t)
}

// Spot interruption (after a rebalance recommendation): the worker drains
// by the notice's deadline, completes the hook of the termination Auto
// Scaling starts for the reclaimed instance, and idles until SIGTERM.
func TestSpotInterruptionCompletesHookAndIdles(t *testing.T) {
	t.Parallel()
	eng := newEngine(t, vllmsimConfig())
	st := startStack(t, devstack.Config{Workers: -1, VLLMURL: eng.URL(), Visibility: 10 * time.Second})
	md := startHeldIMDS(t, spotPath, targetPath)
	in := startInstance(t, st, md)
	eng.setDelay(time.Second)
	var ids []string
	for i := range 2 {
		ids = append(ids, submit(t, st.URL, "sk-lull-dev", fmt.Sprintf("spot %d", i)))
	}
	waitFor(t, 20*time.Second, "generations running", func() bool { return eng.started.Load() == 2 })
	in.asg.Terminate(testGroup, in.id)
	md.release(spotPath)
	completedOnce(t, st, ids, 30*time.Second)
	waitFor(t, 10*time.Second, "hook completed", func() bool { return !in.asg.Pending(in.id) })
	if !strings.Contains(in.logs.String(), imds.KindSpotInterruption) {
		t.Fatal("no spot interruption logged")
	}
	in.idles(t, 2*time.Second)
	in.stop(t)
}

// An engine that cannot start: after LULL_ENGINE_MAX_FAILED_STARTS failed
// starts the worker marks its instance Unhealthy; Auto Scaling then
// terminates it through the hook, and the worker (its engine still down)
// completes the hook at once.
func TestBrokenEngineMarksInstanceUnhealthy(t *testing.T) {
	t.Parallel()
	st := startStack(t, devstack.Config{Workers: -1, VLLMURL: "http://127.0.0.1:1", Visibility: 10 * time.Second})
	md := startHeldIMDS(t, spotPath, targetPath)
	in := startInstance(t, st, md, "LULL_VLLM_COMMAND=false", "LULL_ENGINE_MAX_FAILED_STARTS=2")
	waitFor(t, 20*time.Second, "instance marked unhealthy", func() bool { return in.asg.Health(in.id) == "Unhealthy" })
	if calls := in.asg.Calls("SetInstanceHealth"); len(calls) != 1 || calls[0].Params["ShouldRespectGracePeriod"] != "false" {
		t.Fatalf("SetInstanceHealth calls %+v; want one, ignoring the grace period", calls)
	}
	in.asg.Terminate(testGroup, in.id)
	md.release(targetPath)
	waitFor(t, 10*time.Second, "hook completed", func() bool { return !in.asg.Pending(in.id) })
	in.idles(t, time.Second)
	in.stop(t)
}

// A drain without a deadline (scale-in) lets running generations go on past
// LULL_DRAIN_TIMEOUT; SIGTERM during it (the instance shutting down) cuts
// it to LULL_DRAIN_TIMEOUT from then, and the generations are released for
// another worker.
func TestSIGTERMCutsScaleInDrain(t *testing.T) {
	t.Parallel()
	eng := newEngine(t, vllmsimConfig())
	st := startStack(t, devstack.Config{Workers: -1, VLLMURL: eng.URL(), Visibility: 10 * time.Second})
	eng.setDelay(time.Hour)
	ctx, sigterm := context.WithCancel(t.Context())
	w, err := st.StartWorker(ctx, func(c *worker.Config) { c.DrainTimeout = 300 * time.Millisecond })
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := range 2 {
		ids = append(ids, submit(t, st.URL, "sk-lull-dev", fmt.Sprintf("scale-in %d", i)))
	}
	waitFor(t, 20*time.Second, "running", func() bool { return w.Stats().InFlight.Load() == 2 && eng.started.Load() == 2 })
	w.Drain(time.Time{})
	time.Sleep(time.Second) // over three drain timeouts: nothing may be released
	if n := w.Stats().Released.Load(); n != 0 {
		t.Fatalf("a scale-in drain released %d generations after LULL_DRAIN_TIMEOUT", n)
	}
	start := time.Now()
	sigterm()
	waitFor(t, 5*time.Second, "released after SIGTERM", func() bool { return w.Stats().Released.Load() == 2 })
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("released %s after SIGTERM, want about LULL_DRAIN_TIMEOUT (300ms)", d)
	}
	eng.setDelay(0)
	if _, err := st.StartWorker(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	for id, g := range waitTerminal(t, st, "sk-lull-dev", ids, 30*time.Second) {
		if g.Status != "completed" {
			t.Fatalf("%s: %s", id, g.Status)
		}
	}
}
