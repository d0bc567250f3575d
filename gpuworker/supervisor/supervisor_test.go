package supervisor_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os/exec"
	"path/filepath"
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
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(second, 0); err == nil {
		t.Fatalf("engine %d still running after Run returned", second)
	}
}
