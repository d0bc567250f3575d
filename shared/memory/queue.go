package memory

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/lull-ai/lull/shared/lull"
)

// Queue is an in-memory SQS standard queue. It implements lull.Queue and
// lull.BatchSender with SQS's rules on the points callers rely on:
//   - delays and visibility timeouts are whole seconds (fractions are
//     dropped, as DelaySeconds and VisibilityTimeout are integers) and
//     delays are capped at 15 minutes;
//   - each receive hides the message for the visibility asked, counts a
//     receive and issues a new receipt handle; only the latest receipt
//     acts on the message: SetVisibility with an older one, or on a
//     message not in flight, fails with ENOTFOUND (as the sqs adapter maps
//     MessageNotInflight and ReceiptHandleIsInvalid), and Delete with an
//     older one succeeds without deleting (SQS says it "might not" delete);
//   - with a dead-letter queue, a message received MaxReceives times moves
//     there at its next receive.
//
// Time comes from the queue's Clock; with a *ManualClock, messages become
// visible when the test moves the clock, and Receive waits notice it. Wait
// times of Receive are real time. The zero value is not usable; NewQueue
// makes one. It is safe for concurrent use.
type Queue struct {
	// Name appears in errors and in message IDs.
	name        string
	clock       Clock
	maxReceives int
	dlq         *Queue

	mu      sync.Mutex
	fault   FaultFunc
	msgs    []*message // in send order
	seq     int
	changed chan struct{} // closed and replaced on every change
	sent    int
	deleted int
}

var (
	_ lull.Queue       = (*Queue)(nil)
	_ lull.BatchSender = (*Queue)(nil)
)

type message struct {
	id           string
	body         []byte
	group        string
	sentAt       time.Time
	visibleAt    time.Time
	receives     int
	receipt      string // latest receipt handle; "" until received
	inFlight     bool   // received, and not released by SetVisibility 0 or a lapsed timeout
	lastVisibleD time.Duration
}

// QueueConfig configures a Queue.
type QueueConfig struct {
	// Name names the queue in errors and message IDs; "queue" when empty.
	Name string
	// Clock is the queue's time; RealClock when nil.
	Clock Clock
	// MaxReceives and DeadLetter make a redrive policy: a message received
	// MaxReceives times moves to DeadLetter at its next receive. Zero or a
	// nil DeadLetter: no redrive.
	MaxReceives int
	DeadLetter  *Queue
}

// NewQueue returns an empty queue.
func NewQueue(cfg QueueConfig) *Queue {
	if cfg.Name == "" {
		cfg.Name = "queue"
	}
	if cfg.Clock == nil {
		cfg.Clock = RealClock{}
	}
	return &Queue{name: cfg.Name, clock: cfg.Clock, maxReceives: cfg.MaxReceives, dlq: cfg.DeadLetter, changed: make(chan struct{})}
}

// SetFault installs f (nil removes it); ops are Send, SendBatch, Receive,
// Delete, SetVisibility and Depth, with the group ID, the receipt handle
// or "" as key.
func (q *Queue) SetFault(f FaultFunc) {
	q.mu.Lock()
	q.fault = f
	q.mu.Unlock()
}

func (q *Queue) begin(op, key string) error {
	q.mu.Lock()
	f := q.fault
	q.mu.Unlock()
	if f != nil {
		if err := f(op, key); err != nil {
			return err
		}
	}
	q.mu.Lock()
	return nil
}

// notify wakes waiters; q.mu is held.
func (q *Queue) notify() {
	close(q.changed)
	q.changed = make(chan struct{})
}

// seconds drops the fraction of a second, as SQS's integer fields do.
func seconds(d time.Duration) time.Duration { return max(d.Truncate(time.Second), 0) }

// add appends a message; q.mu is held.
func (q *Queue) add(body []byte, group string, delay time.Duration) {
	now := q.clock.Now()
	q.seq++
	q.sent++
	q.msgs = append(q.msgs, &message{
		id: fmt.Sprintf("%s-%d", q.name, q.seq), body: slices.Clone(body), group: group,
		sentAt: now, visibleAt: now.Add(seconds(min(delay, 15*time.Minute))),
	})
	q.notify()
}

