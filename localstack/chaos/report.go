package chaos

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/lull-ai/lull/localstack/faultproxy"
	"github.com/lull-ai/lull/shared/lull"
)

// Report is what a run measured, and the guarantees it found broken.
type Report struct {
	Profile                       string
	FaultWindow, Converged, Total time.Duration
	TimedOut                      bool

	Requests, Accepted int
	Rejected           []string          // requests the client gave up on
	Generations        map[string]string // terminal generation ID → status
	APIRetries         int64

	WorkerCompletions  int      // "generation finished: completed" lines logged by workers
	CompletedTwice     []string // generations completed more than once
	Kills              int
	MidGenerationKills int

	Events         map[string]receivedEvent // verified webhook-id → event
	MissingEvents  []string
	Posts          int
	DupPosts       int
	BadSignatures  []string
	ReceiverFaults map[string]int

	Batches      map[string]batchView
	BatchResults []BatchResult

	// Faults counts the calls of each service by fate while faults were on.
	Faults map[faultproxy.Service]map[faultproxy.Kind]int64

	// Failures lists every broken guarantee; empty means the run passed.
	Failures []string
}

// BatchResult is one batch's end state and what its files hold.
type BatchResult struct {
	Name, ID, Status string
	Lines            int
	Counts           struct{ Total, Completed, Failed int }
	Cancelled        bool
	Note             string
	Out, Err         map[string]int // lines by outcome (completed, or the error code)
	Once, Missing    int
	Twice, Unknown   int
}

func (r *Report) statusCount(s lull.Status) int {
	n := 0
	for _, v := range r.Generations {
		if v == string(s) {
			n++
		}
	}
	return n
}

