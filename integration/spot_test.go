package integration

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/lull-ai/lull/gpuworker/imds"
	"github.com/lull-ai/lull/gpuworker/worker"
	"github.com/lull-ai/lull/localstack/devstack"
)

// buildIMDSMock builds AWS's own IMDS mock (amazon-ec2-metadata-mock
// v1.12.0, pinned as a tool in go.mod). Build before timing anything: on a
// cold build cache it takes a while.
func buildIMDSMock(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "ec2-metadata-mock")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/aws/amazon-ec2-metadata-mock/cmd").CombinedOutput(); err != nil {
		t.Fatalf("build IMDS mock: %v\n%s", err, out)
	}
	return bin
}

// startIMDSMock runs the mock with a spot interruption notice that appears
// after noticeIn and announces termination at terminateAt.
func startIMDSMock(t *testing.T, bin string, noticeIn time.Duration, terminateAt time.Time) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command(bin, "spot", "--imdsv2", "--port", strconv.Itoa(port),
		"--mock-delay-sec", strconv.Itoa(int(noticeIn.Seconds())), "--time", terminateAt.UTC().Format(time.RFC3339),
		"--rebalance-delay-sec", "3600") // only the interruption notice in this test
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitFor(t, 20*time.Second, "IMDS mock up", func() bool {
		_, _, err := imds.New(url).Get(context.Background(), "instance-id")
		return err == nil
	})
	return url
}

// A spot interruption notice stops receiving at once; generations that can
// finish before the deadline finish, the rest are released within seconds
// and completed by another worker; nothing is lost or completed twice.
func TestSpotInterruptionDrains(t *testing.T) {
	t.Parallel()
	eng := newEngine(t, vllmsimConfig())
	st := startStack(t, devstack.Config{Workers: -1, VLLMURL: eng.URL(), Visibility: 30 * time.Second})
	bin := buildIMDSMock(t)
	doomed, err := st.StartWorker(t.Context(), func(c *worker.Config) { c.DrainTimeout = time.Minute })
	if err != nil {
		t.Fatal(err)
	}

	// Short generations finish normally before the notice.
	var ids []string
	for i := range 4 {
		ids = append(ids, submit(t, st.URL, "sk-lull-dev", fmt.Sprintf("short %d", i)))
	}
	waitFor(t, 10*time.Second, "short ones done", func() bool { return doomed.Stats().Completed.Load() == 4 })
	// Long ones are running when the notice comes and cannot finish in time.
	eng.setDelay(time.Hour)
	for i := range 3 {
		ids = append(ids, submit(t, st.URL, "sk-lull-dev", fmt.Sprintf("long %d", i)))
	}
	// InFlight alone is not enough: the last short one still counts as in
	// flight while its message is deleted, after Completed moved. The engine
	// holding all three long requests is what the notice must find.
	waitFor(t, 10*time.Second, "long ones running", func() bool {
		return doomed.Stats().InFlight.Load() == 3 && eng.started.Load() == 7
	})

	// The mock's clock starts now, whatever the machine's load made the
	// steps above take.
	start := time.Now()
	noticeIn, terminateAt := 3*time.Second, start.Add(12*time.Second)
	md := imds.New(startIMDSMock(t, bin, noticeIn, terminateAt))
	if n, err := md.Check(context.Background()); err != nil || n != nil {
		t.Fatalf("before the notice: %+v, %v", n, err)
	}
	noticed := make(chan *worker.Notice, 1)
	go func() {
		noticed <- doomed.DrainOn(t.Context(), func(ctx context.Context) *worker.Notice {
			n := md.Watch(ctx, 200*time.Millisecond, nil, nil)
			if n == nil {
				return nil
			}
			return &worker.Notice{Kind: n.Kind, Deadline: n.Deadline}
		}, 3*time.Second)
	}()

	var n *worker.Notice
	select {
	case n = <-noticed:
	case <-time.After(20 * time.Second):
		t.Fatal("no notice from the IMDS mock")
	}
	if n.Kind != imds.KindSpotInterruption || n.Deadline.Sub(terminateAt).Abs() > time.Second {
		t.Fatalf("notice %+v, want spot interruption at %s", n, terminateAt)
	}
	received := doomed.Stats().Received.Load()
	eng.setDelay(0)
	for i := range 3 {
		ids = append(ids, submit(t, st.URL, "sk-lull-dev", fmt.Sprintf("after notice %d", i)))
	}
	// Released by deadline − safety (= terminateAt − 3s), within seconds.
	waitFor(t, time.Until(terminateAt)+5*time.Second, "long ones released", func() bool { return doomed.Stats().Released.Load() == 3 })
	if late := time.Since(terminateAt.Add(-3 * time.Second)); late > 3*time.Second {
		t.Fatalf("released %s after the release deadline", late)
	}
	if got := doomed.Stats().Received.Load(); got != received {
		t.Fatalf("received %d messages after the notice", got-received)
	}
	survivor, err := st.StartWorker(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for id, g := range waitTerminal(t, st, "sk-lull-dev", ids, time.Minute) {
		if g.Status != "completed" {
			t.Fatalf("%s: %s", id, g.Status)
		}
	}
	if c1, c2 := doomed.Stats().Completed.Load(), survivor.Stats().Completed.Load(); c1 != 4 || c2 != 6 || eng.requests.Load() != 10 {
		t.Fatalf("completed: doomed %d, survivor %d, engine ran %d; want 4, 6, 10", c1, c2, eng.requests.Load())
	}
}
