package progress

import (
	"bytes"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// clock is a manual clock for the rate and ETA.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }
func newClock() *clock                   { return &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func TestTerminalBar(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	c := newClock()
	b := &Bar{Out: &out, Terminal: true, Width: 100, Label: "batch_1", Now: c.now}
	b.Update(Counts{Total: 1000}, "in_progress")
	c.advance(10 * time.Second)
	b.Update(Counts{Completed: 480, Failed: 20, Total: 1000}, "in_progress")
	frames := strings.Split(out.String(), "\r")
	last := strings.TrimSuffix(frames[len(frames)-1], "\x1b[K")
	for _, want := range []string{"batch_1", "[", "500/1000", "✓ 480", "✗ 20", "50.0/s", "ETA 10s", "in_progress"} {
		if !strings.Contains(last, want) {
			t.Errorf("frame %q lacks %q", last, want)
		}
	}
	// Half done: half of the bar's cells are filled.
	filled, empty := strings.Count(last, "█"), strings.Count(last, "░")
	if filled == 0 || filled-empty > 1 || empty-filled > 1 {
		t.Errorf("bar has %d filled and %d empty cells, want equal halves: %q", filled, empty, last)
	}
	if n := utf8.RuneCountInString(last); n > 99 {
		t.Errorf("frame is %d columns wide, more than the terminal's 100-1", n)
	}
	if strings.Contains(out.String(), "\n") {
		t.Errorf("updates must redraw in place, not print lines: %q", out.String())
	}
	b.Finish(Counts{Completed: 980, Failed: 20, Total: 1000}, "completed")
	if !strings.HasSuffix(out.String(), "\x1b[K\n") || !strings.Contains(out.String(), "1000/1000") {
		t.Errorf("finish did not end the line with the final counts: %q", out.String())
	}
}

func TestNarrowTerminalFits(t *testing.T) {
	t.Parallel()
	for _, width := range []int{20, 40, 60, 80} {
		var out bytes.Buffer
		b := &Bar{Out: &out, Terminal: true, Width: width, Label: "batch_abcdefghijklmnopqrstuvwxyz", Now: newClock().now}
		b.Update(Counts{Completed: 5, Total: 10}, "in_progress")
		frame := strings.TrimSuffix(strings.TrimPrefix(out.String(), "\r"), "\x1b[K")
		if n := utf8.RuneCountInString(frame); n >= width {
			t.Errorf("width %d: frame is %d columns: %q", width, n, frame)
		}
	}
}

func TestPlainLines(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	c := newClock()
	b := &Bar{Out: &out, Label: "batch_1", Interval: 10 * time.Second, Now: c.now}
	b.Update(Counts{Total: 100}, "validating") // first: printed
	c.advance(time.Second)
	b.Update(Counts{Total: 100}, "in_progress") // status changed: printed
	c.advance(2 * time.Second)
	b.Update(Counts{Completed: 10, Total: 100}, "in_progress") // within the interval: not printed
	c.advance(10 * time.Second)
	b.Update(Counts{Completed: 60, Failed: 5, Total: 100}, "in_progress") // interval passed: printed
	b.Clear()                                                             // no effect on plain output
	b.Finish(Counts{Completed: 95, Failed: 5, Total: 100}, "completed")
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	want := []string{
		"batch_1 validating: 0/100 done (0 completed, 0 failed)",
		"batch_1 in_progress: 0/100 done (0 completed, 0 failed), 0.0/s, ETA ?",
		"batch_1 in_progress: 65/100 done (60 completed, 5 failed), 5.0/s, ETA 7s", // 65 in 13 s
		"batch_1 completed: 100/100 done (95 completed, 5 failed), 7.7/s",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("lines:\n%s\nwant:\n%s", out.String(), strings.Join(want, "\n"))
	}
	if strings.ContainsAny(out.String(), "\r\x1b") {
		t.Errorf("plain output has terminal controls: %q", out.String())
	}
}

func TestRateWindow(t *testing.T) {
	t.Parallel()
	c := newClock()
	b := &Bar{Out: &bytes.Buffer{}, RateWindow: 10 * time.Second, Now: c.now}
	if _, ok := b.Rate(); ok {
		t.Fatal("rate before any sample")
	}
	// Fast at first, then slow: the window forgets the fast start.
	done := 0
	for range 10 {
		b.Update(Counts{Completed: done, Total: 10000}, "in_progress")
		c.advance(time.Second)
		done += 100
	}
	for range 20 {
		b.Update(Counts{Completed: done, Total: 10000}, "in_progress")
		c.advance(time.Second)
		done += 10
	}
	r, ok := b.Rate()
	if !ok || r < 9 || r > 11 {
		t.Errorf("rate %.1f (ok %v), want about 10/s over the last 10 s", r, ok)
	}
}

func TestDuration(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		0: "0s", 1400 * time.Millisecond: "1s", 59 * time.Second: "59s", 200 * time.Second: "3m20s", 2*time.Hour + 5*time.Minute: "2h05m",
	} {
		if got := Duration(d); got != want {
			t.Errorf("Duration(%s) = %q, want %q", d, got, want)
		}
	}
}
