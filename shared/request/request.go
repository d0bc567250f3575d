// Package request checks the body of an OpenAI-compatible request before
// lull accepts it: the API for /v1/slow/..., the batch Lambda for each line
// of a batch input file and the GPU worker before it calls the engine apply
// the same rules, with the same messages.
//
// What reaches the engine is what was validated: the body is parsed
// strictly (no duplicate keys, no keys that differ only in case), every
// top-level field must be one lull knows (or one the operator lets through
// with Limits.ExtraFields), and the body lull stores and forwards is
// re-encoded from the validated values (Body.Canonical), never the bytes the
// client sent.
package request

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/lull-ai/lull/shared/lull"
)

// CodeModelNotFound is the error code of a request for a model that is not
// served (HTTP 404 at the API).
const CodeModelNotFound = "model_not_found"

// Fixed bounds (OpenAI's where it documents one).
const (
	MaxMessages    = 2048 // messages in one chat request
	MaxStop        = 4    // stop sequences (OpenAI: up to 4)
	MaxStopTokens  = 64   // stop_token_ids
	MaxTools       = 128  // tools (OpenAI: at most 128 functions)
	MaxLogitBias   = 1024 // logit_bias entries
	MaxTopLogprobs = 20   // top_logprobs (chat) and logprobs (completions)
	MaxUserChars   = 512  // user
)

// Limits bound what one accepted request may ask of the engine. The API, the
// batch Lambda and the GPU worker load them from the same variables, so a
// body accepted by one is accepted by the others.
type Limits struct {
	// MaxSequences bounds the sequences one request makes the engine
	// generate: n (and best_of) times the number of prompts.
	MaxSequences int `env:"LULL_MAX_SEQUENCES" default:"128" doc:"most sequences one request may generate: n (or best_of) times the prompts of a completions request"`
	// MaxTokens bounds max_tokens, max_completion_tokens and min_tokens.
	MaxTokens int `env:"LULL_MAX_TOKENS" default:"32768" doc:"largest max_tokens / max_completion_tokens a request may ask for"`
	// ExtraFields lists further top-level request fields passed to the
	// engine unchecked (comma-separated), e.g. "chat_template_kwargs,guided_json".
	// "priority" cannot be listed: the worker alone sets it.
	ExtraFields string `env:"LULL_REQUEST_EXTRA_FIELDS" doc:"comma-separated engine-specific request fields passed through unchecked (e.g. chat_template_kwargs); priority is never accepted from clients"`
	// AllowRemoteMedia lets content parts name http(s) URLs, which the
	// engine fetches from the GPU host; only data: URLs otherwise.
	AllowRemoteMedia bool `env:"LULL_ALLOW_REMOTE_MEDIA" default:"false" doc:"let chat content parts carry http(s) media URLs that the engine fetches from the GPU host (data: URLs are always allowed)"`
}

// DefaultLimits returns the limits lull applies when none are configured.
func DefaultLimits() Limits { return Limits{MaxSequences: 128, MaxTokens: 32768} }

// WithDefaults fills zero limits with DefaultLimits.
func (l Limits) WithDefaults() Limits {
	d := DefaultLimits()
	if l.MaxSequences <= 0 {
		l.MaxSequences = d.MaxSequences
	}
	if l.MaxTokens <= 0 {
		l.MaxTokens = d.MaxTokens
	}
	return l
}

// Validate reports limits that cannot be applied, naming the variable.
func (l Limits) Validate() error {
	var errs []error
	if l.MaxSequences < 0 {
		errs = append(errs, errors.New("LULL_MAX_SEQUENCES must be positive"))
	}
	if l.MaxTokens < 0 {
		errs = append(errs, errors.New("LULL_MAX_TOKENS must be positive"))
	}
	for _, f := range l.extras() {
		if _, known := fields[f]; known || f == "priority" || f == "request_id" {
			errs = append(errs, fmt.Errorf("LULL_REQUEST_EXTRA_FIELDS: %q cannot be passed through", f))
		}
	}
	return errors.Join(errs...)
}

