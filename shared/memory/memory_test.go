package memory_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/lull-ai/lull/shared/lull"
	"github.com/lull-ai/lull/shared/memory"
	"github.com/lull-ai/lull/shared/storetest"
)

// The shared suites hold the in-memory implementations to the adapters'
// contracts.

func TestStoreSuite(t *testing.T) {
	t.Parallel()
	s := memory.NewStore()
	t.Run("Generations", func(t *testing.T) { storetest.Generations(t, s) })
	t.Run("Webhooks", func(t *testing.T) { storetest.Webhooks(t, s) })
	t.Run("Batches", func(t *testing.T) { storetest.Batches(t, s, s) })
}

func TestQueueSuite(t *testing.T) {
	t.Parallel()
	storetest.Queue(t, storetest.QueueQuirks{}, func(t *testing.T, maxReceives int) (lull.Queue, lull.Queue) {
		if maxReceives == 0 {
			return memory.NewQueue(memory.QueueConfig{Name: t.Name()}), nil
		}
		dlq := memory.NewQueue(memory.QueueConfig{Name: t.Name() + "-dlq"})
		return memory.NewQueue(memory.QueueConfig{Name: t.Name(), MaxReceives: maxReceives, DeadLetter: dlq}), dlq
	})
}

func TestBlobsSuite(t *testing.T) {
	t.Parallel()
	b := memory.NewBlobs(nil)
	srv := httptest.NewServer(b)
	t.Cleanup(srv.Close)
	b.SetBaseURL(srv.URL)
	storetest.Blobs(t, b)
}

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func TestQueueClock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := memory.NewClock(t0)
	q := memory.NewQueue(memory.QueueConfig{Name: "q", Clock: clock})
	if err := q.Send(ctx, []byte("late"), "g", 5500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if msgs, err := q.Receive(ctx, 10, 0, time.Minute); err != nil || len(msgs) != 0 {
		t.Fatalf("delayed message received early: %v, %v", msgs, err)
	}
	if next, ok := q.NextVisible(); !ok || !next.Equal(t0.Add(5*time.Second)) {
		t.Fatalf("NextVisible = %v, %v; want the delay in whole seconds (5s)", next, ok)
	}
	if v, f, _ := q.Depth(ctx); v != 0 || f != 0 {
		t.Fatalf("Depth of a delayed message = %d, %d; want 0, 0", v, f)
	}

	// A receive waiting on the queue wakes when the clock makes the message due.
	got := make(chan []lull.Message)
	go func() {
		msgs, _ := q.Receive(ctx, 10, 10*time.Second, 30500*time.Millisecond)
		got <- msgs
	}()
	clock.Advance(5 * time.Second)
	m1 := <-got
	if len(m1) != 1 || string(m1[0].Body) != "late" || m1[0].ReceiveCount != 1 || m1[0].GroupID != "g" {
		t.Fatalf("Receive = %+v", m1)
	}
	if st := q.Messages()[0]; !st.InFlight || st.Visibility != 30*time.Second || !st.VisibleAt.Equal(clock.Now().Add(30*time.Second)) {
		t.Fatalf("after receive: %+v; want in flight for 30s", st)
	}
	if v, f, _ := q.Depth(ctx); v != 0 || f != 1 {
		t.Fatalf("Depth = %d, %d; want 0, 1", v, f)
	}

	// The visibility lapses: the message comes back with a new receipt.
	clock.Advance(30 * time.Second)
	m2, err := q.Receive(ctx, 10, 0, time.Minute)
	if err != nil || len(m2) != 1 || m2[0].ReceiveCount != 2 || m2[0].Receipt == m1[0].Receipt {
		t.Fatalf("second receive = %+v, %v", m2, err)
	}
	// The first receipt no longer acts on the message.
	if err := q.SetVisibility(ctx, m1[0].Receipt, 0); !lull.IsNotFound(err) {
		t.Fatalf("SetVisibility with a stale receipt: %v, want not found", err)
	}
	if err := q.Delete(ctx, m1[0].Receipt); err != nil {
		t.Fatalf("Delete with a stale receipt: %v", err)
	}
	if len(q.Messages()) != 1 {
		t.Fatal("a stale receipt deleted the message")
	}
	// Extending and releasing with the latest receipt.
	if err := q.SetVisibility(ctx, m2[0].Receipt, 90*time.Second); err != nil {
		t.Fatal(err)
	}
	clock.Advance(80 * time.Second)
	if msgs, _ := q.Receive(ctx, 10, 0, time.Minute); len(msgs) != 0 {
		t.Fatal("extended message received again")
	}
	if err := q.SetVisibility(ctx, m2[0].Receipt, 0); err != nil {
		t.Fatal(err)
	}
	if err := q.SetVisibility(ctx, m2[0].Receipt, time.Minute); !lull.IsNotFound(err) {
		t.Fatalf("SetVisibility of a released message: %v, want not found", err)
	}
	m3, _ := q.Receive(ctx, 10, 0, time.Minute)
	if len(m3) != 1 || m3[0].ReceiveCount != 3 {
		t.Fatalf("released message: %+v", m3)
	}
	if err := q.Delete(ctx, m3[0].Receipt); err != nil {
		t.Fatal(err)
	}
	if err := q.Delete(ctx, m3[0].Receipt); err != nil {
		t.Fatalf("second Delete: %v", err)
	}
	if sent, deleted := q.Counts(); sent != 1 || deleted != 1 || len(q.Messages()) != 0 {
		t.Fatalf("Counts = %d, %d; Messages = %v", sent, deleted, q.Messages())
	}
}

