package lull_test

import (
	"testing"

	"github.com/lull-ai/lull/shared/lull"
)

// TestEventForIDs: an event's ID depends only on the generation and its
// status, keeps the IDs events always had for "gen_" IDs, and neither
// panics nor collides on IDs of another shape.
func TestEventForIDs(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, id string
		status   lull.Status
		want     string
	}{
		{"Generation", "gen_abcdefghijklmnopqrstuvwxyz", lull.StatusCompleted, "evt_abcdefghijklmnopqrstuvwxyz_completed"},
		{"Failed", "gen_abc", lull.StatusFailed, "evt_abc_failed"},
		{"ShortID", "g", lull.StatusExpired, "evt_g_expired"},
		{"EmptyID", "", lull.StatusCompleted, "evt__completed"},
		{"OtherPrefix", "batch_req_1", lull.StatusCompleted, "evt_batch_req_1_completed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			g := &lull.Generation{ID: tc.id, Tenant: "t", Status: tc.status}
			ev := lull.EventFor(g)
			if ev.ID != tc.want || ev.GenerationID != tc.id || ev.Type != lull.EventTypeFor(tc.status) {
				t.Fatalf("EventFor(%q) = %+v, want ID %q", tc.id, ev, tc.want)
			}
			if again := lull.EventFor(g); again.ID != ev.ID {
				t.Fatalf("second EventFor ID %q != %q", again.ID, ev.ID)
			}
		})
	}
	// An ID of another shape is kept whole: slicing four characters off
	// every ID gave "gen_x" and "abcdx" the same event.
	a, b := lull.EventFor(&lull.Generation{ID: "gen_x", Status: lull.StatusCompleted}), lull.EventFor(&lull.Generation{ID: "abcdx", Status: lull.StatusCompleted})
	if a.ID == b.ID {
		t.Fatalf("different generations share event ID %q", a.ID)
	}
}