func (l Limits) extras() []string {
	var out []string
	for f := range strings.SplitSeq(l.ExtraFields, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// Body is a validated request.
type Body struct {
	Model     string
	N         int // 1 when absent
	BestOf    int // 0 when absent
	MaxTokens int // max_tokens or max_completion_tokens; 0 when absent
	Prompts   int // prompts of a completions request; 1 for chat
	// Sequences is what the engine generates: Prompts × max(N, BestOf).
	Sequences int
	Metadata  map[string]string
	// Background is a Responses request's "background" (nil when absent).
	Background *bool
	// Canonical is the body re-encoded from the validated values, with only
	// known (or operator-allowed) fields, nulls and stream options left
	// out. lull stores and forwards this, never the client's bytes.
	Canonical json.RawMessage
}

// Check validates body as a request to endpoint e for a model that served
// accepts, within lim (zero fields take DefaultLimits). Errors are
// *lull.Error values naming the offending parameter.
func Check(e lull.Endpoint, body []byte, served func(model string) (lull.Task, bool), lim Limits) (*Body, error) {
	lim = lim.WithDefaults()
	v, err := parseStrict(body)
	if err != nil {
		var se *strictError
		if errors.As(err, &se) {
			return nil, &lull.Error{Code: lull.EINVALID, Param: se.param, Message: se.msg}
		}
		return nil, err
	}
	obj, ok := v.(*object)
	if !ok {
		return nil, lull.Errorf(lull.EINVALID, "The request body must be a JSON object.")
	}
	c := &checker{e: e, lim: lim, req: &Body{N: 1, Prompts: 1, Metadata: map[string]string{}}, out: &object{vals: map[string]any{}}}
	extras := lim.extras()
	// Required and order-sensitive fields first, so errors name them before others.
	mv, _ := obj.get("model")
	model, isStr := mv.(string)
	if mv == nil || (isStr && model == "") {
		return nil, lull.ParamError("model", "you must provide a model parameter")
	}
	if !isStr {
		return nil, lull.ParamError("model", "Invalid type for 'model': expected a string.")
	}
	task, ok := served(model)
	if !ok {
		return nil, &lull.Error{Code: CodeModelNotFound, Param: "model",
			Message: fmt.Sprintf("The model `%s` does not exist or is not served here. See GET /v1/models.", model)}
	}
	if !task.Serves(e) {
		return nil, &lull.Error{Code: CodeModelNotSupported, Param: "model",
			Message: fmt.Sprintf("The model `%s` is a %s model and does not serve %s. See GET /v1/models.", model, taskNoun(task), e.Path())}
	}
	c.req.Model = model
	switch e {
	case lull.EndpointChat:
		if v, _ := obj.get("messages"); v == nil {
			return nil, lull.ParamError("messages", "Missing required parameter: 'messages'.")
		}
	case lull.EndpointCompletions:
		if v, _ := obj.get("prompt"); v == nil {
			return nil, lull.ParamError("prompt", "Missing required parameter: 'prompt'.")
		}
	case lull.EndpointEmbeddings, lull.EndpointResponses:
		if v, _ := obj.get("input"); v == nil {
			return nil, lull.ParamError("input", "Missing required parameter: 'input'.")
		}
	}
	for _, k := range obj.keys {
		val := obj.vals[k]
		f, known := fields[k]
		if known && !f.on(e) {
			known = false
		}
		if !known {
			if slices.Contains(extras, k) {
				c.keep(k, val)
				continue
			}
			return nil, lull.ParamError(k, "Unrecognized request argument supplied: %s", k)
		}
		if val == nil {
			continue // null is the default
		}
		out, err := f.check(c, k, val)
		if err != nil {
			return nil, err
		}
		if !f.drop {
			c.keep(k, out)
		}
	}
	r := c.req
	if r.BestOf > 0 && r.BestOf < r.N {
		return nil, lull.ParamError("best_of", "'best_of' must be at least 'n'.")
	}
	r.Sequences = r.Prompts * max(r.N, r.BestOf)
	if r.Sequences > lim.MaxSequences {
		return nil, lull.ParamError("n", "This request would generate %d sequences (prompts × n or best_of); at most %d are allowed.", r.Sequences, lim.MaxSequences)
	}
	if c.minTokens > 0 && r.MaxTokens > 0 && c.minTokens > r.MaxTokens {
		return nil, lull.ParamError("min_tokens", "'min_tokens' must not exceed 'max_tokens'.")
	}
	canon, err := encode(c.out)
	if err != nil {
		return nil, fmt.Errorf("request: encode canonical body: %w", err)
	}
	r.Canonical = canon
	return r, nil
}

// checker carries one Check's state.
type checker struct {
	e         lull.Endpoint
	lim       Limits
	req       *Body
	out       *object
	minTokens int
}

func (c *checker) keep(k string, v any) {
	c.out.keys = append(c.out.keys, k)
	c.out.vals[k] = v
}

// field is the rule for one top-level request field: check returns the
// value to store and forward.
type field struct {
	only  []lull.Endpoint // the endpoints the field belongs to; nil: chat and completions
	drop  bool            // accepted, never stored nor forwarded
	check func(c *checker, k string, v any) (any, error)
}

// on reports whether the field belongs to requests to e.
func (f field) on(e lull.Endpoint) bool {
	if f.only == nil {
		return e == lull.EndpointChat || e == lull.EndpointCompletions
	}
	return slices.Contains(f.only, e)
}

var fields map[string]field

func init() {
	chat, compl := []lull.Endpoint{lull.EndpointChat}, []lull.Endpoint{lull.EndpointCompletions}
	emb, resp := []lull.Endpoint{lull.EndpointEmbeddings}, []lull.Endpoint{lull.EndpointResponses}
	all := lull.Endpoints
	chatResp := []lull.Endpoint{lull.EndpointChat, lull.EndpointResponses}
	gen := []lull.Endpoint{lull.EndpointChat, lull.EndpointCompletions, lull.EndpointResponses}
	flag := func(c *checker, k string, v any) (any, error) { return boolean(k, v) }
	fields = map[string]field{
		"model":    {only: all, check: func(c *checker, k string, v any) (any, error) { return v, nil }},
		"messages": {only: chat, check: (*checker).messages},
		"prompt":   {only: compl, check: (*checker).prompt},
		"input":    {only: []lull.Endpoint{lull.EndpointEmbeddings, lull.EndpointResponses}, check: (*checker).input},
		"stream": {only: gen, drop: true, check: func(c *checker, k string, v any) (any, error) {
			b, err := boolean(k, v)
			if err == nil && b {
				return nil, lull.ParamError("stream", "Streaming is not available for slow requests: the result is delivered later. Remove 'stream' or set it to false.")
			}
			return nil, err
		}},
		"stream_options": {only: gen, drop: true, check: anyObject},
		"store":          {only: gen, drop: true, check: flag},
		"service_tier":   {only: gen, drop: true, check: func(c *checker, k string, v any) (any, error) { return str(k, v, 64) }},
		"metadata":       {only: all, check: (*checker).metadata},
		"user":           {only: all, check: func(c *checker, k string, v any) (any, error) { return str(k, v, MaxUserChars) }},
		"n": {check: func(c *checker, k string, v any) (any, error) {
			n, err := integer(k, v, 1, c.lim.MaxSequences)
			c.req.N = n
			return n, err
		}},
		"best_of": {only: compl, check: func(c *checker, k string, v any) (any, error) {
			n, err := integer(k, v, 1, c.lim.MaxSequences)
			c.req.BestOf = n
			return n, err
		}},
		"max_tokens":            {check: (*checker).maxTokens},
		"max_completion_tokens": {only: chat, check: (*checker).maxTokens},
		"max_output_tokens":     {only: resp, check: (*checker).maxTokens},
		"min_tokens": {check: func(c *checker, k string, v any) (any, error) {
			n, err := integer(k, v, 0, c.lim.MaxTokens)
			c.minTokens = n
			return n, err
		}},
		"temperature":       {only: gen, check: number(0, 2)},
		"top_p":             {only: gen, check: number(0, 1)},
		"min_p":             {check: number(0, 1)},
		"frequency_penalty": {check: number(-2, 2)},
		"presence_penalty":  {check: number(-2, 2)},
		"repetition_penalty": {check: func(c *checker, k string, v any) (any, error) {
			f, err := float(k, v, 0, 10)
			if err == nil && f == 0 {
				return nil, lull.ParamError(k, "'%s' must be greater than 0.", k)
			}
			return f, err
		}},
		"top_k": {check: func(c *checker, k string, v any) (any, error) { return integer(k, v, -1, 1<<20) }},
		"seed":  {check: func(c *checker, k string, v any) (any, error) { return integer(k, v, math.MinInt64, math.MaxInt64) }},
		"stop":  {check: (*checker).stop},
		"stop_token_ids": {check: func(c *checker, k string, v any) (any, error) {
			return intArray(k, v, MaxStopTokens)
		}},
		"ignore_eos":                    {check: flag},
		"skip_special_tokens":           {check: flag},
		"include_stop_str_in_output":    {check: flag},
		"spaces_between_special_tokens": {check: flag},
		"logit_bias":                    {check: logitBias},
		"logprobs":                      {check: (*checker).logprobs},
		"top_logprobs":                  {only: chatResp, check: func(c *checker, k string, v any) (any, error) { return integer(k, v, 0, MaxTopLogprobs) }},
		"echo":                          {only: compl, check: flag},
		"suffix":                        {only: compl, check: func(c *checker, k string, v any) (any, error) { return str(k, v, 1<<20) }},
		"response_format":               {only: chat, check: responseFormat},
		"tools":                         {only: chatResp, check: tools},
		"tool_choice":                   {only: chatResp, check: toolChoice},
		"parallel_tool_calls":           {only: chatResp, check: flag},
		"reasoning_effort":              {only: chat, check: oneOf("minimal", "low", "medium", "high")},
		"add_generation_prompt":         {only: chat, check: flag},
		"continue_final_message":        {only: chat, check: flag},
		// Embeddings.
		"encoding_format": {only: emb, check: oneOf("float", "base64")},
		"dimensions":      {only: emb, check: func(c *checker, k string, v any) (any, error) { return integer(k, v, 1, 1<<16) }},
		// Responses.
		"background": {only: resp, check: func(c *checker, k string, v any) (any, error) {
			b, err := boolean(k, v)
			if err == nil {
				c.req.Background = &b
			}
			return b, err
		}},
		"instructions": {only: resp, check: func(c *checker, k string, v any) (any, error) { return str(k, v, 1<<20) }},
		"previous_response_id": {only: resp, drop: true, check: func(c *checker, k string, v any) (any, error) {
			if s, _ := v.(string); s == "" {
				return nil, nil
			}
			return nil, lull.ParamError("previous_response_id", "lull keeps no conversation state between responses: send the whole conversation in 'input' instead of 'previous_response_id'.")
		}},
		"conversation": {only: resp, drop: true, check: func(c *checker, k string, v any) (any, error) {
			return nil, lull.ParamError("conversation", "lull keeps no conversation state between responses: send the whole conversation in 'input' instead of 'conversation'.")
		}},
		"text":       {only: resp, check: anyObject},
		"reasoning":  {only: resp, check: anyObject},
		"truncation": {only: resp, check: oneOf("auto", "disabled")},
	}
}

func (c *checker) maxTokens(k string, v any) (any, error) {
	n, err := integer(k, v, 1, c.lim.MaxTokens)
	if err != nil {
		return nil, err
	}
	if c.req.MaxTokens == 0 || n < c.req.MaxTokens {
		c.req.MaxTokens = n
	}
	return n, nil
}

func (c *checker) logprobs(k string, v any) (any, error) {
	if c.e == lull.EndpointChat {
		return boolean(k, v)
	}
	return integer(k, v, 0, MaxTopLogprobs)
}

func (c *checker) metadata(k string, v any) (any, error) {
	o, ok := v.(*object)
	if !ok {
		return nil, lull.ParamError("metadata", "'metadata' must be an object of string values.")
	}
	for _, mk := range o.keys {
		s, ok := o.vals[mk].(string)
		if !ok {
			return nil, lull.ParamError("metadata", "'metadata' must be an object of string values.")
		}
		c.req.Metadata[mk] = s
	}
	if err := CheckMetadata(c.req.Metadata); err != nil {
		return nil, err
	}
	return o, nil
}

func (c *checker) stop(k string, v any) (any, error) {
	if s, ok := v.(string); ok {
		return s, nil
	}
	arr, ok := v.([]any)
	if !ok {
		return nil, lull.ParamError(k, "'stop' must be a string or an array of strings.")
	}
	if len(arr) > MaxStop {
		return nil, lull.ParamError(k, "'stop' may have at most %d sequences.", MaxStop)
	}
	for _, s := range arr {
		if _, ok := s.(string); !ok {
			return nil, lull.ParamError(k, "'stop' must be a string or an array of strings.")
		}
	}
	return arr, nil
}

func (c *checker) prompt(k string, v any) (any, error) {
	bad := lull.ParamError("prompt", "'prompt' must be a string, an array of strings, an array of token IDs or an array of arrays of token IDs.")
	switch p := v.(type) {
	case string:
		return p, nil
	case []any:
		if len(p) == 0 {
			return nil, lull.ParamError("prompt", "'prompt' must be a string or a non-empty array.")
		}
		switch p[0].(type) {
		case string:
			for _, s := range p {
				if _, ok := s.(string); !ok {
					return nil, bad
				}
			}
			c.req.Prompts = len(p)
		case json.Number:
			toks, err := intArray("prompt", p, len(p))
			if err != nil {
				return nil, bad
			}
			p = toks
		case []any:
			out := make([]any, len(p))
			for i, t := range p {
				arr, ok := t.([]any)
				if !ok || len(arr) == 0 {
					return nil, bad
				}
				toks, err := intArray("prompt", arr, len(arr))
				if err != nil {
					return nil, bad
				}
				out[i] = toks
			}
			p = out
			c.req.Prompts = len(p)
		default:
			return nil, bad
		}
		if c.req.Prompts > c.lim.MaxSequences {
			return nil, lull.ParamError("prompt", "'prompt' may hold at most %d prompts.", c.lim.MaxSequences)
		}
		return p, nil
	}
	return nil, bad
}

var roles = []string{"system", "developer", "user", "assistant", "tool", "function"}

// messageKeys are the keys a chat message may carry.
var messageKeys = []string{"role", "content", "name", "tool_calls", "tool_call_id", "refusal", "reasoning_content", "function_call"}

func (c *checker) messages(k string, v any) (any, error) {
	msgs, ok := v.([]any)
	if !ok {
		return nil, lull.ParamError("messages", "'messages' must be an array of message objects.")
	}
	if len(msgs) == 0 {
		return nil, lull.ParamError("messages", "'messages' must contain at least one message.")
	}
	if len(msgs) > MaxMessages {
		return nil, lull.ParamError("messages", "'messages' may hold at most %d messages.", MaxMessages)
	}
	for i, mv := range msgs {
		param := fmt.Sprintf("messages[%d]", i)
		m, ok := mv.(*object)
		if !ok {
			return nil, lull.ParamError(param, "'%s' must be a message object.", param)
		}
		for _, mk := range m.keys {
			if !slices.Contains(messageKeys, mk) {
				return nil, lull.ParamError(param+"."+mk, "Unrecognized field '%s.%s'.", param, mk)
			}
		}
		role, _ := m.vals["role"].(string)
		if !slices.Contains(roles, role) {
			return nil, lull.ParamError(param+".role", "Invalid value for 'role': %q. Supported values are: 'system', 'developer', 'user', 'assistant', 'tool' and 'function'.", role)
		}
		for _, sk := range []string{"name", "tool_call_id", "refusal", "reasoning_content"} {
			if sv, ok := m.vals[sk]; ok && sv != nil {
				if _, ok := sv.(string); !ok {
					return nil, lull.ParamError(param+"."+sk, "'%s.%s' must be a string.", param, sk)
				}
			}
		}
		if tc, ok := m.vals["tool_calls"]; ok && tc != nil {
			if _, ok := tc.([]any); !ok {
				return nil, lull.ParamError(param+".tool_calls", "'%s.tool_calls' must be an array.", param)
			}
		}
		content := m.vals["content"]
		hasToolCalls := false
		if tc, ok := m.vals["tool_calls"].([]any); ok && len(tc) > 0 {
			hasToolCalls = true
		}
		if _, ok := m.vals["function_call"].(*object); ok {
			hasToolCalls = true
		}
		switch ct := content.(type) {
		case nil:
			if !(role == "assistant" && hasToolCalls) {
				return nil, lull.ParamError(param+".content", "Missing required parameter: '%s.content'.", param)
			}
		case string:
		case []any:
			for j, pv := range ct {
				if err := c.part(fmt.Sprintf("%s.content[%d]", param, j), pv); err != nil {
					return nil, err
				}
			}
		default:
			return nil, lull.ParamError(param+".content", "'%s.content' must be a string or an array of content parts.", param)
		}
	}
	return msgs, nil
}

// partKeys are the keys of each content part type; media parts name the
// key holding their URL.
var partKeys = map[string][]string{
	"text":        {"type", "text"},
	"refusal":     {"type", "refusal"},
	"image_url":   {"type", "image_url"},
	"input_audio": {"type", "input_audio"},
	"audio_url":   {"type", "audio_url"},
	"video_url":   {"type", "video_url"},
}

func (c *checker) part(param string, pv any) error {
	p, ok := pv.(*object)
	if !ok {
		return lull.ParamError(param, "'%s' must be a content part object.", param)
	}
	typ, _ := p.vals["type"].(string)
	keys, known := partKeys[typ]
	if !known {
		return lull.ParamError(param+".type", "Invalid content part type %q: use 'text', 'image_url' or 'input_audio'.", typ)
	}
	for _, k := range p.keys {
		if !slices.Contains(keys, k) {
			return lull.ParamError(param+"."+k, "Unrecognized field '%s.%s'.", param, k)
		}
	}
	switch typ {
	case "text", "refusal":
		if _, ok := p.vals[typ].(string); !ok {
			return lull.ParamError(param+"."+typ, "'%s.%s' must be a string.", param, typ)
		}
	case "input_audio":
		a, ok := p.vals["input_audio"].(*object)
		if !ok {
			return lull.ParamError(param+".input_audio", "'%s.input_audio' must be an object with 'data' and 'format'.", param)
		}
		for _, k := range a.keys {
			if k != "data" && k != "format" {
				return lull.ParamError(param+".input_audio."+k, "Unrecognized field '%s.input_audio.%s'.", param, k)
			}
		}
	case "image_url", "audio_url", "video_url":
		var url string
		switch m := p.vals[typ].(type) {
		case string:
			url = m
		case *object:
			for _, k := range m.keys {
				if k != "url" && k != "detail" {
					return lull.ParamError(param+"."+typ+"."+k, "Unrecognized field '%s.%s.%s'.", param, typ, k)
				}
			}
			url, _ = m.vals["url"].(string)
		}
		if url == "" {
			return lull.ParamError(param+"."+typ+".url", "Missing required parameter: '%s.%s.url'.", param, typ)
		}
		if typ != "image_url" && !c.lim.AllowRemoteMedia {
			return lull.ParamError(param+".type", "Content parts of type %q are not accepted here.", typ)
		}
		if !isDataURL(url) && !c.lim.AllowRemoteMedia {
			return lull.ParamError(param+"."+typ+".url", "Media must be sent inline as a data: URL (base64); remote URLs are not fetched.")
		}
	}
	return nil
}

// isDataURL reports whether u carries its content inline (data:).
func isDataURL(u string) bool {
	return strings.HasPrefix(strings.ToLower(strings.TrimSpace(u)), "data:")
}

func responseFormat(c *checker, k string, v any) (any, error) {
	o, ok := v.(*object)
	if !ok {
		return nil, lull.ParamError(k, "'response_format' must be an object.")
	}
	typ, _ := o.vals["type"].(string)
	allowed := map[string][]string{"text": {"type"}, "json_object": {"type"}, "json_schema": {"type", "json_schema"}}
	keys, known := allowed[typ]
	if !known {
		return nil, lull.ParamError(k+".type", "Invalid value for 'response_format.type': use 'text', 'json_object' or 'json_schema'.")
	}
	for _, key := range o.keys {
		if !slices.Contains(keys, key) {
			return nil, lull.ParamError(k+"."+key, "Unrecognized field 'response_format.%s'.", key)
		}
	}
	if typ == "json_schema" {
		if _, ok := o.vals["json_schema"].(*object); !ok {
			return nil, lull.ParamError(k+".json_schema", "'response_format.json_schema' must be an object.")
		}
	}
	return o, nil
}

func tools(c *checker, k string, v any) (any, error) {
	arr, ok := v.([]any)
	if !ok {
		return nil, lull.ParamError(k, "'tools' must be an array of tool objects.")
	}
	if len(arr) > MaxTools {
		return nil, lull.ParamError(k, "'tools' may hold at most %d tools.", MaxTools)
	}
	for i, tv := range arr {
		t, ok := tv.(*object)
		if !ok {
			return nil, lull.ParamError(fmt.Sprintf("tools[%d]", i), "'tools[%d]' must be a tool object.", i)
		}
		if typ, _ := t.vals["type"].(string); typ != "function" {
			return nil, lull.ParamError(fmt.Sprintf("tools[%d].type", i), "Only tools of type 'function' are supported.")
		}
		if c.e == lull.EndpointResponses { // Responses tools are flat: {type, name, parameters}
			if name, _ := t.vals["name"].(string); name == "" {
				return nil, lull.ParamError(fmt.Sprintf("tools[%d].name", i), "Missing required parameter: 'tools[%d].name'.", i)
			}
			continue
		}
		if _, ok := t.vals["function"].(*object); !ok {
			return nil, lull.ParamError(fmt.Sprintf("tools[%d].function", i), "Missing required parameter: 'tools[%d].function'.", i)
		}
	}
	return arr, nil
}

func toolChoice(c *checker, k string, v any) (any, error) {
	switch t := v.(type) {
	case string:
		if t == "none" || t == "auto" || t == "required" {
			return t, nil
		}
	case *object:
		if typ, _ := t.vals["type"].(string); typ == "function" {
			return t, nil
		}
	}
	return nil, lull.ParamError(k, "'tool_choice' must be 'none', 'auto', 'required' or a function object.")
}

func logitBias(c *checker, k string, v any) (any, error) {
	o, ok := v.(*object)
	if !ok {
		return nil, lull.ParamError(k, "'logit_bias' must be an object of token IDs to numbers.")
	}
	if len(o.keys) > MaxLogitBias {
		return nil, lull.ParamError(k, "'logit_bias' may hold at most %d entries.", MaxLogitBias)
	}
	out := &object{vals: map[string]any{}}
	for _, tok := range o.keys {
		if _, err := strconv.ParseUint(tok, 10, 31); err != nil {
			return nil, lull.ParamError(k, "'logit_bias' keys must be token IDs.")
		}
		f, err := float(k, o.vals[tok], -100, 100)
		if err != nil {
			return nil, err
		}
		out.keys = append(out.keys, tok)
		out.vals[tok] = f
	}
	return out, nil
}

func anyObject(c *checker, k string, v any) (any, error) {
	if _, ok := v.(*object); !ok {
		return nil, lull.ParamError(k, "'%s' must be an object.", k)
	}
	return v, nil
}

func oneOf(values ...string) func(c *checker, k string, v any) (any, error) {
	return func(c *checker, k string, v any) (any, error) {
		s, ok := v.(string)
		if !ok || !slices.Contains(values, s) {
			return nil, lull.ParamError(k, "'%s' must be one of %s.", k, strings.Join(values, ", "))
		}
		return s, nil
	}
}

func number(lo, hi float64) func(c *checker, k string, v any) (any, error) {
	return func(c *checker, k string, v any) (any, error) { return float(k, v, lo, hi) }
}

func boolean(k string, v any) (bool, error) {
	b, ok := v.(bool)
	if !ok {
		return false, lull.ParamError(k, "Invalid type for '%s': expected a boolean.", k)
	}
	return b, nil
}

func str(k string, v any, maxLen int) (string, error) {
	s, ok := v.(string)
	if !ok {
		return "", lull.ParamError(k, "Invalid type for '%s': expected a string.", k)
	}
	if len(s) > maxLen {
		return "", lull.ParamError(k, "'%s' is longer than %d characters.", k, maxLen)
	}
	return s, nil
}

// integer reads an integer JSON number within [lo, hi]; 2.0 or 1e3 are not
// integers here, so what lull forwards is exactly the number it checked.
func integer(k string, v any, lo, hi int) (int, error) {
	num, ok := v.(json.Number)
	if !ok {
		return 0, lull.ParamError(k, "Invalid type for '%s': expected an integer.", k)
	}
	n, err := strconv.Atoi(string(num))
	if err != nil {
		return 0, lull.ParamError(k, "Invalid type for '%s': expected an integer.", k)
	}
	if n < lo || n > hi {
		return 0, lull.ParamError(k, "'%s' must be between %d and %d.", k, lo, hi)
	}
	return n, nil
}

func float(k string, v any, lo, hi float64) (float64, error) {
	num, ok := v.(json.Number)
	if !ok {
		return 0, lull.ParamError(k, "Invalid type for '%s': expected a number.", k)
	}
	f, err := strconv.ParseFloat(string(num), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, lull.ParamError(k, "Invalid type for '%s': expected a number.", k)
	}
	if f < lo || f > hi {
		return 0, lull.ParamError(k, "'%s' must be between %g and %g.", k, lo, hi)
	}
	return f, nil
}

func intArray(k string, v any, maxLen int) ([]any, error) {
	arr, ok := v.([]any)
	if !ok {
		return nil, lull.ParamError(k, "'%s' must be an array of integers.", k)
	}
	if len(arr) > maxLen {
		return nil, lull.ParamError(k, "'%s' may hold at most %d entries.", k, maxLen)
	}
	out := make([]any, len(arr))
	for i, x := range arr {
		n, err := integer(k, x, 0, math.MaxInt32)
		if err != nil {
			return nil, lull.ParamError(k, "'%s' must be an array of non-negative integers.", k)
		}
		out[i] = n
	}
	return out, nil
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
