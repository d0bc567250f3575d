package main

// End-to-end tests of the built `lull` binary against a dev stack in this
// process: the binary runs as a real subprocess, under a pseudo-terminal
// where the test needs the progress bar or Ctrl-C.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/lull-ai/lull/localstack/devstack"
	"github.com/lull-ai/lull/localstack/vllmsim"
	"github.com/lull-ai/lull/shared/lull"
)

// lullBin is the binary TestMain builds.
var lullBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "lull-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	lullBin = filepath.Join(dir, "lull")
	build := exec.Command("go", "build", "-o", lullBin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build lull:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// stack starts a dev stack for one test, with a key of its own.
func stack(t *testing.T, workers int) (*devstack.Stack, string) {
	t.Helper()
	level := slog.LevelWarn
	if os.Getenv("LULL_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	st, err := devstack.Start(context.Background(), devstack.Config{
		APIAddr: "127.0.0.1:0", Prefix: "cli-" + strings.ToLower(lull.NewID("s")[2:10]),
		Workers: workers, WorkerConcurrency: 32,
		Sim:    vllmsim.Config{TimeScale: 0.01},
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	key := "sk-cli-" + strings.ToLower(lull.NewID("k")[2:12])
	if err := st.AddKey(context.Background(), key, "cli-"+t.Name()); err != nil {
		t.Fatal(err)
	}
	return st, key
}

// inputFile writes n chat lines with shuffled custom IDs (so that input
// order is not any sorted order) and returns the path and the IDs in order.
// Lines whose index is in bad ask for more tokens than the model's context,
// which the engine rejects: those lines fail.
func inputFile(t *testing.T, n int, bad map[int]bool) (string, []string) {
	t.Helper()
	ids := make([]string, n)
	for i, p := range rand.Perm(n) {
		ids[i] = fmt.Sprintf("req-%05d", p)
	}
	var buf bytes.Buffer
	for i, id := range ids {
		maxTokens := 4
		if bad[i] {
			maxTokens = 20_000 // within LULL_MAX_TOKENS, beyond the simulator's context: the engine refuses it
		}
		fmt.Fprintf(&buf, `{"custom_id":%q,"method":"POST","url":"/v1/chat/completions","body":{"model":"lull-sim-1","max_tokens":%d,"messages":[{"role":"user","content":"line %d"}]}}`+"\n", id, maxTokens, i)
	}
	path := filepath.Join(t.TempDir(), "in.jsonl")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, ids
}

// readIDs returns the custom_id of every line of a results file.
func readIDs(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ids []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var v struct {
			CustomID string `json:"custom_id"`
		}
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("%s: %v: %s", path, err, sc.Text())
		}
		ids = append(ids, v.CustomID)
	}
	return ids
}

// terminal is the binary running under a pseudo-terminal.
type terminal struct {
	t    *testing.T
	cmd  *exec.Cmd
	tty  *os.File
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
}

func startInTerminal(t *testing.T, env []string, args ...string) *terminal {
	t.Helper()
	cmd := exec.Command(lullBin, args...)
	cmd.Env = append(os.Environ(), env...)
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 40, Cols: 120})
	if err != nil {
		t.Fatal(err)
	}
	term := &terminal{t: t, cmd: cmd, tty: tty, done: make(chan struct{})}
	go func() {
		defer close(term.done)
		buf := make([]byte, 4096)
		for {
			n, err := tty.Read(buf)
			term.mu.Lock()
			term.out.Write(buf[:n])
			term.mu.Unlock()
			if err != nil { // EIO once the process has exited
				return
			}
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		tty.Close()
	})
	return term
}

func (term *terminal) output() string {
	term.mu.Lock()
	defer term.mu.Unlock()
	return term.out.String()
}

// waitFor waits until the output matches re and returns the first match's
// submatches.
func (term *terminal) waitFor(re *regexp.Regexp, timeout time.Duration) []string {
	term.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if m := re.FindStringSubmatch(term.output()); m != nil {
			return m
		}
		if time.Now().After(deadline) {
			term.t.Fatalf("no %s in the output after %s:\n%s", re, timeout, term.output())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// wait waits for the process to exit and returns its status.
func (term *terminal) wait(timeout time.Duration) int {
	term.t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- term.cmd.Wait() }()
	select {
	case err := <-errc:
		<-term.done
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			term.t.Fatal(err)
		}
		return 0
	case <-time.After(timeout):
		term.t.Fatalf("lull still running after %s:\n%s", timeout, term.output())
		return -1
	}
}

var (
	createdRE = regexp.MustCompile(`batch (batch_[a-z0-9]+) created for (\d+) lines`)
	// A frame of the bar: cells, counts, rate and ETA, redrawn in place.
	barRE = regexp.MustCompile(`\r(batch_[a-z0-9]+)  \[[█░]+\]  (\d+)/1000  ✓ (\d+)  ✗ (\d+)  [0-9.]+/s  ETA [0-9hms]+  in_progress\x1b\[K`)
)

