package lull_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lull-ai/lull/shared/lull"
)

// allowed is the lifecycle written out independently of Status.From:
// queued → in_progress → completed | failed; queued → cancelled; any
// non-terminal → expired; in_progress → in_progress (a takeover).
var allowed = map[[2]lull.Status]bool{
	{lull.StatusQueued, lull.StatusInProgress}:     true,
	{lull.StatusInProgress, lull.StatusInProgress}: true,
	{lull.StatusInProgress, lull.StatusCompleted}:  true,
	{lull.StatusQueued, lull.StatusFailed}:         true,
	{lull.StatusInProgress, lull.StatusFailed}:     true,
	{lull.StatusQueued, lull.StatusCancelled}:      true,
	{lull.StatusQueued, lull.StatusExpired}:        true,
	{lull.StatusInProgress, lull.StatusExpired}:    true,
}

func TestStatusTransitions(t *testing.T) {
	t.Parallel()
	for _, from := range lull.Statuses {
		for _, to := range lull.Statuses {
			t.Run(string(from)+"_to_"+string(to), func(t *testing.T) {
				t.Parallel()
				want := allowed[[2]lull.Status{from, to}]
				if got := from.CanMoveTo(to); got != want {
					t.Errorf("%s.CanMoveTo(%s) = %v, want %v", from, to, got, want)
				}
				if got := slices.Contains(to.From(), from); got != want {
					t.Errorf("%s.From() contains %s = %v, want %v", to, from, got, want)
				}
				if from.Terminal() && from.CanMoveTo(to) {
					t.Errorf("terminal %s may move to %s", from, to)
				}
			})
		}
	}
}

func TestStatusTerminalAndValid(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		s               lull.Status
		valid, terminal bool
	}{
		{lull.StatusQueued, true, false},
		{lull.StatusInProgress, true, false},
		{lull.StatusCompleted, true, true},
		{lull.StatusFailed, true, true},
		{lull.StatusCancelled, true, true},
		{lull.StatusExpired, true, true},
		{"", false, false},
		{"running", false, false},
	} {
		if tc.s.Valid() != tc.valid || tc.s.Terminal() != tc.terminal {
			t.Errorf("%q: Valid %v Terminal %v; want %v %v", tc.s, tc.s.Valid(), tc.s.Terminal(), tc.valid, tc.terminal)
		}
		if !tc.valid && (len(tc.s.From()) != 0 || lull.StatusQueued.CanMoveTo(tc.s)) {
			t.Errorf("unknown status %q is reachable", tc.s)
		}
	}
	if len(lull.StatusQueued.From()) != 0 {
		t.Error("a generation can move back to queued")
	}
}

func TestBatchStatusTerminal(t *testing.T) {
	t.Parallel()
	terminal := map[lull.BatchStatus]bool{lull.BatchFailed: true, lull.BatchCompleted: true, lull.BatchExpired: true, lull.BatchCancelled: true}
	for _, s := range []lull.BatchStatus{lull.BatchValidating, lull.BatchFailed, lull.BatchInProgress, lull.BatchFinalizing,
		lull.BatchCompleted, lull.BatchExpired, lull.BatchCancelling, lull.BatchCancelled} {
		if s.Terminal() != terminal[s] {
			t.Errorf("%s.Terminal() = %v, want %v", s, s.Terminal(), terminal[s])
		}
	}
}

func TestEventFor(t *testing.T) {
	t.Parallel()
	at := time.Date(2030, 5, 6, 7, 8, 9, 0, time.UTC)
	id := lull.NewID("gen")
	for _, tc := range []struct {
		status lull.Status
		typ    string
	}{
		{lull.StatusCompleted, lull.EventGenerationCompleted},
		{lull.StatusFailed, lull.EventGenerationFailed},
		{lull.StatusExpired, lull.EventGenerationExpired},
		{lull.StatusCancelled, ""},
		{lull.StatusQueued, ""},
		{lull.StatusInProgress, ""},
	} {
		t.Run(string(tc.status), func(t *testing.T) {
			t.Parallel()
			if got := lull.EventTypeFor(tc.status); got != tc.typ {
				t.Fatalf("EventTypeFor(%s) = %q, want %q", tc.status, got, tc.typ)
			}
			g := &lull.Generation{ID: id, Tenant: "tenant-a", Status: tc.status, CompletedAt: at, WebhookID: "wh_1", BatchID: "batch_1"}
			ev := lull.EventFor(g)
			typ := tc.typ
			if tc.status == lull.StatusCancelled {
				typ = lull.EventLineCancelled // a batch line's cancellation is announced so its batch counts it
			}
			want := lull.Event{ID: "evt_" + strings.TrimPrefix(id, "gen_") + "_" + string(tc.status), Type: typ, Tenant: "tenant-a",
				GenerationID: id, BatchID: "batch_1", WebhookID: "wh_1", CreatedAt: at}
			if ev != want {
				t.Fatalf("EventFor = %+v, want %+v", ev, want)
			}
			// The ID is the webhook-id receivers de-duplicate on: the same
			// generation and status always give the same ID, other
			// statuses or generations another.
			if again := lull.EventFor(g); again.ID != ev.ID {
				t.Fatalf("EventFor is not stable: %s then %s", ev.ID, again.ID)
			}
			other := *g
			other.ID = lull.NewID("gen")
			if lull.EventFor(&other).ID == ev.ID {
				t.Fatal("two generations share an event ID")
			}
		})
	}
	if lull.EventFor(&lull.Generation{ID: id, Status: lull.StatusCompleted}).ID == lull.EventFor(&lull.Generation{ID: id, Status: lull.StatusFailed}).ID {
		t.Fatal("two statuses of a generation share an event ID")
	}
}