func TestQueueReceiveHonoursContextAndWait(t *testing.T) {
	t.Parallel()
	q := memory.NewQueue(memory.QueueConfig{Clock: memory.NewClock(t0)})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := q.Receive(ctx, 1, 10*time.Second, time.Minute); !errors.Is(err, context.Canceled) {
		t.Fatalf("Receive on a cancelled context: %v", err)
	}
	start := time.Now()
	if msgs, err := q.Receive(context.Background(), 1, 50*time.Millisecond, time.Minute); err != nil || len(msgs) != 0 {
		t.Fatalf("empty Receive = %v, %v", msgs, err)
	}
	if el := time.Since(start); el < 40*time.Millisecond || el > 5*time.Second {
		t.Fatalf("empty Receive returned after %s, want about its 50ms wait", el)
	}
}

func TestFaults(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := memory.NewStore()
	q := memory.NewQueue(memory.QueueConfig{})
	b := memory.NewBlobs(nil)
	boom := memory.Unavailable("test")
	s.SetFault(memory.FailOn("Start", boom))
	q.SetFault(memory.FailOn("Send", boom))
	b.SetFault(memory.FailOn("Put", boom))

	g := &lull.Generation{ID: lull.NewID("gen"), Tenant: "t", Status: lull.StatusQueued, CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}
	if _, _, err := s.Create(ctx, g, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Start(ctx, g.ID, "w", t0, t0.Add(time.Minute)); !errors.Is(err, boom) || lull.ErrorCode(err) != lull.EUNAVAILABLE {
		t.Fatalf("Start with a fault = %v", err)
	}
	if got, _ := s.Get(ctx, g.ID); got.Status != lull.StatusQueued || got.Attempts != 0 {
		t.Fatalf("a failed call changed the state: %+v", got)
	}
	if err := q.Send(ctx, []byte("x"), "", 0); !errors.Is(err, boom) || len(q.Messages()) != 0 {
		t.Fatalf("Send with a fault = %v, %d messages", err, len(q.Messages()))
	}
	if err := b.Put(ctx, "k", []byte("x"), ""); !errors.Is(err, boom) || len(b.Keys()) != 0 {
		t.Fatalf("Put with a fault = %v, keys %v", err, b.Keys())
	}
	s.SetFault(nil)
	if _, err := s.Start(ctx, g.ID, "w", t0, t0.Add(time.Minute)); err != nil {
		t.Fatalf("Start after the fault is removed: %v", err)
	}
}

func TestStoreKeepsMilliseconds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := memory.NewStore()
	at := time.Date(2030, 1, 1, 0, 0, 0, 123456789, time.FixedZone("x", 3600))
	g := &lull.Generation{ID: lull.NewID("gen"), Tenant: "t", Status: lull.StatusQueued, CreatedAt: at, ExpiresAt: at.Add(time.Hour)}
	if _, _, err := s.Create(ctx, g, ""); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, g.ID)
	if err != nil || !got.CreatedAt.Equal(at.Truncate(time.Millisecond)) || got.CreatedAt.Location() != time.UTC {
		t.Fatalf("CreatedAt = %v, %v; want %v in UTC", got.CreatedAt, err, at.Truncate(time.Millisecond))
	}
	// A returned generation is a copy: changing it changes nothing stored.
	got.Status = lull.StatusCompleted
	if again, _ := s.Get(ctx, g.ID); again.Status != lull.StatusQueued {
		t.Fatal("a caller's change reached the store")
	}
}
