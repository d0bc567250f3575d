package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"mime/multipart"
	"net/http"
	"os"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lull-ai/lull/localstack/devstack"
	"github.com/lull-ai/lull/localstack/vllmsim"
	"github.com/lull-ai/lull/shared/lull"
	"github.com/lull-ai/lull/shared/request"
)

// hostileLimits are the bounds the hostile test's stack runs with: small,
// so that everything within them runs in moments on the simulator.
var hostileLimits = request.Limits{MaxSequences: 16, MaxTokens: 256}

// hostileRequests is how many requests TestHostileInput sends.
const hostileRequests = 1200

// TestHostileInput holds issue 13's acceptance: a seeded stream of mutated
// and malformed requests across every endpoint, in bodies, headers, paths
// and query strings, against the dev stack in process. It checks that
//   - no answer is a 5xx;
//   - every refusal carries OpenAI's error envelope;
//   - every accepted generation and batch ends terminal promptly;
//   - no accepted body makes the engine do more than what was validated:
//     the simulator records every body it receives, and each one passes
//     request.Check within the stack's limits and says exactly what the
//     client's own bytes say when read as the engine reads JSON (exact key
//     case, last duplicate wins), field by field, with nothing added;
//   - the engine receives nothing that was not accepted.
//
// LULL_HOSTILE_SEED picks another seed (the default is fixed).
func TestHostileInput(t *testing.T) {
	t.Parallel()
	seed := uint64(13)
	if s := os.Getenv("LULL_HOSTILE_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d", seed)
	st := startStack(t, devstack.Config{
		Limits: hostileLimits, WorkerConcurrency: 32, SweepEvery: time.Second, SweepGrace: time.Second,
		Sim: vllmsim.Config{TimeScale: 0.001}, WebhookTimeout: time.Second,
	})
	if err := st.AddKey(context.Background(), "sk-other", "other"); err != nil {
		t.Fatal(err)
	}
	h := &hostile{t: t, st: st, rng: rand.New(rand.NewPCG(seed, seed^0x5eed)), byEndpoint: map[string]map[int]int{},
		engine: map[string][]vllmsim.Received{}, sent: map[string]sentBody{}}
	st.Sim.Record(func(r vllmsim.Received) {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.engine[r.RequestID] = append(h.engine[r.RequestID], r)
	})
	h.fixtures()
	gens := []func(){h.slow, h.slow, h.slow, h.slow, h.generationReads, h.webhooks, h.webhookEndpoints, h.files, h.uploads, h.batches, h.oddRoutes}
	for range hostileRequests {
		gens[h.rng.IntN(len(gens))]()
	}
	start := time.Now()
	h.waitAccepted(2 * time.Minute)
	t.Logf("accepted work terminal %s after the last request", time.Since(start).Round(time.Millisecond))
	h.checkEngine()
	h.report()
}

// sentBody is an accepted slow request as the client sent it.
type sentBody struct {
	endpoint lull.Endpoint
	raw      []byte
}

type hostile struct {
	t   *testing.T
	st  *devstack.Stack
	rng *rand.Rand

	byEndpoint map[string]map[int]int // endpoint label → status → count
	total      int
	// Accepted work.
	sent       map[string]sentBody // generation ID → body
	accBatches []string

	// Fixtures: the dev tenant's and another tenant's objects.
	ownGen, otherGen, ownWebhook, otherWebhook, ownFile, otherFile, ownBatch, ownUpload string
	idemUsed                                                                            []string

	mu     sync.Mutex
	engine map[string][]vllmsim.Received // X-Request-Id → bodies the engine got
}

const devKey = "sk-lull-dev"

// embedModel is the dev stack's embedding model.
const embedModel = "lull-sim-embed-1"

// do sends one request and checks the answer: never a 5xx, OpenAI's error
// envelope on every refusal. It returns the status and the decoded body.
func (h *hostile) do(label, method, path string, hdr http.Header, body []byte) (int, map[string]any) {
	t := h.t
	t.Helper()
	req, err := http.NewRequest(method, h.st.URL+path, bytes.NewReader(body))
	if err != nil {
		// A path no client can send; count it as refused by the client.
		return 0, nil
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }, Timeout: 30 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if h.byEndpoint[label] == nil {
		h.byEndpoint[label] = map[int]int{}
	}
	h.byEndpoint[label][resp.StatusCode]++
	h.total++
	if resp.StatusCode >= 500 {
		t.Errorf("%s %s → %d %s\nrequest headers %v\nbody %.300q", method, path, resp.StatusCode, raw, hdr, body)
	}
	var out map[string]any
	if resp.StatusCode >= 400 {
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Errorf("%s %s → %d without a JSON body: %.200q", method, path, resp.StatusCode, raw)
			return resp.StatusCode, nil
		}
		checkEnvelope(t, method+" "+path, out)
		return resp.StatusCode, out
	}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		_ = json.Unmarshal(raw, &out)
	}
	return resp.StatusCode, out
}

// checkEnvelope checks OpenAI's error envelope: {"error": {"message":
// non-empty string, "type": string, "param": string|null, "code":
// string|null}} and nothing else.
func checkEnvelope(t *testing.T, what string, out map[string]any) {
	t.Helper()
	e, ok := out["error"].(map[string]any)
	if !ok || len(out) != 1 {
		t.Errorf("%s: not OpenAI's error envelope: %v", what, out)
		return
	}
	if m, _ := e["message"].(string); m == "" {
		t.Errorf("%s: empty error message: %v", what, e)
	}
	if _, ok := e["type"].(string); !ok {
		t.Errorf("%s: no error type: %v", what, e)
	}
	for _, k := range []string{"param", "code"} {
		if v, ok := e[k]; !ok {
			t.Errorf("%s: error has no %s: %v", what, k, e)
		} else if _, isStr := v.(string); v != nil && !isStr {
			t.Errorf("%s: error %s is %T: %v", what, k, v, e)
		}
	}
}