// Send implements lull.Sender.
func (q *Queue) Send(_ context.Context, body []byte, groupID string, delay time.Duration) error {
	if err := q.begin("Send", groupID); err != nil {
		return err
	}
	defer q.mu.Unlock()
	q.add(body, groupID, delay)
	return nil
}

// SendBatch implements lull.BatchSender; a fault fails the call before
// any message is sent.
func (q *Queue) SendBatch(_ context.Context, bodies [][]byte, groupID string) error {
	if err := q.begin("SendBatch", groupID); err != nil {
		return err
	}
	defer q.mu.Unlock()
	for _, b := range bodies {
		q.add(b, groupID, 0)
	}
	return nil
}

// Receive implements lull.Queue. It returns at once when messages are
// visible, else waits (real time, at most 20 s) until some are, the wait
// passes or ctx ends (then it returns ctx's error, as the SDK does).
func (q *Queue) Receive(ctx context.Context, maxN int, wait, visibility time.Duration) ([]lull.Message, error) {
	if err := q.begin("Receive", ""); err != nil {
		return nil, err
	}
	q.mu.Unlock()
	deadline := time.NewTimer(min(max(wait, 0), 20*time.Second))
	defer deadline.Stop()
	for {
		clockMoved := q.clockMoved()
		q.mu.Lock()
		msgs, next := q.take(min(max(maxN, 1), 10), visibility)
		changed := q.changed
		q.mu.Unlock()
		if len(msgs) > 0 {
			return msgs, nil
		}
		var due *time.Timer
		if clockMoved == nil && !next.IsZero() {
			due = time.NewTimer(max(time.Until(next), 0))
		} else {
			due = time.NewTimer(time.Hour) // only a manual clock's move makes a message due
		}
		select {
		case <-ctx.Done():
			due.Stop()
			return nil, ctx.Err()
		case <-deadline.C:
			due.Stop()
			return nil, nil
		case <-changed:
		case <-clockMoved:
		case <-due.C:
		}
		due.Stop()
	}
}

// clockMoved returns a channel closed when a manual clock next moves; nil
// for other clocks.
func (q *Queue) clockMoved() <-chan struct{} {
	if c, ok := q.clock.(*ManualClock); ok {
		return c.Changed()
	}
	return nil
}

// take receives up to n visible messages; it also returns when the next
// hidden message becomes visible (zero when none). q.mu is held.
func (q *Queue) take(n int, visibility time.Duration) ([]lull.Message, time.Time) {
	now := q.clock.Now()
	var out []lull.Message
	var next time.Time
	for i := 0; i < len(q.msgs) && len(out) < n; i++ {
		m := q.msgs[i]
		if m.visibleAt.After(now) {
			if next.IsZero() || m.visibleAt.Before(next) {
				next = m.visibleAt
			}
			continue
		}
		if q.dlq != nil && q.maxReceives > 0 && m.receives >= q.maxReceives {
			q.msgs = slices.Delete(q.msgs, i, i+1)
			i--
			q.dlq.mu.Lock()
			q.dlq.add(m.body, m.group, 0)
			q.dlq.mu.Unlock()
			continue
		}
		m.receives++
		m.receipt = fmt.Sprintf("%s#%d", m.id, m.receives)
		m.inFlight = true
		m.lastVisibleD = seconds(visibility)
		m.visibleAt = now.Add(m.lastVisibleD)
		out = append(out, lull.Message{ID: m.id, Receipt: m.receipt, Body: slices.Clone(m.body), ReceiveCount: m.receives, GroupID: m.group})
	}
	if len(out) > 0 {
		q.notify()
	}
	return out, next
}

// find returns the message whose receipt handle is (or was) receipt, and
// whether receipt is its latest.
func (q *Queue) find(receipt string) (*message, int, bool) {
	for i, m := range q.msgs {
		if m.receipt == receipt {
			return m, i, true
		}
		if id, n, ok := cutReceipt(receipt); ok && id == m.id && n < m.receives {
			return m, i, false
		}
	}
	return nil, -1, false
}

func cutReceipt(r string) (string, int, bool) {
	for i := len(r) - 1; i >= 0; i-- {
		if r[i] == '#' {
			n, err := strconv.Atoi(r[i+1:])
			return r[:i], n, err == nil
		}
	}
	return "", 0, false
}

