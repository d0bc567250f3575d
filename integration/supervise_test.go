package integration

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lull-ai/lull/localstack/devstack"
	"github.com/lull-ai/lull/shared/lull"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// The worker process supervises the engine (here the simulator binary as
// LULL_VLLM_COMMAND). Killing the engine mid-generation restarts it, and the
// interrupted generations run again and complete exactly once.
func TestEngineKilledIsRestarted(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	worker, sim := filepath.Join(dir, "gpuworker"), filepath.Join(dir, "vllmsim-"+lull.NewID("x")[2:10])
	for out, pkg := range map[string]string{worker: "../gpuworker", sim: "../localstack/cmd/vllmsim"} {
		if b, err := exec.Command("go", "build", "-o", out, pkg).CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", pkg, err, b)
		}
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	engineURL := fmt.Sprintf("http://127.0.0.1:%d", port)
	st := startStack(t, devstack.Config{Workers: -1, VLLMURL: engineURL, Visibility: 10 * time.Second})

	var logs syncBuffer
	cmd := exec.Command(worker)
	cmd.Env = append(os.Environ(), st.WorkerEnv()...)
	cmd.Env = append(cmd.Env, fmt.Sprintf("LULL_VLLM_COMMAND=%s -addr 127.0.0.1:%d -time-scale 0.01", sim, port))
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Signal(os.Interrupt); _ = cmd.Wait() })
	waitFor(t, 30*time.Second, "engine healthy", func() bool {
		resp, err := http.Get(engineURL + "/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	// Make the engine hold requests so they are in flight when it dies.
	if code := postJSON(t, engineURL+"/sim/faults", "", `{"delay_ms":600000}`, nil); code != http.StatusNoContent {
		t.Fatalf("set delay: %d", code)
	}
	var ids []string
	for i := range 4 {
		ids = append(ids, submit(t, st.URL, "sk-lull-dev", fmt.Sprintf("survive the crash %d", i)))
	}
	waitFor(t, 20*time.Second, "generations in progress", func() bool {
		for _, id := range ids {
			if g, err := st.Store.Get(t.Context(), id); err != nil || g.Status != lull.StatusInProgress {
				return false
			}
		}
		return true
	})
	if out, err := exec.Command("pkill", "-KILL", "-f", sim).CombinedOutput(); err != nil {
		t.Fatalf("kill engine: %v %s", err, out)
	}
	for id, g := range waitTerminal(t, st, "sk-lull-dev", ids, time.Minute) {
		if g.Status != "completed" || g.Usage == nil {
			t.Fatalf("%s: %s %+v", id, g.Status, g.Error)
		}
	}
	if n := strings.Count(logs.String(), `"engine started"`); n != 2 {
		t.Fatalf("engine started %d times, want 2 (one restart); logs:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "engine exited; restarting") {
		t.Fatalf("no restart logged:\n%s", logs.String())
	}
}

// SIGTERM drains the worker process: it stops receiving, finishes what runs,
// and exits 0 — nothing released, nothing lost.
func TestWorkerSIGTERMDrains(t *testing.T) {
	t.Parallel()
	eng := newEngine(t, vllmsimConfig())
	st := startStack(t, devstack.Config{Workers: -1, VLLMURL: eng.URL(), Visibility: 10 * time.Second})
	bin := filepath.Join(t.TempDir(), "gpuworker")
	if out, err := exec.Command("go", "build", "-o", bin, "../gpuworker").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	var logs syncBuffer
	cmd := exec.Command(bin)
	cmd.Env = append(append(os.Environ(), st.WorkerEnv()...), "LULL_DRAIN_TIMEOUT=30s")
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	eng.setDelay(2 * time.Second)
	var ids []string
	for i := range 3 {
		ids = append(ids, submit(t, st.URL, "sk-lull-dev", fmt.Sprintf("drain on sigterm %d", i)))
	}
	waitFor(t, 20*time.Second, "running", func() bool { return eng.started.Load() == 3 })
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("worker exit: %v\n%s", err, logs.String())
		}
	case <-time.After(25 * time.Second):
		t.Fatal("worker did not exit after draining")
	}
	for id, g := range waitTerminal(t, st, "sk-lull-dev", ids, 5*time.Second) {
		if g.Status != "completed" || g.Attempts != 1 {
			t.Fatalf("%s: %s after %d attempts", id, g.Status, g.Attempts)
		}
	}
	if !strings.Contains(logs.String(), `"released":0`) || eng.requests.Load() != 3 {
		t.Fatalf("engine ran %d; logs:\n%s", eng.requests.Load(), logs.String())
	}
}
