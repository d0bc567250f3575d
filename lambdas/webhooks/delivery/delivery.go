// Package delivery is the webhook fan-out Lambda's logic: for each event on
// the events queue it finds the endpoints to notify, POSTs the signed
// payload, records every attempt, and schedules retries on the Standard
// Webhooks schedule through SQS message delays (never a sleeping Lambda).
package delivery

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/lull-ai/lull/shared/genview"
	"github.com/lull-ai/lull/shared/lull"
	"github.com/lull-ai/lull/shared/whsign"
)

// Schedule is the Standard Webhooks retry schedule: the delays before the
// 2nd, 3rd, … attempt (the 1st is immediate); ten attempts over about 4 days
// in total, the last a day after the one before.
var Schedule = []time.Duration{5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour,
	5 * time.Hour, 10 * time.Hour, 14 * time.Hour, 20 * time.Hour, 24 * time.Hour}

// maxDelay is the longest SQS DelaySeconds; longer waits park the delivery
// for the scaler's sweep (Webhooks.DueDeliveries).
const maxDelay = 15 * time.Minute

// Config wires a Handler to its dependencies. Webhooks, Generations, Blobs,
// Events, Client and Logger are required; zero values of the others take
// the defaults noted.
type Config struct {
	Webhooks    lull.Webhooks
	Generations lull.Generations
	// Batches loads batches for batch.* payloads; nil when the Batch API is off.
	Batches lull.Batches
	// Lines counts batch lines. A batch line's generation event is counted,
	// never delivered: webhooks hear of a batch once, when it ends, as with
	// OpenAI. Nil drops such events.
	Lines  lull.LineCounter
	Blobs  lull.Blobs
	Events lull.Sender // the events queue, for scheduled retries
	// Client posts to endpoints; it should dial through the SSRF guard
	// (netguard.Guard.Client).
	Client *http.Client
	Logger *slog.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// TimeScale multiplies the retry schedule and Retry-After waits (tests
	// and demos run it faster); 1 when zero.
	TimeScale float64
	// MaxPayloadBytes bounds the payload; a larger generation is sent
	// without request and response, with a link to fetch it. 256 KiB when zero.
	MaxPayloadBytes int
	// PublicURL is the API's base URL for those links.
	PublicURL string
}

func (c *Config) withDefaults() {
	if c.Now == nil {
		c.Now = time.Now
	}
	c.TimeScale = cmp.Or(c.TimeScale, 1)
	c.MaxPayloadBytes = cmp.Or(c.MaxPayloadBytes, 256<<10)
}

func (c *Config) validate() error {
	var errs []error
	for _, f := range []struct {
		name    string
		missing bool
	}{
		{"Webhooks", c.Webhooks == nil}, {"Generations", c.Generations == nil}, {"Blobs", c.Blobs == nil},
		{"Events", c.Events == nil}, {"Client", c.Client == nil}, {"Logger", c.Logger == nil},
	} {
		if f.missing {
			errs = append(errs, fmt.Errorf("missing %s", f.name))
		}
	}
	if c.TimeScale < 0 {
		errs = append(errs, fmt.Errorf("TimeScale %v is negative", c.TimeScale))
	}
	if c.MaxPayloadBytes < 0 {
		errs = append(errs, fmt.Errorf("MaxPayloadBytes %d is negative", c.MaxPayloadBytes))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("delivery: config: %w", err)
	}
	return nil
}

// Handler delivers events. Build it with New.
type Handler struct {
	Config
}

// New returns a Handler with cfg's defaults applied, or an error naming
// every missing dependency.
func New(cfg Config) (*Handler, error) {
	cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Handler{Config: cfg}, nil
}