func (h *hostile) pick(xs ...string) string { return xs[h.rng.IntN(len(xs))] }
func (h *hostile) chance(p float64) bool    { return h.rng.Float64() < p }

// auth returns headers with a random (mostly valid) Authorization.
func (h *hostile) auth() http.Header {
	hdr := http.Header{}
	switch h.rng.IntN(24) {
	case 0:
	case 1:
		hdr.Set("Authorization", "Bearer sk-nope")
	case 2:
		hdr.Set("Authorization", "bearer "+devKey)
	case 3:
		hdr.Set("Authorization", "Bearer "+strings.Repeat("k", 300))
	case 4:
		hdr.Set("Authorization", "Basic eDp5")
	case 5:
		hdr.Set("Authorization", "Bearer sk-other")
	case 6:
		hdr.Set("Authorization", "Bearer  "+devKey+" \t")
	default:
		hdr.Set("Authorization", "Bearer "+devKey)
	}
	if h.chance(0.1) {
		hdr.Set("X-Request-Id", h.pick(strings.Repeat("r", 500), "r\xc3\xa9q", "../../", ""))
	}
	return hdr
}

func (h *hostile) jsonHeaders() http.Header {
	hdr := h.auth()
	switch h.rng.IntN(16) {
	case 0:
	case 1:
		hdr.Set("Content-Type", "text/plain")
	case 2:
		hdr.Set("Content-Type", "application/json; charset=utf-8")
	case 3:
		hdr.Set("Content-Type", "application/json, text/plain")
	case 4:
		hdr.Set("Content-Type", ";;;")
	default:
		hdr.Set("Content-Type", "application/json")
	}
	return hdr
}

// id returns a random ID for paths: the caller's, another tenant's, a
// missing one, or a malformed one.
func (h *hostile) id(own, other, prefix string) string {
	switch h.rng.IntN(9) {
	case 0, 1, 2:
		return own
	case 3:
		return other
	case 4:
		return lull.NewID(prefix)
	case 5:
		return prefix + "_" + strings.Repeat("A", 26)
	case 6:
		return strings.Repeat("x", 2000)
	case 7:
		return "%2e%2e%2f" + prefix
	default:
		return prefix + "_%00"
	}
}

// fixtures creates one object of every kind for the dev tenant and for
// another tenant, so that paths can name real, foreign and missing IDs.
func (h *hostile) fixtures() {
	t := h.t
	for _, k := range []struct {
		key string
		out *string
	}{{devKey, &h.ownGen}, {"sk-other", &h.otherGen}} {
		var acc struct{ ID string }
		if code := postJSON(t, h.st.URL+"/v1/slow/chat/completions", k.key, chatBody(simModel, "fixture", 4), &acc); code != http.StatusAccepted {
			t.Fatalf("fixture generation: %d", code)
		}
		*k.out = acc.ID
		h.sent[acc.ID] = sentBody{lull.EndpointChat, []byte(chatBody(simModel, "fixture", 4))}
	}
	for _, k := range []struct {
		key string
		out *string
	}{{devKey, &h.ownWebhook}, {"sk-other", &h.otherWebhook}} {
		var wh struct{ ID string }
		if code := postJSON(t, h.st.URL+"/v1/webhooks", k.key, `{"url":"http://127.0.0.1:9/hook"}`, &wh); code != http.StatusOK {
			t.Fatalf("fixture webhook: %d", code)
		}
		*k.out = wh.ID
	}
	for _, k := range []struct {
		key string
		out *string
	}{{devKey, &h.ownFile}, {"sk-other", &h.otherFile}} {
		body, ct := multipartBody(map[string]string{"purpose": "batch"}, "file", []byte(goodLine("f", 4)+"\n"))
		hdr := http.Header{"Authorization": {"Bearer " + k.key}, "Content-Type": {ct}}
		code, out := h.do("fixtures", "POST", "/v1/files", hdr, body)
		if code != http.StatusOK {
			t.Fatalf("fixture file: %d %v", code, out)
		}
		*k.out = out["id"].(string)
	}
	code, out := h.do("fixtures", "POST", "/v1/batches", http.Header{"Authorization": {"Bearer " + devKey}, "Content-Type": {"application/json"}},
		[]byte(`{"input_file_id":"`+h.ownFile+`","endpoint":"/v1/chat/completions","completion_window":"24h"}`))
	if code != http.StatusOK {
		t.Fatalf("fixture batch: %d %v", code, out)
	}
	h.ownBatch = out["id"].(string)
	h.accBatches = append(h.accBatches, h.ownBatch)
	code, out = h.do("fixtures", "POST", "/v1/uploads", http.Header{"Authorization": {"Bearer " + devKey}, "Content-Type": {"application/json"}},
		[]byte(`{"filename":"u.jsonl","purpose":"batch","bytes":10,"mime_type":"application/jsonl"}`))
	if code != http.StatusOK {
		t.Fatalf("fixture upload: %d %v", code, out)
	}
	h.ownUpload = out["id"].(string)
}

