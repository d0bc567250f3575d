package vllmsim

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"strings"
)

// Completion is the simulator's deterministic answer to a prompt.
type Completion struct {
	Text             string
	PromptTokens     int
	CompletionTokens int
	FinishReason     string // "stop" or "length"
}

var vocabulary = strings.Fields(`the a of to and in is it that for on with as was at by an be this
from or are which idle gpu queue batch token model lull slow later quiet night work fills gap
warm cache kernel spot fleet answer request result window hour day async webhook signal wait
ready done light river stone cloud paper garden bridge tower market harbor forest meadow`)

// Tokens counts tokens the way the simulator does: whitespace-separated words.
func Tokens(s string) int { return len(strings.Fields(s)) }

// Expect returns exactly what the simulator answers for prompt on model.
// The natural length is 8 + hash%57 words; maxTokens > 0 truncates it (finish
// reason "length"). Chat requests use ChatPrompt(messages) as the prompt; the
// i-th choice (i > 0) of a request with n > 1 uses prompt + "#i".
func Expect(model, prompt string, maxTokens int) Completion {
	return expect(model, prompt, maxTokens, false)
}

// ExpectIgnoreEOS is Expect for requests with vLLM's "ignore_eos": true:
// generation runs to maxTokens (finish reason "length").
func ExpectIgnoreEOS(model, prompt string, maxTokens int) Completion {
	return expect(model, prompt, maxTokens, true)
}

func expect(model, prompt string, maxTokens int, ignoreEOS bool) Completion {
	h := fnv.New64a()
	h.Write([]byte(model))
	h.Write([]byte{0})
	h.Write([]byte(prompt))
	x := h.Sum64()
	n := 8 + int(x%57)
	finish := "stop"
	if maxTokens > 0 && (maxTokens < n || ignoreEOS) {
		n, finish = maxTokens, "length"
	}
	words := make([]string, n)
	for i := range words {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		words[i] = vocabulary[x%uint64(len(vocabulary))]
	}
	return Completion{Text: strings.Join(words, " "), PromptTokens: Tokens(prompt), CompletionTokens: n, FinishReason: finish}
}

// Message is a chat message as the simulator reads it. Content is a string
// or an array of {"type":"text","text":...} parts.
type Message struct {
	Role    string `json:"role"`
	Content any    `json:"content"`
}

// ChatPrompt renders chat messages into the prompt the simulator answers:
// one "<role>: <text>" line per message.
func ChatPrompt(messages []Message) string {
	lines := make([]string, len(messages))
	for i, m := range messages {
		lines[i] = m.Role + ": " + contentText(m.Content)
	}
	return strings.Join(lines, "\n")
}

func contentText(c any) string {
	switch v := c.(type) {
	case nil:
		return ""
	case string:
		return v
	case []any:
		var parts []string
		for _, p := range v {
			if m, ok := p.(map[string]any); ok {
				if t, ok := m["text"].(string); ok {
					parts = append(parts, t)
				}
			}
		}
		return strings.Join(parts, " ")
	case json.RawMessage:
		var x any
		_ = json.Unmarshal(v, &x)
		return contentText(x)
	}
	return fmt.Sprint(c)
}