func TestBatchEventFor(t *testing.T) {
	t.Parallel()
	base := time.Date(2030, 5, 6, 7, 0, 0, 0, time.UTC)
	b := lull.Batch{ID: lull.NewID("batch"), Tenant: "tenant-a", WebhookID: "wh_1",
		CompletedAt: base.Add(1 * time.Minute), FailedAt: base.Add(2 * time.Minute), ExpiredAt: base.Add(3 * time.Minute), CancelledAt: base.Add(4 * time.Minute)}
	for _, tc := range []struct {
		status lull.BatchStatus
		typ    string
		at     time.Time
	}{
		{lull.BatchCompleted, lull.EventBatchCompleted, b.CompletedAt},
		{lull.BatchFailed, lull.EventBatchFailed, b.FailedAt},
		{lull.BatchExpired, lull.EventBatchExpired, b.ExpiredAt},
		{lull.BatchCancelled, lull.EventBatchCancelled, b.CancelledAt},
	} {
		b := b
		b.Status = tc.status
		ev := lull.BatchEventFor(&b)
		want := lull.Event{ID: "evt_" + strings.TrimPrefix(b.ID, "batch_") + "_" + string(tc.status), Type: tc.typ,
			Tenant: "tenant-a", BatchID: b.ID, WebhookID: "wh_1", CreatedAt: tc.at}
		if ev != want {
			t.Errorf("%s: BatchEventFor = %+v, want %+v", tc.status, ev, want)
		}
		if !slices.Contains(lull.EventTypes, ev.Type) {
			t.Errorf("%s: event type %q is not one a webhook can subscribe to", tc.status, ev.Type)
		}
	}
}

func TestEventTypesCoverEveryEvent(t *testing.T) {
	t.Parallel()
	for _, s := range lull.Statuses {
		if typ := lull.EventTypeFor(s); typ != "" && !slices.Contains(lull.EventTypes, typ) {
			t.Errorf("event %q (status %s) is missing from EventTypes", typ, s)
		}
	}
	w := &lull.Webhook{}
	for _, typ := range lull.EventTypes {
		if !w.Wants(typ) {
			t.Errorf("an endpoint with no filter does not want %s", typ)
		}
	}
	w.Events = []string{lull.EventGenerationFailed, lull.EventBatchFailed}
	for _, typ := range lull.EventTypes {
		if want := typ == lull.EventGenerationFailed || typ == lull.EventBatchFailed; w.Wants(typ) != want {
			t.Errorf("filtered endpoint: Wants(%s) = %v, want %v", typ, w.Wants(typ), want)
		}
	}
}

func TestIDs(t *testing.T) {
	t.Parallel()
	id := lull.NewID("gen")
	if !lull.ValidID("gen", id) || lull.ValidID("batch", id) || lull.ValidID("gen", id+"x") || lull.ValidID("gen", "gen_"+strings.Repeat("A", 26)) {
		t.Fatalf("ValidID misjudges %s", id)
	}
	if lull.NewID("gen") == id {
		t.Fatal("NewID repeated itself")
	}
	a, b := lull.LineID("batch_x", 0), lull.LineID("batch_x", 1)
	if a != lull.LineID("batch_x", 0) || a == b || !lull.ValidID("gen", a) {
		t.Fatalf("LineID: %s, %s", a, b)
	}
}

func TestDeliveryEvent(t *testing.T) {
	t.Parallel()
	at := time.Date(2030, 5, 6, 7, 8, 9, 0, time.UTC)
	b := &lull.Batch{ID: lull.NewID("batch"), Tenant: "tenant-a", Status: lull.BatchCancelled, WebhookID: "wh_1", CancelledAt: at}
	ev := lull.BatchEventFor(b)
	d := &lull.Delivery{ID: "dlv_1", WebhookID: "wh_1", Tenant: ev.Tenant, EventID: ev.ID, EventType: ev.Type, BatchID: ev.BatchID,
		EventAt: ev.CreatedAt, CreatedAt: at.Add(time.Minute)}
	if got := d.Event(); got != ev {
		t.Fatalf("Event = %+v, want %+v", got, ev)
	}
	d.EventAt = time.Time{} // a record from before EventAt was kept
	if got := d.Event(); !got.CreatedAt.Equal(d.CreatedAt) || got.BatchID != ev.BatchID {
		t.Fatalf("Event without EventAt = %+v, want the delivery's creation time", got)
	}
}
