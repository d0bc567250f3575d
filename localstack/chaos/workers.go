package chaos

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// workerPool runs GPU workers as separate processes (so they can be
// SIGKILLed mid-generation) and reads their JSON logs: every "generation
// finished" line with status completed is one completion recorded by a
// worker, the per-generation counter behind "completed twice".
type workerPool struct {
	bin string
	env []string
	out io.Writer // the workers' logs, one line each, prefixed by the worker's name

	mu          sync.Mutex
	outMu       sync.Mutex
	rng         *rand.Rand
	procs       []*workerProc
	seq         int
	completions map[string]int // generation ID → completions logged
	kills       int
	midKills    int // kills while the worker had a generation running
	wg          sync.WaitGroup
}

type workerProc struct {
	name     string
	cmd      *exec.Cmd
	running  atomic.Int64 // generations started and not yet ended, from the log
	exited   chan struct{}
	finished atomic.Bool
}

func newWorkerPool(bin string, env []string, out io.Writer, seed uint64) *workerPool {
	return &workerPool{bin: bin, env: env, out: out, rng: rand.New(rand.NewPCG(seed, seed+7)), completions: map[string]int{}}
}

// start launches one more worker process.
func (p *workerPool) start() error {
	p.mu.Lock()
	p.seq++
	name := fmt.Sprintf("chaos-w%d", p.seq)
	p.mu.Unlock()
	cmd := exec.Command(p.bin)
	cmd.Env = append(append(os.Environ(), p.env...), "LULL_WORKER_ID="+name)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	cmd.Stdout = nil
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("chaos: start worker: %w", err)
	}
	w := &workerProc{name: name, cmd: cmd, exited: make(chan struct{})}
	p.mu.Lock()
	p.procs = append(p.procs, w)
	p.mu.Unlock()
	p.wg.Go(func() {
		p.read(w, stderr)
		_ = cmd.Wait()
		w.finished.Store(true)
		close(w.exited)
	})
	return nil
}

// logLine is the part of a worker's JSON log line the pool reads.
type logLine struct {
	Msg          string `json:"msg"`
	Status       string `json:"status"`
	GenerationID string `json:"generation_id"`
}

func (p *workerPool) read(w *workerProc, r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if p.out != nil {
			p.outMu.Lock()
			fmt.Fprintf(p.out, "%s %s\n", w.name, line)
			p.outMu.Unlock()
		}
		var l logLine
		if json.Unmarshal(line, &l) != nil {
			continue
		}
		switch {
		case l.Msg == "generation started":
			w.running.Add(1)
		case l.Msg == "generation finished":
			w.running.Add(-1)
			if l.Status == "completed" {
				p.mu.Lock()
				p.completions[l.GenerationID]++
				p.mu.Unlock()
			}
		case strings.HasSuffix(l.Msg, "releasing") || strings.HasPrefix(l.Msg, "generation already finished") ||
			strings.HasPrefix(l.Msg, "lease lost"):
			if l.GenerationID != "" && w.running.Load() > 0 {
				w.running.Add(-1)
			}
		}
	}
	_, _ = io.Copy(io.Discard, r)
}

// live returns the workers still running.
func (p *workerPool) live() []*workerProc {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []*workerProc
	for _, w := range p.procs {
		if !w.finished.Load() {
			out = append(out, w)
		}
	}
	return out
}

// killOne SIGKILLs a live worker, preferring one with generations running
// (it waits up to wait for one), waits until it is gone and starts a
// replacement.
func (p *workerPool) killOne(wait time.Duration) (string, bool, error) {
	for deadline := time.Now().Add(wait); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		busy := false
		for _, w := range p.live() {
			busy = busy || w.running.Load() > 0
		}
		if busy {
			break
		}
	}
	live := p.live()
	if len(live) == 0 {
		return "", false, p.start()
	}
	var busy []*workerProc
	for _, w := range live {
		if w.running.Load() > 0 {
			busy = append(busy, w)
		}
	}
	pick := live
	if len(busy) > 0 {
		pick = busy
	}
	p.mu.Lock()
	w := pick[p.rng.IntN(len(pick))]
	p.kills++
	mid := w.running.Load() > 0
	if mid {
		p.midKills++
	}
	p.mu.Unlock()
	_ = w.cmd.Process.Signal(syscall.SIGKILL)
	<-w.exited
	return w.name, mid, p.start()
}

// stop ends every worker: SIGTERM (they drain), SIGKILL after grace.
func (p *workerPool) stop(grace time.Duration) {
	for _, w := range p.live() {
		_ = w.cmd.Process.Signal(syscall.SIGTERM)
	}
	deadline := time.After(grace)
	for _, w := range p.live() {
		select {
		case <-w.exited:
		case <-deadline:
			_ = w.cmd.Process.Signal(syscall.SIGKILL)
			<-w.exited
		}
	}
	p.wg.Wait()
}

// completedTwice returns the generations more than one completion was
// logged for, and how many completions were logged in all.
func (p *workerPool) completedTwice() (twice []string, total int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, n := range p.completions {
		total += n
		if n > 1 {
			twice = append(twice, id)
		}
	}
	return twice, total
}
