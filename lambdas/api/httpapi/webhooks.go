package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/lull-ai/lull/shared/lull"
	"github.com/lull-ai/lull/shared/whsign"
)

// WebhookView is the JSON form of a webhook endpoint. Secret is present only
// when the endpoint is created and when its secret is rotated.
type WebhookView struct {
	ID             string   `json:"id"`
	Object         string   `json:"object"`
	URL            string   `json:"url"`
	Events         []string `json:"events"`
	Description    string   `json:"description"`
	Status         string   `json:"status"`
	DisabledReason *string  `json:"disabled_reason"`
	CreatedAt      int64    `json:"created_at"`
	Secret         string   `json:"secret,omitempty"`
}

func webhookView(w *lull.Webhook, withSecret bool) WebhookView {
	v := WebhookView{ID: w.ID, Object: "webhook_endpoint", URL: w.URL, Events: w.Events, Description: w.Description,
		Status: "enabled", CreatedAt: w.CreatedAt.Unix()}
	if v.Events == nil {
		v.Events = lull.EventTypes
	}
	if w.Disabled {
		v.Status, v.DisabledReason = "disabled", &w.DisabledReason
	}
	if withSecret {
		v.Secret = w.Secret
	}
	return v
}

// AttemptView is one delivery attempt.
type AttemptView struct {
	Attempt    int    `json:"attempt"`
	At         int64  `json:"at"`
	StatusCode *int   `json:"status_code"`
	LatencyMS  int64  `json:"latency_ms"`
	Error      string `json:"error,omitempty"`
}

// DeliveryView is one event's delivery to an endpoint.
type DeliveryView struct {
	ID            string        `json:"id"`
	Object        string        `json:"object"`
	WebhookID     string        `json:"webhook_id"`
	EventID       string        `json:"event_id"`
	EventType     string        `json:"event_type"`
	GenerationID  string        `json:"generation_id,omitempty"`
	Status        string        `json:"status"`
	CreatedAt     int64         `json:"created_at"`
	NextAttemptAt *int64        `json:"next_attempt_at"`
	Attempts      []AttemptView `json:"attempts"`
}

func deliveryView(d *lull.Delivery) DeliveryView {
	v := DeliveryView{ID: d.ID, Object: "webhook_delivery", WebhookID: d.WebhookID, EventID: d.EventID, EventType: d.EventType,
		GenerationID: d.GenerationID, Status: d.Status, CreatedAt: d.CreatedAt.Unix(), Attempts: []AttemptView{}}
	if !d.NextAttemptAt.IsZero() && d.Status == lull.DeliveryPending {
		t := d.NextAttemptAt.Unix()
		v.NextAttemptAt = &t
	}
	for _, a := range d.Attempts {
		av := AttemptView{Attempt: a.N, At: a.At.Unix(), LatencyMS: a.Latency.Milliseconds(), Error: a.Error}
		if a.StatusCode != 0 {
			code := a.StatusCode
			av.StatusCode = &code
		}
		v.Attempts = append(v.Attempts, av)
	}
	return v
}

func (s *Server) webhookRoutes() {
	s.webhookEndpointRoutes()
	s.route("/v1/webhooks", map[string]handler{http.MethodPost: s.createWebhook, http.MethodGet: s.listWebhooks})
	s.route("/v1/webhooks/{id}", map[string]handler{http.MethodGet: showWebhook(s, webhookView), http.MethodDelete: s.deleteWebhook})
	s.route("/v1/webhooks/{id}/rotate_secret", map[string]handler{http.MethodPost: s.rotateSecret})
	s.route("/v1/webhooks/{id}/deliveries", map[string]handler{http.MethodGet: s.listDeliveries})
	s.route("/v1/webhooks/{id}/deliveries/{delivery}/retry", map[string]handler{http.MethodPost: s.retryDelivery})
}