// Handle processes a batch, its records concurrently (a slow endpoint does
// not hold up the others); records that hit storage or queue errors are
// reported as batch item failures so SQS redelivers them.
func (h *Handler) Handle(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
	var resp events.SQSEventResponse
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, rec := range ev.Records {
		wg.Go(func() {
			if err := h.process(ctx, rec.Body); err != nil {
				h.Logger.WarnContext(ctx, "event not processed; will retry", "message_id", rec.MessageId, "err", err)
				mu.Lock()
				resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: rec.MessageId})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return resp, nil
}

func (h *Handler) scale(d time.Duration) time.Duration {
	if h.TimeScale == 1 {
		return d
	}
	return time.Duration(float64(d) * h.TimeScale)
}

func (h *Handler) process(ctx context.Context, body string) error {
	var t lull.DeliveryTask
	if err := json.Unmarshal([]byte(body), &t); err != nil || t.ID == "" || t.Tenant == "" {
		h.Logger.ErrorContext(ctx, "malformed event dropped", "err", err)
		return nil
	}
	now := h.Now()
	if wait := t.DueAt.Sub(now); wait > 0 {
		return h.send(ctx, t, wait) // not due yet: hop again
	}
	if t.DeliveryID == "" && t.BatchID != "" && t.GenerationID != "" {
		if h.Lines == nil {
			return nil
		}
		return h.Lines.LineDone(ctx, t.Event)
	}
	if t.DeliveryID != "" {
		w, err := h.Webhooks.GetWebhook(ctx, t.WebhookID)
		if lull.IsNotFound(err) {
			return nil // endpoint deleted since
		}
		if err != nil {
			return err
		}
		d, err := h.Webhooks.GetDelivery(ctx, w.ID, t.DeliveryID)
		if lull.IsNotFound(err) {
			d = h.newDelivery(t.Event, w)
		} else if err != nil {
			return err
		}
		if d.Status != lull.DeliveryPending {
			return nil // finished meanwhile
		}
		if len(d.Attempts) >= max(t.Attempt, 1) {
			// This attempt was made. Dropping the task is right only if the
			// next one was scheduled: a handler that failed or died between
			// recording the attempt and scheduling the next left this task
			// to be redelivered, and it must carry the chain on.
			return h.resume(ctx, w, d, t.Event)
		}
		return h.attempt(ctx, w, d, t.Event, max(t.Attempt, 1))
	}
	targets, err := h.targets(ctx, t.Event)
	if err != nil {
		return err
	}
	var errs []error
	for _, w := range targets {
		d := h.newDelivery(t.Event, w)
		created, err := h.Webhooks.CreateDelivery(ctx, d)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !created {
			// A re-announced or redelivered event. Carry on only if the
			// earlier handler stopped before a retry was scheduled; otherwise
			// the delivery is done or its next attempt is on the queue.
			prior, err := h.Webhooks.GetDelivery(ctx, w.ID, d.ID)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if prior.Status != lull.DeliveryPending {
				continue
			}
			if len(prior.Attempts) > 0 {
				errs = append(errs, h.resume(ctx, w, prior, t.Event))
				continue
			}
			errs = append(errs, h.attempt(ctx, w, prior, t.Event, 1))
			continue
		}
		errs = append(errs, h.attempt(ctx, w, d, t.Event, 1))
	}
	return errors.Join(errs...)
}

// targets returns the endpoints that should receive ev: the one named by the
// generation's metadata.webhook_id, else every enabled endpoint of the
// tenant subscribed to the event type.
func (h *Handler) targets(ctx context.Context, ev lull.Event) ([]*lull.Webhook, error) {
	if ev.WebhookID != "" {
		w, err := h.Webhooks.GetWebhook(ctx, ev.WebhookID)
		if lull.IsNotFound(err) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		if w.Tenant != ev.Tenant || !w.Wants(ev.Type) {
			return nil, nil
		}
		return []*lull.Webhook{w}, nil
	}
	all, err := h.Webhooks.ListWebhooks(ctx, ev.Tenant)
	if err != nil {
		return nil, err
	}
	var out []*lull.Webhook
	for _, w := range all {
		if w.Wants(ev.Type) {
			out = append(out, w)
		}
	}
	return out, nil
}

// deliveryID is stable for an event and an endpoint, so re-announcing an
// event does not start a second delivery.
func deliveryID(eventID, webhookID string) string {
	sum := sha256.Sum256([]byte(eventID + "|" + webhookID))
	return "dlv_" + strings.ToLower(base32.StdEncoding.EncodeToString(sum[:])[:26])
}

func (h *Handler) newDelivery(ev lull.Event, w *lull.Webhook) *lull.Delivery {
	now := h.Now().UTC()
	return &lull.Delivery{ID: deliveryID(ev.ID, w.ID), WebhookID: w.ID, Tenant: ev.Tenant, EventID: ev.ID,
		EventType: ev.Type, GenerationID: ev.GenerationID, BatchID: ev.BatchID, EventAt: ev.CreatedAt,
		Status: lull.DeliveryPending, CreatedAt: now, UpdatedAt: now}
}

// Payload is the JSON body POSTed to endpoints.
type Payload struct {
	Type      string          `json:"type"`
	Timestamp time.Time       `json:"timestamp"`
	Data      json.RawMessage `json:"data"`
}

func (h *Handler) payload(ctx context.Context, ev lull.Event) ([]byte, error) {
	if genview.OpenAIShaped(ev.Type) {
		return json.Marshal(genview.Event(ev))
	}
	limit := h.MaxPayloadBytes
	var data any = map[string]string{"id": ev.GenerationID}
	if ev.GenerationID == "" && ev.BatchID != "" && h.Batches != nil {
		b, err := h.Batches.GetBatch(ctx, ev.BatchID)
		if err != nil {
			return nil, err
		}
		data = genview.Batch(b)
	}
	if ev.GenerationID != "" {
		g, err := h.Generations.Get(ctx, ev.GenerationID)
		if err != nil {
			return nil, err
		}
		type linked struct {
			genview.View
			ResponseURL string `json:"response_url"`
		}
		link := linked{View: genview.Of(g), ResponseURL: strings.TrimRight(h.PublicURL, "/") + "/v1/generation/" + g.ID}
		// Decide on the size before loading anything: a response can be as
		// large as the engine allows, and loading it for every event of an
		// SQS batch at once could exhaust the Lambda's memory.
		big, err := h.tooLarge(ctx, g, int64(limit))
		if err != nil {
			return nil, err
		}
		if big {
			data = link
		} else {
			full, err := genview.Full(ctx, h.Blobs, g)
			if err != nil {
				return nil, err
			}
			data = full
			if b, _ := json.Marshal(full); len(b) > limit {
				data = link
			}
		}
	}
	raw, err := json.Marshal(data)
	if err != nil {
		return nil, err
	}
	return json.Marshal(Payload{Type: ev.Type, Timestamp: ev.CreatedAt, Data: raw})
}

// tooLarge reports whether g's response alone exceeds limit: from the size
// recorded at completion or, for generations finished before sizes were
// recorded, by reading at most limit bytes of it.
func (h *Handler) tooLarge(ctx context.Context, g *lull.Generation, limit int64) (bool, error) {
	if g.Status != lull.StatusCompleted || g.ResponseKey == "" {
		return false, nil
	}
	if g.ResponseBytes > 0 {
		return g.ResponseBytes > limit, nil
	}
	r, err := h.Blobs.Open(ctx, g.ResponseKey)
	if err != nil {
		return false, err
	}
	defer r.Close()
	n, err := io.CopyN(io.Discard, r, limit+1)
	if err != nil && err != io.EOF {
		return false, fmt.Errorf("delivery: measure response of %s: %w", g.ID, err)
	}
	return n > limit, nil
}

// attempt makes attempt n of delivery d and schedules what follows.
func (h *Handler) attempt(ctx context.Context, w *lull.Webhook, d *lull.Delivery, ev lull.Event, n int) error {
	log := h.Logger.With("webhook_id", w.ID, "delivery_id", d.ID, "event_id", ev.ID, "tenant", ev.Tenant, "attempt", n)
	now := h.Now().UTC()
	if w.Disabled {
		d.Status, d.UpdatedAt = lull.DeliveryFailed, now
		log.InfoContext(ctx, "endpoint disabled; delivery dropped")
		return h.Webhooks.SaveDelivery(ctx, d)
	}
	body, err := h.payload(ctx, ev)
	if err != nil {
		return err
	}
	code, retryAfter, latency, postErr := h.post(ctx, w, ev.ID, now, body)
	a := lull.Attempt{N: n, At: now, StatusCode: code, Latency: latency}
	if postErr != nil {
		a.Error = postErr.Error()
	} else if code < 200 || code > 299 {
		a.Error = fmt.Sprintf("endpoint answered %d", code)
	}
	if err := h.Webhooks.AddAttempt(ctx, w.ID, d.ID, a); err != nil {
		return err
	}
	d.Attempts = append(d.Attempts, a)
	return h.conclude(ctx, log, w, d, ev, a, retryAfter)
}

// resume carries on a pending delivery whose last recorded attempt may not
// have been followed up (its handler failed or died after recording it):
// unless the next attempt is scheduled already, it concludes that attempt
// again — succeeded, failed for good, or the next one scheduled.
func (h *Handler) resume(ctx context.Context, w *lull.Webhook, d *lull.Delivery, ev lull.Event) error {
	last := d.Attempts[0]
	for _, a := range d.Attempts {
		if a.N > last.N {
			last = a
		}
	}
	if d.NextAttemptAt.After(last.At) {
		return nil // the next attempt is on the queue
	}
	log := h.Logger.With("webhook_id", w.ID, "delivery_id", d.ID, "event_id", ev.ID, "tenant", ev.Tenant, "attempt", last.N)
	log.InfoContext(ctx, "webhook attempt recorded but not followed up; resuming")
	return h.conclude(ctx, log, w, d, ev, last, 0)
}

// conclude records what follows attempt a of d: success, failure for good
// (410, or the schedule exhausted), or the next attempt scheduled.
func (h *Handler) conclude(ctx context.Context, log *slog.Logger, w *lull.Webhook, d *lull.Delivery, ev lull.Event, a lull.Attempt, retryAfter time.Duration) error {
	now := h.Now().UTC()
	code, n := a.StatusCode, a.N
	d.UpdatedAt, d.NextAttemptAt, d.Parked = now, time.Time{}, false
	switch {
	case a.Error == "":
		d.Status = lull.DeliverySucceeded
		log.InfoContext(ctx, "webhook delivered", "status", code, "latency_ms", a.Latency.Milliseconds())
	case code == http.StatusGone:
		d.Status = lull.DeliveryFailed
		// Only the disabled flag is written: w may be stale (a secret rotated
		// while this attempt ran must stand).
		if err := h.Webhooks.DisableWebhook(ctx, w.ID, "The endpoint answered 410 Gone on "+now.Format(time.RFC3339)+"."); err != nil && !lull.IsNotFound(err) {
			return err
		}
		log.WarnContext(ctx, "endpoint answered 410; disabled")
	case n > len(Schedule):
		d.Status = lull.DeliveryFailed
		log.WarnContext(ctx, "webhook delivery failed for good", "err", a.Error)
	default:
		wait := Schedule[n-1]
		wait += time.Duration(rand.Int64N(int64(wait)/10 + 1)) // jitter up to +10%
		wait = h.scale(wait)
		if retryAfter > 0 && (code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable) {
			wait = h.scale(min(retryAfter, 24*time.Hour))
		}
		d.Status, d.NextAttemptAt = lull.DeliveryPending, now.Add(wait)
		log.InfoContext(ctx, "webhook attempt failed; retry scheduled", "err", a.Error, "retry_in", wait.String())
		if wait > maxDelay {
			// Longer than a message can wait: park the delivery; the
			// scaler's sweep queues this attempt when it is due (one
			// message, where hopping through the queue took one per 15
			// minutes: ~300 for a failing endpoint's whole schedule).
			d.Parked = true
			return h.Webhooks.SaveDelivery(ctx, d)
		}
		// Schedule first: if that fails, the event is redelivered and, the
		// delivery showing no scheduled retry, attempted again.
		if err := h.send(ctx, lull.DeliveryTask{Event: withWebhook(ev, w.ID), DeliveryID: d.ID, Attempt: n + 1, DueAt: d.NextAttemptAt}, wait); err != nil {
			return err
		}
		return h.Webhooks.SaveDelivery(ctx, d)
	}
	return h.Webhooks.SaveDelivery(ctx, d)
}

func withWebhook(ev lull.Event, id string) lull.Event { ev.WebhookID = id; return ev }

// send puts t on the events queue, visible after min(wait, 15 min). SQS
// delays are whole seconds: wait is rounded up, so the task never arrives
// before it is due (rounded down, a remainder under a second would hop
// through the queue with no delay until it passed).
func (h *Handler) send(ctx context.Context, t lull.DeliveryTask, wait time.Duration) error {
	body, err := json.Marshal(t)
	if err != nil {
		return err
	}
	if r := wait % time.Second; r > 0 {
		wait += time.Second - r
	}
	return h.Events.Send(ctx, body, t.Tenant, min(wait, maxDelay))
}

// post sends one signed request; it returns the status (0 if none), the
// Retry-After wait, the latency and a transport error.
func (h *Handler) post(ctx context.Context, w *lull.Webhook, id string, now time.Time, body []byte) (code int, retryAfter, latency time.Duration, err error) {
	prev := ""
	if now.Before(w.PrevSecretUntil) {
		prev = w.PrevSecret
	}
	res, err := whsign.Post(ctx, h.Client, w.URL, id, now, body, w.Secret, prev)
	return res.Status, res.RetryAfter, res.Latency, err
}
