package httpapi_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
)

// TestWebhookCapIsAtomic holds issue 13 d: concurrent registrations cannot
// pass the 20-endpoint cap (the count is checked in the same transaction as
// the write), and deleting an endpoint frees its place.
func TestWebhookCapIsAtomic(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const tries = 40
	codes := make([]int, tries)
	var wg sync.WaitGroup
	for i := range tries {
		wg.Go(func() {
			status, body := e.do(t, "POST", "/v1/webhooks", "sk-a", fmt.Sprintf(`{"url":"http://127.0.0.1:9/h%d"}`, i), nil)
			codes[i] = status
			if status != 200 {
				checkError(t, status, body, 400, "invalid_request", "")
			}
		})
	}
	wg.Wait()
	created := 0
	for _, c := range codes {
		if c == 200 {
			created++
		}
	}
	status, list := e.do(t, "GET", "/v1/webhooks", "sk-a", "", nil)
	if n := len(list["data"].([]any)); created != 20 || n != 20 || status != 200 {
		t.Fatalf("%d of %d concurrent registrations succeeded and %d endpoints exist; want 20", created, tries, n)
	}
	id := list["data"].([]any)[0].(map[string]any)["id"].(string)
	if status, _ := e.do(t, "DELETE", "/v1/webhooks/"+id, "sk-a", "", nil); status != 200 {
		t.Fatalf("delete = %d", status)
	}
	if status, body := e.do(t, "POST", "/v1/webhooks", "sk-a", `{"url":"http://127.0.0.1:9/again"}`, nil); status != 200 {
		t.Fatalf("register after a delete = %d %v", status, body)
	}
	status, body := e.do(t, "POST", "/v1/webhooks", "sk-a", `{"url":"http://127.0.0.1:9/over"}`, nil)
	checkError(t, status, body, 400, "invalid_request", "")
	// Another tenant has its own count.
	if status, body := e.do(t, "POST", "/v1/webhooks", "sk-b", `{"url":"http://127.0.0.1:9/b"}`, nil); status != 200 {
		t.Fatalf("another tenant's registration = %d %v", status, body)
	}
}

// TestIdempotencyKeyNamespaces holds issue 13 d: an Idempotency-Key is the
// client's text, whatever it contains — a slow request's "batch#x" and a
// batch's "x" are different keys, in either order, and neither is a 500.
func TestIdempotencyKeyNamespaces(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	body, hdr := form(map[string]string{"purpose": "batch"}, "file", []byte(line+"\n"))
	_, f := e.do(t, "POST", "/v1/files", "sk-a", body, hdr)
	create := `{"input_file_id":"` + f["id"].(string) + `","endpoint":"/v1/chat/completions","completion_window":"24h"}`
	for _, tc := range []struct{ name, batchKey, genKey string }{
		{"BatchFirst", "x", "batch#x"},
		{"GenerationFirst", "y", "batch#y"},
		{"Escapes", "a%23b", "batch#a#b"},
	} {
		batch := func() {
			if status, b := e.do(t, "POST", "/v1/batches", "sk-a", create, map[string]string{"Idempotency-Key": tc.batchKey}); status != 200 {
				t.Errorf("%s: batch with key %q = %d %v", tc.name, tc.batchKey, status, b)
			}
		}
		gen := func() {
			if status, b := e.do(t, "POST", "/v1/slow/chat/completions", "sk-a", chat, map[string]string{"Idempotency-Key": tc.genKey}); status != 202 {
				t.Errorf("%s: slow request with key %q = %d %v", tc.name, tc.genKey, status, b)
			}
		}
		if strings.HasPrefix(tc.name, "Batch") {
			batch()
			gen()
		} else {
			gen()
			batch()
		}
		// Replays still find their own records.
		gen()
		batch()
	}
}
