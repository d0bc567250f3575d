package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/lull-ai/lull/shared/lull"
)

// Webhooks runs the suite for lull.Webhooks.
func Webhooks(t *testing.T, s lull.Webhooks) {
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Millisecond)
	t.Run("Endpoints", func(t *testing.T) {
		t.Parallel()
		tenant := lull.NewID("t")
		a := &lull.Webhook{ID: lull.NewID("wh"), Tenant: tenant, URL: "https://a.example.com", Secret: "whsec_QQ==", CreatedAt: now}
		b := &lull.Webhook{ID: lull.NewID("wh"), Tenant: tenant, URL: "https://b.example.com", Secret: "whsec_Qg==",
			Events: []string{lull.EventGenerationFailed}, CreatedAt: now.Add(time.Second)}
		for _, w := range []*lull.Webhook{a, b} {
			if err := s.CreateWebhook(ctx, w); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.CreateWebhook(ctx, a); !lull.IsConflict(err) {
			t.Fatalf("second create: %v", err)
		}
		// An empty event list means every event, and reads back.
		c := &lull.Webhook{ID: lull.NewID("wh"), Tenant: lull.NewID("t"), URL: "https://c.example.com", Secret: "whsec_Qw==", Events: []string{}, CreatedAt: now}
		if err := s.CreateWebhook(ctx, c); err != nil {
			t.Fatal(err)
		}
		if got, err := s.GetWebhook(ctx, c.ID); err != nil || !got.Wants(lull.EventBatchFailed) {
			t.Fatalf("webhook with no events = %+v, %v", got, err)
		}
		if list, err := s.ListWebhooks(ctx, c.Tenant); err != nil || len(list) != 1 {
			t.Fatalf("listing a webhook with no events = %v, %v", list, err)
		}
		list, err := s.ListWebhooks(ctx, tenant)
		if err != nil || len(list) != 2 || list[0].ID != a.ID || list[1].ID != b.ID {
			t.Fatalf("List = %v, %v", list, err)
		}
		if list[1].Wants(lull.EventGenerationCompleted) || !list[1].Wants(lull.EventGenerationFailed) || !list[0].Wants(lull.EventGenerationCompleted) {
			t.Fatal("event filters not kept")
		}
		// Rotation and disabling are partial writes: each keeps the other.
		until := now.Add(time.Hour)
		if err := s.RotateSecret(ctx, a.ID, a.Secret, "whsec_new", now, until); err != nil {
			t.Fatal(err)
		}
		if err := s.RotateSecret(ctx, a.ID, a.Secret, "whsec_lost", now, until); !lull.IsConflict(err) {
			t.Fatalf("rotation from a stale secret: %v, want conflict", err)
		}
		if err := s.DisableWebhook(ctx, a.ID, "410"); err != nil {
			t.Fatal(err)
		}
		got, err := s.GetWebhook(ctx, a.ID)
		if err != nil || !got.Disabled || got.DisabledReason != "410" || got.Secret != "whsec_new" || got.PrevSecret != a.Secret ||
			!got.PrevSecretUntil.Equal(until) || got.URL != a.URL {
			t.Fatalf("Get after rotate and disable = %+v, %v", got, err)
		}
		if err := s.DeleteWebhook(ctx, a.ID); err != nil {
			t.Fatal(err)
		}
		for _, err := range []error{s.DeleteWebhook(ctx, a.ID), s.DisableWebhook(ctx, a.ID, "x"), s.RotateSecret(ctx, a.ID, "whsec_new", "y", now, until)} {
			if !lull.IsNotFound(err) {
				t.Fatalf("after delete: %v, want not found", err)
			}
		}
		if _, err := s.GetWebhook(ctx, a.ID); !lull.IsNotFound(err) {
			t.Fatalf("Get deleted: %v", err)
		}
	})
	t.Run("ParkedDeliveries", func(t *testing.T) {
		t.Parallel()
		wh, due := lull.NewID("wh"), now.Add(5*time.Hour)
		d := &lull.Delivery{ID: lull.NewID("dlv"), WebhookID: wh, Tenant: "t", EventID: "evt_p", EventType: lull.EventGenerationCompleted,
			Status: lull.DeliveryPending, CreatedAt: now, UpdatedAt: now, NextAttemptAt: due, Parked: true}
		if _, err := s.CreateDelivery(ctx, d); err != nil {
			t.Fatal(err)
		}
		dueIDs := func(at time.Time) []string {
			t.Helper()
			ds, err := s.DueDeliveries(ctx, at, 100)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, x := range ds {
				if x.WebhookID == wh {
					ids = append(ids, x.ID)
				}
			}
			return ids
		}
		if ids := dueIDs(due.Add(-time.Second)); len(ids) != 0 {
			t.Fatalf("due before its time: %v", ids)
		}
		if ids := dueIDs(due); len(ids) != 1 || ids[0] != d.ID {
			t.Fatalf("DueDeliveries at its time = %v, want %s", ids, d.ID)
		}
		if got, err := s.GetDelivery(ctx, wh, d.ID); err != nil || !got.Parked || !got.NextAttemptAt.Equal(due) {
			t.Fatalf("GetDelivery = %+v, %v; want parked until %s", got, err, due)
		}
		if err := s.Unpark(ctx, wh, d.ID, due.Add(time.Minute)); err != nil { // rescheduled meanwhile: stays
			t.Fatal(err)
		}
		if ids := dueIDs(due); len(ids) != 1 {
			t.Fatalf("Unpark for another due time cleared the delivery: %v", ids)
		}
		if err := s.Unpark(ctx, wh, d.ID, due); err != nil {
			t.Fatal(err)
		}
		if ids := dueIDs(due.Add(time.Hour)); len(ids) != 0 {
			t.Fatalf("still due after Unpark: %v", ids)
		}
		if err := s.Unpark(ctx, wh, lull.NewID("dlv"), due); err != nil {
			t.Fatalf("Unpark of a missing delivery: %v", err)
		}
	})
	t.Run("Deliveries", func(t *testing.T) {
		t.Parallel()
		wh := lull.NewID("wh")
		mk := func(id string, at time.Time) *lull.Delivery {
			return &lull.Delivery{ID: id, WebhookID: wh, Tenant: "t", EventID: "evt_" + id, EventType: lull.EventGenerationCompleted,
				Status: lull.DeliveryPending, CreatedAt: at, UpdatedAt: at}
		}
		first, second := mk("dlv_a", now), mk("dlv_b", now.Add(time.Second))
		second.EventType, second.BatchID, second.EventAt = lull.EventBatchCompleted, "batch_1", now.Add(-time.Minute)
		for _, d := range []*lull.Delivery{first, second} {
			if created, err := s.CreateDelivery(ctx, d); err != nil || !created {
				t.Fatalf("CreateDelivery = %v, %v", created, err)
			}
		}
		if created, err := s.CreateDelivery(ctx, mk("dlv_a", now)); err != nil || created {
			t.Fatalf("second CreateDelivery = %v, %v; want not created", created, err)
		}
		for n := 1; n <= 3; n++ {
			if err := s.AddAttempt(ctx, wh, "dlv_a", lull.Attempt{N: n, At: now.Add(time.Duration(n) * time.Second), StatusCode: 500 + n, Latency: 12 * time.Millisecond, Error: "x"}); err != nil {
				t.Fatal(err)
			}
		}
		first.Status = lull.DeliveryFailed
		if err := s.SaveDelivery(ctx, first); err != nil {
			t.Fatal(err)
		}
		late := *first
		late.Status = lull.DeliveryPending // a slower writer must not reopen it
		if err := s.SaveDelivery(ctx, &late); err != nil {
			t.Fatal(err)
		}
		got, err := s.GetDelivery(ctx, wh, "dlv_a")
		if err != nil || got.Status != lull.DeliveryFailed || len(got.Attempts) != 3 || got.Attempts[2].StatusCode != 503 || got.Attempts[0].Latency != 12*time.Millisecond {
			t.Fatalf("GetDelivery = %+v, %v", got, err)
		}
		list, next, err := s.ListDeliveries(ctx, wh, "", 10)
		if err != nil || next != "" || len(list) != 2 || list[0].ID != "dlv_b" || len(list[1].Attempts) != 3 || len(list[0].Attempts) != 0 {
			t.Fatalf("ListDeliveries = %+v, %q, %v", list, next, err)
		}
		if list, next, err := s.ListDeliveries(ctx, wh, "", 1); err != nil || next != "dlv_b" || len(list) != 1 || list[0].ID != "dlv_b" {
			t.Fatalf("ListDeliveries limit 1 = %+v, %q, %v", list, next, err)
		}
		if list, next, err := s.ListDeliveries(ctx, wh, "dlv_b", 1); err != nil || next != "" || len(list) != 1 || list[0].ID != "dlv_a" {
			t.Fatalf("ListDeliveries after dlv_b = %+v, %q, %v", list, next, err)
		}
		if _, _, err := s.ListDeliveries(ctx, wh, "dlv_zz", 1); lull.ErrorCode(err) != lull.EINVALID {
			t.Fatalf("ListDeliveries after a missing delivery: %v, want invalid", err)
		}
		// A delivery keeps what rebuilds its event, for a manual retry.
		want := lull.Event{ID: "evt_dlv_b", Type: lull.EventBatchCompleted, Tenant: "t", BatchID: "batch_1", WebhookID: wh,
			CreatedAt: now.Add(-time.Minute)}
		if ev := list[0].Event(); !ev.CreatedAt.Equal(want.CreatedAt) || ev.ID != want.ID || ev.Type != want.Type ||
			ev.Tenant != want.Tenant || ev.BatchID != want.BatchID || ev.WebhookID != want.WebhookID || ev.GenerationID != "" {
			t.Fatalf("Event of the stored batch delivery = %+v, want %+v", ev, want)
		}
		if err := s.ReopenDelivery(ctx, &late); err != nil {
			t.Fatal(err)
		}
		if got, err := s.GetDelivery(ctx, wh, "dlv_a"); err != nil || got.Status != lull.DeliveryPending {
			t.Fatalf("after ReopenDelivery: %+v, %v", got, err)
		}
		if _, err := s.GetDelivery(ctx, wh, "dlv_zz"); !lull.IsNotFound(err) {
			t.Fatalf("missing delivery: %v", err)
		}
	})
}
