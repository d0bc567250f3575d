package request_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/lull-ai/lull/shared/lull"
	"github.com/lull-ai/lull/shared/request"
)

func served(m string) (lull.Task, bool) {
	switch m {
	case "m":
		return lull.TaskGenerate, true
	case "e":
		return lull.TaskEmbed, true
	}
	return "", false
}

const hi = `"messages":[{"role":"user","content":"hi"}]`

func TestCheckRefuses(t *testing.T) {
	t.Parallel()
	many := func(n int, item string) string { return strings.TrimSuffix(strings.Repeat(item+",", n), ",") }
	for _, tc := range []struct {
		name  string
		e     lull.Endpoint
		body  string
		param string
	}{
		// a. keys that JSON readers disagree on
		{"CaseVariantN", lull.EndpointChat, `{"model":"m","n":100000,"N":1,` + hi + `}`, "N"},
		{"CaseVariantOnly", lull.EndpointChat, `{"model":"m","N":100000,` + hi + `}`, "N"},
		{"DuplicateN", lull.EndpointChat, `{"model":"m","n":1,"n":100000,` + hi + `}`, "n"},
		{"DuplicateModel", lull.EndpointChat, `{"model":"m","model":"other",` + hi + `}`, "model"},
		{"NestedCaseVariant", lull.EndpointChat, `{"model":"m","messages":[{"role":"user","content":"a","Content":"b"}]}`, "messages[0].Content"},
		{"NestedDuplicate", lull.EndpointChat, `{"model":"m","messages":[{"role":"user","content":"a","content":"b"}]}`, "messages[0].content"},
		{"MaxTokensCase", lull.EndpointCompletions, `{"model":"m","prompt":"x","max_tokens":5,"Max_Tokens":99999}`, "Max_Tokens"},
		{"InvalidUTF8", lull.EndpointChat, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\xff\"}]}", ""},
		{"TooDeep", lull.EndpointChat, `{"model":"m",` + hi + `,"response_format":{"type":"json_schema","json_schema":` + strings.Repeat(`{"a":`, 40) + `1` + strings.Repeat(`}`, 40) + `}}`, ""},
		{"Trailing", lull.EndpointChat, `{"model":"m",` + hi + `} {}`, ""},
		// a. engine-specific fields not on the allow-list
		{"ChatTemplate", lull.EndpointChat, `{"model":"m","chat_template":"{{ 'x' * 1000000 }}",` + hi + `}`, "chat_template"},
		{"ChatTemplateKwargs", lull.EndpointChat, `{"model":"m","chat_template_kwargs":{"a":1},` + hi + `}`, "chat_template_kwargs"},
		{"Priority", lull.EndpointChat, `{"model":"m","priority":-100,` + hi + `}`, "priority"},
		{"RequestID", lull.EndpointCompletions, `{"model":"m","prompt":"x","request_id":"gen_other"}`, "request_id"},
		{"BeamSearch", lull.EndpointCompletions, `{"model":"m","prompt":"x","use_beam_search":true}`, "use_beam_search"},
		{"RemoteImage", lull.EndpointChat, `{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"http://169.254.169.254/latest/meta-data/"}}]}]}`, "messages[0].content[0].image_url.url"},
		{"RemoteImageString", lull.EndpointChat, `{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":"https://example.com/a.png"}]}]}`, "messages[0].content[0].image_url.url"},
		{"VideoURL", lull.EndpointChat, `{"model":"m","messages":[{"role":"user","content":[{"type":"video_url","video_url":{"url":"data:video/mp4;base64,AA"}}]}]}`, "messages[0].content[0].type"},
		{"UnknownPart", lull.EndpointChat, `{"model":"m","messages":[{"role":"user","content":[{"type":"image_embeds","image_embeds":"AA"}]}]}`, "messages[0].content[0].type"},
		{"MessageExtraKey", lull.EndpointChat, `{"model":"m","messages":[{"role":"user","content":"x","images":["http://x"]}]}`, "messages[0].images"},
		// a. bounds
		{"NTooLarge", lull.EndpointChat, `{"model":"m","n":129,` + hi + `}`, "n"},
		{"NFloat", lull.EndpointChat, `{"model":"m","n":1.5,` + hi + `}`, "n"},
		{"NExponent", lull.EndpointChat, `{"model":"m","n":1e5,` + hi + `}`, "n"},
		{"NString", lull.EndpointChat, `{"model":"m","n":"5",` + hi + `}`, "n"},
		{"MaxTokensHuge", lull.EndpointChat, `{"model":"m","max_tokens":10000000,` + hi + `}`, "max_tokens"},
		{"MaxCompletionTokensHuge", lull.EndpointChat, `{"model":"m","max_completion_tokens":10000000,` + hi + `}`, "max_completion_tokens"},
		{"MinTokensOverMax", lull.EndpointCompletions, `{"model":"m","prompt":"x","max_tokens":5,"min_tokens":6}`, "min_tokens"},
		{"BestOfHuge", lull.EndpointCompletions, `{"model":"m","prompt":"x","best_of":1000}`, "best_of"},
		{"BestOfBelowN", lull.EndpointCompletions, `{"model":"m","prompt":"x","n":4,"best_of":2}`, "best_of"},
		{"PromptsTimesN", lull.EndpointCompletions, `{"model":"m","prompt":[` + many(64, `"p"`) + `],"n":4}`, "n"},
		{"TooManyPrompts", lull.EndpointCompletions, `{"model":"m","prompt":[` + many(129, `"p"`) + `]}`, "prompt"},
		{"TopLogprobs", lull.EndpointChat, `{"model":"m","logprobs":true,"top_logprobs":21,` + hi + `}`, "top_logprobs"},
		{"Logprobs", lull.EndpointCompletions, `{"model":"m","prompt":"x","logprobs":100}`, "logprobs"},
		{"TooManyStops", lull.EndpointChat, `{"model":"m","stop":["a","b","c","d","e"],` + hi + `}`, "stop"},
		{"StopTokenIDs", lull.EndpointChat, `{"model":"m","stop_token_ids":[` + many(65, "1") + `],` + hi + `}`, "stop_token_ids"},
		{"TooManyMessages", lull.EndpointChat, `{"model":"m","messages":[` + many(2049, `{"role":"user","content":"x"}`) + `]}`, "messages"},
		{"TooManyTools", lull.EndpointChat, `{"model":"m",` + hi + `,"tools":[` + many(129, `{"type":"function","function":{"name":"f"}}`) + `]}`, "tools"},
		{"LogitBias", lull.EndpointChat, `{"model":"m","logit_bias":{"1":101},` + hi + `}`, "logit_bias"},
		{"Temperature", lull.EndpointChat, `{"model":"m","temperature":1e400,` + hi + `}`, "temperature"},
		{"Stream", lull.EndpointChat, `{"model":"m","stream":true,` + hi + `}`, "stream"},
		{"ChatFieldOnCompletions", lull.EndpointCompletions, `{"model":"m","prompt":"x","tools":[]}`, "tools"},
		{"ResponsesRemoteImage", lull.EndpointResponses, `{"model":"m","background":true,"input":[{"role":"user","content":[{"type":"input_image","image_url":"http://169.254.169.254/"}]}]}`, "input[0].content[0].image_url"},
		{"ResponsesRemoteFile", lull.EndpointResponses, `{"model":"m","input":[{"role":"user","content":[{"type":"input_file","file_url":"https://x/y.pdf"}]}]}`, "input[0].content[0].file_url"},
		{"ResponsesPreviousID", lull.EndpointResponses, `{"model":"m","input":"hi","previous_response_id":"resp_1"}`, "previous_response_id"},
		{"ResponsesPriority", lull.EndpointResponses, `{"model":"m","input":"hi","priority":-5}`, "priority"},
		{"ResponsesMaxOutputHuge", lull.EndpointResponses, `{"model":"m","input":"hi","max_output_tokens":10000000}`, "max_output_tokens"},
		{"EmbeddingsCaseVariant", lull.EndpointEmbeddings, `{"model":"e","input":"a","Input":["b"]}`, "Input"},
		{"EmbeddingsChatField", lull.EndpointEmbeddings, `{"model":"e","input":"a","n":5}`, "n"},
		{"EmbeddingsEmpty", lull.EndpointEmbeddings, `{"model":"e","input":[]}`, "input"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := request.Check(tc.e, []byte(tc.body), served, request.Limits{})
			if err == nil {
				t.Fatal("accepted")
			}
			le, ok := err.(*lull.Error)
			if !ok || le.Code != lull.EINVALID {
				t.Fatalf("err = %#v, want an EINVALID *lull.Error", err)
			}
			if le.Param != tc.param {
				t.Errorf("param = %q, want %q (%s)", le.Param, tc.param, le.Message)
			}
			if le.Message == "" {
				t.Error("no message")
			}
		})
	}
}