// TestBatchRunTerminal runs a 1,000-line batch under a pseudo-terminal: the
// bar is drawn in place with counts, rate and ETA, the results come out in
// input order, and the exit status is 0.
func TestBatchRunTerminal(t *testing.T) {
	st, key := stack(t, 2)
	in, ids := inputFile(t, 1000, nil)
	out := filepath.Join(t.TempDir(), "out.jsonl")
	start := time.Now()
	term := startInTerminal(t, []string{"LULL_API_URL=" + st.URL, "LULL_API_KEY=" + key},
		"batch", "run", in, "--endpoint", "/v1/chat/completions", "--out", out, "--poll", "250ms")
	// About 30 s of CPU without -race (three times that with it): generous for a
	// shared, loaded machine.
	code := term.wait(8 * time.Minute)
	took := time.Since(start)
	text := term.output()
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, text)
	}
	frames := barRE.FindAllStringSubmatch(text, -1)
	if len(frames) == 0 {
		t.Fatalf("no progress bar with rate and ETA in the output:\n%q", text)
	}
	// Counts only grow, and some frame shows the batch part done.
	last, partial := -1, false
	for _, f := range frames {
		var done int
		fmt.Sscan(f[2], &done)
		if done < last {
			t.Errorf("bar went back from %d to %d", last, done)
		}
		last = done
		partial = partial || (done > 0 && done < 1000)
	}
	if !partial {
		t.Errorf("no frame between 0 and 1000 in %d frames", len(frames))
	}
	if !regexp.MustCompile(`1000/1000  ✓ 1000  ✗ 0  [0-9.]+/s  completed\x1b\[K\r?\n`).MatchString(text) {
		t.Errorf("no final frame ending the line:\n%q", text[max(len(text)-400, 0):])
	}
	if !strings.Contains(text, "wrote 1000 results in input order to "+out) {
		t.Errorf("no summary:\n%s", text)
	}
	got := readIDs(t, out)
	if strings.Join(got, ",") != strings.Join(ids, ",") {
		t.Errorf("results are not the 1000 input lines in input order (got %d lines)", len(got))
	}
	t.Logf("1000 lines in %s, %d bar frames", took.Round(time.Millisecond), len(frames))
}

// TestBatchRunFailingLines runs a batch with two lines the engine rejects,
// with stdout not a terminal: plain progress lines, the failed lines in the
// errors file and the rest in the output file, each in input order, and a
// non-zero exit that says how many failed. A small --part-size sends the
// file through the Uploads API in parts, as files above 4 MiB go.
func TestBatchRunFailingLines(t *testing.T) {
	st, key := stack(t, 1)
	bad := map[int]bool{3: true, 17: true}
	in, ids := inputFile(t, 30, bad)
	dir := t.TempDir()
	out, errs := filepath.Join(dir, "out.jsonl"), filepath.Join(dir, "errors.jsonl")
	cmd := exec.Command(lullBin, "batch", "run", in, "--endpoint", "/v1/chat/completions", "--out", out, "--errors", errs, "--poll", "200ms", "--interval", "1s", "--part-size", "2048")
	cmd.Env = append(os.Environ(), "LULL_API_URL="+st.URL, "LULL_API_KEY="+key)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("exit %v, want 1\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	if !strings.Contains(stderr.String(), "2 of 30 lines did not succeed") {
		t.Errorf("stderr lacks the count of failed lines:\n%s", stderr.String())
	}
	fi, err := os.Stat(in)
	if err != nil {
		t.Fatal(err)
	}
	if parts := (fi.Size() + 2047) / 2048; !strings.Contains(stdout.String(), fmt.Sprintf("(%d bytes) in %d parts", fi.Size(), parts)) {
		t.Errorf("not uploaded in %d parts:\n%s", parts, stdout.String())
	}
	if strings.ContainsAny(stdout.String(), "\r\x1b█") {
		t.Errorf("terminal drawing on a pipe:\n%q", stdout.String())
	}
	if !regexp.MustCompile(`(?m)^batch_[a-z0-9]+ completed: 30/30 done \(28 completed, 2 failed\)`).MatchString(stdout.String()) {
		t.Errorf("no plain final progress line:\n%s", stdout.String())
	}
	var wantOK, wantBad []string
	for i, id := range ids {
		if bad[i] {
			wantBad = append(wantBad, id)
		} else {
			wantOK = append(wantOK, id)
		}
	}
	if got := readIDs(t, out); strings.Join(got, ",") != strings.Join(wantOK, ",") {
		t.Errorf("output file %v, want %v", got, wantOK)
	}
	if got := readIDs(t, errs); strings.Join(got, ",") != strings.Join(wantBad, ",") {
		t.Errorf("errors file %v, want %v", got, wantBad)
	}

	// `batch download` writes the same files again, in input order.
	id := createdRE.FindStringSubmatch(stdout.String())[1]
	all := filepath.Join(dir, "all.jsonl")
	dl := exec.Command(lullBin, "batch", "download", id, "--out", all)
	dl.Env = cmd.Env
	dlOut, err := dl.CombinedOutput()
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(dlOut), "2 of 30 lines did not succeed") {
		t.Errorf("download: %v\n%s", err, dlOut)
	}
	if got := readIDs(t, all); strings.Join(got, ",") != strings.Join(ids, ",") {
		t.Errorf("downloaded results are not in input order: %v", got)
	}
	st2 := exec.Command(lullBin, "batch", "status", id)
	st2.Env = cmd.Env
	if out, err := st2.CombinedOutput(); err != nil || !strings.Contains(string(out), "30 total, 28 completed, 2 failed, 0 pending") {
		t.Errorf("status: %v\n%s", err, out)
	}
}