func goodLine(customID string, maxTokens int) string {
	return fmt.Sprintf(`{"custom_id":%q,"method":"POST","url":"/v1/chat/completions","body":{"model":%q,"max_tokens":%d,"messages":[{"role":"user","content":"line %s"}]}}`,
		customID, simModel, maxTokens, customID)
}

func multipartBody(fields map[string]string, fileField string, content []byte) ([]byte, string) {
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		_ = w.WriteField(k, fields[k])
	}
	if fileField != "" {
		p, _ := w.CreateFormFile(fileField, "in.jsonl")
		_, _ = p.Write(content)
	}
	_ = w.Close()
	return buf.Bytes(), w.FormDataContentType()
}

// kv is one member of a JSON object as written, so that bodies can repeat
// keys and vary their case.
type kv struct{ k, v string }

func render(obj []kv) []byte {
	var b strings.Builder
	b.WriteByte('{')
	for i, m := range obj {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%q:%s", m.k, m.v)
	}
	b.WriteByte('}')
	return []byte(b.String())
}

// hostileValues are values put where numbers, strings or objects belong.
var hostileValues = []string{`0`, `-1`, `1`, `2`, `16`, `17`, `256`, `257`, `100000`, `1e5`, `1.5`, `2.0`, `"5"`, `null`, `true`,
	`[]`, `{}`, `9999999999999999999999`, `-0`, `1e400`, `"\u0000"`, `[1,2,3]`, `{"a":1}`, `""`}

// engineFields are fields a hostile client adds: engine extensions (several
// would make the engine do more than validated), OpenAI fields, junk.
var engineFields = []kv{
	{"chat_template", `"{{ 'x' * 100000 }}"`}, {"chat_template_kwargs", `{"enable_thinking":true}`}, {"priority", `-1000`},
	{"request_id", `"gen_other"`}, {"use_beam_search", `true`}, {"best_of", `64`}, {"best_of", `2`}, {"logprobs", `true`},
	{"logprobs", `20`}, {"logprobs", `100`}, {"top_logprobs", `5`}, {"top_logprobs", `1000`}, {"echo", `true`},
	{"stop", `["a","b","c","d","e","f"]`}, {"stop", `["\n"]`}, {"stop", `"x"`}, {"stop_token_ids", `[1,2,3]`},
	{"min_tokens", `100000`}, {"min_tokens", `3`}, {"ignore_eos", `true`}, {"guided_json", `{"type":"object"}`},
	{"response_format", `{"type":"json_object"}`}, {"response_format", `{"type":"json_schema","json_schema":{"name":"x","schema":{}}}`},
	{"tools", `[{"type":"function","function":{"name":"f","parameters":{}}}]`}, {"tool_choice", `"auto"`}, {"logit_bias", `{"50256":-100}`},
	{"seed", `42`}, {"user", `"u-1"`}, {"metadata", `{"k":"v"}`}, {"metadata", `{"webhook_id":"wh_nope"}`}, {"metadata", `{"a":1}`},
	{"stream", `true`}, {"stream", `false`}, {"stream_options", `{"include_usage":true}`}, {"store", `true`}, {"suffix", `"end"`},
	{"top_k", `40`}, {"top_k", `-5`}, {"min_p", `0.1`}, {"repetition_penalty", `1.1`}, {"repetition_penalty", `0`},
	{"mm_processor_kwargs", `{}`}, {"add_special_tokens", `true`}, {"truncate_prompt_tokens", `10`}, {"prompt_logprobs", `20`},
	{"allowed_token_ids", `[1]`}, {"bad_words", `["x"]`}, {"kv_transfer_params", `{}`}, {"vllm_xargs", `{}`}, {"cache_salt", `"s"`},
	{"documents", `[]`}, {"temperature", `0.7`}, {"temperature", `5`}, {"top_p", `0.9`}, {"frequency_penalty", `3`},
	{"presence_penalty", `-1`}, {"service_tier", `"flex"`}, {"reasoning_effort", `"low"`}, {"parallel_tool_calls", `true`},
	{"n", `2`}, {"max_completion_tokens", `8`}, {"functions", `[]`}, {"__proto__", `{}`}, {"", `1`},
}

// caseVariants are keys that differ only in case from a field.
var caseVariants = []string{"N", "Max_Tokens", "MAX_TOKENS", "Model", "MODEL", "Messages", "Prompt", "Stream", "Best_Of", "Priority", "Metadata"}

// messagesVariants are chat message lists, hostile or not.
var messagesVariants = []string{
	`[{"role":"user","content":"hi"}]`,
	`[{"role":"system","content":"be brief"},{"role":"user","content":"<script>&amp;</script> \u2028 日本"}]`,
	`[{"role":"user","content":[{"type":"text","text":"look"},{"type":"image_url","image_url":{"url":"http://169.254.169.254/latest/meta-data/"}}]}]`,
	`[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://example.com/x.png","detail":"low"}}]}]`,
	`[{"role":"user","content":[{"type":"image_url","image_url":"file:///etc/passwd"}]}]`,
	`[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo="}}]}]`,
	`[{"role":"user","content":[{"type":"video_url","video_url":{"url":"http://10.0.0.1/v.mp4"}}]}]`,
	`[{"role":"user","content":[{"type":"audio_url","audio_url":{"url":"data:audio/wav;base64,AA"}}]}]`,
	`[{"role":"user","content":[{"type":"input_audio","input_audio":{"data":"AA","format":"wav"}}]}]`,
	`[{"role":"user","content":[{"type":"image_embeds","image_embeds":"AAAA"}]}]`,
	`[{"role":"user","content":"a","Content":"b"}]`,
	`[{"role":"user","content":"a","content":"b"}]`,
	`[{"role":"user","content":"x","images":["http://127.0.0.1/"]}]`,
	`[{"role":"wizard","content":"x"}]`,
	`[{"role":"user","content":7}]`,
	`[{"role":"user","content":null}]`,
	`[{"role":"assistant","content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c","content":"r"}]`,
	`[]`, `{}`, `"hi"`, `[null]`, `[[]]`,
}

