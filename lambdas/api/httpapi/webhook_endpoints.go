package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/lull-ai/lull/shared/genview"
	"github.com/lull-ai/lull/shared/lull"
	"github.com/lull-ai/lull/shared/whsign"
)

// EndpointView is OpenAI's webhook endpoint object (the webhook endpoints
// API the OpenAI SDKs call client.webhooks), plus lull's status fields.
// SigningSecret is present only on create and rotate_secret.
type EndpointView struct {
	ID                string   `json:"id"`
	Object            string   `json:"object"`
	Name              string   `json:"name"`
	URL               string   `json:"url"`
	EventTypes        []string `json:"event_types"`
	CreatedAt         int64    `json:"created_at"`
	UpdatedAt         int64    `json:"updated_at"`
	SigningSecret     string   `json:"signing_secret,omitempty"`
	SigningSecretHint string   `json:"signing_secret_hint"`
	Status            string   `json:"status"`
	DisabledReason    *string  `json:"disabled_reason"`
}

// secretHint masks a secret, keeping its prefix and last four characters.
func secretHint(secret string) string {
	if len(secret) <= 10 {
		return "whsec_****"
	}
	return "whsec_****" + secret[len(secret)-4:]
}

func endpointView(w *lull.Webhook, withSecret bool) EndpointView {
	v := EndpointView{ID: w.ID, Object: "webhook_endpoint", Name: w.Description, URL: w.URL, EventTypes: w.Events,
		CreatedAt: w.CreatedAt.Unix(), UpdatedAt: w.CreatedAt.Unix(), SigningSecretHint: secretHint(w.Secret), Status: "enabled"}
	if !w.UpdatedAt.IsZero() {
		v.UpdatedAt = w.UpdatedAt.Unix()
	}
	if v.EventTypes == nil {
		v.EventTypes = lull.EventTypes
	}
	if w.Disabled {
		v.Status, v.DisabledReason = "disabled", &w.DisabledReason
	}
	if withSecret {
		v.SigningSecret = w.Secret
	}
	return v
}

// webhookEndpointRoutes serves OpenAI's webhook endpoints API over the same
// endpoints as /v1/webhooks (which stays, in lull's original shape): the
// delivery log and manual retry are under both.
func (s *Server) webhookEndpointRoutes() {
	s.route("/v1/webhook_endpoints", map[string]handler{http.MethodPost: s.createEndpoint, http.MethodGet: s.listEndpoints})
	s.route("/v1/webhook_endpoints/{id}", map[string]handler{
		http.MethodGet: showWebhook(s, endpointView), http.MethodPost: s.updateEndpoint, http.MethodDelete: s.deleteWebhook})
	s.route("/v1/webhook_endpoints/{id}/rotate_secret", map[string]handler{http.MethodPost: s.rotateEndpointSecret})
	s.route("/v1/webhook_endpoints/{id}/test", map[string]handler{http.MethodPost: s.testEndpoint})
	s.route("/v1/webhook_endpoints/{id}/deliveries", map[string]handler{http.MethodGet: s.listDeliveries})
	s.route("/v1/webhook_endpoints/{id}/deliveries/{delivery}/retry", map[string]handler{http.MethodPost: s.retryDelivery})
	s.route("/v1/webhook_event_types", map[string]handler{http.MethodGet: s.listEventTypes})
}

// endpointBody is the body of create and update.
type endpointBody struct {
	Name       *string  `json:"name"`
	URL        *string  `json:"url"`
	EventTypes []string `json:"event_types"`
}

func (s *Server) readEndpointBody(w http.ResponseWriter, r *http.Request) (endpointBody, error) {
	var in endpointBody
	body, err := s.readBody(w, r)
	if err != nil {
		return in, err
	}
	if err := json.Unmarshal(body, &in); err != nil {
		return in, lull.Errorf(lull.EINVALID, "The body must be a JSON object with 'name', 'url' and 'event_types'.")
	}
	if in.Name != nil && len(*in.Name) > 512 {
		return in, lull.ParamError("name", "'name' is at most 512 characters.")
	}
	for _, e := range in.EventTypes {
		if !slices.Contains(lull.EventTypes, e) {
			return in, lull.ParamError("event_types", "lull does not send events of type %q; it sends %v.", e, lull.EventTypes)
		}
	}
	return in, nil
}

func (s *Server) createEndpoint(w http.ResponseWriter, r *http.Request) error {
	in, err := s.readEndpointBody(w, r)
	if err != nil {
		return err
	}
	switch {
	case in.URL == nil || *in.URL == "":
		return lull.ParamError("url", "Missing required parameter: 'url'.")
	case in.Name == nil || *in.Name == "":
		return lull.ParamError("name", "Missing required parameter: 'name'.")
	case len(in.EventTypes) == 0:
		return lull.ParamError("event_types", "Missing required parameter: 'event_types' (at least one event type).")
	}
	wh, err := s.registerWebhook(r, *in.URL, in.EventTypes, *in.Name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, endpointView(wh, true))
	return nil
}

