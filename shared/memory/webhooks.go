package memory

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/lull-ai/lull/shared/lull"
)

func webhookCopy(w *lull.Webhook) *lull.Webhook {
	c := *w
	c.Events = slices.Clone(w.Events)
	if len(c.Events) == 0 {
		c.Events = nil
	}
	c.PrevSecretUntil, c.CreatedAt = ms(w.PrevSecretUntil), ms(w.CreatedAt)
	return &c
}

func webhookNotFound(id string) error {
	return lull.Errorf(lull.ENOTFOUND, "No webhook found with id '%s'.", id)
}

// CreateWebhook implements lull.Webhooks.
func (s *Store) CreateWebhook(_ context.Context, w *lull.Webhook) error {
	if err := s.begin("CreateWebhook", w.ID); err != nil {
		return err
	}
	defer s.end()
	if _, ok := s.hooks[w.ID]; ok {
		return lull.Errorf(lull.ECONFLICT, "webhook %s already exists", w.ID)
	}
	n := 0
	for _, o := range s.hooks {
		if o.Tenant == w.Tenant {
			n++
		}
	}
	if n >= lull.MaxWebhooksPerTenant {
		return lull.Errorf(lull.EINVALID, "A tenant may register at most %d webhook endpoints.", lull.MaxWebhooksPerTenant)
	}
	s.hooks[w.ID] = webhookCopy(w)
	return nil
}

// GetWebhook implements lull.Webhooks.
func (s *Store) GetWebhook(_ context.Context, id string) (*lull.Webhook, error) {
	if err := s.begin("GetWebhook", id); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	w, ok := s.hooks[id]
	if !ok {
		return nil, webhookNotFound(id)
	}
	return webhookCopy(w), nil
}

// ListWebhooks implements lull.Webhooks.
func (s *Store) ListWebhooks(_ context.Context, tenant string) ([]*lull.Webhook, error) {
	if err := s.begin("ListWebhooks", tenant); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	var out []*lull.Webhook
	for _, w := range s.hooks {
		if w.Tenant == tenant {
			out = append(out, webhookCopy(w))
		}
	}
	slices.SortFunc(out, func(a, b *lull.Webhook) int {
		return cmp.Or(cmp.Compare(unixMS(a.CreatedAt), unixMS(b.CreatedAt)), cmp.Compare(a.ID, b.ID))
	})
	return out, nil
}

// DisableWebhook implements lull.Webhooks.
func (s *Store) DisableWebhook(_ context.Context, id, reason string) error {
	if err := s.begin("DisableWebhook", id); err != nil {
		return err
	}
	defer s.end()
	w, ok := s.hooks[id]
	if !ok {
		return webhookNotFound(id)
	}
	w.Disabled, w.DisabledReason = true, reason
	return nil
}

// RotateSecret implements lull.Webhooks.
func (s *Store) RotateSecret(_ context.Context, id, oldSecret, newSecret string, at, prevUntil time.Time) error {
	if err := s.begin("RotateSecret", id); err != nil {
		return err
	}
	defer s.end()
	w, ok := s.hooks[id]
	if !ok {
		return webhookNotFound(id)
	}
	if w.Secret != oldSecret {
		return lull.Errorf(lull.ECONFLICT, "The secret of webhook %s was rotated meanwhile; rotate again.", id)
	}
	w.Secret, w.PrevSecret, w.PrevSecretUntil, w.UpdatedAt = newSecret, oldSecret, ms(prevUntil), ms(at)
	if prevUntil.IsZero() {
		w.PrevSecret, w.PrevSecretUntil = "", time.Time{}
	}
	return nil
}

// EditWebhook implements lull.Webhooks.
func (s *Store) EditWebhook(_ context.Context, e *lull.Webhook) error {
	if err := s.begin("EditWebhook", e.ID); err != nil {
		return err
	}
	defer s.end()
	w, ok := s.hooks[e.ID]
	if !ok {
		return webhookNotFound(e.ID)
	}
	w.URL, w.Description, w.UpdatedAt = e.URL, e.Description, ms(e.UpdatedAt)
	w.Events = append([]string(nil), e.Events...)
	return nil
}

// DeleteWebhook implements lull.Webhooks. The endpoint's deliveries stay
// until they expire, as in DynamoDB.
func (s *Store) DeleteWebhook(_ context.Context, id string) error {
	if err := s.begin("DeleteWebhook", id); err != nil {
		return err
	}
	defer s.end()
	if _, ok := s.hooks[id]; !ok {
		return webhookNotFound(id)
	}
	delete(s.hooks, id)
	return nil
}

// deliveryCopy copies a delivery's state; attempts are stored apart.
func deliveryCopy(d *lull.Delivery) *lull.Delivery {
	c := *d
	c.Attempts = nil
	c.CreatedAt, c.UpdatedAt, c.NextAttemptAt = ms(d.CreatedAt), ms(d.UpdatedAt), ms(d.NextAttemptAt)
	return &c
}

