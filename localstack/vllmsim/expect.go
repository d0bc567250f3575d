package vllmsim

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"strings"
)

// Completion is the simulator's deterministic answer to one prompt.
type Completion struct {
	Text             string // the words joined by single spaces
	PromptTokens     int    // Tokens(prompt)
	CompletionTokens int    // words in Text
	FinishReason     string // "stop" or "length"
}

// vocabulary is the fixed word list answers are drawn from. Changing it
// changes every answer.
var vocabulary = strings.Fields(`
	the a of to and in is it that for on with as at by from
	idle gpu queue batch token model lull slow quiet night work gap
	warm cache kernel spot fleet answer request result window hour
	async webhook signal wait ready done light river stone cloud paper
	garden bridge tower market harbor forest meadow lamp field north
	south letter engine summer winter valley`)

// Tokens counts tokens the way the simulator does: whitespace-separated
// words (strings.Fields).
func Tokens(s string) int { return len(strings.Fields(s)) }

// Expect returns exactly what the simulator answers for prompt on model.
//
// The natural length is 8 + h%57 words (8..64), h being the 64-bit FNV-1a
// hash of model, a zero byte and prompt; the words come from a fixed
// vocabulary by a hash chain seeded with h. maxTokens > 0 truncates the
// answer to that many words (finish reason "length" when it cuts);
// otherwise the finish reason is "stop".
//
// How the server builds prompts:
//   - /v1/completions: the prompt string itself; with an array of prompts,
//     each element is answered on its own (one choice per prompt).
//   - /v1/chat/completions: ChatPrompt(messages).
//   - With "n" > 1, choice i > 0 answers prompt + "#" + i (e.g. "hi#1"),
//     choice 0 answers prompt; usage counts the prompt's tokens once.
//   - A request without max_tokens is limited by the context instead
//     (MaxModelLen - prompt tokens), which only matters for prompts within
//     64 tokens of MaxModelLen.
func Expect(model, prompt string, maxTokens int) Completion {
	return completionOf(model, prompt, maxTokens, false)
}

// ExpectIgnoreEOS is Expect for requests with vLLM's "ignore_eos": true:
// generation runs to exactly maxTokens words (finish reason "length"),
// continuing the same hash chain past the natural end. maxTokens <= 0 gives
// Expect's answer.
func ExpectIgnoreEOS(model, prompt string, maxTokens int) Completion {
	return completionOf(model, prompt, maxTokens, true)
}

func completionOf(model, prompt string, maxTokens int, ignoreEOS bool) Completion {
	words, finish := answer(model, prompt, maxTokens, ignoreEOS)
	return Completion{Text: strings.Join(words, " "), PromptTokens: Tokens(prompt), CompletionTokens: len(words), FinishReason: finish}
}

// answer returns the words of the answer and the finish reason.
func answer(model, prompt string, maxTokens int, ignoreEOS bool) ([]string, string) {
	h := fnv.New64a()
	h.Write([]byte(model))
	h.Write([]byte{0})
	h.Write([]byte(prompt))
	x := h.Sum64()
	n, finish := 8+int(x%57), "stop"
	if maxTokens > 0 && (maxTokens < n || ignoreEOS) {
		n, finish = maxTokens, "length"
	}
	words := make([]string, n)
	for i := range words {
		// splitmix64: one step of the chain per word.
		x += 0x9e3779b97f4a7c15
		z := x
		z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
		z = (z ^ z>>27) * 0x94d049bb133111eb
		z ^= z >> 31
		words[i] = vocabulary[z%uint64(len(vocabulary))]
	}
	return words, finish
}

// Message is a chat message as the simulator reads it. Content is a string
// or an array of content parts, of which the {"type":"text","text":...}
// ones count (as decoded from JSON: []any of map[string]any; a
// json.RawMessage or []map[string]any works too).
type Message struct {
	Role    string `json:"role"`
	Content any    `json:"content"`
}

// ChatPrompt renders chat messages into the prompt the simulator answers:
// one "<role>: <text>" line per message, joined by "\n", where text is the
// string content or the text parts joined by single spaces. A chat
// request's prompt_tokens is Tokens(ChatPrompt(messages)).
func ChatPrompt(messages []Message) string {
	var b strings.Builder
	for i, m := range messages {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(m.Role)
		b.WriteString(": ")
		b.WriteString(contentText(m.Content))
	}
	return b.String()
}

func contentText(c any) string {
	switch v := c.(type) {
	case nil:
		return ""
	case string:
		return v
	case []any:
		parts := make([]string, 0, len(v))
		for _, p := range v {
			if m, ok := p.(map[string]any); ok {
				if t, ok := m["text"].(string); ok {
					parts = append(parts, t)
				}
			}
		}
		return strings.Join(parts, " ")
	case []map[string]any:
		parts := make([]any, len(v))
		for i, m := range v {
			parts[i] = m
		}
		return contentText(parts)
	case json.RawMessage:
		var x any
		if json.Unmarshal(v, &x) != nil {
			return ""
		}
		return contentText(x)
	}
	return fmt.Sprint(c)
}
