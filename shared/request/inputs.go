package request

import (
	"encoding/json"
	"fmt"

	"github.com/lull-ai/lull/shared/lull"
)

// MaxEmbeddingInputs is the most inputs one embeddings request may carry
// (OpenAI's limit).
const MaxEmbeddingInputs = 2048

// MaxResponseItems is the most input items one Responses request may carry.
const MaxResponseItems = 2048

// CodeModelNotSupported is the error code of a request to an endpoint that
// the named model does not serve (an embedding model asked for a chat
// completion, say); HTTP 400.
const CodeModelNotSupported = "model_not_supported"

func taskNoun(t lull.Task) string {
	if t == lull.TaskEmbed {
		return "embedding"
	}
	return "generation"
}

// input checks the input of an embeddings or Responses request.
func (c *checker) input(k string, v any) (any, error) {
	if c.e == lull.EndpointEmbeddings {
		raw, err := encode(v)
		if err != nil {
			return nil, err
		}
		return v, validateEmbeddingInput(raw)
	}
	return v, c.responsesInput(v)
}

// validateEmbeddingInput checks an embeddings input as OpenAI does: a
// non-empty string, an array of non-empty strings, an array of token IDs or
// an array of token-ID arrays, at most MaxEmbeddingInputs of them.
func validateEmbeddingInput(raw json.RawMessage) error {
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

// responsesInput checks a Responses input: a non-empty string or a
// non-empty array of input items; media in items (input_image,
// input_file) must be inline unless Limits.AllowRemoteMedia.
func (c *checker) responsesInput(v any) error {
	switch in := v.(type) {
	case string:
		if in == "" {
			return lull.ParamError("input", "'input' cannot be an empty string.")
		}
		return nil
	case []any:
		if len(in) == 0 {
			return lull.ParamError("input", "'input' must be a string or a non-empty array of input items.")
		}
		if len(in) > MaxResponseItems {
			return lull.ParamError("input", "'input' may hold at most %d items.", MaxResponseItems)
		}
		for i, it := range in {
			item, ok := it.(*object)
			if !ok {
				return lull.ParamError(fmt.Sprintf("input[%d]", i), "'input[%d]' must be an input item object.", i)
			}
			parts, _ := item.vals["content"].([]any)
			for j, p := range parts {
				part, ok := p.(*object)
				if !ok {
					continue
				}
				param := fmt.Sprintf("input[%d].content[%d]", i, j)
				for _, k := range []string{"image_url", "file_url"} {
					if u, ok := part.vals[k].(string); ok && !c.lim.AllowRemoteMedia && !isDataURL(u) {
						return lull.ParamError(param+"."+k, "Media must be sent inline (a data: URL or file_data); remote URLs are not fetched.")
					}
				}
			}
		}
		return nil
	}
	return lull.ParamError("input", "'input' must be a string or a non-empty array of input items.")
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
