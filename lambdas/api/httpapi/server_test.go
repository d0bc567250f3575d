package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/lull-ai/lull/lambdas/api/httpapi"
	"github.com/lull-ai/lull/localstack/emutest"
	"github.com/lull-ai/lull/shared/dynamodb"
	"github.com/lull-ai/lull/shared/lull"
	"github.com/lull-ai/lull/shared/netguard"
	"github.com/lull-ai/lull/shared/s3"
	"github.com/lull-ai/lull/shared/sqs"
)

const (
	model      = "test-model"
	embedModel = "test-embed"
)

type env struct {
	url        string
	store      *dynamodb.Store
	queue      *sqs.Queue
	batchQueue *sqs.Queue
}

// newEnv serves the API over real emulators.
func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	store, b := emutest.Table(t, "api")
	bucket := "api-" + lull.NewID("b")[2:12]
	if err := s3.CreateBucket(ctx, b.Clients.S3, bucket); err != nil {
		t.Fatal(err)
	}
	qurl, _, err := sqs.CreateQueue(ctx, b.Clients.SQS, "api-"+lull.NewID("q")[2:], 30*time.Second, 0)
	if err != nil {
		t.Fatal(err)
	}
	queue := sqs.New(b.Clients.SQS, qurl)
	burl, _, err := sqs.CreateQueue(ctx, b.Clients.SQS, "api-batch-"+lull.NewID("q")[2:], 30*time.Second, 0)
	if err != nil {
		t.Fatal(err)
	}
	batchQueue := sqs.New(b.Clients.SQS, burl)
	srv, err := httpapi.New(httpapi.Config{
		Generations: store, Keys: store, Blobs: s3.New(b.Clients.S3, bucket),
		Queues: map[string]lull.Sender{model: queue, embedModel: queue}, Tasks: map[string]lull.Task{embedModel: lull.TaskEmbed},
		MaxBodyBytes: 64 << 10, InlineLimit: 1 << 10,
		Logger:  slog.New(slog.DiscardHandler),
		Batches: store, Files: store, Uploads: store, BatchQueue: batchQueue, MaxFileBytes: 4 << 10, MaxUploadBytes: 1 << 20, ContentInlineLimit: 100,
		Webhooks: store, Events: queue, Guard: &netguard.Guard{AllowInsecure: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	for _, k := range []string{"sk-a", "sk-b"} {
		if err := store.PutKey(ctx, lull.HashKey(k), "tenant-"+k[3:]); err != nil {
			t.Fatal(err)
		}
	}
	return &env{url: hs.URL, store: store, queue: queue, batchQueue: batchQueue}
}

func (e *env) do(t *testing.T, method, path, key, body string, hdr map[string]string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, e.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("%s %s: body is not JSON: %q", method, path, raw)
	}
	return resp.StatusCode, out
}

const chat = `{"model":"test-model","messages":[{"role":"user","content":"hi"}]}`

func TestBadRequests(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	big := `{"model":"test-model","messages":[{"role":"user","content":"` + strings.Repeat("x", 70<<10) + `"}]}`
	for _, tc := range []struct {
		name, method, path, key, body string
		hdr                           map[string]string
		status                        int
		code, param                   string
	}{
		{"NoKey", "POST", "/v1/slow/chat/completions", "", chat, nil, 401, "invalid_api_key", ""},
		{"UnknownKey", "POST", "/v1/slow/chat/completions", "sk-nope", chat, nil, 401, "invalid_api_key", ""},
		{"NotBearer", "POST", "/v1/slow/chat/completions", "", chat, map[string]string{"Authorization": "Basic eDp5"}, 401, "invalid_api_key", ""},
		{"EmptyBody", "POST", "/v1/slow/chat/completions", "sk-a", "", nil, 400, "invalid_request", ""},
		{"BadJSON", "POST", "/v1/slow/chat/completions", "sk-a", `{"model":`, nil, 400, "invalid_request", ""},
		{"NotObject", "POST", "/v1/slow/chat/completions", "sk-a", `[1,2]`, nil, 400, "invalid_request", ""},
		{"TwoObjects", "POST", "/v1/slow/chat/completions", "sk-a", chat + chat, nil, 400, "invalid_request", ""},
		{"NoModel", "POST", "/v1/slow/chat/completions", "sk-a", `{"messages":[{"role":"user","content":"hi"}]}`, nil, 400, "invalid_request", "model"},
		{"ModelWrongType", "POST", "/v1/slow/chat/completions", "sk-a", `{"model":7,"messages":[]}`, nil, 400, "invalid_request", "model"},
		{"UnknownModel", "POST", "/v1/slow/chat/completions", "sk-a", `{"model":"gpt-9","messages":[{"role":"user","content":"hi"}]}`, nil, 404, "model_not_found", "model"},
		{"NoMessages", "POST", "/v1/slow/chat/completions", "sk-a", `{"model":"test-model"}`, nil, 400, "invalid_request", "messages"},
		{"EmptyMessages", "POST", "/v1/slow/chat/completions", "sk-a", `{"model":"test-model","messages":[]}`, nil, 400, "invalid_request", "messages"},
		{"BadRole", "POST", "/v1/slow/chat/completions", "sk-a", `{"model":"test-model","messages":[{"role":"wizard","content":"hi"}]}`, nil, 400, "invalid_request", "messages[0].role"},
		{"NoContent", "POST", "/v1/slow/chat/completions", "sk-a", `{"model":"test-model","messages":[{"role":"user"}]}`, nil, 400, "invalid_request", "messages[0].content"},
		{"Stream", "POST", "/v1/slow/chat/completions", "sk-a", `{"model":"test-model","stream":true,"messages":[{"role":"user","content":"hi"}]}`, nil, 400, "invalid_request", "stream"},
		{"BadN", "POST", "/v1/slow/chat/completions", "sk-a", `{"model":"test-model","n":0,"messages":[{"role":"user","content":"hi"}]}`, nil, 400, "invalid_request", "n"},
		{"BadMaxTokens", "POST", "/v1/slow/chat/completions", "sk-a", `{"model":"test-model","max_tokens":-1,"messages":[{"role":"user","content":"hi"}]}`, nil, 400, "invalid_request", "max_tokens"},
		{"BadMetadata", "POST", "/v1/slow/chat/completions", "sk-a", `{"model":"test-model","metadata":{"a":1},"messages":[{"role":"user","content":"hi"}]}`, nil, 400, "invalid_request", "metadata"},
		{"NoPrompt", "POST", "/v1/slow/completions", "sk-a", `{"model":"test-model"}`, nil, 400, "invalid_request", "prompt"},
		{"BadPrompt", "POST", "/v1/slow/completions", "sk-a", `{"model":"test-model","prompt":[]}`, nil, 400, "invalid_request", "prompt"},
		{"TooLarge", "POST", "/v1/slow/chat/completions", "sk-a", big, nil, 413, "request_too_large", ""},
		{"WrongContentType", "POST", "/v1/slow/chat/completions", "sk-a", chat, map[string]string{"Content-Type": "text/plain"}, 415, "unsupported_media", ""},
		{"BadWindow", "POST", "/v1/slow/chat/completions", "sk-a", chat, map[string]string{"X-Lull-Completion-Window": "soon"}, 400, "invalid_request", "X-Lull-Completion-Window"},
		{"WindowTooLong", "POST", "/v1/slow/chat/completions", "sk-a", chat, map[string]string{"X-Lull-Completion-Window": "30d"}, 400, "invalid_request", "X-Lull-Completion-Window"},
		{"IdempotencyKeyTooLong", "POST", "/v1/slow/chat/completions", "sk-a", chat, map[string]string{"Idempotency-Key": strings.Repeat("k", 300)}, 400, "invalid_request", "Idempotency-Key"},
		{"WrongMethod", "GET", "/v1/slow/chat/completions", "sk-a", "", nil, 405, "method_not_allowed", ""},
		{"UnknownPath", "POST", "/v1/fast/chat/completions", "sk-a", chat, nil, 404, "unknown_url", ""},
		{"MalformedID", "GET", "/v1/generation/../../etc", "sk-a", "", nil, 404, "unknown_url", ""},
		{"MissingGeneration", "GET", "/v1/generation/" + lull.NewID("gen"), "sk-a", "", nil, 404, "not_found", ""},
		{"BadGenerationID", "GET", "/v1/generation/gen_nope", "sk-a", "", nil, 404, "not_found", ""},
		{"BadLimit", "GET", "/v1/generations?limit=1000", "sk-a", "", nil, 400, "invalid_request", "limit"},
		{"BadStatus", "GET", "/v1/generations?status=done", "sk-a", "", nil, 400, "invalid_request", "status"},
		{"BadCursor", "GET", "/v1/generations?after=xyz", "sk-a", "", nil, 400, "invalid_request", "after"},
		{"CancelMissing", "POST", "/v1/generation/" + lull.NewID("gen") + "/cancel", "sk-a", "", nil, 404, "not_found", ""},
		{"EmbedNoInput", "POST", "/v1/slow/embeddings", "sk-a", `{"model":"test-embed"}`, nil, 400, "invalid_request", "input"},
		{"EmbedEmptyString", "POST", "/v1/slow/embeddings", "sk-a", `{"model":"test-embed","input":""}`, nil, 400, "invalid_request", "input"},
		{"EmbedEmptyItem", "POST", "/v1/slow/embeddings", "sk-a", `{"model":"test-embed","input":["a",""]}`, nil, 400, "invalid_request", "input[1]"},
		{"EmbedBadInput", "POST", "/v1/slow/embeddings", "sk-a", `{"model":"test-embed","input":[{"x":1}]}`, nil, 400, "invalid_request", "input"},
		{"EmbedTooMany", "POST", "/v1/slow/embeddings", "sk-a", `{"model":"test-embed","input":[` + strings.Repeat(`"a",`, 2048) + `"a"]}`, nil, 400, "invalid_request", "input"},
		{"EmbedBadFormat", "POST", "/v1/slow/embeddings", "sk-a", `{"model":"test-embed","input":"a","encoding_format":"int8"}`, nil, 400, "invalid_request", "encoding_format"},
		{"EmbedBadDimensions", "POST", "/v1/slow/embeddings", "sk-a", `{"model":"test-embed","input":"a","dimensions":0}`, nil, 400, "invalid_request", "dimensions"},
		{"EmbedGenerationModel", "POST", "/v1/slow/embeddings", "sk-a", `{"model":"test-model","input":"a"}`, nil, 400, "model_not_supported", "model"},
		{"ChatEmbeddingModel", "POST", "/v1/slow/chat/completions", "sk-a", `{"model":"test-embed","messages":[{"role":"user","content":"hi"}]}`, nil, 400, "model_not_supported", "model"},
		{"ResponsesForeground", "POST", "/v1/responses", "sk-a", `{"model":"test-model","input":"hi"}`, nil, 400, "invalid_request", "background"},
		{"ResponsesNoInput", "POST", "/v1/responses", "sk-a", `{"model":"test-model","background":true}`, nil, 400, "invalid_request", "input"},
		{"ResponsesBadInput", "POST", "/v1/slow/responses", "sk-a", `{"model":"test-model","input":[]}`, nil, 400, "invalid_request", "input"},
		{"ResponsesPrevious", "POST", "/v1/slow/responses", "sk-a", `{"model":"test-model","input":"hi","previous_response_id":"resp_x"}`, nil, 400, "invalid_request", "previous_response_id"},
		{"ResponsesConversation", "POST", "/v1/slow/responses", "sk-a", `{"model":"test-model","input":"hi","conversation":"conv_1"}`, nil, 400, "invalid_request", "conversation"},
		{"ResponsesStream", "POST", "/v1/responses", "sk-a", `{"model":"test-model","input":"hi","background":true,"stream":true}`, nil, 400, "invalid_request", "stream"},
		{"ResponsesMaxOutput", "POST", "/v1/slow/responses", "sk-a", `{"model":"test-model","input":"hi","max_output_tokens":0}`, nil, 400, "invalid_request", "max_output_tokens"},
		{"ResponsesEmbeddingModel", "POST", "/v1/slow/responses", "sk-a", `{"model":"test-embed","input":"hi"}`, nil, 400, "model_not_supported", "model"},
		{"ResponseMissing", "GET", "/v1/responses/resp_" + lull.NewID("gen")[4:], "sk-a", "", nil, 404, "not_found", ""},
		{"ResponseMalformed", "GET", "/v1/responses/resp_nope", "sk-a", "", nil, 404, "not_found", ""},
		{"ResponseGenerationID", "GET", "/v1/responses/" + lull.NewID("gen"), "sk-a", "", nil, 404, "not_found", ""},
		{"ResponseCancelMissing", "POST", "/v1/responses/resp_" + lull.NewID("gen")[4:] + "/cancel", "sk-a", "", nil, 404, "not_found", ""},
		{"ResponseDeleteMissing", "DELETE", "/v1/responses/resp_" + lull.NewID("gen")[4:], "sk-a", "", nil, 404, "not_found", ""},
		// What reaches the engine is what was validated (issue 13 a).
		{"CaseVariantN", "POST", "/v1/slow/chat/completions", "sk-a", `{"model":"test-model","n":100000,"N":1,"messages":[{"role":"user","content":"hi"}]}`, nil, 400, "invalid_request", "N"},
		{"DuplicateMaxTokens", "POST", "/v1/slow/completions", "sk-a", `{"model":"test-model","prompt":"x","max_tokens":1,"max_tokens":10000000}`, nil, 400, "invalid_request", "max_tokens"},
		{"MaxTokensTooLarge", "POST", "/v1/slow/completions", "sk-a", `{"model":"test-model","prompt":"x","max_tokens":10000000}`, nil, 400, "invalid_request", "max_tokens"},
		{"ClientPriority", "POST", "/v1/slow/chat/completions", "sk-a", `{"model":"test-model","priority":-100,"messages":[{"role":"user","content":"hi"}]}`, nil, 400, "invalid_request", "priority"},
		{"ChatTemplate", "POST", "/v1/slow/chat/completions", "sk-a", `{"model":"test-model","chat_template":"{{x}}","messages":[{"role":"user","content":"hi"}]}`, nil, 400, "invalid_request", "chat_template"},
		{"RemoteImage", "POST", "/v1/slow/chat/completions", "sk-a", `{"model":"test-model","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"http://169.254.169.254/"}}]}]}`, nil, 400, "invalid_request", "messages[0].content[0].image_url.url"},
		{"TooManySequences", "POST", "/v1/slow/completions", "sk-a", `{"model":"test-model","prompt":["a","b","c"],"n":100}`, nil, 400, "invalid_request", "n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			status, body := e.do(t, tc.method, tc.path, tc.key, tc.body, tc.hdr)
			checkError(t, status, body, tc.status, tc.code, tc.param)
		})
	}
	// Bad input changes nothing: no generation stored, nothing enqueued.
	t.Cleanup(func() {
		gens, _, err := e.store.List(context.Background(), "tenant-a", lull.ListOptions{Limit: 100})
		if err != nil || len(gens) != 0 {
			t.Errorf("bad requests stored %d generations (err %v)", len(gens), err)
		}
		if v, f, err := e.queue.Depth(context.Background()); err != nil || v+f != 0 {
			t.Errorf("bad requests enqueued %d messages (err %v)", v+f, err)
		}
	})
}

