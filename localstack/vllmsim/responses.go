package vllmsim

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"
)

// ResponsesMessages renders a Responses request's instructions and input
// as the chat messages the simulator answers (its prompt is
// ChatPrompt(messages), so Expect gives the answer): instructions as a
// system message, a string input as one user message, and each input item
// that has a role as a message of that role (its content a string or
// input_text/output_text parts). Items without a role (tool outputs,
// reasoning) are rendered as user text.
func ResponsesMessages(instructions string, input json.RawMessage) ([]Message, error) {
	var msgs []Message
	if instructions != "" {
		msgs = append(msgs, Message{Role: "system", Content: instructions})
	}
	var one string
	if json.Unmarshal(input, &one) == nil {
		return append(msgs, Message{Role: "user", Content: one}), nil
	}
	var items []map[string]any
	if err := json.Unmarshal(input, &items); err != nil || len(items) == 0 {
		return nil, errors.New("'input' must be a string or a non-empty array of input items")
	}
	for _, it := range items {
		role, _ := it["role"].(string)
		if role == "" {
			b, _ := json.Marshal(it)
			msgs = append(msgs, Message{Role: "user", Content: string(b)})
			continue
		}
		msgs = append(msgs, Message{Role: role, Content: it["content"]})
	}
	return msgs, nil
}

type responsesRequest struct {
	Model           string          `json:"model"`
	Input           json.RawMessage `json:"input"`
	Instructions    string          `json:"instructions"`
	MaxOutputTokens *int            `json:"max_output_tokens"`
	Stream          bool            `json:"stream"`
	Background      bool            `json:"background"`
	Priority        int             `json:"priority"`
	Metadata        map[string]any  `json:"metadata"`
}

// responses answers POST /v1/responses as vLLM's OpenAI server does for a
// synchronous, non-streamed request: one assistant message whose text is
// Expect's answer to ResponsesMessages, status "incomplete" (reason
// max_output_tokens) when max_output_tokens cut it, and Responses usage
// (input_tokens, output_tokens). Background and streamed requests are
// refused: lull's worker sends neither.
func (s *Server) responses(w http.ResponseWriter, r *http.Request) {
	var req responsesRequest
	if !s.take(w, r, s.cfg.Task != TaskEmbed, "Responses", &req) {
		return
	}
	if req.Stream || req.Background {
		writeError(w, http.StatusBadRequest, "The simulator answers only synchronous, non-streamed responses.")
		return
	}
	msgs, err := ResponsesMessages(req.Instructions, req.Input)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	chat := request{Model: req.Model, Messages: msgs, MaxTokens: req.MaxOutputTokens, Priority: req.Priority}
	choices, usage, err := s.plan(&chat, true)
	if err != nil {
		var br *badRequest
		if errors.As(err, &br) {
			writeError(w, br.status, br.msg)
		} else {
			writeError(w, http.StatusInternalServerError, "Internal error.")
		}
		return
	}
	j, ok := s.submit(w, r, choices, false)
	if !ok {
		return
	}
	select {
	case <-j.done:
	case <-r.Context().Done():
		s.eng.abort(j)
		return
	}
	if j.failed {
		writeError(w, http.StatusServiceUnavailable, "The engine stopped before the request finished.")
		return
	}
	c := choices[0]
	status, incomplete := "completed", any(nil)
	if c.finish == "length" && req.MaxOutputTokens != nil {
		status, incomplete = "incomplete", map[string]string{"reason": "max_output_tokens"}
	}
	meta := req.Metadata
	if meta == nil {
		meta = map[string]any{}
	}
	var instructions any
	if req.Instructions != "" {
		instructions = req.Instructions
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"id": randomID("resp_"), "object": "response", "created_at": time.Now().Unix(), "status": status,
		"model": s.cfg.Model, "background": false, "error": nil, "incomplete_details": incomplete,
		"instructions": instructions, "max_output_tokens": req.MaxOutputTokens, "metadata": meta,
		"parallel_tool_calls": true, "tool_choice": "auto", "tools": []any{}, "temperature": 1.0, "top_p": 1.0,
		"text": map[string]any{"format": map[string]string{"type": "text"}},
		"output": []any{map[string]any{
			"type": "message", "id": randomID("msg_"), "status": "completed", "role": "assistant",
			"content": []any{map[string]any{"type": "output_text", "text": strings.Join(c.words, " "), "annotations": []any{}, "logprobs": []any{}}},
		}},
		"usage": map[string]any{
			"input_tokens": usage.PromptTokens, "input_tokens_details": map[string]int{"cached_tokens": 0},
			"output_tokens": usage.CompletionTokens, "output_tokens_details": map[string]int{"reasoning_tokens": 0},
			"total_tokens": usage.TotalTokens,
		},
	})
}
