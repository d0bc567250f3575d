package emulators

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
)

// queryShim gives Query DynamoDB's Limit semantics, which minidyn v0.8.2
// gets wrong: DynamoDB's Limit bounds the items *read*, before the
// FilterExpression drops some (so a filtered page may come back short or
// empty, with a LastEvaluatedKey), and ScannedCount reports them; minidyn
// counts only matching items against Limit, reading on as far as it takes,
// and reports no ScannedCount. Code that bounds its reads with Limit would
// look unbounded here, and code that assumed minidyn's behaviour would
// break on DynamoDB. For a filtered query with a Limit the shim runs it
// without the filter (the items DynamoDB would read, and its
// LastEvaluatedKey) and with the filter but no Limit, and answers the
// matches among the items read.
type queryShim struct {
	next http.Handler
}

func (s *queryShim) call(body map[string]json.RawMessage) (int, map[string]json.RawMessage, http.Header) {
	b, _ := json.Marshal(body)
	req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(b))
	req.Header.Set("X-Amz-Target", ddbPrefix+"Query")
	req.Header.Set("Content-Type", "application/x-amz-json-1.0")
	rec := httptest.NewRecorder()
	s.next.ServeHTTP(rec, req)
	var out map[string]json.RawMessage
	_ = json.Unmarshal(rec.Body.Bytes(), &out)
	return rec.Code, out, rec.Header()
}

func (s *queryShim) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("X-Amz-Target") != ddbPrefix+"Query" {
		s.next.ServeHTTP(w, r)
		return
	}
	raw, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var in map[string]json.RawMessage
	if err := json.Unmarshal(raw, &in); err != nil {
		r.Body = io.NopCloser(bytes.NewReader(raw))
		s.next.ServeHTTP(w, r)
		return
	}
	_, filtered := in["FilterExpression"]
	_, limited := in["Limit"]
	if !filtered || !limited {
		code, out, hdr := s.call(in)
		if code == http.StatusOK && out["ScannedCount"] == nil {
			out["ScannedCount"] = out["Count"]
		}
		reply(w, code, out, hdr)
		return
	}
	read := clone(in)
	delete(read, "FilterExpression")
	pruneUnused(read)
	code, readOut, hdr := s.call(read)
	if code != http.StatusOK {
		reply(w, code, readOut, hdr)
		return
	}
	match := clone(in)
	delete(match, "Limit")
	code, matchOut, hdr := s.call(match)
	if code != http.StatusOK {
		reply(w, code, matchOut, hdr)
		return
	}
	var readItems, matchItems []map[string]json.RawMessage
	_ = json.Unmarshal(readOut["Items"], &readItems)
	_ = json.Unmarshal(matchOut["Items"], &matchItems)
	seen := map[string]bool{}
	for _, it := range readItems {
		seen[itemKey(it)] = true
	}
	kept := []map[string]json.RawMessage{}
	for _, it := range matchItems {
		if seen[itemKey(it)] {
			kept = append(kept, it)
		}
	}
	out := map[string]json.RawMessage{}
	out["Items"], _ = json.Marshal(kept)
	out["Count"], _ = json.Marshal(len(kept))
	out["ScannedCount"], _ = json.Marshal(len(readItems))
	if lek, ok := readOut["LastEvaluatedKey"]; ok && string(lek) != "{}" && string(lek) != "null" {
		out["LastEvaluatedKey"] = lek
	}
	reply(w, http.StatusOK, out, hdr)
}

func clone(m map[string]json.RawMessage) map[string]json.RawMessage {
	out := make(map[string]json.RawMessage, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// pruneUnused drops expression names and values no remaining expression
// uses (DynamoDB refuses unused ones).
func pruneUnused(in map[string]json.RawMessage) {
	var exprs strings.Builder
	for _, k := range []string{"KeyConditionExpression", "ProjectionExpression", "FilterExpression"} {
		var s string
		_ = json.Unmarshal(in[k], &s)
		exprs.WriteString(s + " ")
	}
	used := exprs.String()
	for _, k := range []string{"ExpressionAttributeNames", "ExpressionAttributeValues"} {
		var m map[string]json.RawMessage
		if json.Unmarshal(in[k], &m) != nil {
			continue
		}
		for p := range m {
			if !containsToken(used, p) {
				delete(m, p)
			}
		}
		if len(m) == 0 {
			delete(in, k)
			continue
		}
		in[k], _ = json.Marshal(m)
	}
}

// containsToken reports whether placeholder p (":v", "#n") appears in s as
// a whole token.
func containsToken(s, p string) bool {
	for i := 0; ; {
		j := strings.Index(s[i:], p)
		if j < 0 {
			return false
		}
		end := i + j + len(p)
		if end == len(s) || !isNameChar(s[end]) {
			return true
		}
		i = end
	}
}

func isNameChar(c byte) bool {
	return c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// itemKey identifies an item by its table key (pk, sk) when it has one.
func itemKey(it map[string]json.RawMessage) string {
	if pk, ok := it["pk"]; ok {
		return string(pk) + "|" + string(it["sk"])
	}
	b, _ := json.Marshal(it)
	return string(b)
}

func reply(w http.ResponseWriter, code int, out map[string]json.RawMessage, hdr http.Header) {
	b, _ := json.Marshal(out)
	for k, v := range hdr {
		if k != "Content-Length" {
			w.Header()[k] = v
		}
	}
	w.WriteHeader(code)
	_, _ = w.Write(b)
}
