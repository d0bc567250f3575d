package httpapi

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/lull-ai/lull/shared/dispatch"
	"github.com/lull-ai/lull/shared/genview"
	"github.com/lull-ai/lull/shared/lull"
	"github.com/lull-ai/lull/shared/request"
)

// Accepted is the body returned when a slow request is accepted. It parses
// as the endpoint's normal response object (OpenAI SDKs accept it), with no
// choices yet, plus lull's status fields.
type Accepted struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	Model   string `json:"model"`
	// Choices is present (empty) for chat and completions, Data (empty)
	// for embeddings.
	Choices   *[]any `json:"choices,omitempty"`
	Data      *[]any `json:"data,omitempty"`
	Status    string `json:"status"`
	ExpiresAt int64  `json:"expires_at"`
}

// acceptedOf is the Accepted body for g.
func acceptedOf(g *lull.Generation) Accepted {
	a := Accepted{ID: g.ID, Object: g.Endpoint.Object(), Created: g.CreatedAt.Unix(), Model: g.Model,
		Status: string(g.Status), ExpiresAt: g.ExpiresAt.Unix()}
	empty := []any{}
	if g.Endpoint == lull.EndpointEmbeddings {
		a.Data = &empty
	} else {
		a.Choices = &empty
	}
	return a
}

// accept returns the handler of POST /v1/slow/<endpoint>.
func (s *Server) accept(e lull.Endpoint) handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		g, err := s.acceptGeneration(w, r, e, nil)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusAccepted, acceptedOf(g))
		return nil
	}
}

// acceptGeneration validates and stores a slow request to endpoint e (also
// checked by check, when set) and queues it; it returns the stored
// generation, which an idempotent replay finds rather than creates.
func (s *Server) acceptGeneration(w http.ResponseWriter, r *http.Request, e lull.Endpoint, check func(*request.Body) error) (*lull.Generation, error) {
	body, err := s.readBody(w, r)
	if err != nil {
		return nil, err
	}
	req, err := s.validate(e, body)
	if err != nil {
		return nil, err
	}
	meta := req.Metadata
	if check != nil {
		if err := check(req); err != nil {
			return nil, err
		}
	}
	if id := meta["webhook_id"]; id != "" {
		if err := s.checkWebhookRef(r, id); err != nil {
			return nil, err
		}
	}
	win, err := s.window(r.Header.Get("X-Lull-Completion-Window"))
	if err != nil {
		return nil, err
	}
	idem := r.Header.Get("Idempotency-Key")
	if len(idem) > 255 {
		return nil, lull.ParamError("Idempotency-Key", "Idempotency-Key must be at most 255 characters.")
	}
	now := s.cfg.Now().UTC().Truncate(time.Millisecond)
	t := tenant(r)
	g := &lull.Generation{
		ID: lull.NewID("gen"), Tenant: t, Model: req.Model, Endpoint: e, Status: lull.StatusQueued,
		CreatedAt: now, ExpiresAt: now.Add(win), WebhookID: meta["webhook_id"], IdempotencyKey: idem,
	}
	// What is stored, and later forwarded, is the validated request
	// re-encoded, never the client's bytes.
	if len(req.Canonical) <= s.cfg.InlineLimit {
		g.Request = req.Canonical
	} else {
		g.RequestKey = lull.InputKey(t, g.ID)
		if err := s.cfg.Blobs.Put(r.Context(), g.RequestKey, req.Canonical, "application/json"); err != nil {
			return nil, err
		}
	}
	fingerprint := lull.Fingerprint(string(e), string(body), r.Header.Get("X-Lull-Completion-Window"))
	stored, created, err := s.cfg.Generations.Create(r.Context(), g, fingerprint)
	if err != nil {
		return nil, err
	}
	log := s.cfg.Logger.With("request_id", requestID(r.Context()), "tenant", t, "generation_id", stored.ID)
	if created {
		// The generation is stored: from here on it is accepted. A failed
		// send is retried by the sweeper, so it only warns.
		if err := dispatch.Enqueue(r.Context(), s.cfg.Generations, s.cfg.Queues[g.Model], g); err != nil {
			log.WarnContext(r.Context(), "enqueue failed; the sweeper will retry", "err", err)
		}
		log.InfoContext(r.Context(), "generation accepted", "model", g.Model, "endpoint", string(e), "window", win.String())
	} else {
		log.InfoContext(r.Context(), "idempotent replay", "idempotency_key", idem)
	}
	return stored, nil
}

