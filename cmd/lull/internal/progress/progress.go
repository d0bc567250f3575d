// Package progress draws the progress of long work — a batch's lines, a set
// of generations — as a bar redrawn in place on a terminal, or as plain lines
// at most once per interval elsewhere (logs, pipes, CI).
//
// The bar shows completed, failed and total counts, the rate over the last
// RateWindow, and the time left at that rate:
//
//	batch_7Q2…  [██████████░░░░░░░░░░]  512/1000  ✓ 500  ✗ 12  85.3/s  ETA 6s  in_progress
package progress

import (
	"cmp"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Counts is how far the work is.
type Counts struct {
	Completed int
	Failed    int
	Total     int
}

// Done is the number of items that ended, either way.
func (c Counts) Done() int { return c.Completed + c.Failed }

// Bar draws one piece of work's progress. Its methods are safe for
// concurrent use.
type Bar struct {
	// Out receives the drawing.
	Out io.Writer
	// Terminal redraws one line in place; otherwise plain lines are printed.
	Terminal bool
	// Width is the terminal's width in columns; 80 when zero.
	Width int
	// Label names the work (a batch ID, "3 generations").
	Label string
	// Interval is the least time between two plain lines (a change of
	// status prints at once); 10s when zero.
	Interval time.Duration
	// RateWindow is the span the rate is measured over; 30s when zero.
	RateWindow time.Duration
	// Now is the clock; time.Now when nil.
	Now func() time.Time

	mu        sync.Mutex
	samples   []sample
	lastPlain time.Time
	lastState string
	drawn     bool // a terminal line is on screen and not yet ended
}

type sample struct {
	at   time.Time
	done int
}

func (b *Bar) now() time.Time {
	if b.Now == nil {
		return time.Now()
	}
	return b.Now()
}

// Update records the latest counts and status and redraws (terminal) or
// prints a line when Interval has passed or the status changed (plain).
func (b *Bar) Update(c Counts, status string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	b.record(now, c)
	if b.Terminal {
		fmt.Fprint(b.Out, "\r"+b.line(c, status, true)+"\x1b[K")
		b.drawn = true
		return
	}
	if status != b.lastState || b.lastPlain.IsZero() || now.Sub(b.lastPlain) >= cmp.Or(b.Interval, 10*time.Second) {
		fmt.Fprintln(b.Out, b.line(c, status, false))
		b.lastPlain, b.lastState = now, status
	}
}

// Finish draws the final state and ends the line.
func (b *Bar) Finish(c Counts, status string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	b.record(now, c)
	if b.Terminal {
		fmt.Fprint(b.Out, "\r"+b.line(c, status, true)+"\x1b[K\n")
	} else {
		fmt.Fprintln(b.Out, b.line(c, status, false))
	}
	b.drawn = false
}

// Clear erases the bar from a terminal so that a prompt or message can be
// printed; the next Update draws it again. It does nothing for plain output.
func (b *Bar) Clear() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.Terminal && b.drawn {
		fmt.Fprint(b.Out, "\r\x1b[K")
		b.drawn = false
	}
}

func (b *Bar) record(now time.Time, c Counts) {
	b.samples = append(b.samples, sample{now, c.Done()})
	window := cmp.Or(b.RateWindow, 30*time.Second)
	i := 0
	for i < len(b.samples)-2 && now.Sub(b.samples[i+1].at) >= window {
		i++
	}
	b.samples = b.samples[i:]
}

// Rate returns items ended per second over the rate window, and false until
// there are two samples at least a second apart.
func (b *Bar) Rate() (float64, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.rate()
}

func (b *Bar) rate() (float64, bool) {
	if len(b.samples) < 2 {
		return 0, false
	}
	first, last := b.samples[0], b.samples[len(b.samples)-1]
	span := last.at.Sub(first.at)
	if span < time.Second {
		return 0, false
	}
	return float64(last.done-first.done) / span.Seconds(), true
}

// line renders the state; bar adds the drawn bar and fits the width.
func (b *Bar) line(c Counts, status string, bar bool) string {
	var stats []string
	total := "?"
	if c.Total > 0 {
		total = fmt.Sprint(c.Total)
	}
	rate, hasRate := b.rate()
	eta := ""
	if remaining := c.Total - c.Done(); hasRate && c.Total > 0 && remaining > 0 {
		if rate > 0 {
			eta = "ETA " + Duration(time.Duration(float64(remaining)/rate*float64(time.Second)))
		} else {
			eta = "ETA ?"
		}
	}
	if !bar {
		stats = append(stats, fmt.Sprintf("%s %s: %d/%s done (%d completed, %d failed)", b.Label, status, c.Done(), total, c.Completed, c.Failed))
		if hasRate {
			stats = append(stats, fmt.Sprintf("%.1f/s", rate))
		}
		if eta != "" {
			stats = append(stats, eta)
		}
		return strings.Join(stats, ", ")
	}
	stats = append(stats, fmt.Sprintf("%d/%s", c.Done(), total), fmt.Sprintf("✓ %d", c.Completed), fmt.Sprintf("✗ %d", c.Failed))
	if hasRate {
		stats = append(stats, fmt.Sprintf("%.1f/s", rate))
	}
	if eta != "" {
		stats = append(stats, eta)
	}
	stats = append(stats, status)
	tail := "  " + strings.Join(stats, "  ")
	width := cmp.Or(b.Width, 80) - 1 // never write the last column: some terminals wrap there
	label := b.Label
	room := width - utf8.RuneCountInString(label) - utf8.RuneCountInString(tail) - 4
	if room < 10 {
		// Narrow terminal: drop the label, then the bar.
		label = ""
		room = width - utf8.RuneCountInString(tail) - 3
	}
	room = min(room, 40)
	if room < 5 {
		return truncate(strings.TrimSpace(tail), width)
	}
	filled := 0
	if c.Total > 0 {
		filled = min(room, room*c.Done()/c.Total)
	}
	drawn := "[" + strings.Repeat("█", filled) + strings.Repeat("░", room-filled) + "]"
	if label != "" {
		drawn = label + "  " + drawn
	}
	return truncate(drawn+tail, width)
}

func truncate(s string, width int) string {
	if utf8.RuneCountInString(s) <= width {
		return s
	}
	r := []rune(s)
	return string(r[:max(width, 0)])
}

// Duration formats d for people: 45s, 3m20s, 2h05m.
func Duration(d time.Duration) string {
	d = d.Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	default:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
}
