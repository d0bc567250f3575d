package vllmsim

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestExpect(t *testing.T) {
	t.Parallel()
	base := Expect("m", "hello there", 0)
	for _, tc := range []struct {
		name string
		got  Completion
		want func(c Completion) bool
	}{
		{"Deterministic", Expect("m", "hello there", 0), func(c Completion) bool { return c == base }},
		{"NaturalLength", base, func(c Completion) bool {
			return c.CompletionTokens >= 8 && c.CompletionTokens <= 64 && c.CompletionTokens == Tokens(c.Text) &&
				c.PromptTokens == 2 && c.FinishReason == "stop"
		}},
		{"OtherPrompt", Expect("m", "hello there#1", 0), func(c Completion) bool { return c.Text != base.Text }},
		{"OtherModel", Expect("m2", "hello there", 0), func(c Completion) bool { return c.Text != base.Text }},
		{"Truncated", Expect("m", "hello there", 3), func(c Completion) bool {
			return c.CompletionTokens == 3 && c.FinishReason == "length" && strings.HasPrefix(base.Text, c.Text+" ")
		}},
		{"LimitAboveNatural", Expect("m", "hello there", 1000), func(c Completion) bool { return c == base }},
		{"IgnoreEOS", ExpectIgnoreEOS("m", "hello there", 100), func(c Completion) bool {
			return c.CompletionTokens == 100 && c.FinishReason == "length" && strings.HasPrefix(c.Text, base.Text+" ")
		}},
		{"IgnoreEOSNoLimit", ExpectIgnoreEOS("m", "hello there", 0), func(c Completion) bool { return c == base }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if !tc.want(tc.got) {
				t.Fatalf("got %+v (base %+v)", tc.got, base)
			}
		})
	}
}

func TestExpectSpreadsLengths(t *testing.T) {
	t.Parallel()
	lengths := map[int]bool{}
	for i := range 200 {
		lengths[Expect("m", strings.Repeat("x ", i), 0).CompletionTokens] = true
	}
	if len(lengths) < 30 {
		t.Fatalf("only %d distinct lengths over 200 prompts", len(lengths))
	}
}

func TestChatPrompt(t *testing.T) {
	t.Parallel()
	var decoded []Message
	if err := json.Unmarshal([]byte(`[{"role":"system","content":"be brief"},
		{"role":"user","content":[{"type":"text","text":"a b"},{"type":"image_url","image_url":{"url":"x"}},{"type":"text","text":"c"}]}]`), &decoded); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		msgs []Message
		want string
	}{
		{"Strings", []Message{{Role: "system", Content: "be brief"}, {Role: "user", Content: "hi"}}, "system: be brief\nuser: hi"},
		{"DecodedParts", decoded, "system: be brief\nuser: a b c"},
		{"MapParts", []Message{{Role: "user", Content: []map[string]any{{"type": "text", "text": "x"}, {"type": "text", "text": "y"}}}}, "user: x y"},
		{"RawJSON", []Message{{Role: "user", Content: json.RawMessage(`"raw"`)}}, "user: raw"},
		{"NilContent", []Message{{Role: "assistant"}}, "assistant: "},
		{"Empty", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := ChatPrompt(tc.msgs); got != tc.want {
				t.Fatalf("ChatPrompt = %q, want %q", got, tc.want)
			}
		})
	}
}
