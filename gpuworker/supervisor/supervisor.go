// Package supervisor runs the inference engine (`vllm serve …`) as a child
// process: it starts it, waits for /health, restarts it with backoff when it
// dies, and stops it (the whole process group) on shutdown.
package supervisor

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Supervisor keeps one engine process alive.
type Supervisor struct {
	// Command and Args start the engine, e.g. "vllm", "serve", "<model>", "--port", "8000".
	Command string
	Args    []string
	// Env is added to the worker's own environment.
	Env []string
	// HealthURL is polled until it answers 200 (e.g. http://127.0.0.1:8000/health).
	HealthURL string
	// StartTimeout bounds how long a start may take to become healthy
	// (loading weights takes minutes); 20m when zero.
	StartTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between restarts; 1s and 1m when zero.
	MinBackoff, MaxBackoff time.Duration
	// MaxFailedStarts, when positive, is how many starts in a row may fail
	// (the engine exits, or is killed for outliving StartTimeout, before it
	// ever answered /health) before GiveUp is called, once. The supervisor
	// goes on restarting the engine all the same.
	MaxFailedStarts int
	GiveUp          func()
	Logger          *slog.Logger

	healthy      atomic.Bool
	wasHealthy   atomic.Bool // during the current start
	restarts     atomic.Int64
	failedStarts atomic.Int64
	gaveUp       atomic.Bool
	mu           sync.Mutex
	proc         *os.Process
}

// Healthy reports whether the engine is up and answered /health.
func (s *Supervisor) Healthy() bool { return s.healthy.Load() }

// Restarts counts restarts after the first start.
func (s *Supervisor) Restarts() int64 { return s.restarts.Load() }

// FailedStarts counts the starts in a row that ended before the engine was
// ever healthy; a start that reached /health resets it.
func (s *Supervisor) FailedStarts() int64 { return s.failedStarts.Load() }

// PID returns the running engine's process ID (0 when none).
func (s *Supervisor) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return 0
	}
	return s.proc.Pid
}

// Run keeps the engine running until ctx ends, then stops it (SIGTERM to
// its process group, SIGKILL after 30s).
func (s *Supervisor) Run(ctx context.Context) error {
	if s.Command == "" {
		return errors.New("supervisor: no command")
	}
	minB, maxB := cmp.Or(s.MinBackoff, time.Second), cmp.Or(s.MaxBackoff, time.Minute)
	backoff := minB
	for first := true; ctx.Err() == nil; first = false {
		if !first {
			s.restarts.Add(1)
		}
		started := time.Now()
		s.wasHealthy.Store(false)
		err := s.runOnce(ctx)
		s.healthy.Store(false)
		if ctx.Err() != nil {
			return nil
		}
		s.countStart(err)
		if time.Since(started) > 10*maxB {
			backoff = minB // it ran a long while: a fresh failure
		}
		s.Logger.Error("engine exited; restarting", "err", err, "in", backoff.String())
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxB)
	}
	return nil
}

// countStart records how a start ended and calls GiveUp once when
// MaxFailedStarts starts in a row never became healthy.
func (s *Supervisor) countStart(err error) {
	if s.wasHealthy.Load() {
		s.failedStarts.Store(0)
		return
	}
	n := s.failedStarts.Add(1)
	s.Logger.Error("engine start failed", "failed_starts", n, "err", err)
	if s.MaxFailedStarts > 0 && n >= int64(s.MaxFailedStarts) && s.GiveUp != nil && s.gaveUp.CompareAndSwap(false, true) {
		s.Logger.Error("engine failed to start too often; giving up on this instance", "failed_starts", n)
		s.GiveUp()
	}
}

func (s *Supervisor) runOnce(ctx context.Context) error {
	cmd := exec.Command(s.Command, s.Args...)
	cmd.Env = append(os.Environ(), s.Env...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("supervisor: start %s: %w", s.Command, err)
	}
	s.mu.Lock()
	s.proc = cmd.Process
	s.mu.Unlock()
	s.Logger.Info("engine started", "pid", cmd.Process.Pid, "command", s.Command)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		s.mu.Lock()
		s.proc = nil
		s.mu.Unlock()
	}()

	healthCtx, stopHealth := context.WithCancel(ctx)
	defer stopHealth()
	go s.watchHealth(healthCtx, cmd.Process.Pid)
	select {
	case err := <-exited:
		return fmt.Errorf("supervisor: engine exited: %v", err)
	case <-ctx.Done():
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		s.Logger.Info("engine stopped")
		return nil
	}
}

// watchHealth marks the engine healthy while /health answers 200.
func (s *Supervisor) watchHealth(ctx context.Context, pid int) {
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(cmp.Or(s.StartTimeout, 20*time.Minute))
	for ctx.Err() == nil {
		ok := false
		if req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.HealthURL, nil); err == nil {
			if resp, err := client.Do(req); err == nil {
				resp.Body.Close()
				ok = resp.StatusCode == http.StatusOK
			}
		}
		if ok {
			s.wasHealthy.Store(true)
		}
		if ok != s.healthy.Load() {
			s.healthy.Store(ok)
			s.Logger.Info("engine health changed", "healthy", ok, "pid", pid)
		}
		if ok {
			deadline = time.Now().Add(cmp.Or(s.StartTimeout, 20*time.Minute))
		} else if time.Now().After(deadline) {
			s.Logger.Error("engine unhealthy too long; killing it for a restart", "pid", pid)
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
}
