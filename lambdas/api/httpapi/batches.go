package httpapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/lull-ai/lull/shared/dispatch"
	"github.com/lull-ai/lull/shared/genview"
	"github.com/lull-ai/lull/shared/lull"
	"github.com/lull-ai/lull/shared/request"
)

// The Batch API, wire-compatible with OpenAI's: a batch runs every line of a
// JSONL input file as a generation on the same queues as slow requests.

func (s *Server) batchRoutes() {
	s.route("/v1/batches", map[string]handler{http.MethodPost: s.createBatch, http.MethodGet: s.listBatches})
	s.route("/v1/batches/{id}", map[string]handler{http.MethodGet: s.getBatch})
	s.route("/v1/batches/{id}/cancel", map[string]handler{http.MethodPost: s.cancelBatch})
}

func (s *Server) createBatch(w http.ResponseWriter, r *http.Request) error {
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	var req struct {
		InputFileID      string            `json:"input_file_id"`
		Endpoint         string            `json:"endpoint"`
		CompletionWindow string            `json:"completion_window"`
		Metadata         map[string]string `json:"metadata"`
		// OutputExpiresAfter is OpenAI's output_expires_after.
		OutputExpiresAfter *struct {
			Anchor  string          `json:"anchor"`
			Seconds json.RawMessage `json:"seconds"`
		} `json:"output_expires_after"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) && typeErr.Field != "" {
			return lull.ParamError(typeErr.Field, "Invalid type for '%s': expected %s.", typeErr.Field, typeErr.Type)
		}
		return lull.Errorf(lull.EINVALID, "We could not parse the JSON body of your request.")
	}
	if req.InputFileID == "" {
		return lull.ParamError("input_file_id", "Missing required parameter: 'input_file_id'.")
	}
	e, ok := lull.EndpointFromPath(req.Endpoint)
	if !ok {
		return lull.ParamError("endpoint", "Invalid endpoint %q: supported are /v1/chat/completions, /v1/completions, /v1/embeddings and /v1/responses.", req.Endpoint)
	}
	if req.CompletionWindow == "" {
		return lull.ParamError("completion_window", "Missing required parameter: 'completion_window'.")
	}
	win, err := s.window(req.CompletionWindow)
	if err != nil {
		var le *lull.Error
		if errors.As(err, &le) {
			le.Param = "completion_window"
			le.Message = strings.ReplaceAll(le.Message, "completion window", "completion_window")
		}
		return err
	}
	if err := request.CheckMetadata(req.Metadata); err != nil {
		return err
	}
	var outputExpiresAfter time.Duration
	if oe := req.OutputExpiresAfter; oe != nil {
		secs := string(oe.Seconds)
		if secs == "" {
			secs = "missing"
		}
		if outputExpiresAfter, err = parseExpiresAfter("output_expires_after", oe.Anchor, secs); err != nil {
			return err
		}
	}
	if id := req.Metadata["webhook_id"]; id != "" {
		if err := s.checkWebhookRef(r, id); err != nil {
			return err
		}
	}
	f, err := s.ownFile(r, req.InputFileID)
	if lull.IsNotFound(err) {
		return lull.ParamError("input_file_id", "No such File object: %s", req.InputFileID)
	}
	if err != nil {
		return err
	}
	if f.Purpose != lull.PurposeBatch {
		return lull.ParamError("input_file_id", "File %s has purpose %q; a batch reads a file uploaded with purpose 'batch'.", f.ID, f.Purpose)
	}
	now := s.cfg.Now().UTC().Truncate(1e6)
	b := &lull.Batch{
		ID: lull.NewID("batch"), Tenant: tenant(r), Endpoint: e, InputFileID: f.ID, CompletionWindow: req.CompletionWindow,
		Status: lull.BatchValidating, Metadata: req.Metadata, WebhookID: req.Metadata["webhook_id"],
		CreatedAt: now, ExpiresAt: now.Add(win), OutputExpiresAfter: outputExpiresAfter,
	}
	idem := r.Header.Get("Idempotency-Key")
	if len(idem) > 255 {
		return lull.ParamError("Idempotency-Key", "Idempotency-Key must be at most 255 characters.")
	}
	if idem == "" {
		err = s.cfg.Batches.CreateBatch(r.Context(), b)
	} else {
		var created bool
		if b, created, err = s.cfg.Batches.CreateBatchOnce(r.Context(), b, idem, lull.Fingerprint("batch", string(body))); err == nil && !created {
			// A retried create: the same batch. Its split job is sent again
			// only if it may never have left (the batch is still
			// validating); a second delivery of that job is harmless.
			s.cfg.Logger.InfoContext(r.Context(), "idempotent replay", "request_id", requestID(r.Context()),
				"tenant", b.Tenant, "batch_id", b.ID, "idempotency_key", idem)
			if b.Status == lull.BatchValidating {
				if err := dispatch.SendBatchJob(r.Context(), s.cfg.BatchQueue, lull.BatchJobSplit, b); err != nil {
					return &lull.Error{Code: lull.EUNAVAILABLE, Message: "The batch could not be queued; retry with the same Idempotency-Key.", Err: err}
				}
			}
			writeJSON(w, http.StatusOK, genview.Batch(b))
			return nil
		}
	}
	if err != nil {
		return err
	}
	log := s.cfg.Logger.With("request_id", requestID(r.Context()), "tenant", b.Tenant, "batch_id", b.ID)
	if err := dispatch.SendBatchJob(r.Context(), s.cfg.BatchQueue, lull.BatchJobSplit, b); err != nil {
		if idem != "" {
			// A retry with the same key finds this batch and sends its job.
			return &lull.Error{Code: lull.EUNAVAILABLE, Message: "The batch could not be queued; retry with the same Idempotency-Key.", Err: err}
		}
		// Without its split job the batch would wait forever: end it now and
		// tell the client to try again.
		msg := []lull.BatchError{{Code: "enqueue_failed", Message: "The batch could not be queued; create it again."}}
		if _, uerr := s.cfg.Batches.UpdateBatch(r.Context(), b.ID, []lull.BatchStatus{lull.BatchValidating},
			lull.BatchChange{Status: lull.BatchFailed, At: s.cfg.Now().UTC(), Errors: msg}); uerr != nil {
			log.ErrorContext(r.Context(), "batch left validating without a split job", "err", uerr)
		}
		return &lull.Error{Code: lull.EUNAVAILABLE, Message: "The batch could not be queued; retry later.", Err: err}
	}
	log.InfoContext(r.Context(), "batch created", "input_file_id", f.ID, "endpoint", req.Endpoint, "window", win.String())
	writeJSON(w, http.StatusOK, genview.Batch(b))
	return nil
}

// ownBatch returns the caller's batch named in the path, or ENOTFOUND.
func (s *Server) ownBatch(r *http.Request) (*lull.Batch, error) {
	id := r.PathValue("id")
	return own(r, "batch", id, "No such Batch object: "+id, s.cfg.Batches.GetBatch, func(b *lull.Batch) string { return b.Tenant })
}

func (s *Server) getBatch(w http.ResponseWriter, r *http.Request) error {
	b, err := s.ownBatch(r)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, genview.Batch(b))
	return nil
}

func (s *Server) listBatches(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	limit := 20
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 100 {
			return lull.ParamError("limit", "'limit' must be an integer between 1 and 100.")
		}
		limit = n
	}
	after := q.Get("after")
	if after != "" && !lull.ValidID("batch", after) {
		return lull.ParamError("after", "No such Batch object: %s", after)
	}
	batches, more, err := s.cfg.Batches.ListBatches(r.Context(), tenant(r), after, limit)
	if err != nil {
		return err
	}
	page := Page[genview.BatchView]{Object: "list", Data: make([]genview.BatchView, 0, len(batches)), HasMore: more}
	for _, b := range batches {
		page.Data = append(page.Data, genview.Batch(b))
	}
	if len(batches) > 0 {
		page.FirstID, page.LastID = &batches[0].ID, &batches[len(batches)-1].ID
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

func (s *Server) cancelBatch(w http.ResponseWriter, r *http.Request) error {
	b, err := s.ownBatch(r)
	if err != nil {
		return err
	}
	if b.Status == lull.BatchCancelling {
		writeJSON(w, http.StatusOK, genview.Batch(b))
		return nil
	}
	done, err := s.cfg.Batches.UpdateBatch(r.Context(), b.ID, []lull.BatchStatus{lull.BatchValidating, lull.BatchInProgress},
		lull.BatchChange{Status: lull.BatchCancelling, At: s.cfg.Now().UTC(), CancelRequested: true})
	if lull.IsConflict(err) {
		cur, gerr := s.cfg.Batches.GetBatch(r.Context(), b.ID)
		if gerr != nil {
			return gerr
		}
		if cur.Status == lull.BatchCancelling {
			writeJSON(w, http.StatusOK, genview.Batch(cur))
			return nil
		}
		return lull.Errorf(lull.ECONFLICT, "Batch %s cannot be cancelled: its status is %s.", b.ID, cur.Status)
	}
	if err != nil {
		return err
	}
	log := s.cfg.Logger.With("request_id", requestID(r.Context()), "tenant", b.Tenant, "batch_id", b.ID)
	if err := dispatch.SendBatchJob(r.Context(), s.cfg.BatchQueue, lull.BatchJobCancel, done); err != nil {
		// The batch is cancelling either way: its running lines end, the
		// queued ones run, and the last one finalizes it as cancelled.
		log.WarnContext(r.Context(), "cancel job not queued; the batch will cancel as its lines end", "err", err)
	}
	log.InfoContext(r.Context(), "batch cancelling")
	writeJSON(w, http.StatusOK, genview.Batch(done))
	return nil
}