// checkError checks an answer is OpenAI's error envelope with the status,
// code and param expected, a message and a type.
func checkError(t *testing.T, status int, body map[string]any, wantStatus int, code, param string) {
	t.Helper()
	if status != wantStatus {
		t.Fatalf("status = %d, want %d; body %v", status, wantStatus, body)
	}
	errObj, ok := body["error"].(map[string]any)
	if !ok {
		t.Fatalf("no OpenAI error envelope: %v", body)
	}
	if msg, _ := errObj["message"].(string); msg == "" {
		t.Errorf("empty message: %v", errObj)
	}
	if _, ok := errObj["type"].(string); !ok {
		t.Errorf("no type: %v", errObj)
	}
	if got, _ := errObj["code"].(string); got != code {
		t.Errorf("code = %q, want %q", got, code)
	}
	if got, _ := errObj["param"].(string); got != param {
		t.Errorf("param = %q, want %q", got, param)
	}
}

func TestAcceptGetListCancel(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	status, acc := e.do(t, "POST", "/v1/slow/chat/completions", "sk-a", chat, map[string]string{"X-Lull-Completion-Window": "1h"})
	if status != 202 || acc["status"] != "queued" || acc["object"] != "chat.completion" || acc["model"] != model {
		t.Fatalf("accept = %d %v", status, acc)
	}
	if choices, ok := acc["choices"].([]any); !ok || len(choices) != 0 {
		t.Fatalf("choices = %v, want []", acc["choices"])
	}
	id := acc["id"].(string)
	if exp, created := acc["expires_at"].(float64), acc["created"].(float64); exp-created != 3600 {
		t.Fatalf("window = %vs, want 3600", exp-created)
	}
	// Large bodies go to the blob store and come back whole.
	long := fmt.Sprintf(`{"model":"test-model","prompt":%q}`, strings.Repeat("word ", 400))
	status, acc2 := e.do(t, "POST", "/v1/slow/completions", "sk-a", long, nil)
	if status != 202 || acc2["object"] != "text_completion" {
		t.Fatalf("accept completions = %d %v", status, acc2)
	}
	_, got2 := e.do(t, "GET", "/v1/generation/"+acc2["id"].(string), "sk-a", "", nil)
	if req, _ := got2["request"].(map[string]any); req["prompt"] != strings.Repeat("word ", 400) {
		t.Fatalf("large request not returned whole: %v", got2["request"])
	}

	status, got := e.do(t, "GET", "/v1/generation/"+id, "sk-a", "", nil)
	if status != 200 || got["status"] != "queued" || got["object"] != "generation" || got["response"] != nil {
		t.Fatalf("get = %d %v", status, got)
	}
	// Tenant isolation: B sees A's generation as missing everywhere.
	if status, _ := e.do(t, "GET", "/v1/generation/"+id, "sk-b", "", nil); status != 404 {
		t.Fatalf("tenant B get = %d, want 404", status)
	}
	if status, _ := e.do(t, "POST", "/v1/generation/"+id+"/cancel", "sk-b", "", nil); status != 404 {
		t.Fatalf("tenant B cancel = %d, want 404", status)
	}
	if _, list := e.do(t, "GET", "/v1/generations", "sk-b", "", nil); len(list["data"].([]any)) != 0 {
		t.Fatalf("tenant B lists %v", list["data"])
	}
	if status, _ := e.do(t, "GET", "/v1/generations?after="+id, "sk-b", "", nil); status != 400 {
		t.Fatalf("tenant B cursor on A's id = %d, want 400", status)
	}
	_, list := e.do(t, "GET", "/v1/generations?limit=1", "sk-a", "", nil)
	if data := list["data"].([]any); len(data) != 1 || list["has_more"] != true || data[0].(map[string]any)["id"] != acc2["id"] {
		t.Fatalf("list = %v", list)
	}
	status, cancelled := e.do(t, "POST", "/v1/generation/"+id+"/cancel", "sk-a", "", nil)
	if status != 200 || cancelled["status"] != "cancelled" {
		t.Fatalf("cancel = %d %v", status, cancelled)
	}
	if status, again := e.do(t, "POST", "/v1/generation/"+id+"/cancel", "sk-a", "", nil); status != 409 {
		t.Fatalf("second cancel = %d %v, want 409", status, again)
	}
	_, list = e.do(t, "GET", "/v1/generations?status=cancelled", "sk-a", "", nil)
	if data := list["data"].([]any); len(data) != 1 {
		t.Fatalf("cancelled list = %v", list)
	}
	status, models := e.do(t, "GET", "/v1/models", "sk-a", "", nil)
	data, _ := models["data"].([]any)
	if status != 200 || len(data) != 2 {
		t.Fatalf("models = %d %v", status, models)
	}
	// Each model says what it serves; sorted by ID.
	for i, want := range []struct{ id, task, first string }{{embedModel, "embed", "/v1/embeddings"}, {model, "generate", "/v1/chat/completions"}} {
		m := data[i].(map[string]any)
		if eps, _ := m["endpoints"].([]any); m["id"] != want.id || m["task"] != want.task || len(eps) == 0 || eps[0] != want.first {
			t.Fatalf("models[%d] = %v, want %s serving %s", i, m, want.id, want.first)
		}
	}
}

func TestIdempotencyKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	h := map[string]string{"Idempotency-Key": "order-42"}
	_, first := e.do(t, "POST", "/v1/slow/chat/completions", "sk-a", chat, h)
	_, again := e.do(t, "POST", "/v1/slow/chat/completions", "sk-a", chat, h)
	if first["id"] != again["id"] {
		t.Fatalf("same key gave %v and %v", first["id"], again["id"])
	}
	_, other := e.do(t, "POST", "/v1/slow/chat/completions", "sk-b", chat, h)
	if other["id"] == first["id"] {
		t.Fatal("another tenant's key reused the generation")
	}
	status, conflict := e.do(t, "POST", "/v1/slow/chat/completions", "sk-a",
		`{"model":"test-model","messages":[{"role":"user","content":"different"}]}`, h)
	if status != 409 {
		t.Fatalf("same key, different body = %d %v; want 409", status, conflict)
	}
	if v, f, err := e.queue.Depth(context.Background()); err != nil || v+f != 2 {
		t.Fatalf("queue holds %d jobs (err %v), want 2: one per distinct generation", v+f, err)
	}
}
