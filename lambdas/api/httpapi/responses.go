package httpapi

import (
	"fmt"
	"net/http"

	"github.com/lull-ai/lull/shared/dispatch"
	"github.com/lull-ai/lull/shared/genview"
	"github.com/lull-ai/lull/shared/lull"
	"github.com/lull-ai/lull/shared/request"
)

// responseRoutes serves OpenAI's Responses API in background mode. A
// response is a generation of the /responses endpoint: resp_X is gen_X
// (lull.ResponseID), so /v1/generation/gen_X shows the same work.
func (s *Server) responseRoutes() {
	s.route("/v1/responses", map[string]handler{http.MethodPost: s.createResponse(http.StatusOK, request.RequireBackground)})
	s.route("/v1/slow/responses", map[string]handler{http.MethodPost: s.createResponse(http.StatusAccepted, nil)})
	s.route("/v1/responses/{id}", map[string]handler{http.MethodGet: s.getResponse, http.MethodDelete: s.deleteResponse})
	s.route("/v1/responses/{id}/cancel", map[string]handler{http.MethodPost: s.cancelResponse})
}

// createResponse accepts a Responses request (check adds the route's own
// rule) and answers the queued Response object with status code.
func (s *Server) createResponse(code int, check func(*request.Body) error) handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		g, err := s.acceptGeneration(w, r, lull.EndpointResponses, check)
		if err != nil {
			return err
		}
		return s.writeResponse(w, r, code, g)
	}
}

func (s *Server) writeResponse(w http.ResponseWriter, r *http.Request, code int, g *lull.Generation) error {
	obj, err := genview.Response(r.Context(), s.cfg.Blobs, g)
	if err != nil {
		return err
	}
	writeJSON(w, code, obj)
	return nil
}

// ownResponse returns the caller's response named in the path: a
// generation of the Responses endpoint. Anything else reads as missing.
func (s *Server) ownResponse(r *http.Request) (*lull.Generation, error) {
	id := r.PathValue("id")
	notFound := lull.Errorf(lull.ENOTFOUND, "No response found with id '%s'.", id)
	genID, ok := lull.GenerationIDOfResponse(id)
	if !ok {
		return nil, notFound
	}
	g, err := own(r, "gen", genID, notFound.Message, s.cfg.Generations.Get, func(g *lull.Generation) string { return g.Tenant })
	if err != nil {
		return nil, err
	}
	if g.Endpoint != lull.EndpointResponses {
		return nil, notFound
	}
	return g, nil
}

func (s *Server) getResponse(w http.ResponseWriter, r *http.Request) error {
	g, err := s.ownResponse(r)
	if err != nil {
		return err
	}
	return s.writeResponse(w, r, http.StatusOK, g)
}

// cancelResponse cancels a queued response and announces
// response.cancelled. lull cannot stop a response that a GPU already runs:
// those answer 409, as finished ones do.
func (s *Server) cancelResponse(w http.ResponseWriter, r *http.Request) error {
	g, err := s.ownResponse(r)
	if err != nil {
		return err
	}
	done, err := s.cfg.Generations.Finish(r.Context(), g.ID, lull.StatusCancelled, lull.Outcome{At: s.cfg.Now().UTC()})
	if lull.IsConflict(err) {
		cur, gerr := s.cfg.Generations.Get(r.Context(), g.ID)
		if gerr != nil {
			return gerr
		}
		return lull.Errorf(lull.ECONFLICT, "Response %s cannot be cancelled: its status is %s (only queued responses can be cancelled).",
			lull.ResponseID(g.ID), genview.ResponseStatus(cur, ""))
	}
	if err != nil {
		return err
	}
	log := s.cfg.Logger.With("request_id", requestID(r.Context()), "tenant", g.Tenant, "generation_id", g.ID)
	log.InfoContext(r.Context(), "response cancelled")
	if err := dispatch.Announce(r.Context(), s.cfg.Events, done); err != nil {
		// The cancellation holds; only its event is lost, as with any
		// announcement that fails after the terminal write.
		log.WarnContext(r.Context(), "announcing response.cancelled failed", "err", err)
	}
	return s.writeResponse(w, r, http.StatusOK, done)
}

// DeletedResponse is the body of DELETE /v1/responses/{id}.
type DeletedResponse struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Deleted bool   `json:"deleted"`
}

// deleteResponse removes a response: a queued one is cancelled first; one
// that runs answers 409 until it ends. Its stored request and output go
// with it.
func (s *Server) deleteResponse(w http.ResponseWriter, r *http.Request) error {
	g, err := s.ownResponse(r)
	if err != nil {
		return err
	}
	if g.Status == lull.StatusQueued {
		if _, err := s.cfg.Generations.Finish(r.Context(), g.ID, lull.StatusCancelled, lull.Outcome{At: s.cfg.Now().UTC()}); err != nil && !lull.IsConflict(err) {
			return err
		}
	}
	if err := s.cfg.Generations.Delete(r.Context(), g.ID); err != nil {
		if lull.IsConflict(err) {
			return lull.Errorf(lull.ECONFLICT, "Response %s is running and cannot be deleted until it ends.", lull.ResponseID(g.ID))
		}
		return err
	}
	for _, key := range []string{g.RequestKey, g.ResponseKey} {
		if key == "" {
			continue
		}
		if err := s.cfg.Blobs.Delete(r.Context(), key); err != nil {
			// The record is gone, so nothing links to the object any more;
			// the bucket's lifecycle rule removes it in time.
			s.cfg.Logger.WarnContext(r.Context(), "deleting a response's object failed", "key", key, "err", fmt.Errorf("httpapi: %w", err))
		}
	}
	writeJSON(w, http.StatusOK, DeletedResponse{ID: lull.ResponseID(g.ID), Object: "response.deleted", Deleted: true})
	return nil
}
