// Package storetest is one test suite for every implementation of lull's
// storage and queue interfaces. It takes the implementation from the caller
// (a ready store, or a factory where each subtest needs its own queue) and
// knows nothing of emulators: the adapter packages' tests run it against
// every backend that localstack/emutest gives them, the in-process
// emulators and the higher-fidelity external ones.
package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lull-ai/lull/shared/lull"
)

// Store is what the generation suite needs.
type Store interface {
	lull.Generations
	lull.APIKeys
}

func newGen(tenant string, created time.Time) *lull.Generation {
	return &lull.Generation{
		ID: lull.NewID("gen"), Tenant: tenant, Model: "m", Endpoint: lull.EndpointChat, Status: lull.StatusQueued,
		CreatedAt: created, ExpiresAt: created.Add(time.Hour),
		Request: json.RawMessage(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`),
	}
}

// Generations runs the suite for lull.Generations and lull.APIKeys. s must
// be empty of the tenants the suite makes (they are random).
func Generations(t *testing.T, s Store) {
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Millisecond)

	t.Run("CreateGet", func(t *testing.T) {
		t.Parallel()
		g := newGen(lull.NewID("t"), now)
		g.WebhookID = "wh_1"
		stored, created, err := s.Create(ctx, g, "")
		if err != nil || !created || stored.ID != g.ID {
			t.Fatalf("Create = %v, %v, %v", stored, created, err)
		}
		got, err := s.Get(ctx, g.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Tenant != g.Tenant || got.Status != lull.StatusQueued || !got.CreatedAt.Equal(now) ||
			!got.ExpiresAt.Equal(g.ExpiresAt) || string(got.Request) != string(g.Request) || got.WebhookID != "wh_1" {
			t.Fatalf("Get = %+v, want %+v", got, g)
		}
	})

	t.Run("ErrNotFound", func(t *testing.T) {
		t.Parallel()
		if _, err := s.Get(ctx, lull.NewID("gen")); !lull.IsNotFound(err) {
			t.Fatalf("Get missing: %v, want not found", err)
		}
		if err := s.MarkEnqueued(ctx, lull.NewID("gen")); !lull.IsNotFound(err) {
			t.Fatalf("MarkEnqueued missing: %v, want not found", err)
		}
	})

	t.Run("Idempotency", func(t *testing.T) {
		t.Parallel()
		tenant := lull.NewID("t")
		a := newGen(tenant, now)
		a.IdempotencyKey = "key-1"
		if _, created, err := s.Create(ctx, a, "fp1"); err != nil || !created {
			t.Fatalf("first Create: %v %v", created, err)
		}
		b := newGen(tenant, now)
		b.IdempotencyKey = "key-1"
		got, created, err := s.Create(ctx, b, "fp1")
		if err != nil || created || got.ID != a.ID {
			t.Fatalf("repeat Create = %v, %v, %v; want %s not created", got, created, err, a.ID)
		}
		if _, err := s.Get(ctx, b.ID); !lull.IsNotFound(err) {
			t.Fatalf("repeat Create stored a second generation: %v", err)
		}
		c := newGen(tenant, now)
		c.IdempotencyKey = "key-1"
		if _, _, err := s.Create(ctx, c, "fp-other"); !lull.IsConflict(err) {
			t.Fatalf("different fingerprint: %v, want conflict", err)
		}
		d := newGen(lull.NewID("t"), now) // same key, other tenant: independent
		d.IdempotencyKey = "key-1"
		if got, created, err := s.Create(ctx, d, "fp1"); err != nil || !created || got.ID != d.ID {
			t.Fatalf("other tenant's key: %v %v %v", got, created, err)
		}
	})

	t.Run("IdempotencyRace", func(t *testing.T) {
		t.Parallel()
		tenant := lull.NewID("t")
		var wg sync.WaitGroup
		ids := make([]string, 8)
		var createdN atomic.Int32
		for i := range ids {
			wg.Go(func() {
				g := newGen(tenant, now)
				g.IdempotencyKey = "race"
				got, created, err := s.Create(ctx, g, "fp")
				if err != nil {
					t.Error(err)
					return
				}
				if created {
					createdN.Add(1)
				}
				ids[i] = got.ID
			})
		}
		wg.Wait()
		if createdN.Load() != 1 {
			t.Fatalf("%d creations for one key, want 1", createdN.Load())
		}
		for _, id := range ids {
			if id != ids[0] {
				t.Fatalf("ids differ: %v", ids)
			}
		}
	})

	t.Run("Transitions", func(t *testing.T) {
		t.Parallel()
		g := newGen(lull.NewID("t"), now)
		mustCreate(t, s, g)
		if _, err := s.Finish(ctx, g.ID, lull.StatusCompleted, lull.Outcome{At: now}); !lull.IsConflict(err) {
			t.Fatalf("queued → completed: %v, want conflict", err)
		}
		started, err := s.Start(ctx, g.ID, "w1", now, now.Add(time.Minute))
		if err != nil || started.Status != lull.StatusInProgress || started.Attempts != 1 || started.LeaseOwner != "w1" {
			t.Fatalf("Start = %+v, %v", started, err)
		}
		if _, err := s.Start(ctx, g.ID, "w2", now, now.Add(time.Minute)); !lull.IsConflict(err) {
			t.Fatalf("Start under another's lease: %v, want conflict", err)
		}
		if err := s.Renew(ctx, g.ID, "w2", now.Add(time.Hour)); !lull.IsConflict(err) {
			t.Fatalf("Renew by non-owner: %v, want conflict", err)
		}
		if err := s.Renew(ctx, g.ID, "w1", now.Add(2*time.Minute)); err != nil {
			t.Fatal(err)
		}
		// The lease expired: another worker takes over.
		later := now.Add(3 * time.Minute)
		took, err := s.Start(ctx, g.ID, "w2", later, later.Add(time.Minute))
		if err != nil || took.Attempts != 2 || took.LeaseOwner != "w2" || !took.StartedAt.Equal(now) {
			t.Fatalf("takeover = %+v, %v", took, err)
		}
		if err := s.NoteError(ctx, g.ID, "engine 503"); err != nil {
			t.Fatal(err)
		}
		usage := &lull.Usage{PromptTokens: 3, CompletionTokens: 5, TotalTokens: 8}
		done, err := s.Finish(ctx, g.ID, lull.StatusCompleted, lull.Outcome{At: later, ResponseKey: "outputs/x", Usage: usage})
		if err != nil || done.Status != lull.StatusCompleted || *done.Usage != *usage || done.ResponseKey != "outputs/x" ||
			!done.CompletedAt.Equal(later) || done.LeaseOwner != "" || done.LastError != "engine 503" {
			t.Fatalf("Finish = %+v, %v", done, err)
		}
		for _, to := range []lull.Status{lull.StatusCompleted, lull.StatusFailed, lull.StatusExpired, lull.StatusCancelled} {
			if _, err := s.Finish(ctx, g.ID, to, lull.Outcome{At: later}); !lull.IsConflict(err) {
				t.Fatalf("completed → %s: %v, want conflict", to, err)
			}
		}
		if _, err := s.Start(ctx, g.ID, "w3", later.Add(time.Hour), later.Add(2*time.Hour)); !lull.IsConflict(err) {
			t.Fatalf("Start after completion: %v, want conflict", err)
		}
	})

	t.Run("DeleteOnlyTerminal", func(t *testing.T) {
		t.Parallel()
		g := newGen(lull.NewID("t"), now)
		mustCreate(t, s, g)
		if err := s.Delete(ctx, g.ID); !lull.IsConflict(err) {
			t.Fatalf("Delete queued: %v, want conflict", err)
		}
		if _, err := s.Start(ctx, g.ID, "w1", now, now.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if err := s.Delete(ctx, g.ID); !lull.IsConflict(err) {
			t.Fatalf("Delete in progress: %v, want conflict", err)
		}
		if _, err := s.Finish(ctx, g.ID, lull.StatusFailed, lull.Outcome{At: now}); err != nil {
			t.Fatal(err)
		}
		if err := s.Delete(ctx, g.ID); err != nil {
			t.Fatalf("Delete failed generation: %v", err)
		}
		if _, err := s.Get(ctx, g.ID); !lull.IsNotFound(err) {
			t.Fatalf("Get after Delete: %v, want not found", err)
		}
		if err := s.Delete(ctx, g.ID); !lull.IsNotFound(err) {
			t.Fatalf("Delete again: %v, want not found", err)
		}
	})

	t.Run("SingleTerminalTransitionUnderRace", func(t *testing.T) {
		t.Parallel()
		g := newGen(lull.NewID("t"), now)
		mustCreate(t, s, g)
		var wins atomic.Int32
		var wg sync.WaitGroup
		for i, to := range []lull.Status{lull.StatusCancelled, lull.StatusExpired, lull.StatusFailed, lull.StatusCancelled, lull.StatusFailed, lull.StatusExpired} {
			wg.Go(func() {
				_, err := s.Finish(ctx, g.ID, to, lull.Outcome{At: now, Failure: &lull.Failure{Code: "x", Message: fmt.Sprint(i)}})
				switch {
				case err == nil:
					wins.Add(1)
				case !lull.IsConflict(err):
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if wins.Load() != 1 {
			t.Fatalf("%d terminal transitions, want 1", wins.Load())
		}
	})

	t.Run("StartRefusesExpired", func(t *testing.T) {
		t.Parallel()
		g := newGen(lull.NewID("t"), now)
		mustCreate(t, s, g)
		if _, err := s.Start(ctx, g.ID, "w", g.ExpiresAt.Add(time.Second), g.ExpiresAt.Add(time.Minute)); !lull.IsConflict(err) {
			t.Fatalf("Start after window: %v, want conflict", err)
		}
		if _, err := s.Finish(ctx, g.ID, lull.StatusExpired, lull.Outcome{At: g.ExpiresAt}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("ListNewestFirstPaged", func(t *testing.T) {
		t.Parallel()
		tenant := lull.NewID("t")
		var ids []string
		for i := range 7 {
			g := newGen(tenant, now.Add(time.Duration(i)*time.Second))
			mustCreate(t, s, g)
			ids = append([]string{g.ID}, ids...)
		}
		mustCreate(t, s, newGen(lull.NewID("t"), now)) // another tenant
		if _, err := s.Finish(ctx, ids[1], lull.StatusCancelled, lull.Outcome{At: now}); err != nil {
			t.Fatal(err)
		}
		var got []string
		after := ""
		for page := 0; ; page++ {
			gens, next, err := s.List(ctx, tenant, lull.ListOptions{Limit: 3, After: after})
			if err != nil {
				t.Fatal(err)
			}
			for _, g := range gens {
				got = append(got, g.ID)
			}
			if next == "" {
				break
			}
			if next != gens[len(gens)-1].ID {
				t.Fatalf("full page continues after %s, not its last generation", next)
			}
			after = next
			if page > 5 {
				t.Fatal("pagination does not end")
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(ids) {
			t.Fatalf("List = %v, want %v", got, ids)
		}
		cancelled, next, err := s.List(ctx, tenant, lull.ListOptions{Limit: 10, Status: lull.StatusCancelled})
		if err != nil || next != "" || len(cancelled) != 1 || cancelled[0].ID != ids[1] {
			t.Fatalf("List cancelled = %v, %q, %v", cancelled, next, err)
		}
		if _, _, err := s.List(ctx, lull.NewID("t"), lull.ListOptions{Limit: 3, After: ids[0]}); lull.ErrorCode(err) != lull.EINVALID {
			t.Fatalf("cursor of another tenant: %v, want invalid", err)
		}
	})

	t.Run("Sweeps", func(t *testing.T) {
		t.Parallel()
		// Far in the past so that other subtests' items do not interfere.
		old := time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(time.Now().UnixNano()%1e6) * time.Millisecond)
		a, b := newGen(lull.NewID("t"), old), newGen(lull.NewID("t"), old)
		mustCreate(t, s, a)
		mustCreate(t, s, b)
		if err := s.MarkEnqueued(ctx, a.ID); err != nil {
			t.Fatal(err)
		}
		un, err := s.Unenqueued(ctx, old.Add(time.Second), 1000)
		if err != nil {
			t.Fatal(err)
		}
		if !contains(un, b.ID) || contains(un, a.ID) {
			t.Fatalf("Unenqueued = %v, want %s and not %s", ids(un), b.ID, a.ID)
		}
		due, err := s.DueToExpire(ctx, old.Add(2*time.Hour), 1000)
		if err != nil {
			t.Fatal(err)
		}
		if !contains(due, a.ID) || !contains(due, b.ID) {
			t.Fatalf("DueToExpire = %v, want both", ids(due))
		}
		if _, err := s.Finish(ctx, a.ID, lull.StatusExpired, lull.Outcome{At: old}); err != nil {
			t.Fatal(err)
		}
		due, err = s.DueToExpire(ctx, old.Add(2*time.Hour), 1000)
		if err != nil {
			t.Fatal(err)
		}
		if contains(due, a.ID) {
			t.Fatalf("terminal generation still due to expire")
		}
	})

	t.Run("APIKeys", func(t *testing.T) {
		t.Parallel()
		tenant := lull.NewID("t")
		h := lull.HashKey("sk-" + tenant)
		if _, err := s.TenantForKey(ctx, h); lull.ErrorCode(err) != lull.EUNAUTHORIZED {
			t.Fatalf("unknown key: %v", err)
		}
		if err := s.PutKey(ctx, h, tenant); err != nil {
			t.Fatal(err)
		}
		if got, err := s.TenantForKey(ctx, h); err != nil || got != tenant {
			t.Fatalf("TenantForKey = %q, %v", got, err)
		}
	})
}

func mustCreate(t *testing.T, s Store, g *lull.Generation) {
	t.Helper()
	if _, _, err := s.Create(context.Background(), g, ""); err != nil {
		t.Fatal(err)
	}
}

func contains(gens []*lull.Generation, id string) bool {
	for _, g := range gens {
		if g.ID == id {
			return true
		}
	}
	return false
}

func ids(gens []*lull.Generation) []string {
	out := make([]string, len(gens))
	for i, g := range gens {
		out[i] = g.ID
	}
	return out
}

// QueueQuirks lists known deviations of an emulator that the suite tolerates.
type QueueQuirks struct {
	// StaticReceiveCount: ApproximateReceiveCount is always 1 (goaws
	// v0.5.4). lull never relies on it for correctness: attempts are counted
	// in DynamoDB.
	StaticReceiveCount bool
}

// Queue runs the suite for lull.Queue. newQueue returns a new empty queue
// whose messages go to dlq after maxReceives receives (dlq may be nil when
// the implementation has no dead-letter queue).
func Queue(t *testing.T, quirks QueueQuirks, newQueue func(t *testing.T, maxReceives int) (q, dlq lull.Queue)) {
	ctx := context.Background()
	t.Run("SendReceiveDelete", func(t *testing.T) {
		t.Parallel()
		q, _ := newQueue(t, 0)
		want := map[string]bool{}
		for i := range 5 {
			body := fmt.Sprintf(`{"n":%d}`, i)
			want[body] = true
			if err := q.Send(ctx, []byte(body), fmt.Sprintf("tenant-%d", i%2), 0); err != nil {
				t.Fatal(err)
			}
		}
		deadline := time.Now().Add(10 * time.Second)
		for len(want) > 0 && time.Now().Before(deadline) {
			msgs, err := q.Receive(ctx, 10, time.Second, 30*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range msgs {
				if m.ReceiveCount != 1 {
					t.Errorf("ReceiveCount = %d, want 1", m.ReceiveCount)
				}
				delete(want, string(m.Body))
				if err := q.Delete(ctx, m.Receipt); err != nil {
					t.Fatal(err)
				}
			}
		}
		if len(want) > 0 {
			t.Fatalf("never received %v", want)
		}
		if v, f, err := q.Depth(ctx); err != nil || v != 0 || f != 0 {
			t.Fatalf("Depth = %d, %d, %v; want 0, 0", v, f, err)
		}
	})
	t.Run("ReleaseAndRedrive", func(t *testing.T) {
		t.Parallel()
		q, dlq := newQueue(t, 2)
		if err := q.Send(ctx, []byte("poison"), "", 0); err != nil {
			t.Fatal(err)
		}
		seen := 0
		deadline := time.Now().Add(20 * time.Second)
		for seen < 2 && time.Now().Before(deadline) {
			msgs, err := q.Receive(ctx, 1, time.Second, 30*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range msgs {
				seen++
				if m.ReceiveCount != seen && !quirks.StaticReceiveCount {
					t.Errorf("receive %d: ReceiveCount = %d", seen, m.ReceiveCount)
				}
				if err := q.SetVisibility(ctx, m.Receipt, 0); err != nil { // release at once
					t.Fatal(err)
				}
			}
		}
		if seen != 2 {
			t.Fatalf("received %d times, want 2", seen)
		}
		if dlq == nil {
			return
		}
		for time.Now().Before(deadline) {
			// A receive past maxReceives moves the message to the DLQ.
			if _, err := q.Receive(ctx, 1, 0, 30*time.Second); err != nil {
				t.Fatal(err)
			}
			msgs, err := dlq.Receive(ctx, 1, time.Second, 30*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if len(msgs) == 1 && string(msgs[0].Body) == "poison" {
				return
			}
		}
		t.Fatal("message never reached the DLQ")
	})
	t.Run("SendBatch", func(t *testing.T) {
		t.Parallel()
		q, _ := newQueue(t, 0)
		bs, ok := q.(lull.BatchSender)
		if !ok {
			t.Skip("queue has no SendBatch")
		}
		var bodies [][]byte
		want := map[string]bool{}
		for i := range 23 { // three calls: 10, 10, 3
			b := fmt.Sprintf(`{"line":%d}`, i)
			bodies, want[b] = append(bodies, []byte(b)), true
		}
		if err := bs.SendBatch(ctx, bodies, "tenant-a"); err != nil {
			t.Fatal(err)
		}
		for _, m := range receiveN(t, q, 23) {
			if !want[string(m.Body)] {
				t.Errorf("unexpected or duplicate body %s", m.Body)
			}
			delete(want, string(m.Body))
		}
	})
	t.Run("VisibilityHides", func(t *testing.T) {
		t.Parallel()
		q, _ := newQueue(t, 0)
		if err := q.Send(ctx, []byte("x"), "", 0); err != nil {
			t.Fatal(err)
		}
		msgs := receiveN(t, q, 1)
		if err := q.SetVisibility(ctx, msgs[0].Receipt, time.Minute); err != nil {
			t.Fatal(err)
		}
		if again, err := q.Receive(ctx, 10, time.Second, 30*time.Second); err != nil || len(again) != 0 {
			t.Fatalf("hidden message received again: %v %v", again, err)
		}
		if _, f, err := q.Depth(ctx); err != nil || f != 1 {
			t.Fatalf("in flight = %d, %v; want 1", f, err)
		}
	})
}

func receiveN(t *testing.T, q lull.Queue, n int) []lull.Message {
	t.Helper()
	var out []lull.Message
	deadline := time.Now().Add(10 * time.Second)
	for len(out) < n && time.Now().Before(deadline) {
		msgs, err := q.Receive(context.Background(), n-len(out), time.Second, 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, msgs...)
	}
	if len(out) < n {
		t.Fatalf("received %d messages, want %d", len(out), n)
	}
	return out
}

// repeatReader yields p over and over.
func repeatReader(p []byte) io.Reader { return &repeater{p: p} }

type repeater struct {
	p   []byte
	off int
}

func (r *repeater) Read(b []byte) (int, error) {
	n := 0
	for n < len(b) {
		c := copy(b[n:], r.p[r.off:])
		n += c
		r.off = (r.off + c) % len(r.p)
	}
	return n, nil
}

// Blobs runs the suite for lull.Blobs.
func Blobs(t *testing.T, b lull.Blobs) {
	ctx := context.Background()
	t.Run("PutGetOpenDelete", func(t *testing.T) {
		t.Parallel()
		key := "outputs/" + lull.NewID("t") + "/x.json"
		body := bytes.Repeat([]byte(`{"a":1}`), 10000)
		if err := b.Put(ctx, key, body, "application/json"); err != nil {
			t.Fatal(err)
		}
		got, err := b.Get(ctx, key)
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("Get = %d bytes, %v", len(got), err)
		}
		r, err := b.Open(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		streamed, err := io.ReadAll(r)
		r.Close()
		if err != nil || !bytes.Equal(streamed, body) {
			t.Fatalf("Open = %d bytes, %v", len(streamed), err)
		}
		if err := b.Delete(ctx, key); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Get(ctx, key); !lull.IsNotFound(err) {
			t.Fatalf("Get after Delete: %v", err)
		}
		if err := b.Delete(ctx, key); err != nil {
			t.Fatalf("second Delete: %v", err)
		}
	})
	t.Run("PutStreamPresign", func(t *testing.T) {
		t.Parallel()
		key := "files/" + lull.NewID("t") + "/big.jsonl"
		line := []byte(`{"custom_id":"x","body":{}}` + "\n")
		const lines = 200000 // ~5.4 MB, more than one multipart-sized chunk
		n, err := b.PutStream(ctx, key, io.LimitReader(repeatReader(line), int64(len(line))*lines), "application/jsonl")
		if err != nil || n != int64(len(line))*lines {
			t.Fatalf("PutStream = %d, %v", n, err)
		}
		got, err := b.Get(ctx, key)
		if err != nil || !bytes.Equal(got, bytes.Repeat(line, lines)) {
			t.Fatalf("Get after PutStream = %d bytes, %v", len(got), err)
		}
		url, err := b.PresignGet(ctx, key, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		fetched, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || !bytes.Equal(fetched, got) {
			t.Fatalf("presigned GET = %d, %d bytes", resp.StatusCode, len(fetched))
		}
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		t.Parallel()
		_, err := b.Get(ctx, "nope/"+lull.NewID("k"))
		if !lull.IsNotFound(err) {
			t.Fatalf("Get missing: %v", err)
		}
		var le *lull.Error
		if !errors.As(err, &le) {
			t.Fatal("not a *lull.Error")
		}
	})
}