var promptVariants = []string{`"hi"`, `["a","b"]`, `["a","b","c","d","e","f","g","h","i","j","k","l","m","n","o","p","q"]`,
	`[1,2,3]`, `[[1,2],[3]]`, `[-1]`, `[[]]`, `[]`, `""`, `[1.5]`, `[["a"]]`, `null`, `{"p":1}`}

// slowBody returns a mutated body for a slow endpoint.
func (h *hostile) slowBody(e lull.Endpoint) []byte {
	obj := []kv{{"model", `"` + simModel + `"`}, {"max_tokens", strconv.Itoa(1 + h.rng.IntN(16))}}
	switch e {
	case lull.EndpointChat:
		obj = append(obj, kv{"messages", fmt.Sprintf(`[{"role":"user","content":"hostile %d"}]`, h.rng.IntN(1e6))})
	case lull.EndpointCompletions:
		obj = append(obj, kv{"prompt", fmt.Sprintf(`"hostile %d"`, h.rng.IntN(1e6))})
	case lull.EndpointEmbeddings:
		obj = []kv{{"model", `"` + embedModel + `"`}, {"input", h.pick(fmt.Sprintf(`"hostile %d"`, h.rng.IntN(1e6)), `["a","b"]`, `[1,2,3]`, `[[1],[2]]`, `""`, `[]`, `[""]`, `{"x":1}`)}}
		if h.chance(0.2) {
			obj = append(obj, kv{"encoding_format", h.pick(`"float"`, `"base64"`, `"int8"`)}, kv{"dimensions", h.pick("8", "0", "-1", "1e9")})
		}
	case lull.EndpointResponses:
		obj = []kv{{"model", `"` + simModel + `"`}, {"background", "true"}, {"max_output_tokens", strconv.Itoa(1 + h.rng.IntN(16))},
			{"input", h.pick(fmt.Sprintf(`"hostile %d"`, h.rng.IntN(1e6)), `[{"role":"user","content":"hi"}]`,
				`[{"role":"user","content":[{"type":"input_image","image_url":"http://169.254.169.254/latest/meta-data/"}]}]`,
				`[{"role":"user","content":[{"type":"input_file","file_url":"https://example.com/a.pdf"}]}]`,
				`[{"role":"user","content":[{"type":"input_image","image_url":"data:image/png;base64,AA"}]}]`, `[]`, `""`)}}
		if h.chance(0.2) {
			obj = append(obj, kv{h.pick("previous_response_id", "conversation", "instructions", "truncation", "max_output_tokens"), hostileValues[h.rng.IntN(len(hostileValues))]})
		}
	}
	for range h.rng.IntN(4) {
		switch h.rng.IntN(9) {
		case 0: // a duplicate of a field with another value
			m := obj[h.rng.IntN(len(obj))]
			obj = append(obj, kv{m.k, hostileValues[h.rng.IntN(len(hostileValues))]})
		case 1: // a key that differs only in case
			obj = append(obj, kv{caseVariants[h.rng.IntN(len(caseVariants))], hostileValues[h.rng.IntN(len(hostileValues))]})
		case 2: // an extreme value in a bounded field
			k := h.pick("n", "max_tokens", "max_completion_tokens", "best_of", "logprobs", "top_logprobs", "temperature", "model")
			obj = append(obj, kv{k, hostileValues[h.rng.IntN(len(hostileValues))]})
		case 3, 4: // an engine extension or an OpenAI field
			obj = append(obj, engineFields[h.rng.IntN(len(engineFields))])
		case 5:
			if e == lull.EndpointChat {
				obj = append(obj, kv{"messages", messagesVariants[h.rng.IntN(len(messagesVariants))]})
			} else {
				obj = append(obj, kv{"prompt", promptVariants[h.rng.IntN(len(promptVariants))]})
			}
		case 6: // replace a field's value (no duplicate)
			i := h.rng.IntN(len(obj))
			obj[i].v = hostileValues[h.rng.IntN(len(hostileValues))]
		case 7: // drop a field
			i := h.rng.IntN(len(obj))
			obj = slices.Delete(obj, i, i+1)
		case 8: // the famous one
			obj = append(obj, kv{"n", "100000"}, kv{"N", "1"})
		}
	}
	body := render(obj)
	switch h.rng.IntN(25) { // raw damage
	case 0:
		body = body[:h.rng.IntN(len(body))]
	case 1:
		b := slices.Clone(body)
		b[h.rng.IntN(len(b))] = byte(h.rng.IntN(256))
		body = b
	case 2:
		body = append(body, []byte(` {"model":"x"}`)...)
	case 3:
		body = append([]byte{0xEF, 0xBB, 0xBF}, body...)
	case 4:
		body = bytes.Replace(body, []byte(`hostile`), []byte("host\xffile"), 1)
	case 5:
		body = []byte(strings.Repeat("[", 10000) + strings.Repeat("]", 10000))
	case 6:
		body = []byte(h.pick(``, `null`, `"x"`, `[]`, `   `, `{}`, `{"model":null}`, `[{"model":"lull-sim-1"}]`))
	case 7:
		body = render([]kv{{"model", `"` + simModel + `"`}, {"response_format", `{"type":"json_schema","json_schema":` + strings.Repeat(`{"a":`, 100) + "1" + strings.Repeat("}", 100) + "}"}})
	case 8:
		body = []byte(`{"model":"` + simModel + `","messages":[{"role":"user","content":"` + strings.Repeat("x", 2<<20) + `"}]}`)
	}
	return body
}

