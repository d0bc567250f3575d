package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	openai "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
	"github.com/openai/openai-go/v3/webhooks"

	"github.com/lull-ai/lull/localstack/devstack"
	"github.com/lull-ai/lull/localstack/vllmsim"
)

// v3Client is openai-go v3 pointed at a stack, only the base URL changed.
func v3Client(st *devstack.Stack, base string) openai.Client {
	return openai.NewClient(option.WithBaseURL(st.URL+base), option.WithAPIKey("sk-lull-dev"), option.WithMaxRetries(0))
}

// TestSlowEmbeddingsThroughSDK sends embeddings to /v1/slow with openai-go
// v3 (three inputs, every encoding format) and reads the engine's vectors
// back from GET /v1/generation/{id}: three unit vectors of equal length,
// exactly the simulator's.
func TestSlowEmbeddingsThroughSDK(t *testing.T) {
	t.Parallel()
	st := startStack(t, devstack.Config{})
	client := v3Client(st, "/v1/slow")
	ctx := context.Background()
	inputs := []string{"the first text", "a second one", "and a third"}
	for _, format := range []openai.EmbeddingNewParamsEncodingFormat{openai.EmbeddingNewParamsEncodingFormatFloat, openai.EmbeddingNewParamsEncodingFormatBase64} {
		t.Run(string(format), func(t *testing.T) {
			queued, err := client.Embeddings.New(ctx, openai.EmbeddingNewParams{
				Model: st.EmbedModel(), EncodingFormat: format,
				Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: inputs},
			})
			if err != nil {
				t.Fatal(err)
			}
			if queued.JSON.ExtraFields["status"].Raw() != `"queued"` || queued.Object != "list" {
				t.Fatalf("accepted body %s, want a queued list", queued.RawJSON())
			}
			var id string
			if err := json.Unmarshal([]byte(queued.JSON.ExtraFields["id"].Raw()), &id); err != nil {
				t.Fatalf("accepted body %s has no id: %v", queued.RawJSON(), err)
			}
			g := waitTerminal(t, st, "sk-lull-dev", []string{id}, time.Minute)[id]
			if g.Status != "completed" {
				t.Fatalf("status %s (%+v)", g.Status, g.Error)
			}
			var resp struct {
				Object string `json:"object"`
				Data   []struct {
					Index     int             `json:"index"`
					Embedding json.RawMessage `json:"embedding"`
				} `json:"data"`
			}
			if err := json.Unmarshal(g.Response, &resp); err != nil || resp.Object != "list" || len(resp.Data) != 3 {
				t.Fatalf("response %s: %v", g.Response, err)
			}
			for i, d := range resp.Data {
				vec := decodeEmbedding(t, d.Embedding, format == openai.EmbeddingNewParamsEncodingFormatBase64)
				want := vllmsim.ExpectEmbedding(st.EmbedModel(), inputs[i], len(vec))
				if d.Index != i || len(vec) != 32 {
					t.Fatalf("data[%d]: index %d, %d dimensions", i, d.Index, len(vec))
				}
				var norm float64
				for k := range vec {
					norm += float64(vec[k]) * float64(vec[k])
					if math.Abs(float64(vec[k]-want[k])) > 1e-6 {
						t.Fatalf("data[%d][%d] = %v, want %v", i, k, vec[k], want[k])
					}
				}
				if math.Abs(norm-1) > 1e-4 {
					t.Fatalf("data[%d] has norm² %v, want a unit vector", i, norm)
				}
			}
			if g.Usage == nil || g.Usage.PromptTokens != 9 {
				t.Fatalf("usage %+v, want 9 prompt tokens", g.Usage)
			}
		})
	}
}