// TestBatchRunCtrlC presses Ctrl-C during a batch and answers "y": the CLI
// cancels the batch, waits for it to end, writes what finished, and exits 1;
// the API reports the batch cancelled.
func TestBatchRunCtrlC(t *testing.T) {
	st, key := stack(t, 1)
	// Slow engine calls, so the batch is surely running when Ctrl-C comes.
	st.Sim.SetDelay(time.Second)
	in, _ := inputFile(t, 300, nil)
	out := filepath.Join(t.TempDir(), "out.jsonl")
	term := startInTerminal(t, []string{"LULL_API_URL=" + st.URL, "LULL_API_KEY=" + key},
		"batch", "run", in, "--endpoint", "/v1/chat/completions", "--out", out, "--poll", "200ms")
	id := term.waitFor(createdRE, 30*time.Second)[1]
	term.waitFor(regexp.MustCompile(`in_progress\x1b\[K`), 30*time.Second)
	if _, err := term.tty.Write([]byte{3}); err != nil { // Ctrl-C: the terminal sends SIGINT
		t.Fatal(err)
	}
	term.waitFor(regexp.MustCompile(`cancel the batch `+id+`\? \[y/N\] `), 10*time.Second)
	if _, err := term.tty.Write([]byte("y\r")); err != nil {
		t.Fatal(err)
	}
	term.waitFor(regexp.MustCompile(`cancelling `+id), 10*time.Second)
	code := term.wait(2 * time.Minute)
	text := term.output()
	if code != 1 {
		t.Fatalf("exit %d, want 1:\n%s", code, text)
	}
	if !regexp.MustCompile(`\d+ of 300 lines did not succeed \(batch ` + id + ` cancelled`).MatchString(text) {
		t.Errorf("no count of unfinished lines:\n%s", text)
	}
	req, _ := http.NewRequest(http.MethodGet, st.URL+"/v1/batches/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b struct {
		Status        string
		RequestCounts struct{ Total, Completed, Failed int } `json:"request_counts"`
	}
	body, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(body, &b); err != nil {
		t.Fatal(err)
	}
	if b.Status != "cancelled" {
		t.Errorf("batch is %s, want cancelled: %s", b.Status, body)
	}
	if b.RequestCounts.Completed >= 300 {
		t.Errorf("every line completed; the cancel changed nothing: %s", body)
	}
	if got := len(readIDs(t, out)); got != 300 {
		t.Errorf("wrote %d result lines, want one per input line (completed or cancelled)", got)
	}
}