// evaluate fills Failures.
func (r *Report) evaluate() {
	fail := func(format string, args ...any) { r.Failures = append(r.Failures, fmt.Sprintf(format, args...)) }
	if r.TimedOut {
		fail("did not converge within the bound (%s after healing)", r.Converged.Round(time.Second))
	}
	if len(r.Generations) != r.Accepted {
		fail("%d of %d accepted requests terminal", len(r.Generations), r.Accepted)
	}
	if n := r.statusCount(lull.StatusCompleted); n != r.Accepted {
		var other []string
		for id, s := range r.Generations {
			if s != string(lull.StatusCompleted) && len(other) < 5 {
				other = append(other, id+"="+s)
			}
		}
		fail("%d of %d accepted requests completed (e.g. %s)", n, r.Accepted, strings.Join(other, ", "))
	}
	if len(r.CompletedTwice) > 0 {
		fail("%d generations completed twice (e.g. %s)", len(r.CompletedTwice), r.CompletedTwice[0])
	}
	// Two terminal events for one object would be two terminal transitions.
	perObject := map[string][]string{}
	for id, ev := range r.Events {
		perObject[ev.ObjID] = append(perObject[ev.ObjID], id)
	}
	for obj, ids := range perObject {
		if len(ids) > 1 {
			fail("%s announced with %d distinct webhook-ids: %v", obj, len(ids), ids)
		}
	}
	if len(r.MissingEvents) > 0 {
		fail("%d terminal events never reached the receiver (e.g. %s)", len(r.MissingEvents), r.MissingEvents[0])
	}
	if len(r.BadSignatures) > 0 {
		fail("%d deliveries with a bad signature (%s)", len(r.BadSignatures), r.BadSignatures[0])
	}
	if len(r.Rejected) > 0 {
		fail("%d requests never accepted after client retries (e.g. %s)", len(r.Rejected), r.Rejected[0])
	}
	for _, b := range r.BatchResults {
		switch {
		case b.ID == "":
			fail("batch %s not created: %s", b.Name, b.Note)
			continue
		case !lull.BatchStatus(b.Status).Terminal():
			fail("batch %s (%s) is %s, not terminal", b.Name, b.ID, b.Status)
			continue
		}
		if b.Once != b.Lines || b.Missing+b.Twice+b.Unknown > 0 {
			fail("batch %s: %d of %d lines exactly once in its files (%d missing, %d twice, %d unknown)", b.Name, b.Once, b.Lines, b.Missing, b.Twice, b.Unknown)
		}
		outN, errN := sum(b.Out), sum(b.Err)
		if b.Counts.Total != b.Lines || b.Counts.Completed != outN || b.Counts.Failed != errN {
			fail("batch %s: request_counts %+v disagree with its files (%d output, %d error lines)", b.Name, b.Counts, outN, errN)
		}
		if b.Out["malformed"] > 0 {
			fail("batch %s: %d output lines without a response", b.Name, b.Out["malformed"])
		}
		allowed := map[string]bool{}
		want := lull.BatchCompleted
		switch {
		case b.Cancelled:
			allowed["batch_cancelled"], want = true, lull.BatchCancelled
		case strings.HasPrefix(b.Name, "expir"):
			allowed["batch_expired"], want = true, lull.BatchExpired
		}
		for code, n := range b.Err {
			if !allowed[code] {
				fail("batch %s: %d lines ended %s", b.Name, n, code)
			}
		}
		if b.Status != string(want) && !(want == lull.BatchExpired && errN == 0 && b.Status == string(lull.BatchCompleted)) {
			fail("batch %s ended %s, want %s", b.Name, b.Status, want)
		}
	}
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// Table writes the report as Markdown tables.
func (r *Report) Table(w io.Writer) {
	pct := func(n, of int) string {
		if of == 0 {
			return "–"
		}
		return fmt.Sprintf("%.1f %%", 100*float64(n)/float64(of))
	}
	genEvents, batchEvents := 0, 0
	for _, ev := range r.Events {
		if strings.HasPrefix(ev.Type, "batch.") {
			batchEvents++
		} else {
			genEvents++
		}
	}
	announced := 0
	for _, s := range r.Generations {
		if lull.EventTypeFor(lull.Status(s)) != "" {
			announced++
		}
	}
	terminalBatches := 0
	for _, b := range r.BatchResults {
		if lull.BatchStatus(b.Status).Terminal() {
			terminalBatches++
		}
	}
	fmt.Fprintf(w, "Profile %s: faults on for %s, converged %s after healing, %s in all.\n\n",
		r.Profile, r.FaultWindow.Round(time.Second), r.Converged.Round(time.Second), r.Total.Round(time.Second))
	fmt.Fprintln(w, "| measure | value |")
	fmt.Fprintln(w, "|---|---|")
	row := func(k string, v any) { fmt.Fprintf(w, "| %s | %v |\n", k, v) }
	row("slow requests accepted", fmt.Sprintf("%d of %d (%d client retries, %d given up)", r.Accepted, r.Requests, r.APIRetries, len(r.Rejected)))
	row("terminal", fmt.Sprintf("%d (%s)", len(r.Generations), pct(len(r.Generations), r.Accepted)))
	row("completed", fmt.Sprintf("%d (%s)", r.statusCount(lull.StatusCompleted), pct(r.statusCount(lull.StatusCompleted), r.Accepted)))
	row("failed / expired / cancelled", fmt.Sprintf("%d / %d / %d", r.statusCount(lull.StatusFailed), r.statusCount(lull.StatusExpired), r.statusCount(lull.StatusCancelled)))
	row("completed twice", fmt.Sprintf("%d (%d completions logged by workers)", len(r.CompletedTwice), r.WorkerCompletions))
	row("webhook events delivered, signature verified", fmt.Sprintf("%d of %d generation events, %d of %d batch events (%d missing)",
		genEvents, announced, batchEvents, terminalBatches, len(r.MissingEvents)))
	row("webhook POSTs received / duplicates / bad signatures", fmt.Sprintf("%d / %d / %d", r.Posts, r.DupPosts, len(r.BadSignatures)))
	row("batches terminal", fmt.Sprintf("%d of %d", terminalBatches, len(r.BatchResults)))
	for _, b := range r.BatchResults {
		row("batch "+b.Name, fmt.Sprintf("%s; %d of %d lines exactly once in its files (%d missing, %d twice); counts %d completed + %d failed; output %d, error %s",
			b.Status, b.Once, b.Lines, b.Missing, b.Twice, b.Counts.Completed, b.Counts.Failed, sum(b.Out), fmtCounts(b.Err)))
	}
	row("worker SIGKILLs", fmt.Sprintf("%d (%d mid-generation)", r.Kills, r.MidGenerationKills))
	rf := 0
	for _, v := range r.ReceiverFaults {
		rf += v
	}
	var parts []string
	for _, k := range receiverFaults {
		if n := r.ReceiverFaults[k]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", k, n))
		}
	}
	row("webhook receiver faults", fmt.Sprintf("%d of %d POSTs (%s)", rf, r.Posts, strings.Join(parts, ", ")))
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| faults injected (while on) | calls | before | after | cut | slow | stall | failed |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|")
	svcs := make([]faultproxy.Service, 0, len(r.Faults))
	for s := range r.Faults {
		svcs = append(svcs, s)
	}
	slices.Sort(svcs)
	for _, s := range svcs {
		m := r.Faults[s]
		var calls int64
		for _, n := range m {
			calls += n
		}
		failed := m[faultproxy.Before] + m[faultproxy.After] + m[faultproxy.Cut]
		fmt.Fprintf(w, "| %s | %d | %d | %d | %d | %d | %d | %.1f %% |\n", s, calls, m[faultproxy.Before], m[faultproxy.After],
			m[faultproxy.Cut], m[faultproxy.Slow], m[faultproxy.Stall], 100*float64(failed)/float64(max(calls, 1)))
	}
	fmt.Fprintln(w)
	if len(r.Failures) == 0 {
		fmt.Fprintln(w, "Every invariant held.")
		return
	}
	fmt.Fprintf(w, "%d invariants broken:\n", len(r.Failures))
	for _, f := range r.Failures {
		fmt.Fprintln(w, "- "+f)
	}
}

func fmtCounts(m map[string]int) string {
	if len(m) == 0 {
		return "0"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%d %s", m[k], k))
	}
	return strings.Join(parts, ", ")
}