func TestCheckAccepts(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		e    lull.Endpoint
		lim  request.Limits
		body string
		want string // the canonical body
		seqs int
	}{
		{"Minimal", lull.EndpointChat, request.Limits{}, `{"model":"m",` + hi + `}`, `{"model":"m",` + hi + `}`, 1},
		{"DropsNullsAndStreamOptions", lull.EndpointChat, request.Limits{},
			`{"model":"m","n":null,"stream":false,"stream_options":{"include_usage":true},"store":true,` + hi + `}`, `{"model":"m",` + hi + `}`, 1},
		{"KeepsValidated", lull.EndpointChat, request.Limits{},
			`{"model":"m","n":3,"max_tokens":16,"temperature":0.5,"stop":["x"],"metadata":{"k":"v"},` + hi + `}`,
			`{"model":"m","n":3,"max_tokens":16,"temperature":0.5,"stop":["x"],"metadata":{"k":"v"},` + hi + `}`, 3},
		{"DataImage", lull.EndpointChat, request.Limits{},
			`{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"<b>"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AA","detail":"low"}}]}]}`,
			`{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"<b>"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AA","detail":"low"}}]}]}`, 1},
		{"RemoteImageAllowed", lull.EndpointChat, request.Limits{AllowRemoteMedia: true},
			`{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://example.com/a.png"}}]}]}`,
			`{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://example.com/a.png"}}]}]}`, 1},
		{"ExtraFieldAllowed", lull.EndpointChat, request.Limits{ExtraFields: "chat_template_kwargs, guided_json"},
			`{"model":"m","chat_template_kwargs":{"enable_thinking":false},` + hi + `}`,
			`{"model":"m","chat_template_kwargs":{"enable_thinking":false},` + hi + `}`, 1},
		{"Prompts", lull.EndpointCompletions, request.Limits{},
			`{"model":"m","prompt":["a","b"],"n":2,"best_of":3}`, `{"model":"m","prompt":["a","b"],"n":2,"best_of":3}`, 6},
		{"TokenPrompt", lull.EndpointCompletions, request.Limits{}, `{"model":"m","prompt":[1,2,3]}`, `{"model":"m","prompt":[1,2,3]}`, 1},
		{"Embeddings", lull.EndpointEmbeddings, request.Limits{}, `{"model":"e","input":["a","b"],"encoding_format":"float"}`,
			`{"model":"e","input":["a","b"],"encoding_format":"float"}`, 1},
		{"Responses", lull.EndpointResponses, request.Limits{}, `{"model":"m","input":"hi","background":true,"max_output_tokens":16,"store":true}`,
			`{"model":"m","input":"hi","background":true,"max_output_tokens":16}`, 1},
		{"HigherLimits", lull.EndpointChat, request.Limits{MaxSequences: 512, MaxTokens: 200000},
			`{"model":"m","n":512,"max_tokens":200000,` + hi + `}`, `{"model":"m","n":512,"max_tokens":200000,` + hi + `}`, 512},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req, err := request.Check(tc.e, []byte(tc.body), served, tc.lim)
			if err != nil {
				t.Fatal(err)
			}
			if string(req.Canonical) != tc.want {
				t.Errorf("canonical =\n%s\nwant\n%s", req.Canonical, tc.want)
			}
			if req.Sequences != tc.seqs {
				t.Errorf("sequences = %d, want %d", req.Sequences, tc.seqs)
			}
		})
	}
}

