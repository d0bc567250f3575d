package emulators

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
)

// removeShim works around a minidyn v0.8.2 bug: UpdateItem evaluates REMOVE
// actions but never deletes the attributes from the stored item, so sparse
// GSI keys and leases would linger. The shim serialises requests, lets
// minidyn run the update, then deletes the removed top-level attributes with
// a GetItem + PutItem of its own and fixes ReturnValues in the reply. Real
// DynamoDB and DynamoDB Local need none of this (the adapter suite runs
// against DynamoDB Local too).
type removeShim struct {
	mu   sync.Mutex
	next http.Handler
}

const ddbPrefix = "DynamoDB_20120810."

var clauseRE = regexp.MustCompile(`(?i)\b(SET|REMOVE|ADD|DELETE)\b`)

// removedAttrs returns the top-level attribute names in the REMOVE clause of
// an update expression, resolving #name placeholders.
func removedAttrs(expr string, names map[string]string) []string {
	locs := clauseRE.FindAllStringIndex(expr, -1)
	var out []string
	for i, loc := range locs {
		if !strings.EqualFold(expr[loc[0]:loc[1]], "REMOVE") {
			continue
		}
		end := len(expr)
		if i+1 < len(locs) {
			end = locs[i+1][0]
		}
		for _, p := range strings.Split(expr[loc[1]:end], ",") {
			p = strings.TrimSpace(p)
			if n, ok := names[p]; ok {
				p = n
			}
			if p != "" && !strings.ContainsAny(p, ".[") {
				out = append(out, p)
			}
		}
	}
	return out
}

func (s *removeShim) call(target string, body any) (int, []byte) {
	b, _ := json.Marshal(body)
	req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(b))
	req.Header.Set("X-Amz-Target", ddbPrefix+target)
	req.Header.Set("Content-Type", "application/x-amz-json-1.0")
	rec := httptest.NewRecorder()
	s.next.ServeHTTP(rec, req)
	return rec.Code, rec.Body.Bytes()
}

func (s *removeShim) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.Header.Get("X-Amz-Target") != ddbPrefix+"UpdateItem" {
		s.next.ServeHTTP(w, r)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var in struct {
		TableName                string
		Key                      map[string]json.RawMessage
		UpdateExpression         string
		ExpressionAttributeNames map[string]string
	}
	_ = json.Unmarshal(body, &in)
	removed := removedAttrs(in.UpdateExpression, in.ExpressionAttributeNames)
	r.Body = io.NopCloser(bytes.NewReader(body))
	if len(removed) == 0 {
		s.next.ServeHTTP(w, r)
		return
	}
	rec := httptest.NewRecorder()
	s.next.ServeHTTP(rec, r)
	out := rec.Body.Bytes()
	if rec.Code == http.StatusOK {
		if code, got := s.call("GetItem", map[string]any{"TableName": in.TableName, "Key": in.Key, "ConsistentRead": true}); code == http.StatusOK {
			var item struct{ Item map[string]json.RawMessage }
			if json.Unmarshal(got, &item) == nil && item.Item != nil {
				for _, a := range removed {
					delete(item.Item, a)
				}
				s.call("PutItem", map[string]any{"TableName": in.TableName, "Item": item.Item})
			}
		}
		var reply map[string]json.RawMessage
		if json.Unmarshal(out, &reply) == nil && reply["Attributes"] != nil {
			var attrs map[string]json.RawMessage
			if json.Unmarshal(reply["Attributes"], &attrs) == nil {
				for _, a := range removed {
					delete(attrs, a)
				}
				reply["Attributes"], _ = json.Marshal(attrs)
				out, _ = json.Marshal(reply)
			}
		}
	}
	for k, v := range rec.Header() {
		if k != "Content-Length" {
			w.Header()[k] = v
		}
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(out)
}