// slow sends one mutated request to a slow endpoint.
func (h *hostile) slow() {
	e := []lull.Endpoint{lull.EndpointChat, lull.EndpointChat, lull.EndpointChat, lull.EndpointCompletions, lull.EndpointCompletions,
		lull.EndpointEmbeddings, lull.EndpointResponses, lull.EndpointResponses}[h.rng.IntN(8)]
	body := h.slowBody(e)
	hdr := h.jsonHeaders()
	switch h.rng.IntN(8) {
	case 0:
		hdr.Set("Idempotency-Key", h.pick("batch#x", "batch#", "#", "%23", strings.Repeat("k", 256), "ключ", "a\tb", "GEN#x", "IDEM#dev#y"))
	case 1:
		if len(h.idemUsed) > 0 {
			hdr.Set("Idempotency-Key", h.idemUsed[h.rng.IntN(len(h.idemUsed))])
		}
	case 2:
		hdr.Set("X-Lull-Completion-Window", h.pick("0s", "59s", "1m", "99999d", "-1h", "1e3h", "24h ", "soon", "168h", "169h", "7d"))
	}
	if k := hdr.Get("Idempotency-Key"); k != "" && !slices.Contains(h.idemUsed, k) {
		h.idemUsed = append(h.idemUsed, k)
	}
	path := "/v1/slow" + string(e)
	if e == lull.EndpointResponses && h.chance(0.5) {
		path = "/v1/responses" // OpenAI's path: background only
	}
	code, out := h.do("POST "+path, "POST", path, hdr, body)
	if code == http.StatusAccepted || (code == http.StatusOK && e == lull.EndpointResponses) {
		id, _ := out["id"].(string)
		if rest, ok := strings.CutPrefix(id, "resp_"); ok {
			id = "gen_" + rest // a response is its generation
		}
		if !lull.ValidID("gen", id) {
			h.t.Fatalf("accepted without a generation ID: %v", out)
		}
		if prior, seen := h.sent[id]; seen && !bytes.Equal(prior.raw, body) {
			// An idempotent replay answered with the first request's ID:
			// the engine runs that body, not this one.
			return
		}
		h.sent[id] = sentBody{e, body}
	}
}

// generationReads hits the generation endpoints with random IDs and queries.
func (h *hostile) generationReads() {
	id := h.id(h.ownGen, h.otherGen, "gen")
	switch h.rng.IntN(4) {
	case 0:
		h.do("GET /v1/generation/{id}", "GET", "/v1/generation/"+id, h.auth(), nil)
	case 1:
		h.do("POST /v1/generation/{id}/cancel", "POST", "/v1/generation/"+id+"/cancel", h.auth(), nil)
	case 2:
		q := h.pick("", "?limit=0", "?limit=101", "?limit=-5", "?limit=abc", "?limit=1e2", "?status=done", "?status=queued",
			"?status=cancelled&limit=1", "?after="+h.otherGen, "?after=../x", "?after="+h.ownGen, "?limit=100&status=completed", "?limit=%00")
		h.do("GET /v1/generations", "GET", "/v1/generations"+q, h.auth(), nil)
	default:
		if h.chance(0.5) {
			h.do("GET /v1/models", h.pick("GET", "POST", "DELETE"), h.pick("/v1/models", "/v1/slow/models"), h.auth(), nil)
			return
		}
		rid := "resp_" + strings.TrimPrefix(id, "gen_")
		switch h.rng.IntN(3) {
		case 0:
			h.do("GET|DELETE /v1/responses/{id}", h.pick("GET", "DELETE", "PUT"), "/v1/responses/"+rid, h.auth(), nil)
		default:
			h.do("POST /v1/responses/{id}/cancel", "POST", "/v1/responses/"+rid+"/cancel", h.auth(), nil)
		}
	}
}

