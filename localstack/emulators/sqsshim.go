package emulators

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"
)

// sqsShim makes goaws v0.5.4 safe for concurrent use. goaws reads its global
// queue map without locking in most handlers while CreateQueue writes it, a
// data race under -race. The shim takes a write lock for the calls that
// change the set of queues and a read lock for every other call. So that no
// lock is held across a long poll, ReceiveMessage with WaitTimeSeconds is
// served as repeated short polls until a message arrives or the wait ends.
type sqsShim struct {
	mu   sync.RWMutex
	next http.Handler
}

var sqsTopologyActions = map[string]bool{
	"CreateQueue": true, "DeleteQueue": true, "SetQueueAttributes": true, "PurgeQueue": true,
}

func (s *sqsShim) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	target := r.Header.Get("X-Amz-Target")
	action := target[strings.LastIndex(target, ".")+1:]
	if sqsTopologyActions[action] {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.next.ServeHTTP(w, r)
		return
	}
	if action != "ReceiveMessage" {
		s.mu.RLock()
		defer s.mu.RUnlock()
		s.next.ServeHTTP(w, r)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var in map[string]any
	if json.Unmarshal(body, &in) != nil {
		s.mu.RLock()
		defer s.mu.RUnlock()
		r.Body = io.NopCloser(bytes.NewReader(body))
		s.next.ServeHTTP(w, r)
		return
	}
	wait, _ := in["WaitTimeSeconds"].(float64)
	in["WaitTimeSeconds"] = 0
	short, _ := json.Marshal(in)
	ctx, cancel := context.WithTimeout(r.Context(), time.Duration(wait*float64(time.Second)))
	defer cancel()
	for {
		rec := httptest.NewRecorder()
		req := r.Clone(r.Context())
		req.Body = io.NopCloser(bytes.NewReader(short))
		req.ContentLength = int64(len(short))
		s.mu.RLock()
		s.next.ServeHTTP(rec, req)
		s.mu.RUnlock()
		if rec.Code != http.StatusOK || hasMessages(rec.Body.Bytes()) || ctx.Err() != nil {
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			_, _ = w.Write(rec.Body.Bytes())
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func hasMessages(body []byte) bool {
	var out struct{ Messages []json.RawMessage }
	return json.Unmarshal(body, &out) == nil && len(out.Messages) > 0
}