func (s *Server) listEndpoints(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	limit := 20
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 100 {
			return lull.ParamError("limit", "'limit' must be an integer between 1 and 100.")
		}
		limit = n
	}
	all, err := s.cfg.Webhooks.ListWebhooks(r.Context(), tenant(r))
	if err != nil {
		return err
	}
	if after := q.Get("after"); after != "" {
		i := slices.IndexFunc(all, func(w *lull.Webhook) bool { return w.ID == after })
		if i < 0 {
			return lull.ParamError("after", "No webhook endpoint found with id '%s'.", after)
		}
		all = all[i+1:]
	}
	page := Page[EndpointView]{Object: "list", Data: make([]EndpointView, 0, min(limit, len(all))), HasMore: len(all) > limit}
	for _, wh := range all[:min(limit, len(all))] {
		page.Data = append(page.Data, endpointView(wh, false))
	}
	if n := len(page.Data); n > 0 {
		page.FirstID, page.LastID = &page.Data[0].ID, &page.Data[n-1].ID
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

// updateEndpoint changes any of name, url and event_types (the complete
// new set).
func (s *Server) updateEndpoint(w http.ResponseWriter, r *http.Request) error {
	wh, err := s.ownWebhook(r)
	if err != nil {
		return err
	}
	in, err := s.readEndpointBody(w, r)
	if err != nil {
		return err
	}
	changed := false
	if in.Name != nil && *in.Name != wh.Description {
		wh.Description, changed = *in.Name, true
	}
	if in.URL != nil && *in.URL != wh.URL {
		if err := s.cfg.Guard.CheckURL(r.Context(), *in.URL); err != nil {
			return err
		}
		wh.URL, changed = *in.URL, true
	}
	if in.EventTypes != nil && !slices.Equal(in.EventTypes, wh.Events) {
		wh.Events, changed = in.EventTypes, true
	}
	if changed {
		wh.UpdatedAt = s.cfg.Now().UTC().Truncate(time.Millisecond)
		// Settings only: a rotation or a 410 meanwhile stands.
		if err := s.cfg.Webhooks.EditWebhook(r.Context(), wh); err != nil {
			return err
		}
	}
	writeJSON(w, http.StatusOK, endpointView(wh, false))
	return nil
}

// rotateEndpointSecret makes a new signing secret. As OpenAI's, the old one
// stops at once unless keep_old_secret_active_for_24_hours is true.
func (s *Server) rotateEndpointSecret(w http.ResponseWriter, r *http.Request) error {
	wh, err := s.ownWebhook(r)
	if err != nil {
		return err
	}
	var in struct {
		Keep bool `json:"keep_old_secret_active_for_24_hours"`
	}
	if r.ContentLength != 0 {
		body, err := s.readBody(w, r)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(body, &in); err != nil {
			return lull.Errorf(lull.EINVALID, "The body must be a JSON object with an optional boolean 'keep_old_secret_active_for_24_hours'.")
		}
	}
	now := s.cfg.Now().UTC().Truncate(time.Millisecond)
	old := wh.Secret
	wh.PrevSecret, wh.PrevSecretUntil = "", time.Time{}
	if in.Keep {
		wh.PrevSecret, wh.PrevSecretUntil = wh.Secret, now.Add(RotationGrace)
	}
	wh.Secret, wh.UpdatedAt = whsign.NewSecret(), now
	if err := s.cfg.Webhooks.RotateSecret(r.Context(), wh.ID, old, wh.Secret, now, wh.PrevSecretUntil); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, endpointView(wh, true))
	return nil
}

// TestResult is OpenAI's webhook endpoint test result.
type TestResult struct {
	Object            string `json:"object"`
	EventType         string `json:"event_type"`
	StatusCode        int    `json:"status_code"`
	Success           bool   `json:"success"`
	WebhookEndpointID string `json:"webhook_endpoint_id"`
}

// testEndpoint POSTs a signed sample event of the asked type (OpenAI's
// event shape; data.id a sample ID) and answers the receiver's status.
// Nothing is recorded: the delivery log shows real events only.
func (s *Server) testEndpoint(w http.ResponseWriter, r *http.Request) error {
	wh, err := s.ownWebhook(r)
	if err != nil {
		return err
	}
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	var in struct {
		EventType string `json:"event_type"`
	}
	if err := json.Unmarshal(body, &in); err != nil || in.EventType == "" {
		return lull.ParamError("event_type", "Missing required parameter: 'event_type'.")
	}
	if !slices.Contains(lull.EventTypes, in.EventType) {
		return lull.ParamError("event_type", "lull does not send events of type %q; it sends %v.", in.EventType, lull.EventTypes)
	}
	now := s.cfg.Now().UTC()
	sample := lull.Event{ID: lull.NewID("evt"), Type: in.EventType, Tenant: wh.Tenant, CreatedAt: now,
		GenerationID: lull.NewID("gen"), BatchID: lull.NewID("batch")}
	var payload []byte
	if genview.OpenAIShaped(in.EventType) {
		payload, err = json.Marshal(genview.Event(sample))
	} else {
		payload, err = json.Marshal(map[string]any{"type": in.EventType, "timestamp": now, "test": true,
			"data": map[string]string{"id": sample.GenerationID}})
	}
	if err != nil {
		return err
	}
	prev := ""
	if now.Before(wh.PrevSecretUntil) {
		prev = wh.PrevSecret
	}
	res, err := whsign.Post(r.Context(), s.cfg.Guard.Client(10*time.Second), wh.URL, sample.ID, now, payload, wh.Secret, prev)
	if err != nil {
		return lull.Errorf(lull.EINVALID, "The test event could not be delivered to %s: %s", wh.URL, fmt.Sprint(err))
	}
	writeJSON(w, http.StatusOK, TestResult{Object: "webhook_endpoint.test", EventType: in.EventType, StatusCode: res.Status,
		Success: true, WebhookEndpointID: wh.ID})
	return nil
}

func (s *Server) listEventTypes(w http.ResponseWriter, _ *http.Request) error {
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": lull.EventTypes})
	return nil
}