// webhookEndpoints hits OpenAI's webhook endpoints API.
func (h *hostile) webhookEndpoints() {
	id := h.id(h.ownWebhook, h.otherWebhook, "wh")
	switch h.rng.IntN(7) {
	case 0, 1:
		body := h.pick(`{"url":"http://127.0.0.1:9/e","name":"e","event_types":["response.completed"]}`,
			`{"url":"http://127.0.0.1:9/e","name":"e","event_types":["batch.completed","response.failed"]}`, `{"url":"http://127.0.0.1:9/e"}`,
			`{"url":"http://127.0.0.1:9/e","event_types":["nope"]}`, `{"url":"http://127.0.0.1:9/e","url":"ftp://x"}`, `{"URL":"x"}`,
			`{"url":"http://127.0.0.1:9/e","name":"`+strings.Repeat("n", 3000)+`"}`, `[]`, `{`, `{"url":null}`)
		h.do("POST /v1/webhook_endpoints", "POST", "/v1/webhook_endpoints", h.jsonHeaders(), []byte(body))
	case 2:
		h.do("GET /v1/webhook_endpoints", "GET", "/v1/webhook_endpoints"+h.pick("", "?limit=0", "?limit=1000", "?after=wh_x", "?order=sideways"), h.auth(), nil)
	case 3:
		body := h.pick(`{"name":"x"}`, `{"url":"http://127.0.0.1:9/f"}`, `{"event_types":[]}`, `{"url":"ftp://x"}`, `{"status":"disabled"}`, `[]`)
		h.do("GET|POST|DELETE /v1/webhook_endpoints/{id}", h.pick("GET", "POST", "DELETE", "PATCH"), "/v1/webhook_endpoints/"+id, h.jsonHeaders(), []byte(body))
	case 4:
		h.do("POST /v1/webhook_endpoints/{id}/rotate_secret", "POST", "/v1/webhook_endpoints/"+id+"/rotate_secret", h.jsonHeaders(),
			[]byte(h.pick("", `{"keep_old_secret_active_for_24_hours":true}`, `{"keep_old_secret_active_for_24_hours":"yes"}`)))
	case 5:
		h.do("POST /v1/webhook_endpoints/{id}/test", "POST", "/v1/webhook_endpoints/"+id+"/test", h.jsonHeaders(), []byte(h.pick("", `{"event_type":"nope"}`, `{}`)))
	default:
		h.do("GET /v1/webhook_event_types", h.pick("GET", "POST"), "/v1/webhook_event_types", h.auth(), nil)
	}
}

// webhooks hits the webhook endpoints.
func (h *hostile) webhooks() {
	id := h.id(h.ownWebhook, h.otherWebhook, "wh")
	switch h.rng.IntN(7) {
	case 0, 1:
		body := h.pick(`{"url":"http://127.0.0.1:9/x"}`, `{"url":"ftp://x"}`, `{"url":""}`, `{"url":"http://[::1]:9/","events":["nope"]}`,
			`{"url":"http://127.0.0.1:9/","url":"https://example.com/"}`, `{"URL":"http://127.0.0.1:9/"}`, `{"url":7}`, `[]`, `{`,
			`{"url":"http://127.0.0.1:9/","description":"`+strings.Repeat("d", 600)+`"}`, `{"url":"http://127.0.0.1:9/","events":"generation.completed"}`,
			`{"url":"http://`+strings.Repeat("a", 3000)+`/"}`, `{"url":"http://127.0.0.1:9/","events":[]}`)
		h.do("POST /v1/webhooks", "POST", "/v1/webhooks", h.jsonHeaders(), []byte(body))
	case 2:
		h.do("GET /v1/webhooks", h.pick("GET", "PUT"), "/v1/webhooks", h.auth(), nil)
	case 3:
		h.do("GET|DELETE /v1/webhooks/{id}", h.pick("GET", "GET", "DELETE", "PATCH"), "/v1/webhooks/"+id, h.auth(), nil)
	case 4:
		h.do("POST /v1/webhooks/{id}/rotate_secret", "POST", "/v1/webhooks/"+id+"/rotate_secret", h.auth(), nil)
	case 5:
		q := h.pick("", "?limit=0", "?limit=501", "?limit=x", "?after=dlv_x", "?after="+lull.NewID("dlv"), "?limit=500", "?after=%ff")
		h.do("GET /v1/webhooks/{id}/deliveries", "GET", "/v1/webhooks/"+id+"/deliveries"+q, h.auth(), nil)
	default:
		h.do("POST /v1/webhooks/{id}/deliveries/{d}/retry", "POST", "/v1/webhooks/"+id+"/deliveries/"+h.id(lull.NewID("dlv"), "dlv_x", "dlv")+"/retry", h.auth(), nil)
	}
}

// files hits the file endpoints.
func (h *hostile) files() {
	id := h.id(h.ownFile, h.otherFile, "file")
	switch h.rng.IntN(5) {
	case 0, 1:
		var body []byte
		var ct string
		switch h.rng.IntN(6) {
		case 0:
			body, ct = multipartBody(map[string]string{"purpose": h.pick("batch", "fine-tune", "", "BATCH")}, "file", h.batchFile())
		case 1:
			body, ct = multipartBody(map[string]string{"purpose": "batch"}, "", nil)
		case 2:
			body, ct = multipartBody(map[string]string{"purpose": "batch"}, "file", bytes.Repeat([]byte("x"), 5<<20))
		case 3:
			body, ct = []byte("--x\r\nnot multipart"), "multipart/form-data; boundary=x"
		case 4:
			body, _ = multipartBody(map[string]string{"purpose": "batch"}, "file", h.batchFile())
			ct = "multipart/form-data" // no boundary
		default:
			body, ct = multipartBody(map[string]string{"purpose": "batch"}, "file", h.batchFile())
		}
		hdr := h.auth()
		hdr.Set("Content-Type", ct)
		h.do("POST /v1/files", "POST", "/v1/files", hdr, body)
	case 2:
		q := h.pick("", "?limit=10000", "?limit=10001", "?limit=0", "?purpose=batch_output", "?purpose=x", "?order=asc", "?after="+h.otherFile, "?after=zz")
		h.do("GET /v1/files", "GET", "/v1/files"+q, h.auth(), nil)
	case 3:
		h.do("GET|DELETE /v1/files/{id}", h.pick("GET", "DELETE", "GET", "POST"), "/v1/files/"+id, h.auth(), nil)
	default:
		h.do("GET /v1/files/{id}/content", "GET", "/v1/files/"+id+"/content", h.auth(), nil)
	}
}