// own returns the caller's object with ID id (made by lull.NewID(prefix)),
// loaded by get, or ENOTFOUND with notFound's message for a malformed,
// missing or foreign ID: other tenants' IDs are indistinguishable from
// missing ones, and malformed ones never reach storage.
func own[T any](r *http.Request, prefix, id, notFound string, get func(context.Context, string) (T, error), tenantOf func(T) string) (T, error) {
	var zero T
	if !lull.ValidID(prefix, id) {
		return zero, lull.Errorf(lull.ENOTFOUND, "%s", notFound)
	}
	v, err := get(r.Context(), id)
	if lull.IsNotFound(err) || (err == nil && tenantOf(v) != tenant(r)) {
		return zero, lull.Errorf(lull.ENOTFOUND, "%s", notFound)
	}
	return v, err
}

// ownGeneration returns the caller's generation named in the path.
func (s *Server) ownGeneration(r *http.Request) (*lull.Generation, error) {
	id := r.PathValue("id")
	return own(r, "gen", id, fmt.Sprintf("No generation found with id '%s'.", id), s.cfg.Generations.Get,
		func(g *lull.Generation) string { return g.Tenant })
}

func (s *Server) getGeneration(w http.ResponseWriter, r *http.Request) error {
	g, err := s.ownGeneration(r)
	if err != nil {
		return err
	}
	large, err := s.largeResponse(r.Context(), g)
	if err != nil {
		return err
	}
	if large {
		return s.redirectView(w, r, g)
	}
	v, err := genview.Full(r.Context(), s.cfg.Blobs, g)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

func (s *Server) cancelGeneration(w http.ResponseWriter, r *http.Request) error {
	g, err := s.ownGeneration(r)
	if err != nil {
		return err
	}
	// A batch line cancelled on its own is announced so that its batch
	// counts it (and the sweep announces it if this process dies first).
	line := g.BatchID != ""
	done, err := s.cfg.Generations.Finish(r.Context(), g.ID, lull.StatusCancelled, lull.Outcome{At: s.cfg.Now().UTC(), Announce: line})
	if lull.IsConflict(err) {
		cur, gerr := s.cfg.Generations.Get(r.Context(), g.ID)
		if gerr != nil {
			return gerr
		}
		return lull.Errorf(lull.ECONFLICT, "Generation %s cannot be cancelled: its status is %s (only queued generations can be cancelled).", g.ID, cur.Status)
	}
	if err != nil {
		return err
	}
	log := s.cfg.Logger.With("request_id", requestID(r.Context()), "tenant", g.Tenant, "generation_id", g.ID)
	if line {
		if err := dispatch.AnnounceFinished(r.Context(), s.cfg.Generations, s.cfg.Events, done); err != nil {
			log.WarnContext(r.Context(), "cancelled batch line not announced; the sweeper will", "batch_id", g.BatchID, "err", err)
		}
	}
	log.InfoContext(r.Context(), "generation cancelled")
	writeJSON(w, http.StatusOK, genview.Of(done))
	return nil
}

// Page is an OpenAI-style list page.
type Page[T any] struct {
	Object  string  `json:"object"`
	Data    []T     `json:"data"`
	FirstID *string `json:"first_id"`
	LastID  *string `json:"last_id"`
	HasMore bool    `json:"has_more"`
}

// cursor fills FirstID, LastID and HasMore from the store's continuation
// cursor next ("" at the end) and the ID of data item i. LastID is the last
// item's ID, as OpenAI's; a page left empty by a bounded read that goes on
// carries the store's cursor there instead, for ?after=.
func (p *Page[T]) cursor(next string, id func(i int) string) {
	p.HasMore = next != ""
	if n := len(p.Data); n > 0 {
		first, last := id(0), id(n-1)
		p.FirstID, p.LastID = &first, &last
	} else if p.HasMore {
		p.LastID = &next
	}
}

func (s *Server) listGenerations(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	opts := lull.ListOptions{Limit: 20, After: q.Get("after"), Status: lull.Status(q.Get("status"))}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 100 {
			return lull.ParamError("limit", "'limit' must be an integer between 1 and 100.")
		}
		opts.Limit = n
	}
	if opts.Status != "" && !opts.Status.Valid() {
		return lull.ParamError("status", "Invalid status %q.", opts.Status)
	}
	if opts.After != "" && !lull.ValidID("gen", opts.After) {
		return lull.ParamError("after", "No generation found with id '%s'.", opts.After)
	}
	gens, next, err := s.cfg.Generations.List(r.Context(), tenant(r), opts)
	if err != nil {
		return err
	}
	page := Page[genview.View]{Object: "list", Data: make([]genview.View, 0, len(gens))}
	for _, g := range gens {
		page.Data = append(page.Data, genview.Of(g))
	}
	page.cursor(next, func(i int) string { return gens[i].ID })
	writeJSON(w, http.StatusOK, page)
	return nil
}

