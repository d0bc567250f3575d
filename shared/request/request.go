// Package request checks the body of an OpenAI-compatible request before
// lull accepts it: the API for /v1/slow/... and the batch Lambda for each
// line of a batch input file apply the same rules, with the same messages.
package request

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/lull-ai/lull/shared/lull"
)

// CodeModelNotFound is the error code of a request for a model that is not
// served (HTTP 404 at the API).
const CodeModelNotFound = "model_not_found"

// Body is what lull reads from a request body to validate it. The body
// itself is stored and forwarded unchanged.
type Body struct {
	Model     string          `json:"model"`
	Messages  json.RawMessage `json:"messages"`
	Prompt    json.RawMessage `json:"prompt"`
	Stream    *bool           `json:"stream"`
	N         *int            `json:"n"`
	MaxTokens *int            `json:"max_tokens"`
	MaxCompl  *int            `json:"max_completion_tokens"`
	Metadata  json.RawMessage `json:"metadata"`

	// Input is the input of embeddings and Responses requests.
	Input json.RawMessage `json:"input"`
	// EncodingFormat and Dimensions are the embeddings options.
	EncodingFormat *string `json:"encoding_format"`
	Dimensions     *int    `json:"dimensions"`
	// Background, MaxOutputTokens, PreviousResponseID and Conversation are
	// the Responses options lull checks.
	Background         *bool           `json:"background"`
	MaxOutputTokens    *int            `json:"max_output_tokens"`
	PreviousResponseID *string         `json:"previous_response_id"`
	Conversation       json.RawMessage `json:"conversation"`
}

type message struct {
	Role      string          `json:"role"`
	Content   json.RawMessage `json:"content"`
	ToolCalls json.RawMessage `json:"tool_calls"`
}

var roles = map[string]bool{"system": true, "developer": true, "user": true, "assistant": true, "tool": true, "function": true}

// CodeModelNotSupported is the error code of a request to an endpoint that
// the named model does not serve (an embedding model asked for a chat
// completion, say); HTTP 400.
const CodeModelNotSupported = "model_not_supported"

// Check validates body as a request to endpoint e. served says whether a
// model is served here and what it does. It returns the parsed fields and
// the metadata. Errors are *lull.Error values naming the offending
// parameter.
func Check(e lull.Endpoint, body []byte, served func(model string) (lull.Task, bool)) (*Body, map[string]string, error) {
	var req Body
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&req); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) && typeErr.Field != "" {
			return nil, nil, lull.ParamError(typeErr.Field, "Invalid type for '%s': expected %s.", typeErr.Field, typeErr.Type)
		}
		if errors.As(err, &typeErr) {
			return nil, nil, lull.Errorf(lull.EINVALID, "The request body must be a JSON object.")
		}
		return nil, nil, lull.Errorf(lull.EINVALID, "We could not parse the JSON body of your request: %s.", strings.TrimPrefix(err.Error(), "json: "))
	}
	if dec.More() {
		return nil, nil, lull.Errorf(lull.EINVALID, "The request body must hold exactly one JSON object.")
	}
	if req.Model == "" {
		return nil, nil, lull.ParamError("model", "you must provide a model parameter")
	}
	task, ok := served(req.Model)
	if !ok {
		return nil, nil, &lull.Error{Code: CodeModelNotFound, Param: "model",
			Message: fmt.Sprintf("The model `%s` does not exist or is not served here. See GET /v1/models.", req.Model)}
	}
	if !task.Serves(e) {
		return nil, nil, &lull.Error{Code: CodeModelNotSupported, Param: "model",
			Message: fmt.Sprintf("The model `%s` is a %s model and does not serve %s. See GET /v1/models.", req.Model, taskNoun(task), e.Path())}
	}
	if req.Stream != nil && *req.Stream {
		return nil, nil, lull.ParamError("stream", "Streaming is not available for slow requests: the result is delivered later. Remove 'stream' or set it to false.")
	}
	if req.N != nil && (*req.N < 1 || *req.N > 128) {
		return nil, nil, lull.ParamError("n", "'n' must be between 1 and 128.")
	}
	for name, v := range map[string]*int{"max_tokens": req.MaxTokens, "max_completion_tokens": req.MaxCompl} {
		if v != nil && *v < 1 {
			return nil, nil, lull.ParamError(name, "'%s' must be at least 1.", name)
		}
	}
	switch e {
	case lull.EndpointChat:
		if err := validateMessages(req.Messages); err != nil {
			return nil, nil, err
		}
	case lull.EndpointCompletions:
		if err := validatePrompt(req.Prompt); err != nil {
			return nil, nil, err
		}
	case lull.EndpointEmbeddings:
		if err := validateEmbeddings(&req); err != nil {
			return nil, nil, err
		}
	case lull.EndpointResponses:
		if err := validateResponses(&req); err != nil {
			return nil, nil, err
		}
	}
	meta := map[string]string{}
	if len(req.Metadata) > 0 && string(req.Metadata) != "null" {
		if err := json.Unmarshal(req.Metadata, &meta); err != nil {
			return nil, nil, lull.ParamError("metadata", "'metadata' must be an object of string values.")
		}
		if err := CheckMetadata(meta); err != nil {
			return nil, nil, err
		}
	}
	return &req, meta, nil
}

// CheckMetadata applies OpenAI's limits to a metadata object (slow
// requests and batches): at most 16 keys, keys of at most 64 and values of
// at most 512 characters.
func CheckMetadata(meta map[string]string) error {
	if len(meta) > 16 {
		return lull.ParamError("metadata", "'metadata' may have at most 16 keys.")
	}
	for k, v := range meta {
		if len(k) > 64 || len(v) > 512 {
			return lull.ParamError("metadata", "metadata keys are at most 64 and values at most 512 characters.")
		}
	}
	return nil
}

func validateMessages(raw json.RawMessage) error {
	if len(raw) == 0 || string(raw) == "null" {
		return lull.ParamError("messages", "Missing required parameter: 'messages'.")
	}
	var msgs []message
	if err := json.Unmarshal(raw, &msgs); err != nil {
		return lull.ParamError("messages", "'messages' must be an array of message objects.")
	}
	if len(msgs) == 0 {
		return lull.ParamError("messages", "'messages' must contain at least one message.")
	}
	for i, m := range msgs {
		param := fmt.Sprintf("messages[%d]", i)
		if !roles[m.Role] {
			return lull.ParamError(param+".role", "Invalid value for 'role': %q. Supported values are: 'system', 'developer', 'user', 'assistant', 'tool' and 'function'.", m.Role)
		}
		c := bytes.TrimSpace(m.Content)
		noContent := len(c) == 0 || string(c) == "null"
		if noContent && !(m.Role == "assistant" && len(m.ToolCalls) > 0) {
			return lull.ParamError(param+".content", "Missing required parameter: '%s.content'.", param)
		}
		if !noContent && c[0] != '"' && c[0] != '[' {
			return lull.ParamError(param+".content", "'%s.content' must be a string or an array of content parts.", param)
		}
	}
	return nil
}

func validatePrompt(raw json.RawMessage) error {
	if len(raw) == 0 || string(raw) == "null" {
		return lull.ParamError("prompt", "Missing required parameter: 'prompt'.")
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return nil
	}
	var many []json.RawMessage
	if json.Unmarshal(raw, &many) != nil || len(many) == 0 {
		return lull.ParamError("prompt", "'prompt' must be a string or a non-empty array.")
	}
	return nil
}