// batchFile returns a batch input file whose lines are mutated requests.
func (h *hostile) batchFile() []byte {
	var b bytes.Buffer
	for i := range 1 + h.rng.IntN(4) {
		switch h.rng.IntN(6) {
		case 0:
			fmt.Fprintf(&b, `{"custom_id":"c%d","method":"POST","url":"/v1/chat/completions","body":%s}`+"\n", i, h.slowBody(lull.EndpointChat))
		case 1:
			fmt.Fprintf(&b, `{"custom_id":"c%d","custom_id":"c0","method":"POST","url":"/v1/chat/completions","body":{"model":%q,"n":100000,"N":1,"messages":[{"role":"user","content":"x"}]}}`+"\n", i, simModel)
		case 2:
			b.WriteString(h.pick(`{`, `[]`, `{"custom_id":"x"}`, `{"custom_id":"y","method":"GET","url":"/v1/chat/completions","body":{}}`) + "\n")
		default:
			b.WriteString(goodLine(fmt.Sprintf("c%d", i), 1+h.rng.IntN(8)) + "\n")
		}
	}
	return b.Bytes()
}

// uploads hits the upload endpoints.
func (h *hostile) uploads() {
	id := h.id(h.ownUpload, "upload_"+strings.Repeat("a", 26), "upload")
	switch h.rng.IntN(4) {
	case 0:
		body := h.pick(`{"filename":"a.jsonl","purpose":"batch","bytes":10,"mime_type":"application/jsonl"}`,
			`{"filename":"a.jsonl","purpose":"batch","bytes":-1,"mime_type":"application/jsonl"}`,
			`{"filename":"a.jsonl","purpose":"batch","bytes":999999999999,"mime_type":"application/jsonl"}`,
			`{"filename":"","purpose":"nope","bytes":1}`, `{"bytes":"10"}`, `{`, `{"filename":"a","filename":"b","purpose":"batch","bytes":1,"mime_type":"text/jsonl"}`)
		h.do("POST /v1/uploads", "POST", "/v1/uploads", h.jsonHeaders(), []byte(body))
	case 1:
		body, ct := multipartBody(nil, h.pick("data", "file"), []byte(h.pick("0123456789", "", strings.Repeat("z", 100))))
		hdr := h.auth()
		hdr.Set("Content-Type", ct)
		h.do("POST /v1/uploads/{id}/parts", "POST", "/v1/uploads/"+id+"/parts", hdr, body)
	case 2:
		body := h.pick(`{"part_ids":[]}`, `{"part_ids":["part_x"]}`, `{"part_ids":"x"}`, `{}`, `{"part_ids":[`+strings.Repeat(`"part_a",`, 500)+`"part_b"]}`)
		h.do("POST /v1/uploads/{id}/complete", "POST", "/v1/uploads/"+id+"/complete", h.jsonHeaders(), []byte(body))
	default:
		h.do("POST /v1/uploads/{id}/cancel", "POST", "/v1/uploads/"+id+"/cancel", h.auth(), nil)
	}
}

// batches hits the batch endpoints.
func (h *hostile) batches() {
	switch h.rng.IntN(4) {
	case 0, 1:
		file := h.id(h.ownFile, h.otherFile, "file")
		body := h.pick(
			`{"input_file_id":"`+file+`","endpoint":"/v1/chat/completions","completion_window":"24h"}`,
			`{"input_file_id":"`+file+`","endpoint":"/v1/embeddings","completion_window":"24h"}`,
			`{"input_file_id":"`+file+`","endpoint":"/v1/chat/completions","completion_window":"99999h"}`,
			`{"input_file_id":"`+file+`","endpoint":"/v1/chat/completions","completion_window":"24h","metadata":{"a":1}}`,
			`{"input_file_id":"`+file+`","input_file_id":"`+h.otherFile+`","endpoint":"/v1/chat/completions","completion_window":"24h"}`,
			`{"Input_File_Id":"`+file+`","endpoint":"/v1/chat/completions","completion_window":"24h"}`,
			`{"input_file_id":null}`, `[]`, `{`)
		hdr := h.jsonHeaders()
		if h.chance(0.3) {
			hdr.Set("Idempotency-Key", h.pick("x", "batch#x", "#", strings.Repeat("b", 300)))
		}
		code, out := h.do("POST /v1/batches", "POST", "/v1/batches", hdr, []byte(body))
		if code == http.StatusOK {
			if id, _ := out["id"].(string); id != "" && !slices.Contains(h.accBatches, id) {
				h.accBatches = append(h.accBatches, id)
			}
		}
	case 2:
		q := h.pick("", "?limit=0", "?limit=101", "?after=batch_x", "?after="+h.ownBatch)
		h.do("GET /v1/batches", "GET", "/v1/batches"+q, h.auth(), nil)
	default:
		id := h.id(h.ownBatch, "batch_"+strings.Repeat("a", 26), "batch")
		if h.chance(0.5) {
			h.do("GET /v1/batches/{id}", "GET", "/v1/batches/"+id, h.auth(), nil)
		} else {
			h.do("POST /v1/batches/{id}/cancel", "POST", "/v1/batches/"+id+"/cancel", h.auth(), nil)
		}
	}
}