// Model is an entry of GET /v1/models.
type Model struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
	// Task is lull's: "generate" (chat, completions, responses) or "embed"
	// (embeddings).
	Task lull.Task `json:"task"`
	// Endpoints are the paths the model answers.
	Endpoints []string `json:"endpoints"`
}

func (s *Server) listModels(w http.ResponseWriter, r *http.Request) error {
	page := Page[Model]{Object: "list", Data: []Model{}}
	for _, m := range s.models {
		task := cmp.Or(s.cfg.Tasks[m], lull.TaskGenerate)
		var paths []string
		for _, e := range lull.Endpoints {
			if task.Serves(e) {
				paths = append(paths, e.Path())
			}
		}
		page.Data = append(page.Data, Model{ID: m, Object: "model", OwnedBy: "lull", Task: task, Endpoints: paths})
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

// checkWebhookRef refuses a metadata.webhook_id that is not one of the
// caller's enabled endpoints.
func (s *Server) checkWebhookRef(r *http.Request, id string) error {
	bad := lull.ParamError("metadata.webhook_id", "No webhook found with id '%s'.", id)
	if s.cfg.Webhooks == nil || !lull.ValidID("wh", id) {
		return bad
	}
	wh, err := s.cfg.Webhooks.GetWebhook(r.Context(), id)
	if lull.IsNotFound(err) || (err == nil && wh.Tenant != tenant(r)) {
		return bad
	}
	if err != nil {
		return err
	}
	if wh.Disabled {
		return lull.ParamError("metadata.webhook_id", "Webhook '%s' is disabled: %s", id, wh.DisabledReason)
	}
	return nil
}

// largeResponse reports whether g's response is larger than a Lambda
// response may carry inline (ViewInlineLimit), without loading it: from the
// size recorded at completion, or, for generations finished before sizes
// were recorded, by reading at most the limit.
func (s *Server) largeResponse(ctx context.Context, g *lull.Generation) (bool, error) {
	if g.Status != lull.StatusCompleted || g.ResponseKey == "" {
		return false, nil
	}
	if g.ResponseBytes > 0 {
		return g.ResponseBytes > s.cfg.ViewInlineLimit, nil
	}
	body, err := s.cfg.Blobs.Open(ctx, g.ResponseKey)
	if err != nil {
		return false, err
	}
	defer body.Close()
	n, err := io.CopyN(io.Discard, body, s.cfg.ViewInlineLimit+1)
	if err != nil && err != io.EOF {
		return false, fmt.Errorf("httpapi: measure response of %s: %w", g.ID, err)
	}
	return n > s.cfg.ViewInlineLimit, nil
}

// responsePlaceholder stands for the response in a view marshalled before
// the response is streamed into its place.
const responsePlaceholder = `"lull:response-streamed-here:7f3c9a"`

// redirectView answers GET /v1/generation/{id} for a generation whose
// response is too large for a Lambda response: the same JSON object is
// written to the blob store, streamed (the response is never held in
// memory), and the client is redirected to a presigned URL of it, valid 15
// minutes. HTTP clients and the OpenAI SDKs follow the redirect.
func (s *Server) redirectView(w http.ResponseWriter, r *http.Request, g *lull.Generation) error {
	v := genview.Of(g)
	v.Request = g.Request
	if g.RequestKey != "" {
		body, err := s.cfg.Blobs.Get(r.Context(), g.RequestKey)
		if err != nil {
			return err
		}
		v.Request = body
	}
	v.Response = json.RawMessage(responsePlaceholder)
	head, err := json.Marshal(v)
	if err != nil {
		return err
	}
	before, after, ok := bytes.Cut(head, []byte(responsePlaceholder))
	if !ok {
		return fmt.Errorf("httpapi: view of %s lost its response placeholder", g.ID)
	}
	resp, err := s.cfg.Blobs.Open(r.Context(), g.ResponseKey)
	if err != nil {
		return err
	}
	defer resp.Close()
	key := fmt.Sprintf("outputs/%s/%s/view.json", g.Tenant, g.ID)
	body := io.MultiReader(bytes.NewReader(before), resp, bytes.NewReader(after))
	if _, err := s.cfg.Blobs.PutStream(r.Context(), key, body, "application/json"); err != nil {
		return err
	}
	url, err := s.cfg.Blobs.PresignGet(r.Context(), key, 15*time.Minute)
	if err != nil {
		return err
	}
	http.Redirect(w, r, url, http.StatusFound)
	return nil
}
