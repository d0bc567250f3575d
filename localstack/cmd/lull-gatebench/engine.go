package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/lull-ai/lull/localstack/vllmsim"
)

// The simulated engine and the interactive trace run in a process of their
// own, as vLLM and its interactive clients do in a deployment. In one
// process the dev stack's in-process emulators (minidyn answers a Query by
// interpreting every item) hold the Go scheduler's processors for up to its
// 10 ms time slice, and the engine's steps and the interactive client's
// reads wait behind them: a harness artefact that inflates interactive TTFT
// in proportion to the async work done, not an effect of the gate. Across
// processes the kernel wakes a sleeping engine thread at once.
var (
	childEngine   = flag.Bool("engine-process", false, "internal: run the simulated engine and the interactive trace, speaking JSON lines on stdin/stdout")
	childPreempts = flag.Bool("engine-preempts", false, "internal: with -engine-process, PreemptForWaiting")
	childTrace    = flag.Bool("engine-interactive", false, "internal: with -engine-process, replay the interactive trace")
	childMeasure  = flag.Duration("engine-measure", 0, "internal: with -engine-process, how long to measure after the warm-up")
)

// engineResult is what the engine process measured after the warm-up.
type engineResult struct {
	EngineTokS      float64         `json:"engine_tok_s"` // simulated-time tokens per second
	InteractiveTokS float64         `json:"interactive_tok_s"`
	Preemptions     int64           `json:"preemptions"`
	TTFTs           []time.Duration `json:"ttfts"` // simulated time
}

// engineProcess is a running engine process.
type engineProcess struct {
	url   string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Scanner
}

// startEngine starts the engine process and waits for its URL.
func startEngine(preempts, interactiveTrace bool, measure time.Duration) (*engineProcess, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "-engine-process",
		"-engine-preempts="+strconv.FormatBool(preempts), "-engine-interactive="+strconv.FormatBool(interactiveTrace),
		"-engine-measure="+measure.String(), "-warmup="+warmup.String(), "-time-scale="+strconv.FormatFloat(*timeScale, 'g', -1, 64),
		"-max-num-seqs="+strconv.Itoa(*maxSeqs), "-burst-gap="+burstGap.String())
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start engine process: %w", err)
	}
	e := &engineProcess{cmd: cmd, stdin: in, out: bufio.NewScanner(outPipe)}
	e.out.Buffer(make([]byte, 1<<20), 64<<20)
	var hello struct {
		URL string `json:"url"`
	}
	if !e.out.Scan() || json.Unmarshal(e.out.Bytes(), &hello) != nil || hello.URL == "" {
		e.close()
		return nil, fmt.Errorf("engine process did not report its URL: %v", e.err())
	}
	e.url = hello.URL
	return e, nil
}

// begin starts the warm-up and the measurement; the result arrives on the
// channel, which is closed without one if the process fails.
func (e *engineProcess) begin() (<-chan engineResult, error) {
	if _, err := e.stdin.Write([]byte("go\n")); err != nil {
		return nil, fmt.Errorf("engine process: %w", err)
	}
	ch := make(chan engineResult, 1)
	go func() {
		defer close(ch)
		var r engineResult
		if e.out.Scan() && json.Unmarshal(e.out.Bytes(), &r) == nil {
			ch <- r
		}
	}()
	return ch, nil
}

func (e *engineProcess) err() error {
	if err := e.out.Err(); err != nil {
		return err
	}
	return errors.New("exited without a result")
}

// close ends the process (closing its stdin makes it stop its engine).
func (e *engineProcess) close() {
	e.stdin.Close()
	done := make(chan error, 1)
	go func() { done <- e.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = e.cmd.Process.Kill()
		<-done
	}
}

// runEngineProcess is the engine process: it serves the simulator on a
// loopback port, prints {"url":…}, waits for "go", replays the interactive
// trace (when asked) through the warm-up and the measurement, prints the
// result, and exits when stdin closes.
func runEngineProcess() error {
	s, err := vllmsim.New(simConfig(*childPreempts))
	if err != nil {
		return err
	}
	defer s.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	url := "http://" + ln.Addr().String()
	enc := json.NewEncoder(os.Stdout)
	if err := enc.Encode(map[string]string{"url": url}); err != nil {
		return err
	}
	in := bufio.NewScanner(os.Stdin)
	if !in.Scan() {
		return nil // the parent gave up
	}
	measureFrom := time.Now().Add(*warmup)
	ctx, cancel := context.WithDeadline(context.Background(), measureFrom.Add(*childMeasure))
	defer cancel()
	var ttfts []time.Duration
	var itok int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		if *childTrace {
			t, n := interactive(ctx, url, measureFrom)
			ttfts, itok = t, n.Load()
		}
	}()
	time.Sleep(time.Until(measureFrom))
	start, t0 := s.Stats(), time.Now()
	<-ctx.Done()
	end, el := s.Stats(), time.Since(t0)
	<-done
	secs := sim(el).Seconds()
	if err := enc.Encode(engineResult{
		EngineTokS:      float64(end.GenerationTokens-start.GenerationTokens) / secs,
		InteractiveTokS: float64(itok) / secs,
		Preemptions:     end.Preemptions - start.Preemptions,
		TTFTs:           ttfts,
	}); err != nil {
		return err
	}
	for in.Scan() { // keep serving the worker until the parent is done
	}
	return nil
}