func decodeEmbedding(t *testing.T, raw json.RawMessage, b64 bool) []float32 {
	t.Helper()
	if !b64 {
		var v []float32
		if err := json.Unmarshal(raw, &v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatal(err)
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	v := make([]float32, len(b)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v
}

// TestBackgroundResponsesThroughSDK runs the Responses API the way OpenAI's
// background-mode guide does with openai-go v3: create with background:
// true, poll Get until it ends, read OutputText (exactly the simulator's
// answer); the same work is visible as /v1/generation/gen_X. Without
// background the create is a clear 400; a queued response is cancelled
// and deleted.
func TestBackgroundResponsesThroughSDK(t *testing.T) {
	t.Parallel()
	st := startStack(t, devstack.Config{})
	client := v3Client(st, "/v1")
	ctx := context.Background()
	params := responses.ResponseNewParams{
		Model: st.Config().Model, Instructions: openai.String("Answer briefly."),
		Input:      responses.ResponseNewParamsInputUnion{OfString: openai.String("Why do GPUs idle at night?")},
		Background: openai.Bool(true), MaxOutputTokens: openai.Int(200),
	}
	r, err := client.Responses.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != responses.ResponseStatusQueued || !r.Background || r.Object != "response" {
		t.Fatalf("created %s, want a queued background response", r.RawJSON())
	}
	deadline := time.Now().Add(time.Minute)
	for r.Status == responses.ResponseStatusQueued || r.Status == responses.ResponseStatusInProgress {
		if time.Now().After(deadline) {
			t.Fatalf("response still %s", r.Status)
		}
		time.Sleep(50 * time.Millisecond)
		if r, err = client.Responses.Get(ctx, r.ID, responses.ResponseGetParams{}); err != nil {
			t.Fatal(err)
		}
	}
	msgs, _ := vllmsim.ResponsesMessages("Answer briefly.", json.RawMessage(`"Why do GPUs idle at night?"`))
	want := vllmsim.Expect(st.Config().Model, vllmsim.ChatPrompt(msgs), 200)
	if r.Status != responses.ResponseStatusCompleted || r.OutputText() != want.Text {
		t.Fatalf("status %s, output_text %q, want completed %q", r.Status, r.OutputText(), want.Text)
	}
	if r.Usage.InputTokens != int64(want.PromptTokens) || r.Usage.OutputTokens != int64(want.CompletionTokens) {
		t.Fatalf("usage %+v, want %d in / %d out", r.Usage, want.PromptTokens, want.CompletionTokens)
	}
	var g generation
	if code := getJSON(t, st.URL+"/v1/generation/gen_"+r.ID[len("resp_"):], "sk-lull-dev", &g); code != 200 || g.Status != "completed" {
		t.Fatalf("generation of %s: %d %s", r.ID, code, g.Status)
	}

	// Without background: a 400 that says why.
	params.Background = openai.Bool(false)
	if _, err := client.Responses.New(ctx, params); !isStatus(err, 400) {
		t.Fatalf("foreground response: %v, want 400", err)
	}

	// A queued response (no GPU worker) is cancelled, announced, then deleted.
	idle := startStack(t, devstack.Config{Workers: -1})
	iclient := v3Client(idle, "/v1")
	params.Background = openai.Bool(true)
	q, err := iclient.Responses.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	c, err := iclient.Responses.Cancel(ctx, q.ID)
	if err != nil || c.Status != responses.ResponseStatusCancelled {
		t.Fatalf("cancel: %v %+v", err, c)
	}
	if _, err := iclient.Responses.Cancel(ctx, q.ID); !isStatus(err, 409) {
		t.Fatalf("second cancel: %v, want 409", err)
	}
	if err := iclient.Responses.Delete(ctx, q.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := iclient.Responses.Get(ctx, q.ID, responses.ResponseGetParams{}); !isStatus(err, 404) {
		t.Fatalf("get after delete: %v, want 404", err)
	}
}

func isStatus(err error, code int) bool {
	var apiErr *openai.Error
	return err != nil && errors.As(err, &apiErr) && apiErr.StatusCode == code
}

// TestBatchesOfEmbeddingsAndResponses runs a batch of 100 embedding lines
// and one of 100 response lines through openai-go v3's Files and Batches
// APIs; every output line is OpenAI's shape with the simulator's answer.
func TestBatchesOfEmbeddingsAndResponses(t *testing.T) {
	t.Parallel()
	st := startStack(t, devstack.Config{WorkerConcurrency: 32})
	client := v3Client(st, "/v1")
	ctx := context.Background()
	embedModel, genModel := st.EmbedModel(), st.Config().Model
	for _, run := range []struct {
		endpoint openai.BatchNewParamsEndpoint
		body     func(i int) string
		check    func(t *testing.T, i int, body json.RawMessage)
	}{
		{
			endpoint: openai.BatchNewParamsEndpointV1Embeddings,
			body:     func(i int) string { return fmt.Sprintf(`{"model":%q,"input":"line %d to embed"}`, embedModel, i) },
			check: func(t *testing.T, i int, body json.RawMessage) {
				var e openai.CreateEmbeddingResponse
				if err := json.Unmarshal(body, &e); err != nil || len(e.Data) != 1 {
					t.Fatalf("line %d: %s: %v", i, body, err)
				}
				want := vllmsim.ExpectEmbedding(embedModel, fmt.Sprintf("line %d to embed", i), 32)
				if got := e.Data[0].Embedding; len(got) != 32 || math.Abs(got[5]-float64(want[5])) > 1e-6 {
					t.Fatalf("line %d: embedding %v, want %v", i, got, want)
				}
			},
		},
		{
			endpoint: openai.BatchNewParamsEndpointV1Responses,
			body: func(i int) string {
				return fmt.Sprintf(`{"model":%q,"input":"response line %d","max_output_tokens":40}`, genModel, i)
			},
			check: func(t *testing.T, i int, body json.RawMessage) {
				var r responses.Response
				if err := json.Unmarshal(body, &r); err != nil {
					t.Fatalf("line %d: %s: %v", i, body, err)
				}
				msgs, _ := vllmsim.ResponsesMessages("", json.RawMessage(fmt.Sprintf("%q", fmt.Sprintf("response line %d", i))))
				if want := vllmsim.Expect(genModel, vllmsim.ChatPrompt(msgs), 40); r.OutputText() != want.Text {
					t.Fatalf("line %d: %q, want %q", i, r.OutputText(), want.Text)
				}
			},
		},
	} {
		t.Run(string(run.endpoint), func(t *testing.T) {
			var buf bytes.Buffer
			for i := range 100 {
				fmt.Fprintf(&buf, `{"custom_id":"c-%d","method":"POST","url":%q,"body":%s}`+"\n", i, run.endpoint, run.body(i))
			}
			f, err := client.Files.New(ctx, openai.FileNewParams{File: openai.File(bytes.NewReader(buf.Bytes()), "in.jsonl", "application/jsonl"), Purpose: openai.FilePurposeBatch})
			if err != nil {
				t.Fatal(err)
			}
			b, err := client.Batches.New(ctx, openai.BatchNewParams{InputFileID: f.ID, Endpoint: run.endpoint, CompletionWindow: openai.BatchNewParamsCompletionWindow24h})
			if err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(2 * time.Minute)
			for b.Status != openai.BatchStatusCompleted {
				if time.Now().After(deadline) || b.Status == openai.BatchStatusFailed {
					t.Fatalf("batch %s", b.RawJSON())
				}
				time.Sleep(100 * time.Millisecond)
				if b, err = client.Batches.Get(ctx, b.ID); err != nil {
					t.Fatal(err)
				}
			}
			if b.RequestCounts.Completed != 100 || b.Endpoint != string(run.endpoint) {
				t.Fatalf("batch %s", b.RawJSON())
			}
			resp, err := client.Files.Content(ctx, b.OutputFileID)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			sc := bufio.NewScanner(resp.Body)
			sc.Buffer(make([]byte, 1<<20), 8<<20)
			seen := 0
			for sc.Scan() {
				var l outputLine
				if err := json.Unmarshal(sc.Bytes(), &l); err != nil || l.Response == nil || l.Response.StatusCode != 200 {
					t.Fatalf("output line %s: %v", sc.Text(), err)
				}
				var i int
				if _, err := fmt.Sscanf(l.CustomID, "c-%d", &i); err != nil || i != seen {
					t.Fatalf("line %d has custom_id %q, want input order", seen, l.CustomID)
				}
				run.check(t, i, l.Response.Body)
				seen++
			}
			if seen != 100 {
				t.Fatalf("%d output lines, want 100", seen)
			}
		})
	}
}

// sdkReceiver records every POST that openai-go v3's webhooks.Unwrap
// verifies and parses with the endpoint's secret (set once it is known).
type sdkReceiver struct {
	srv    *httptest.Server
	mu     sync.Mutex
	secret string
	events []webhooks.UnwrapWebhookEventUnion
	bad    []error
}

func newSDKReceiver(t *testing.T) *sdkReceiver {
	rc := &sdkReceiver{}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		defer rc.mu.Unlock()
		c := openai.NewClient(option.WithWebhookSecret(rc.secret), option.WithAPIKey("unused"))
		ev, err := c.Webhooks.Unwrap(body, r.Header)
		if err != nil {
			rc.bad = append(rc.bad, fmt.Errorf("%w: %s", err, body))
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		rc.events = append(rc.events, *ev)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *sdkReceiver) seen(typ string) []webhooks.UnwrapWebhookEventUnion {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []webhooks.UnwrapWebhookEventUnion
	for _, e := range rc.events {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

// TestWebhookEndpointsThroughSDK manages an endpoint with openai-go v3's
// client.Webhooks (create, get, list, update, test, rotate, delete) and
// checks that a background response and a batch announce
// response.completed and batch.completed in OpenAI's event shape, which
// the SDK's Unwrap verifies and parses.
func TestWebhookEndpointsThroughSDK(t *testing.T) {
	t.Parallel()
	st := startStack(t, devstack.Config{WebhookTimeScale: 0.001})
	client := v3Client(st, "/v1")
	ctx := context.Background()
	rc := newSDKReceiver(t)

	ep, err := client.Webhooks.New(ctx, webhooks.WebhookNewParams{Name: "sdk", URL: rc.srv.URL,
		EventTypes: []string{"response.completed", "batch.completed"}})
	if err != nil {
		t.Fatal(err)
	}
	if ep.SigningSecret == "" || ep.Name != "sdk" || len(ep.EventTypes) != 2 || ep.SigningSecretHint == "" {
		t.Fatalf("created %s", ep.RawJSON())
	}
	rc.mu.Lock()
	rc.secret = ep.SigningSecret
	rc.mu.Unlock()
	if got, err := client.Webhooks.Get(ctx, ep.ID); err != nil || got.URL != rc.srv.URL || got.JSON.ExtraFields["signing_secret"].Valid() {
		t.Fatalf("get: %v %+v", err, got)
	}
	if page, err := client.Webhooks.List(ctx, webhooks.WebhookListParams{}); err != nil || len(page.Data) != 1 {
		t.Fatalf("list: %v %+v", err, page)
	}
	if up, err := client.Webhooks.Update(ctx, ep.ID, webhooks.WebhookUpdateParams{Name: openai.String("renamed")}); err != nil || up.Name != "renamed" {
		t.Fatalf("update: %v %+v", err, up)
	}
	res, err := client.Webhooks.Test(ctx, ep.ID, webhooks.WebhookTestParams{EventType: webhooks.WebhookTestParamsEventTypeResponseCompleted})
	if err != nil || res.StatusCode != 200 || !res.Success {
		t.Fatalf("test: %v %+v (receiver errors %v)", err, res, rc.bad)
	}
	if got := rc.seen("response.completed"); len(got) != 1 || got[0].Data.ID == "" {
		t.Fatalf("test event: %+v, errors %v", got, rc.bad)
	}

	// A real response and a real batch end, and each announces once.
	r, err := client.Responses.New(ctx, responses.ResponseNewParams{Model: st.Config().Model, Background: openai.Bool(true),
		Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("tell the webhook")}})
	if err != nil {
		t.Fatal(err)
	}
	f, err := client.Files.New(ctx, openai.FileNewParams{Purpose: openai.FilePurposeBatch, File: openai.File(strings.NewReader(
		fmt.Sprintf(`{"custom_id":"a","method":"POST","url":"/v1/responses","body":{"model":%q,"input":"hi"}}`+"\n", st.Config().Model)), "in.jsonl", "application/jsonl")})
	if err != nil {
		t.Fatal(err)
	}
	b, err := client.Batches.New(ctx, openai.BatchNewParams{InputFileID: f.ID, Endpoint: openai.BatchNewParamsEndpointV1Responses,
		CompletionWindow: openai.BatchNewParamsCompletionWindow24h})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "response.completed and batch.completed", func() bool {
		return len(rc.seen("response.completed")) == 2 && len(rc.seen("batch.completed")) == 1
	})
	if got := rc.seen("response.completed")[1]; got.Data.ID != r.ID || got.Object != "event" {
		t.Fatalf("response event %+v, want data.id %s", got, r.ID)
	}
	if got := rc.seen("batch.completed")[0]; got.Data.ID != b.ID {
		t.Fatalf("batch event %+v, want data.id %s", got, b.ID)
	}
	if len(rc.bad) > 0 {
		t.Fatalf("receiver refused: %v", rc.bad)
	}

	rot, err := client.Webhooks.RotateSecret(ctx, ep.ID, webhooks.WebhookRotateSecretParams{})
	if err != nil || rot.SigningSecret == "" || rot.SigningSecret == ep.SigningSecret {
		t.Fatalf("rotate: %v %+v", err, rot)
	}
	if del, err := client.Webhooks.Delete(ctx, ep.ID); err != nil || !del.Deleted {
		t.Fatalf("delete: %v %+v", err, del)
	}
	if _, err := client.Webhooks.Get(ctx, ep.ID); !isStatus(err, 404) {
		t.Fatalf("get after delete: %v, want 404", err)
	}
}

// TestExpiresAfter: OpenAI's expires_after on a file and
// output_expires_after on a batch, through openai-go v3, give the files an
// expires_at; out-of-range values are a 400 naming the field.
func TestExpiresAfter(t *testing.T) {
	t.Parallel()
	st := startStack(t, devstack.Config{})
	client := v3Client(st, "/v1")
	ctx := context.Background()
	line := fmt.Sprintf(`{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":%s}`+"\n", chatBody(st.Config().Model, "expiring", 5))
	f, err := client.Files.New(ctx, openai.FileNewParams{Purpose: openai.FilePurposeBatch,
		File: openai.File(strings.NewReader(line), "in.jsonl", "application/jsonl"), ExpiresAfter: openai.FileNewParamsExpiresAfter{Seconds: 7200}})
	if err != nil {
		t.Fatal(err)
	}
	if f.ExpiresAt != f.CreatedAt+7200 {
		t.Fatalf("file expires_at %d, created_at %d: want 2 h later", f.ExpiresAt, f.CreatedAt)
	}
	if got, err := client.Files.Get(ctx, f.ID); err != nil || got.ExpiresAt != f.ExpiresAt {
		t.Fatalf("get: %v %+v", err, got)
	}
	if _, err := client.Files.New(ctx, openai.FileNewParams{Purpose: openai.FilePurposeBatch,
		File: openai.File(strings.NewReader(line), "in.jsonl", "application/jsonl"), ExpiresAfter: openai.FileNewParamsExpiresAfter{Seconds: 60}}); !isStatus(err, 400) {
		t.Fatalf("expires_after 60 s: %v, want 400", err)
	}
	b, err := client.Batches.New(ctx, openai.BatchNewParams{InputFileID: f.ID, Endpoint: openai.BatchNewParamsEndpointV1ChatCompletions,
		CompletionWindow: openai.BatchNewParamsCompletionWindow24h, OutputExpiresAfter: openai.BatchNewParamsOutputExpiresAfter{Seconds: 3600}})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for b.Status != openai.BatchStatusCompleted {
		if time.Now().After(deadline) {
			t.Fatalf("batch %s", b.RawJSON())
		}
		time.Sleep(50 * time.Millisecond)
		if b, err = client.Batches.Get(ctx, b.ID); err != nil {
			t.Fatal(err)
		}
	}
	out, err := client.Files.Get(ctx, b.OutputFileID)
	if err != nil || out.ExpiresAt != out.CreatedAt+3600 {
		t.Fatalf("output file: %v %+v, want expires_at 1 h after created_at", err, out)
	}
	if _, err := client.Batches.New(ctx, openai.BatchNewParams{InputFileID: f.ID, Endpoint: openai.BatchNewParamsEndpointV1ChatCompletions,
		CompletionWindow: openai.BatchNewParamsCompletionWindow24h, OutputExpiresAfter: openai.BatchNewParamsOutputExpiresAfter{Seconds: 40 * 86400}}); !isStatus(err, 400) {
		t.Fatalf("output_expires_after 40 d: %v, want 400", err)
	}
}
