package vllm_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/lull-ai/lull/gpuworker/vllm"
	"github.com/lull-ai/lull/shared/lull"
)

func TestDo(t *testing.T) {
	t.Parallel()
	var seen map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(body, &seen)
		switch seen["model"] {
		case "bad":
			w.WriteHeader(400)
			_, _ = w.Write([]byte(`{"object":"error","message":"context too long","code":400}`))
		case "busy":
			w.WriteHeader(503)
			_, _ = w.Write([]byte(`{"error":{"message":"overloaded"}}`))
		default:
			_, _ = w.Write([]byte(`{"id":"x","usage":{"prompt_tokens":2,"completion_tokens":3,"total_tokens":5}}`))
		}
	}))
	defer srv.Close()
	prio := 7
	c := vllm.New(srv.URL, nil)
	c.Priority = &prio
	res, err := c.Do(context.Background(), lull.EndpointChat, []byte(`{"model":"m","stream":true,"metadata":{"webhook_id":"w"},"messages":[]}`))
	if err != nil || res.Usage.TotalTokens != 5 {
		t.Fatalf("Do = %+v, %v", res, err)
	}
	if _, ok := seen["metadata"]; ok || seen["stream"] != nil || seen["priority"] != float64(7) {
		t.Fatalf("engine saw %v: metadata and stream must be removed, priority added", seen)
	}
	c.Priority = nil
	for _, tc := range []struct {
		model     string
		transient bool
		msg       string
	}{{"bad", false, "context too long"}, {"busy", true, "overloaded"}} {
		_, err := c.Do(context.Background(), lull.EndpointChat, []byte(`{"model":"`+tc.model+`"}`))
		var e *vllm.Error
		if !asErr(err, &e) || e.Transient != tc.transient || e.Message != tc.msg || vllm.IsTransient(err) != tc.transient {
			t.Fatalf("%s: %#v", tc.model, err)
		}
	}
	srv.Close()
	if _, err := c.Do(context.Background(), lull.EndpointChat, []byte(`{"model":"m"}`)); !vllm.IsTransient(err) {
		t.Fatalf("unreachable engine: %v, want transient", err)
	}
	if c.Healthy(context.Background()) {
		t.Fatal("closed engine reported healthy")
	}
}

func asErr(err error, target **vllm.Error) bool {
	e, ok := err.(*vllm.Error)
	*target = e
	return ok
}
