package supervisor_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lull-ai/lull/gpuworker/supervisor"
)

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The supervisor starts the simulator as a real process, restarts it after
// a SIGKILL, and stops it with the context.
func TestSupervisorRestarts(t *testing.T) {
	t.Parallel()
	bin := filepath.Join(t.TempDir(), "vllmsim")
	if out, err := exec.Command("go", "build", "-o", bin, "../../localstack/cmd/vllmsim").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	port := freePort(t)
	s := &supervisor.Supervisor{
		Command: bin, Args: []string{"-addr", fmt.Sprintf("127.0.0.1:%d", port)},
		HealthURL: fmt.Sprintf("http://127.0.0.1:%d/health", port), MinBackoff: 50 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler),
		// An engine killed after it was healthy is no failed start.
		MaxFailedStarts: 1, GiveUp: func() { t.Error("gave up on an engine that started") },
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	waitUntil(t, "healthy", s.Healthy)
	first := s.PID()
	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "restart", func() bool { return s.Restarts() == 1 && s.Healthy() && s.PID() != first && s.PID() != 0 })
	second := s.PID()
	if n := s.FailedStarts(); n != 0 {
		t.Errorf("%d failed starts, want 0", n)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(second, 0); err == nil {
		t.Fatalf("engine %d still running after Run returned", second)
	}
}

// An engine that never answers /health (here: exits at once) counts as a
// failed start each time; after MaxFailedStarts in a row GiveUp is called
// exactly once, and the supervisor keeps trying.
func TestSupervisorGivesUpAfterFailedStarts(t *testing.T) {
	t.Parallel()
	var gaveUp atomic.Int64
	var at atomic.Int64 // FailedStarts when GiveUp ran
	var s *supervisor.Supervisor
	s = &supervisor.Supervisor{
		Command: "sh", Args: []string{"-c", "exit 3"},
		HealthURL:  fmt.Sprintf("http://127.0.0.1:%d/health", freePort(t)),
		MinBackoff: 5 * time.Millisecond, MaxBackoff: 10 * time.Millisecond,
		Logger:          slog.New(slog.DiscardHandler),
		MaxFailedStarts: 3,
		GiveUp:          func() { gaveUp.Add(1); at.Store(s.FailedStarts()) },
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	waitUntil(t, "more failed starts", func() bool { return s.FailedStarts() >= 6 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if gaveUp.Load() != 1 || at.Load() != 3 {
		t.Fatalf("GiveUp called %d times, at %d failed starts; want once, at 3", gaveUp.Load(), at.Load())
	}
}
