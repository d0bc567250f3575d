package vllmsim

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"hash/fnv"
	"math"
	"net/http"
	"strings"
	"time"
)

// Tasks a simulated model serves, as vLLM's --runner: "generate" (chat,
// completions, responses) or "pooling" models served for embeddings.
const (
	TaskGenerate = "generate"
	TaskEmbed    = "embed"
)

// ExpectEmbedding returns the unit vector the simulator answers for input
// on model: dims float32 components drawn from a hash chain seeded with the
// FNV-1a hash of model, a zero byte and input, then scaled to length 1.
// Token-ID inputs are rendered as their decimal IDs joined by spaces.
func ExpectEmbedding(model, input string, dims int) []float32 {
	h := fnv.New64a()
	h.Write([]byte(model))
	h.Write([]byte{0})
	h.Write([]byte(input))
	x := h.Sum64()
	v := make([]float32, dims)
	var norm float64
	for i := range v {
		x += 0x9e3779b97f4a7c15
		z := x
		z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
		z = (z ^ z>>27) * 0x94d049bb133111eb
		z ^= z >> 31
		f := float64(z>>11)/float64(1<<53)*2 - 1
		v[i] = float32(f)
		norm += f * f
	}
	norm = math.Sqrt(norm)
	for i := range v {
		v[i] = float32(float64(v[i]) / norm)
	}
	return v
}

type embeddingRequest struct {
	Model          string          `json:"model"`
	Input          json.RawMessage `json:"input"`
	EncodingFormat string          `json:"encoding_format"`
	Dimensions     *int            `json:"dimensions"`
}

// embeddingInputs returns the inputs of an embeddings request as strings.
func embeddingInputs(raw json.RawMessage) ([]string, error) {
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return []string{one}, nil
	}
	var strs []string
	if json.Unmarshal(raw, &strs) == nil && len(strs) > 0 {
		return strs, nil
	}
	var ids []int
	if json.Unmarshal(raw, &ids) == nil && len(ids) > 0 {
		return []string{joinIDs(ids)}, nil
	}
	var lists [][]int
	if json.Unmarshal(raw, &lists) == nil && len(lists) > 0 {
		out := make([]string, len(lists))
		for i, l := range lists {
			out[i] = joinIDs(l)
		}
		return out, nil
	}
	return nil, errors.New("'input' must be a string, a list of strings, or token IDs")
}

func joinIDs(ids []int) string {
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = itoa(id)
	}
	return strings.Join(parts, " ")
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// embeddings answers POST /v1/embeddings on a model whose Task is embed:
// one ExpectEmbedding vector per input (as floats, or base64 little-endian
// float32 with "encoding_format": "base64"), usage counting Tokens of each
// input. The work is one prefill on the engine, so it counts in /metrics.
func (s *Server) embeddings(w http.ResponseWriter, r *http.Request) {
	var req embeddingRequest
	if !s.take(w, r, s.cfg.Task == TaskEmbed, "Embeddings", &req) {
		return
	}
	if req.Model != "" && req.Model != s.cfg.Model {
		writeError(w, http.StatusNotFound, "The model `"+req.Model+"` does not exist.")
		return
	}
	inputs, err := embeddingInputs(req.Input)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	dims := s.cfg.EmbedDimensions
	if req.Dimensions != nil {
		if *req.Dimensions < 1 || *req.Dimensions > s.cfg.EmbedDimensions {
			writeError(w, http.StatusBadRequest, "dimensions must be between 1 and the model's "+itoa(s.cfg.EmbedDimensions)+".")
			return
		}
		dims = *req.Dimensions
	}
	prompt := 0
	j := &job{arrived: time.Now(), done: make(chan struct{})}
	for _, in := range inputs {
		t := max(Tokens(in), 1)
		if t > s.cfg.MaxModelLen {
			writeError(w, http.StatusBadRequest, "This model's maximum context length is "+itoa(s.cfg.MaxModelLen)+" tokens.")
			return
		}
		prompt += Tokens(in)
		j.seqs = append(j.seqs, &seq{prompt: t, target: 1, finish: "stop"})
	}
	if err := s.eng.submit(j); err != nil {
		writeError(w, http.StatusServiceUnavailable, "The engine has stopped.")
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
	type datum struct {
		Index     int    `json:"index"`
		Object    string `json:"object"`
		Embedding any    `json:"embedding"`
	}
	data := make([]datum, len(inputs))
	for i, in := range inputs {
		full := ExpectEmbedding(s.cfg.Model, in, s.cfg.EmbedDimensions)
		vec := full[:dims]
		if dims < len(full) {
			vec = renormalize(vec)
		}
		var emb any = vec
		if req.EncodingFormat == "base64" {
			buf := make([]byte, 4*len(vec))
			for k, f := range vec {
				binary.LittleEndian.PutUint32(buf[4*k:], math.Float32bits(f))
			}
			emb = base64.StdEncoding.EncodeToString(buf)
		}
		data[i] = datum{Index: i, Object: "embedding", Embedding: emb}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"id": randomID("embd-"), "object": "list", "created": time.Now().Unix(), "model": s.cfg.Model, "data": data,
		"usage": map[string]any{"prompt_tokens": prompt, "total_tokens": prompt, "completion_tokens": 0, "prompt_tokens_details": nil},
	})
}

func renormalize(v []float32) []float32 {
	var n float64
	for _, f := range v {
		n += float64(f) * float64(f)
	}
	n = math.Sqrt(n)
	out := make([]float32, len(v))
	for i, f := range v {
		out[i] = float32(float64(f) / n)
	}
	return out
}