func (s *Server) createWebhook(w http.ResponseWriter, r *http.Request) error {
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	var in struct {
		URL         string   `json:"url"`
		Events      []string `json:"events"`
		Description string   `json:"description"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		return lull.Errorf(lull.EINVALID, "The body must be a JSON object with 'url' and optional 'events' and 'description'.")
	}
	if in.URL == "" {
		return lull.ParamError("url", "Missing required parameter: 'url'.")
	}
	if len(in.Description) > 512 {
		return lull.ParamError("description", "'description' is at most 512 characters.")
	}
	for _, e := range in.Events {
		if !slices.Contains(lull.EventTypes, e) {
			return lull.ParamError("events", "Unknown event type %q; known types: %v.", e, lull.EventTypes)
		}
	}
	wh, err := s.registerWebhook(r, in.URL, in.Events, in.Description)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, webhookView(wh, true))
	return nil
}

// registerWebhook checks url (SSRF) and the tenant's endpoint cap, then
// stores a new endpoint with a fresh secret; both webhook APIs create
// through it.
func (s *Server) registerWebhook(r *http.Request, url string, events []string, description string) (*lull.Webhook, error) {
	if err := s.cfg.Guard.CheckURL(r.Context(), url); err != nil {
		return nil, err
	}
	// The store enforces the cap atomically; this read also covers
	// endpoints registered before it counted them.
	existing, err := s.cfg.Webhooks.ListWebhooks(r.Context(), tenant(r))
	if err != nil {
		return nil, err
	}
	if len(existing) >= lull.MaxWebhooksPerTenant {
		return nil, lull.Errorf(lull.EINVALID, "A tenant may register at most %d webhook endpoints.", lull.MaxWebhooksPerTenant)
	}
	wh := &lull.Webhook{ID: lull.NewID("wh"), Tenant: tenant(r), URL: url, Events: events, Description: description,
		Secret: whsign.NewSecret(), CreatedAt: s.cfg.Now().UTC().Truncate(time.Millisecond)}
	if err := s.cfg.Webhooks.CreateWebhook(r.Context(), wh); err != nil {
		return nil, err
	}
	s.cfg.Logger.InfoContext(r.Context(), "webhook registered", "request_id", requestID(r.Context()), "tenant", wh.Tenant, "webhook_id", wh.ID)
	return wh, nil
}

// ownWebhook returns the caller's webhook {id}, or ENOTFOUND for a missing,
// malformed or foreign one.
func (s *Server) ownWebhook(r *http.Request) (*lull.Webhook, error) {
	id := r.PathValue("id")
	return own(r, "wh", id, fmt.Sprintf("No webhook found with id '%s'.", id), s.cfg.Webhooks.GetWebhook,
		func(w *lull.Webhook) string { return w.Tenant })
}

func (s *Server) listWebhooks(w http.ResponseWriter, r *http.Request) error {
	all, err := s.cfg.Webhooks.ListWebhooks(r.Context(), tenant(r))
	if err != nil {
		return err
	}
	page := Page[WebhookView]{Object: "list", Data: make([]WebhookView, 0, len(all))}
	for _, wh := range all {
		page.Data = append(page.Data, webhookView(wh, false))
	}
	if len(all) > 0 {
		page.FirstID, page.LastID = &all[0].ID, &all[len(all)-1].ID
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

// showWebhook returns the handler answering the caller's webhook {id} in
// view (without its secret): lull's shape under /v1/webhooks, OpenAI's
// under /v1/webhook_endpoints.
func showWebhook[T any](s *Server, view func(*lull.Webhook, bool) T) handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		wh, err := s.ownWebhook(r)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, view(wh, false))
		return nil
	}
}

func (s *Server) deleteWebhook(w http.ResponseWriter, r *http.Request) error {
	wh, err := s.ownWebhook(r)
	if err != nil {
		return err
	}
	if err := s.cfg.Webhooks.DeleteWebhook(r.Context(), wh.ID); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": wh.ID, "object": "webhook_endpoint.deleted", "deleted": true})
	return nil
}

// RotationGrace is how long the previous secret keeps signing after a rotation.
const RotationGrace = 24 * time.Hour

func (s *Server) rotateSecret(w http.ResponseWriter, r *http.Request) error {
	wh, err := s.ownWebhook(r)
	if err != nil {
		return err
	}
	now := s.cfg.Now().UTC().Truncate(time.Millisecond)
	wh.PrevSecret, wh.PrevSecretUntil = wh.Secret, now.Add(RotationGrace)
	wh.Secret, wh.UpdatedAt = whsign.NewSecret(), now
	if err := s.cfg.Webhooks.RotateSecret(r.Context(), wh.ID, wh.PrevSecret, wh.Secret, now, wh.PrevSecretUntil); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, webhookView(wh, true))
	return nil
}

func (s *Server) listDeliveries(w http.ResponseWriter, r *http.Request) error {
	wh, err := s.ownWebhook(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	limit := 50
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 500 {
			return lull.ParamError("limit", "'limit' must be an integer between 1 and 500.")
		}
		limit = n // a page holds at most 100; has_more and ?after= go on
	}
	after := q.Get("after")
	if after != "" && !lull.ValidID("dlv", after) {
		return lull.ParamError("after", "No delivery found with id '%s'.", after)
	}
	ds, next, err := s.cfg.Webhooks.ListDeliveries(r.Context(), wh.ID, after, limit)
	if err != nil {
		return err
	}
	page := Page[DeliveryView]{Object: "list", Data: make([]DeliveryView, 0, len(ds))}
	for _, d := range ds {
		page.Data = append(page.Data, deliveryView(d))
	}
	page.cursor(next, func(i int) string { return ds[i].ID })
	writeJSON(w, http.StatusOK, page)
	return nil
}

func (s *Server) retryDelivery(w http.ResponseWriter, r *http.Request) error {
	wh, err := s.ownWebhook(r)
	if err != nil {
		return err
	}
	d, err := s.cfg.Webhooks.GetDelivery(r.Context(), wh.ID, r.PathValue("delivery"))
	if err != nil {
		return err
	}
	if wh.Disabled {
		return lull.Errorf(lull.ECONFLICT, "Webhook %s is disabled (%s); register the endpoint again to receive deliveries.", wh.ID, wh.DisabledReason)
	}
	task := lull.DeliveryTask{Event: d.Event(), DeliveryID: d.ID, Attempt: len(d.Attempts) + 1}
	body, err := json.Marshal(task)
	if err != nil {
		return err
	}
	if err := s.cfg.Events.Send(r.Context(), body, d.Tenant, 0); err != nil {
		return err
	}
	d.Status, d.NextAttemptAt, d.Parked = lull.DeliveryPending, s.cfg.Now().UTC(), false
	if err := s.cfg.Webhooks.ReopenDelivery(r.Context(), d); err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, deliveryView(d))
	return nil
}
