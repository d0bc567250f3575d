package integration

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"testing"
	"time"

	openai "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"

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