func TestLimitsValidate(t *testing.T) {
	t.Parallel()
	for _, extra := range []string{"priority", "request_id", "n", "messages"} {
		if err := (request.Limits{ExtraFields: "top_a," + extra}).Validate(); err == nil {
			t.Errorf("ExtraFields %q accepted", extra)
		}
	}
	if err := (request.Limits{ExtraFields: "chat_template_kwargs"}).Validate(); err != nil {
		t.Error(err)
	}
}

// FuzzCheck holds the property behind item a: whatever Check accepts, a
// reader that keeps the last of duplicate keys and matches keys exactly (as
// Python's json, and so vLLM, does) reads the same n, max_tokens and
// best_of in the client's own bytes as Check validated, and finds no field
// outside the allow-list; the canonical body passes Check unchanged.
func FuzzCheck(f *testing.F) {
	for _, s := range []string{
		`{"model":"m","n":100000,"N":1,` + hi + `}`,
		`{"model":"m","n":1,"n":100000,` + hi + `}`,
		`{"model":"m","max_tokens":1,"max_tokens":99999999,` + hi + `}`,
		`{"model":"m","prompt":["a","b"],"n":2}`,
		`{"model":"m","priority":-5,` + hi + `}`,
		`{"model":"m",` + hi + `,"metadata":{"webhook_id":"wh_x"}}`,
		`{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"HTTP://x"}}]}]}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		for _, e := range []lull.Endpoint{lull.EndpointChat, lull.EndpointCompletions} {
			req, err := request.Check(e, []byte(body), served, request.Limits{})
			if err != nil {
				continue
			}
			var py map[string]any
			if err := json.Unmarshal([]byte(body), &py); err != nil {
				t.Fatalf("accepted %q that a plain reader cannot parse: %v", body, err)
			}
			num := func(k string, absent int) int {
				v, ok := py[k].(float64)
				if !ok {
					return absent
				}
				return int(v)
			}
			if got := num("n", 1); got != req.N {
				t.Errorf("%s: engine would read n=%d, validated %d", body, got, req.N)
			}
			if got := num("best_of", 0); got != req.BestOf {
				t.Errorf("%s: engine would read best_of=%d, validated %d", body, got, req.BestOf)
			}
			if got := num("max_tokens", 0); got > 32768 {
				t.Errorf("%s: engine would read max_tokens=%d", body, got)
			}
			for _, k := range []string{"priority", "chat_template", "chat_template_kwargs", "request_id"} {
				if _, ok := py[k]; ok {
					t.Errorf("%s: accepted with %s", body, k)
				}
			}
			again, err := request.Check(e, req.Canonical, served, request.Limits{})
			if err != nil || string(again.Canonical) != string(req.Canonical) {
				t.Errorf("canonical body %s does not pass unchanged: %v", req.Canonical, err)
			}
		}
	})
}

func ExampleCheck() {
	req, err := request.Check(lull.EndpointChat, []byte(`{"model":"m","n":2,"stream":false,"messages":[{"role":"user","content":"hi"}]}`),
		func(string) (lull.Task, bool) { return lull.TaskGenerate, true }, request.Limits{})
	fmt.Println(string(req.Canonical), req.Sequences, err)
	_, err = request.Check(lull.EndpointChat, []byte(`{"model":"m","n":100000,"N":1,"messages":[{"role":"user","content":"hi"}]}`),
		func(string) (lull.Task, bool) { return lull.TaskGenerate, true }, request.Limits{})
	fmt.Println(err)
	// Output:
	// {"model":"m","n":2,"messages":[{"role":"user","content":"hi"}]} 2 <nil>
	// invalid_request: Keys 'n' and 'N' differ only in case; send each parameter once, in lower case.
}
