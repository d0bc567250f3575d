package request

import (
	"encoding/json"
	"fmt"

	"github.com/lull-ai/lull/shared/lull"
)

// MaxEmbeddingInputs is the most inputs one embeddings request may carry
// (OpenAI's limit).
const MaxEmbeddingInputs = 2048

func taskNoun(t lull.Task) string {
	if t == lull.TaskEmbed {
		return "embedding"
	}
	return "generation"
}

// validateEmbeddings checks an embeddings body as OpenAI does: input is a
// non-empty string, an array of non-empty strings, an array of token IDs or
// an array of token-ID arrays, at most MaxEmbeddingInputs of them;
// encoding_format is float or base64; dimensions is positive.
func validateEmbeddings(req *Body) error {
	if err := validateEmbeddingInput(req.Input); err != nil {
		return err
	}
	if f := req.EncodingFormat; f != nil && *f != "float" && *f != "base64" {
		return lull.ParamError("encoding_format", "Invalid value for 'encoding_format': %q. Supported values are: 'float' and 'base64'.", *f)
	}
	if d := req.Dimensions; d != nil && *d < 1 {
		return lull.ParamError("dimensions", "'dimensions' must be at least 1.")
	}
	return nil
}

func validateEmbeddingInput(raw json.RawMessage) error {
	if len(raw) == 0 || string(raw) == "null" {
		return lull.ParamError("input", "Missing required parameter: 'input'.")
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		if one == "" {
			return lull.ParamError("input", "'input' cannot be an empty string.")
		}
		return nil
	}
	var many []json.RawMessage
	if json.Unmarshal(raw, &many) != nil || len(many) == 0 {
		return lull.ParamError("input", "'input' must be a string, an array of strings, an array of token IDs or an array of token-ID arrays, and not empty.")
	}
	if len(many) > MaxEmbeddingInputs {
		return lull.ParamError("input", "'input' may hold at most %d items, got %d.", MaxEmbeddingInputs, len(many))
	}
	var strs []string
	var tokens []int
	var tokenLists [][]int
	switch {
	case json.Unmarshal(raw, &strs) == nil:
		for i, s := range strs {
			if s == "" {
				return lull.ParamError(fmt.Sprintf("input[%d]", i), "'input[%d]' cannot be an empty string.", i)
			}
		}
	case json.Unmarshal(raw, &tokens) == nil:
	case json.Unmarshal(raw, &tokenLists) == nil:
		for i, l := range tokenLists {
			if len(l) == 0 {
				return lull.ParamError(fmt.Sprintf("input[%d]", i), "'input[%d]' cannot be an empty array.", i)
			}
		}
	default:
		return lull.ParamError("input", "'input' must be a string, an array of strings, an array of token IDs or an array of token-ID arrays.")
	}
	return nil
}

// validateResponses checks a Responses body: input is a non-empty string or
// array of input items; lull keeps no conversation state, so
// previous_response_id and conversation are refused; max_output_tokens is
// positive. Whether background is required is the caller's rule (see
// RequireBackground).
func validateResponses(req *Body) error {
	raw := req.Input
	if len(raw) == 0 || string(raw) == "null" {
		return lull.ParamError("input", "Missing required parameter: 'input'.")
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		if one == "" {
			return lull.ParamError("input", "'input' cannot be an empty string.")
		}
	} else {
		var items []map[string]json.RawMessage
		if json.Unmarshal(raw, &items) != nil || len(items) == 0 {
			return lull.ParamError("input", "'input' must be a string or a non-empty array of input items.")
		}
	}
	if req.PreviousResponseID != nil && *req.PreviousResponseID != "" {
		return lull.ParamError("previous_response_id", "lull keeps no conversation state between responses: send the whole conversation in 'input' instead of 'previous_response_id'.")
	}
	if len(req.Conversation) > 0 && string(req.Conversation) != "null" {
		return lull.ParamError("conversation", "lull keeps no conversation state between responses: send the whole conversation in 'input' instead of 'conversation'.")
	}
	if v := req.MaxOutputTokens; v != nil && *v < 1 {
		return lull.ParamError("max_output_tokens", "'max_output_tokens' must be at least 1.")
	}
	return nil
}

// RequireBackground refuses a Responses body without "background": true:
// POST /v1/responses runs only in the background on lull (the result comes
// later), where OpenAI would otherwise answer synchronously.
func RequireBackground(req *Body) error {
	if req.Background == nil || !*req.Background {
		return lull.ParamError("background", "lull runs responses in the background: set \"background\": true (or POST to /v1/slow/responses) and fetch the result with GET /v1/responses/{id} or a webhook.")
	}
	return nil
}