// TestWebhooksListenAndTest runs `lull webhooks listen`, which registers a
// temporary endpoint for itself, and `lull webhooks test` against that
// endpoint: the test generation's delivery is verified and printed by the
// listener and reported as 204 by the test command; Ctrl-C stops the
// listener, which deletes its endpoint.
func TestWebhooksListenAndTest(t *testing.T) {
	st, key := stack(t, 1)
	env := []string{"LULL_API_URL=" + st.URL, "LULL_API_KEY=" + key}
	listener := startInTerminal(t, env, "webhooks", "listen", "--addr", "127.0.0.1:0")
	id := listener.waitFor(regexp.MustCompile(`listening on http://127\.0\.0\.1:\d+/ as (wh_[a-z0-9]+)`), 20*time.Second)[1]

	cmd := exec.Command(lullBin, "webhooks", "test", id, "--poll", "200ms", "--timeout", "60s")
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("webhooks test: %v\n%s", err, out)
	}
	if !regexp.MustCompile(`generation\.completed\s+gen_[a-z0-9]+\s+succeeded\s+1\s+204 in \d+ ms`).Match(out) {
		t.Errorf("webhooks test output lacks the 204 delivery:\n%s", out)
	}
	listener.waitFor(regexp.MustCompile(`generation\.completed\s+gen_[a-z0-9]+\s+completed\s+webhook-id=`), 10*time.Second)

	run := func(args ...string) string {
		c := exec.Command(lullBin, args...)
		c.Env = append(os.Environ(), env...)
		out, err := c.CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	if out := run("webhooks", "create", "--url", "http://127.0.0.1:9/hooks", "--events", "batch.completed,batch.failed"); !regexp.MustCompile(
		`wh_[a-z0-9]+  http://127\.0\.0\.1:9/hooks\n  events  batch\.completed,batch\.failed\n  secret  whsec_`).MatchString(out) {
		t.Errorf("create: %s", out)
	}
	if out := run("webhooks", "list"); !regexp.MustCompile(id + `\s+enabled\s+http://127\.0\.0\.1:\d+/`).MatchString(out) {
		t.Errorf("list lacks %s:\n%s", id, out)
	}
	m := regexp.MustCompile(`(dlv_[a-z0-9]+)\s+generation\.completed\s+gen_[a-z0-9]+\s+succeeded\s+1\s+204`).FindStringSubmatch(run("webhooks", "deliveries", id))
	if m == nil {
		t.Fatalf("deliveries lack the test delivery")
	}
	if out := run("webhooks", "retry", id, m[1]); !strings.Contains(out, m[1]+" pending: attempt 2 queued") {
		t.Errorf("retry: %s", out)
	}
	// The listener receives the same event again, with the same webhook-id.
	listener.waitFor(regexp.MustCompile(`webhook-id=\S+ \(again\)`), time.Minute)

	if _, err := listener.tty.Write([]byte{3}); err != nil {
		t.Fatal(err)
	}
	if code := listener.wait(20 * time.Second); code != 0 {
		t.Fatalf("listen exit %d:\n%s", code, listener.output())
	}
	listener.waitFor(regexp.MustCompile(`deleted `+id), time.Second)
	req, _ := http.NewRequest(http.MethodGet, st.URL+"/v1/webhooks/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("temporary endpoint still there after Ctrl-C: %d", resp.StatusCode)
	}
}

// TestSendWaitGet submits three prompts with `lull send` (one asks for more
// tokens than the model's context, so the engine rejects it), follows them
// with one bar in `lull wait`, and reads a result with `lull get --content`.
func TestSendWaitGet(t *testing.T) {
	st, key := stack(t, 1)
	env := append(os.Environ(), "LULL_API_URL="+st.URL, "LULL_API_KEY="+key)
	run := func(args ...string) (string, int) {
		cmd := exec.Command(lullBin, args...)
		cmd.Env = env
		cmd.Stdin = strings.NewReader("a prompt from standard input\n")
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return string(out), ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return string(out), 0
	}
	var ids []string
	for _, args := range [][]string{
		{"send", "--max-tokens", "5", "Say", "hello"},
		{"send", "--model", "lull-sim-1", "--max-tokens", "20000", "too long"}, // beyond the simulator's context
		{"send", "--max-tokens", "3", "--window", "1h", "-"},
	} {
		out, code := run(args...)
		id := strings.TrimSpace(out)
		if code != 0 || !regexp.MustCompile(`^gen_[a-z0-9]+$`).MatchString(id) {
			t.Fatalf("%v: exit %d, output %q", args, code, out)
		}
		ids = append(ids, id)
	}
	term := startInTerminal(t, []string{"LULL_API_URL=" + st.URL, "LULL_API_KEY=" + key}, append([]string{"wait", "--poll", "100ms"}, ids...)...)
	code := term.wait(time.Minute)
	text := term.output()
	if code != 1 || !strings.Contains(text, "1 of 3 generations did not complete") {
		t.Errorf("wait: exit %d, want 1 with a count:\n%s", code, text)
	}
	if !regexp.MustCompile(`3 generations  \[[█░]+\]  3/3  ✓ 2  ✗ 1`).MatchString(text) {
		t.Errorf("wait drew no bar with the final counts:\n%q", text)
	}
	for i, want := range []string{"completed", "failed", "completed"} {
		if !strings.Contains(text, ids[i]+" "+want) {
			t.Errorf("wait does not report %s %s:\n%s", ids[i], want, text)
		}
	}
	out, code := run("get", "--content", ids[0])
	if code != 0 || len(strings.Fields(out)) != 5 {
		t.Errorf("get --content: exit %d, %q (want 5 words)", code, out)
	}
	if out, code := run("get", "--content", ids[1]); code != 1 || !strings.Contains(out, "is failed") {
		t.Errorf("get --content of a failed generation: exit %d, %q", code, out)
	}
	if out, code := run("get", "gen_doesnotexist"); code != 1 || !strings.Contains(out, "404") {
		t.Errorf("get of a missing generation: exit %d, %q", code, out)
	}
}