func (q *Queue) notInFlight(op string) error {
	return &lull.Error{Code: lull.ENOTFOUND, Message: "message is no longer in flight",
		Err: fmt.Errorf("memory: %s on %s: receipt handle is not that of a message in flight", op, q.name)}
}

// Delete implements lull.Queue.
func (q *Queue) Delete(_ context.Context, receipt string) error {
	if err := q.begin("Delete", receipt); err != nil {
		return err
	}
	defer q.mu.Unlock()
	m, i, latest := q.find(receipt)
	switch {
	case m == nil:
		if _, _, ok := cutReceipt(receipt); !ok {
			return q.notInFlight("delete")
		}
		return nil // deleted before: SQS accepts the receipt again
	case !latest:
		return nil
	}
	q.msgs = slices.Delete(q.msgs, i, i+1)
	q.deleted++
	q.notify()
	return nil
}

// SetVisibility implements lull.Queue.
func (q *Queue) SetVisibility(_ context.Context, receipt string, d time.Duration) error {
	if err := q.begin("SetVisibility", receipt); err != nil {
		return err
	}
	defer q.mu.Unlock()
	now := q.clock.Now()
	m, _, latest := q.find(receipt)
	if m == nil || !latest || !m.inFlight || !m.visibleAt.After(now) {
		return q.notInFlight("change visibility")
	}
	m.lastVisibleD = seconds(d)
	m.visibleAt = now.Add(m.lastVisibleD)
	if m.lastVisibleD == 0 {
		m.inFlight = false
	}
	q.notify()
	return nil
}

// Depth implements lull.Queue: visible messages, and messages received and
// still hidden. Delayed messages count in neither, as in SQS.
func (q *Queue) Depth(context.Context) (visible, inFlight int, err error) {
	if err := q.begin("Depth", ""); err != nil {
		return 0, 0, err
	}
	defer q.mu.Unlock()
	now := q.clock.Now()
	for _, m := range q.msgs {
		switch {
		case !m.visibleAt.After(now):
			visible++
		case m.inFlight:
			inFlight++
		}
	}
	return visible, inFlight, nil
}

// QueuedMessage is the state of one message, for assertions.
type QueuedMessage struct {
	ID      string
	Body    []byte
	GroupID string
	// SentAt and VisibleAt are clock times: VisibleAt after the clock's
	// now means hidden (delayed or in flight).
	SentAt, VisibleAt time.Time
	ReceiveCount      int
	// InFlight is true from a receive until the message is released
	// (SetVisibility 0) or its visibility lapses.
	InFlight bool
	// Visibility is the last visibility timeout set (by Receive or
	// SetVisibility), in whole seconds.
	Visibility time.Duration
}

// Messages returns every message not deleted, in send order.
func (q *Queue) Messages() []QueuedMessage {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := q.clock.Now()
	out := make([]QueuedMessage, len(q.msgs))
	for i, m := range q.msgs {
		out[i] = QueuedMessage{ID: m.id, Body: slices.Clone(m.body), GroupID: m.group, SentAt: m.sentAt, VisibleAt: m.visibleAt,
			ReceiveCount: m.receives, InFlight: m.inFlight && m.visibleAt.After(now), Visibility: m.lastVisibleD}
	}
	return out
}

// Counts returns how many messages were ever sent to and deleted from q.
func (q *Queue) Counts() (sent, deleted int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.sent, q.deleted
}

// NextVisible returns the earliest time a message not deleted is or
// becomes visible; false when the queue is empty.
func (q *Queue) NextVisible() (time.Time, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var next time.Time
	for _, m := range q.msgs {
		if next.IsZero() || m.visibleAt.Before(next) {
			next = m.visibleAt
		}
	}
	return next, !next.IsZero()
}

// WaitFor blocks until cond, called with Messages() after every change of
// the queue (and at once), reports true; it returns ctx's error if ctx
// ends first. Tests use it to wait for an outcome (a message deleted or
// released) without sleeping.
func (q *Queue) WaitFor(ctx context.Context, cond func([]QueuedMessage) bool) error {
	for {
		clockMoved := q.clockMoved()
		q.mu.Lock()
		changed := q.changed
		q.mu.Unlock()
		if cond(q.Messages()) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("memory: waiting on %s: %w", q.name, ctx.Err())
		case <-changed:
		case <-clockMoved:
		}
	}
}
