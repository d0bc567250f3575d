package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	openai "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/lull-ai/lull/localstack/devstack"
	"github.com/lull-ai/lull/localstack/vllmsim"
)

// TestOpenAISDKEndToEnd submits 200 requests from four tenants through the
// official OpenAI Go SDK with only the base URL changed, and checks that every
// one completes with exactly the simulator's text and token usage, and that
// each tenant lists only its own generations.
func TestOpenAISDKEndToEnd(t *testing.T) {
	t.Parallel()
	st := startStack(t, devstack.Config{Workers: 2, WorkerConcurrency: 32})
	const model = "lull-sim-1"
	tenants := []string{"acme", "globex", "initech", "umbrella"}
	for _, tn := range tenants {
		if err := st.AddKey(context.Background(), "sk-"+tn, tn); err != nil {
			t.Fatal(err)
		}
	}
	type submitted struct {
		id, tenant, prompt string
		chat               bool
		maxTokens          int
	}
	const total = 200
	subs := make([]submitted, total)
	var wg sync.WaitGroup
	errs := make(chan error, total)
	for i := range total {
		tn := tenants[i%len(tenants)]
		wg.Go(func() {
			client := openai.NewClient(option.WithBaseURL(st.URL+"/v1/slow/"), option.WithAPIKey("sk-"+tn), option.WithMaxRetries(0))
			prompt := fmt.Sprintf("request %d from %s: tell me something", i, tn)
			maxTokens := 8 + i%40
			s := submitted{tenant: tn, prompt: prompt, chat: i%5 != 0, maxTokens: maxTokens}
			if s.chat {
				resp, err := client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
					Model:     model,
					Messages:  []openai.ChatCompletionMessageParamUnion{openai.UserMessage(prompt)},
					MaxTokens: openai.Int(int64(maxTokens)),
				})
				if err != nil {
					errs <- err
					return
				}
				if resp.Object != "chat.completion" || len(resp.Choices) != 0 || resp.JSON.ExtraFields["status"].Raw() != `"queued"` {
					errs <- fmt.Errorf("accepted body as parsed by the SDK: %s", resp.RawJSON())
					return
				}
				s.id = resp.ID
			} else {
				resp, err := client.Completions.New(context.Background(), openai.CompletionNewParams{
					Model:     openai.CompletionNewParamsModel(model),
					Prompt:    openai.CompletionNewParamsPromptUnion{OfString: openai.String(prompt)},
					MaxTokens: openai.Int(int64(maxTokens)),
				})
				if err != nil {
					errs <- err
					return
				}
				s.id = resp.ID
			}
			subs[i] = s
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("submit: %v", err)
	}

	for _, s := range subs {
		g := waitTerminal(t, st, "sk-"+s.tenant, []string{s.id}, 2*time.Minute)[s.id]
		if g.Status != "completed" {
			t.Fatalf("%s: status %s, error %+v", s.id, g.Status, g.Error)
		}
		var want vllmsim.Completion
		var text string
		var usage openai.CompletionUsage
		if s.chat {
			want = vllmsim.Expect(model, vllmsim.ChatPrompt([]vllmsim.Message{{Role: "user", Content: s.prompt}}), s.maxTokens)
			var resp openai.ChatCompletion
			if err := json.Unmarshal(g.Response, &resp); err != nil || len(resp.Choices) != 1 {
				t.Fatalf("%s: response %s: %v", s.id, g.Response, err)
			}
			text, usage = resp.Choices[0].Message.Content, resp.Usage
		} else {
			want = vllmsim.Expect(model, s.prompt, s.maxTokens)
			var resp openai.Completion
			if err := json.Unmarshal(g.Response, &resp); err != nil || len(resp.Choices) != 1 {
				t.Fatalf("%s: response %s: %v", s.id, g.Response, err)
			}
			text, usage = resp.Choices[0].Text, resp.Usage
		}
		if text != want.Text {
			t.Fatalf("%s: text %q, want the simulator's %q", s.id, text, want.Text)
		}
		if int(usage.PromptTokens) != want.PromptTokens || int(usage.CompletionTokens) != want.CompletionTokens ||
			g.Usage == nil || g.Usage.PromptTokens != want.PromptTokens || g.Usage.CompletionTokens != want.CompletionTokens {
			t.Fatalf("%s: usage %+v / recorded %+v, want %d prompt + %d completion", s.id, usage, g.Usage, want.PromptTokens, want.CompletionTokens)
		}
	}

	// Each tenant lists exactly its own generations.
	for _, tn := range tenants {
		own := map[string]bool{}
		for _, s := range subs {
			if s.tenant == tn {
				own[s.id] = true
			}
		}
		seen := 0
		after := ""
		for {
			var page struct {
				Data []struct {
					ID string `json:"id"`
				} `json:"data"`
				HasMore bool   `json:"has_more"`
				LastID  string `json:"last_id"`
			}
			url := st.URL + "/v1/generations?limit=17"
			if after != "" {
				url += "&after=" + after
			}
			if code := getJSON(t, url, "sk-"+tn, &page); code != http.StatusOK {
				t.Fatalf("list: %d", code)
			}
			for _, d := range page.Data {
				if !own[d.ID] {
					t.Fatalf("tenant %s lists %s, not its own", tn, d.ID)
				}
				seen++
			}
			if !page.HasMore {
				break
			}
			after = page.LastID
		}
		if seen != len(own) {
			t.Fatalf("tenant %s lists %d generations, submitted %d", tn, seen, len(own))
		}
	}
}
