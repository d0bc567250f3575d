package memory

import (
	"sync"
	"time"
)

// Clock is a source of time. *ManualClock is one tests move by hand;
// RealClock reads the system clock.
type Clock interface {
	Now() time.Time
}

// RealClock reads time.Now.
type RealClock struct{}

// Now implements Clock.
func (RealClock) Now() time.Time { return time.Now() }

// ManualClock is a clock that moves only when told to. Its zero value is
// not usable; NewClock makes one. It is safe for concurrent use.
type ManualClock struct {
	mu      sync.Mutex
	now     time.Time
	changed chan struct{}
}

// NewClock returns a manual clock reading start.
func NewClock(start time.Time) *ManualClock {
	return &ManualClock{now: start, changed: make(chan struct{})}
}

// Now implements Clock.
func (c *ManualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d (a negative d is ignored).
func (c *ManualClock) Advance(d time.Duration) {
	if d > 0 {
		c.Set(c.Now().Add(d))
	}
}

// Set moves the clock to t; moving backwards is allowed, as wall clocks do.
func (c *ManualClock) Set(t time.Time) {
	c.mu.Lock()
	c.now = t
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
}

// Changed returns a channel closed the next time the clock moves, so
// waiters (Queue.Receive) notice messages that became visible.
func (c *ManualClock) Changed() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.changed
}