// oddRoutes sends requests to paths and with methods nobody serves.
func (h *hostile) oddRoutes() {
	path := h.pick("/", "/v1", "/v1/chat/completions", "/v1/slow/embeddings", "/v1/slow/chat/completions/", "/v1/generation/",
		"/v1/generations/x", "/v2/models", "/v1/slow/../models", "/v1/files/"+h.ownFile+"/content/x", "/console", "/.env")
	h.do("unknown route", h.pick("GET", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"), path, h.auth(), []byte(`{}`))
}

// waitAccepted waits until every accepted generation and batch is terminal.
func (h *hostile) waitAccepted(timeout time.Duration) {
	t := h.t
	ids := make([]string, 0, len(h.sent))
	for id := range h.sent {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	deadline := time.Now().Add(timeout)
	for _, id := range ids {
		for {
			g, err := h.st.Store.Get(context.Background(), id)
			if err != nil {
				t.Fatalf("accepted generation %s: %v", id, err)
			}
			if g.Status.Terminal() {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("accepted generation %s still %s after %s", id, g.Status, timeout)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	for _, id := range h.accBatches {
		for {
			b, err := h.st.Store.GetBatch(context.Background(), id)
			if err != nil {
				t.Fatalf("accepted batch %s: %v", id, err)
			}
			if b.Status.Terminal() {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("accepted batch %s still %s after %s", id, b.Status, timeout)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// dropped are the fields lull accepts but never forwards ("background":
// the engine runs a Responses request in the foreground for lull).
var dropped = []string{"metadata", "stream", "stream_options", "store", "service_tier", "background", "previous_response_id"}

// checkEngine checks every body the engine received against what was
// accepted and what the client meant.
func (h *hostile) checkEngine() {
	t := h.t
	h.mu.Lock()
	defer h.mu.Unlock()
	all := func(m string) (lull.Task, bool) {
		if m == embedModel {
			return lull.TaskEmbed, true
		}
		return lull.TaskGenerate, true
	}
	checked := 0
	for id, bodies := range h.engine {
		if !lull.ValidID("gen", id) {
			t.Errorf("the engine got %d requests without a generation ID (%q)", len(bodies), id)
			continue
		}
		g, err := h.st.Store.Get(context.Background(), id)
		if err != nil {
			t.Errorf("the engine ran %s, which was never accepted: %v", id, err)
			continue
		}
		sent, fromClient := h.sent[id]
		if !fromClient && (g.BatchID == "" || !slices.Contains(h.accBatches, g.BatchID)) {
			t.Errorf("the engine ran %s, which this test never had accepted", id)
			continue
		}
		for _, r := range bodies {
			checked++
			if _, err := request.Check(g.Endpoint, r.Body, all, hostileLimits); err != nil {
				t.Errorf("%s: the engine got a body that fails validation (%v): %s", id, err, r.Body)
				continue
			}
			var eng map[string]any
			if err := json.Unmarshal(r.Body, &eng); err != nil {
				t.Errorf("%s: engine body is not JSON: %v", id, err)
				continue
			}
			var meant map[string]any // what the client's bytes say, read as the engine reads JSON
			raw := []byte(g.Request)
			if fromClient {
				raw = sent.raw
			} else if g.RequestKey != "" {
				raw = nil // a large batch line: compared through Check above
			}
			if raw == nil {
				continue
			}
			if err := json.Unmarshal(raw, &meant); err != nil {
				t.Errorf("%s: accepted a body the engine's JSON reader cannot read: %v: %.300s", id, err, raw)
				continue
			}
			for k, v := range eng {
				if k == "model" || (k == "store" && g.Endpoint == lull.EndpointResponses && v == false) {
					continue // the worker's: lull keeps the response, the engine must not
				}
				mv, ok := meant[k]
				if !ok {
					t.Errorf("%s: the engine got %q, which the client did not send: %s", id, k, r.Body)
				} else if !reflect.DeepEqual(mv, v) {
					t.Errorf("%s: the engine got %s=%v, the client's bytes say %v\nclient %.300s\nengine %.300s", id, k, v, mv, raw, r.Body)
				}
			}
			for k, v := range meant {
				if _, ok := eng[k]; !ok && v != nil && !slices.Contains(dropped, k) {
					t.Errorf("%s: the client's %q never reached the engine: %.300s", id, k, raw)
				}
			}
		}
	}
	t.Logf("engine bodies checked: %d, for %d generations", checked, len(h.engine))
}

func (h *hostile) report() {
	labels := make([]string, 0, len(h.byEndpoint))
	for l := range h.byEndpoint {
		labels = append(labels, l)
	}
	sort.Strings(labels)
	var b strings.Builder
	accepted, refused := 0, map[int]int{}
	for _, l := range labels {
		n := 0
		codes := make([]int, 0)
		for c, k := range h.byEndpoint[l] {
			n += k
			codes = append(codes, c)
			if c >= 400 {
				refused[c] += k
			} else {
				accepted += k
			}
		}
		sort.Ints(codes)
		fmt.Fprintf(&b, "\n  %-48s %5d ", l, n)
		for _, c := range codes {
			fmt.Fprintf(&b, " %d:%d", c, h.byEndpoint[l][c])
		}
	}
	codes := make([]int, 0, len(refused))
	for c := range refused {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	fmt.Fprintf(&b, "\n  total %d requests: %d answered 2xx/3xx, refused:", h.total, accepted)
	for _, c := range codes {
		fmt.Fprintf(&b, " %d:%d", c, refused[c])
	}
	fmt.Fprintf(&b, "\n  accepted generations %d, batches %d", len(h.sent), len(h.accBatches))
	h.t.Logf("hostile requests by endpoint (status:count):%s", b.String())
	if h.total < 1000 {
		h.t.Errorf("only %d requests sent", h.total)
	}
}