// CreateDelivery implements lull.Webhooks.
func (s *Store) CreateDelivery(_ context.Context, d *lull.Delivery) (bool, error) {
	if err := s.begin("CreateDelivery", d.ID); err != nil {
		return false, err
	}
	defer s.end()
	k := dlvKey{d.WebhookID, d.ID}
	if _, ok := s.dlvs[k]; ok {
		return false, nil
	}
	s.dlvs[k] = deliveryCopy(d)
	return true, nil
}

// SaveDelivery implements lull.Webhooks: a pending d does not replace a
// finished delivery (and that is not an error).
func (s *Store) SaveDelivery(_ context.Context, d *lull.Delivery) error {
	if err := s.begin("SaveDelivery", d.ID); err != nil {
		return err
	}
	defer s.end()
	k := dlvKey{d.WebhookID, d.ID}
	if prior, ok := s.dlvs[k]; ok && d.Status == lull.DeliveryPending && prior.Status != lull.DeliveryPending {
		return nil
	}
	s.dlvs[k] = deliveryCopy(d)
	return nil
}

// ReopenDelivery implements lull.Webhooks.
func (s *Store) ReopenDelivery(_ context.Context, d *lull.Delivery) error {
	if err := s.begin("ReopenDelivery", d.ID); err != nil {
		return err
	}
	defer s.end()
	s.dlvs[dlvKey{d.WebhookID, d.ID}] = deliveryCopy(d)
	return nil
}

// AddAttempt implements lull.Webhooks. An attempt with the number of one
// recorded before replaces it.
func (s *Store) AddAttempt(_ context.Context, webhookID, deliveryID string, a lull.Attempt) error {
	if err := s.begin("AddAttempt", deliveryID); err != nil {
		return err
	}
	defer s.end()
	k := dlvKey{webhookID, deliveryID}
	if s.tries[k] == nil {
		s.tries[k] = map[int]lull.Attempt{}
	}
	a.At, a.Latency = ms(a.At), a.Latency.Truncate(time.Millisecond)
	s.tries[k][a.N] = a
	return nil
}

// withAttempts returns a copy of the stored delivery with its attempts, in
// order.
func (s *Store) withAttempts(k dlvKey) *lull.Delivery {
	d := deliveryCopy(s.dlvs[k])
	for _, a := range s.tries[k] {
		d.Attempts = append(d.Attempts, a)
	}
	slices.SortFunc(d.Attempts, func(a, b lull.Attempt) int { return cmp.Compare(a.N, b.N) })
	return d
}

// GetDelivery implements lull.Webhooks.
func (s *Store) GetDelivery(_ context.Context, webhookID, deliveryID string) (*lull.Delivery, error) {
	if err := s.begin("GetDelivery", deliveryID); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	k := dlvKey{webhookID, deliveryID}
	if _, ok := s.dlvs[k]; !ok {
		return nil, lull.Errorf(lull.ENOTFOUND, "No delivery found with id '%s'.", deliveryID)
	}
	return s.withAttempts(k), nil
}

// ListDeliveries implements lull.Webhooks.
func (s *Store) ListDeliveries(_ context.Context, webhookID, after string, limit int) ([]*lull.Delivery, string, error) {
	if err := s.begin("ListDeliveries", webhookID); err != nil {
		return nil, "", err
	}
	defer s.mu.Unlock()
	limit = min(max(limit, 1), 100)
	var cursor *lull.Delivery
	if after != "" {
		d, ok := s.dlvs[dlvKey{webhookID, after}]
		if !ok {
			return nil, "", &lull.Error{Code: lull.EINVALID, Param: "after", Message: fmt.Sprintf("No delivery found with id '%s'.", after)}
		}
		cursor = d
	}
	var out []*lull.Delivery
	for k, d := range s.dlvs {
		if k.webhook == webhookID && (cursor == nil || olderThan(d.CreatedAt, d.ID, cursor.CreatedAt, cursor.ID)) {
			out = append(out, s.withAttempts(k))
		}
	}
	slices.SortFunc(out, func(a, b *lull.Delivery) int { return newestFirst(a.CreatedAt, a.ID, b.CreatedAt, b.ID) })
	if len(out) > limit {
		return out[:limit], out[limit-1].ID, nil
	}
	return out, "", nil
}

// DueDeliveries implements lull.Webhooks.
func (s *Store) DueDeliveries(_ context.Context, now time.Time, limit int) ([]*lull.Delivery, error) {
	if err := s.begin("DueDeliveries", ""); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	var out []*lull.Delivery
	for _, d := range s.dlvs {
		if d.Parked && d.Status == lull.DeliveryPending && !d.NextAttemptAt.After(now) {
			out = append(out, deliveryCopy(d))
		}
	}
	slices.SortFunc(out, func(a, b *lull.Delivery) int {
		return cmp.Or(a.NextAttemptAt.Compare(b.NextAttemptAt), cmp.Compare(a.ID, b.ID))
	})
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// Unpark implements lull.Webhooks.
func (s *Store) Unpark(_ context.Context, webhookID, deliveryID string, due time.Time) error {
	if err := s.begin("Unpark", deliveryID); err != nil {
		return err
	}
	defer s.end()
	if d, ok := s.dlvs[dlvKey{webhookID, deliveryID}]; ok && d.NextAttemptAt.Equal(ms(due)) {
		d.Parked = false
	}
	return nil
}
