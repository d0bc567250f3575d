package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	openai "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/lull-ai/lull/localstack/devstack"
	"github.com/lull-ai/lull/localstack/vllmsim"
	"github.com/lull-ai/lull/shared/sqs"
)

const batchModel = "lull-sim-1"

// batchLine is one request of an input file and the simulator's answer to it.
type batchLine struct {
	customID, prompt string
	maxTokens        int
}

func batchFile(prefix string, n int) ([]batchLine, []byte) {
	var lines []batchLine
	var buf bytes.Buffer
	for i := range n {
		l := batchLine{customID: fmt.Sprintf("%s-%d", prefix, i), prompt: fmt.Sprintf("batch %s line %d: say something", prefix, i), maxTokens: 8 + i%30}
		lines = append(lines, l)
		fmt.Fprintf(&buf, `{"custom_id":%q,"method":"POST","url":"/v1/chat/completions","body":%s}`+"\n", l.customID, chatBody(batchModel, l.prompt, l.maxTokens))
	}
	return lines, buf.Bytes()
}

func sdk(st *devstack.Stack, key string) openai.Client {
	return openai.NewClient(option.WithBaseURL(st.URL+"/v1/"), option.WithAPIKey(key), option.WithMaxRetries(0))
}

// waitBatch polls the batch until its status is terminal.
func waitBatch(t *testing.T, c openai.Client, id string, timeout time.Duration) *openai.Batch {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		b, err := c.Batches.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		switch b.Status {
		case openai.BatchStatusCompleted, openai.BatchStatusFailed, openai.BatchStatusExpired, openai.BatchStatusCancelled:
			return b
		}
		if time.Now().After(deadline) {
			t.Fatalf("batch %s still %s after %s (counts %+v)", id, b.Status, timeout, b.RequestCounts)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// outputLine is a line of an output or error file as OpenAI documents it.
type outputLine struct {
	ID       string `json:"id"`
	CustomID string `json:"custom_id"`
	Response *struct {
		StatusCode int             `json:"status_code"`
		RequestID  string          `json:"request_id"`
		Body       json.RawMessage `json:"body"`
	} `json:"response"`
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// download reads a file's content through the SDK, line by line.
func download(t *testing.T, c openai.Client, fileID string) []outputLine {
	t.Helper()
	if fileID == "" {
		return nil
	}
	resp, err := c.Files.Content(context.Background(), fileID)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out []outputLine
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 8<<20)
	for sc.Scan() {
		var l outputLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("file %s: bad line %s: %v", fileID, sc.Text(), err)
		}
		out = append(out, l)
	}
	return out
}

// checkOutputs checks every output line against the simulator's answer and
// that every input line is in exactly one of the two files; it returns the
// error lines by code.
func checkOutputs(t *testing.T, lines []batchLine, out, errs []outputLine) map[string]int {
	t.Helper()
	byID := map[string]batchLine{}
	for _, l := range lines {
		byID[l.customID] = l
	}
	seen := map[string]bool{}
	for _, o := range out {
		l, ok := byID[o.CustomID]
		if !ok || seen[o.CustomID] {
			t.Fatalf("output line for unknown or repeated custom_id %q", o.CustomID)
		}
		seen[o.CustomID] = true
		if o.Response == nil || o.Response.StatusCode != 200 || o.Error != nil || !strings.HasPrefix(o.ID, "batch_req_") {
			t.Fatalf("output line %+v", o)
		}
		var cc openai.ChatCompletion
		if err := json.Unmarshal(o.Response.Body, &cc); err != nil || len(cc.Choices) != 1 {
			t.Fatalf("%s: body %s: %v", o.CustomID, o.Response.Body, err)
		}
		want := vllmsim.Expect(batchModel, vllmsim.ChatPrompt([]vllmsim.Message{{Role: "user", Content: l.prompt}}), l.maxTokens)
		if cc.Choices[0].Message.Content != want.Text || int(cc.Usage.CompletionTokens) != want.CompletionTokens {
			t.Fatalf("%s: %q (%d tokens), want the simulator's %q (%d)", o.CustomID, cc.Choices[0].Message.Content,
				cc.Usage.CompletionTokens, want.Text, want.CompletionTokens)
		}
	}
	codes := map[string]int{}
	for _, e := range errs {
		if _, ok := byID[e.CustomID]; !ok || seen[e.CustomID] {
			t.Fatalf("error line for unknown or repeated custom_id %q", e.CustomID)
		}
		seen[e.CustomID] = true
		if e.Error == nil || e.Response != nil {
			t.Fatalf("error line %+v", e)
		}
		codes[e.Error.Code]++
	}
	if len(seen) != len(lines) {
		t.Fatalf("%d of %d lines are in the output and error files", len(seen), len(lines))
	}
	return codes
}

// TestBatchLikeOpenAIGuide follows OpenAI's batch guide with the official Go
// SDK: upload the JSONL (once directly, once through the Uploads API in
// parts), create the batch, poll it, download the output file; every line's
// output must be the simulator's answer for its custom_id.
func TestBatchLikeOpenAIGuide(t *testing.T) {
	t.Parallel()
	st := startStack(t, devstack.Config{Workers: 2, WorkerConcurrency: 32})
	c := sdk(st, "sk-lull-dev")
	ctx := context.Background()

	lines, data := batchFile("direct", 120)
	f, err := c.Files.New(ctx, openai.FileNewParams{File: openai.File(bytes.NewReader(data), "requests.jsonl", "application/jsonl"), Purpose: openai.FilePurposeBatch})
	if err != nil {
		t.Fatal(err)
	}
	if f.Bytes != int64(len(data)) || f.Filename != "requests.jsonl" || f.Purpose != openai.FileObjectPurposeBatch {
		t.Fatalf("file object %s", f.RawJSON())
	}

	upLines, upData := batchFile("upload", 60)
	up, err := c.Uploads.New(ctx, openai.UploadNewParams{Bytes: int64(len(upData)), Filename: "big.jsonl", MimeType: "application/jsonl", Purpose: openai.FilePurposeBatch})
	if err != nil {
		t.Fatal(err)
	}
	var partIDs []string
	for off := 0; off < len(upData); off += 2500 { // parts split mid-line on purpose
		part, err := c.Uploads.Parts.New(ctx, up.ID, openai.UploadPartNewParams{Data: bytes.NewReader(upData[off:min(off+2500, len(upData))])})
		if err != nil {
			t.Fatal(err)
		}
		partIDs = append(partIDs, part.ID)
	}
	done, err := c.Uploads.Complete(ctx, up.ID, openai.UploadCompleteParams{PartIDs: partIDs})
	if err != nil {
		t.Fatal(err)
	}
	if done.Status != openai.UploadStatusCompleted || done.File.ID == "" || done.File.Bytes != int64(len(upData)) {
		t.Fatalf("completed upload %s", done.RawJSON())
	}

	for _, run := range []struct {
		fileID string
		lines  []batchLine
	}{{f.ID, lines}, {done.File.ID, upLines}} {
		b, err := c.Batches.New(ctx, openai.BatchNewParams{
			InputFileID: run.fileID, Endpoint: openai.BatchNewParamsEndpointV1ChatCompletions,
			CompletionWindow: openai.BatchNewParamsCompletionWindow24h, Metadata: map[string]string{"job": "nightly"},
		})
		if err != nil {
			t.Fatal(err)
		}
		if b.Status != openai.BatchStatusValidating || b.Metadata["job"] != "nightly" || b.ExpiresAt-b.CreatedAt != 86400 {
			t.Fatalf("new batch %s", b.RawJSON())
		}
		b = waitBatch(t, c, b.ID, 2*time.Minute)
		if b.Status != openai.BatchStatusCompleted || b.RequestCounts.Total != int64(len(run.lines)) ||
			b.RequestCounts.Completed != int64(len(run.lines)) || b.RequestCounts.Failed != 0 ||
			b.OutputFileID == "" || b.ErrorFileID != "" || b.InProgressAt == 0 || b.FinalizingAt == 0 || b.CompletedAt == 0 {
			t.Fatalf("finished batch %s", b.RawJSON())
		}
		checkOutputs(t, run.lines, download(t, c, b.OutputFileID), nil)
		of, err := c.Files.Get(ctx, b.OutputFileID)
		if err != nil || of.Purpose != openai.FileObjectPurposeBatchOutput {
			t.Fatalf("output file object: %v %v", of, err)
		}
	}

	// The batches list, newest first, through the SDK's auto-pager.
	n := 0
	for it := c.Batches.ListAutoPaging(ctx, openai.BatchListParams{Limit: openai.Int(1)}); it.Next(); n++ {
	}
	if n != 2 {
		t.Fatalf("listed %d batches, want 2", n)
	}
}

// TestBatchValidation: a file with a few bad lines fails validation with
// per-line errors as OpenAI reports them, and creates no generation.
func TestBatchValidation(t *testing.T) {
	t.Parallel()
	st := startStack(t, devstack.Config{Workers: -1})
	c := sdk(st, "sk-lull-dev")
	ctx := context.Background()
	good := func(id string) string {
		return fmt.Sprintf(`{"custom_id":%q,"method":"POST","url":"/v1/chat/completions","body":%s}`, id, chatBody(batchModel, "hi", 5))
	}
	file := strings.Join([]string{
		good("a"),
		`{"custom_id":"b","method":"POST","url":"/v1/chat/completions"`, // 2: not JSON
		good("a"), // 3: duplicate custom_id
		`{"method":"POST","url":"/v1/chat/completions","body":{"model":"lull-sim-1","messages":[{"role":"user","content":"x"}]}}`,               // 4: no custom_id
		`{"custom_id":"e","method":"POST","url":"/v1/completions","body":{"model":"lull-sim-1","prompt":"x"}}`,                                  // 5: other endpoint
		`{"custom_id":"f","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-nope","messages":[{"role":"user","content":"x"}]}}`, // 6
		`{"custom_id":"g","method":"POST","url":"/v1/chat/completions","body":{"model":"lull-sim-1","messages":[]}}`,                            // 7: empty messages
		good("h"),
	}, "\n")
	f, err := c.Files.New(ctx, openai.FileNewParams{File: openai.File(strings.NewReader(file), "bad.jsonl", "application/jsonl"), Purpose: openai.FilePurposeBatch})
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Batches.New(ctx, openai.BatchNewParams{InputFileID: f.ID, Endpoint: openai.BatchNewParamsEndpointV1ChatCompletions, CompletionWindow: openai.BatchNewParamsCompletionWindow24h})
	if err != nil {
		t.Fatal(err)
	}
	b = waitBatch(t, c, b.ID, time.Minute)
	if b.Status != openai.BatchStatusFailed || b.FailedAt == 0 || b.RequestCounts.Total != 0 || b.OutputFileID != "" {
		t.Fatalf("batch %s", b.RawJSON())
	}
	want := map[int64]string{2: "invalid_json_line", 3: "duplicate_custom_id", 4: "missing_required_parameter",
		5: "mismatched_endpoint", 6: "model_not_found", 7: "invalid_request"}
	got := map[int64]string{}
	for _, e := range b.Errors.Data {
		got[e.Line] = e.Code
		if e.Message == "" {
			t.Errorf("line %d: no message", e.Line)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("errors by line = %v, want %v (%s)", got, want, b.Errors.RawJSON())
	}
	var page struct {
		Data []any `json:"data"`
	}
	if getJSON(t, st.URL+"/v1/generations", "sk-lull-dev", &page); len(page.Data) != 0 {
		t.Fatalf("a failed batch created %d generations", len(page.Data))
	}
}

// TestBatchCancelMidway cancels a batch while its lines run: it ends
// cancelled, with the lines that finished in the output file and every
// other line in the error file as batch_cancelled; nothing is lost.
func TestBatchCancelMidway(t *testing.T) {
	t.Parallel()
	st := startStack(t, devstack.Config{Workers: 1, WorkerConcurrency: 4, Sim: vllmsim.Config{TimeScale: 0.2}})
	c := sdk(st, "sk-lull-dev")
	ctx := context.Background()
	lines, data := batchFile("cancel", 200)
	f, err := c.Files.New(ctx, openai.FileNewParams{File: openai.File(bytes.NewReader(data), "c.jsonl", "application/jsonl"), Purpose: openai.FilePurposeBatch})
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Batches.New(ctx, openai.BatchNewParams{InputFileID: f.ID, Endpoint: openai.BatchNewParamsEndpointV1ChatCompletions, CompletionWindow: openai.BatchNewParamsCompletionWindow24h})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "some lines to complete", func() bool {
		cur, err := c.Batches.Get(ctx, b.ID)
		return err == nil && cur.RequestCounts.Completed >= 5
	})
	cancelled, err := c.Batches.Cancel(ctx, b.ID)
	if err != nil {
		t.Fatal(err)
	}
	if cancelled.Status != openai.BatchStatusCancelling || cancelled.CancellingAt == 0 {
		t.Fatalf("cancel answer %s", cancelled.RawJSON())
	}
	b = waitBatch(t, c, b.ID, 2*time.Minute)
	rc := b.RequestCounts
	if b.Status != openai.BatchStatusCancelled || b.CancelledAt == 0 || rc.Total != 200 || rc.Completed+rc.Failed != 200 ||
		rc.Completed < 5 || rc.Failed == 0 {
		t.Fatalf("cancelled batch %s", b.RawJSON())
	}
	out, errs := download(t, c, b.OutputFileID), download(t, c, b.ErrorFileID)
	codes := checkOutputs(t, lines, out, errs)
	if len(out) != int(rc.Completed) || codes["batch_cancelled"] != int(rc.Failed) {
		t.Fatalf("files: %d output lines, error codes %v; counts %+v", len(out), codes, rc)
	}
	if _, err := c.Batches.Cancel(ctx, b.ID); err == nil {
		t.Fatal("cancelling a cancelled batch succeeded")
	}
}

// TestBatchExpiry: with no GPU capacity the completion window passes; the
// batch ends expired, with every line in the error file as batch_expired.
func TestBatchExpiry(t *testing.T) {
	t.Parallel()
	st := startStack(t, devstack.Config{Workers: -1, MinWindow: time.Second, SweepEvery: 200 * time.Millisecond})
	key := "sk-lull-dev"
	c := sdk(st, key)
	ctx := context.Background()
	lines, data := batchFile("expire", 40)
	f, err := c.Files.New(ctx, openai.FileNewParams{File: openai.File(bytes.NewReader(data), "e.jsonl", "application/jsonl"), Purpose: openai.FilePurposeBatch})
	if err != nil {
		t.Fatal(err)
	}
	var created struct {
		ID string `json:"id"`
	}
	body := fmt.Sprintf(`{"input_file_id":%q,"endpoint":"/v1/chat/completions","completion_window":"2s"}`, f.ID)
	if code := postJSON(t, st.URL+"/v1/batches", key, body, &created); code != http.StatusOK {
		t.Fatalf("create: %d", code)
	}
	b := waitBatch(t, c, created.ID, time.Minute)
	if b.Status != openai.BatchStatusExpired || b.ExpiredAt == 0 || b.RequestCounts.Failed != 40 || b.OutputFileID != "" {
		t.Fatalf("expired batch %s", b.RawJSON())
	}
	if codes := checkOutputs(t, lines, nil, download(t, c, b.ErrorFileID)); codes["batch_expired"] != 40 {
		t.Fatalf("error codes %v", codes)
	}
}

// TestBatchTenantIsolation: another tenant sees none of a tenant's files,
// uploads or batches (404, as for missing ones) and cannot use its files.
func TestBatchTenantIsolation(t *testing.T) {
	t.Parallel()
	st := startStack(t, devstack.Config{Workers: -1})
	if err := st.AddKey(context.Background(), "sk-other", "other"); err != nil {
		t.Fatal(err)
	}
	a, other := sdk(st, "sk-lull-dev"), sdk(st, "sk-other")
	ctx := context.Background()
	_, data := batchFile("iso", 3)
	f, err := a.Files.New(ctx, openai.FileNewParams{File: openai.File(bytes.NewReader(data), "a.jsonl", "application/jsonl"), Purpose: openai.FilePurposeBatch})
	if err != nil {
		t.Fatal(err)
	}
	b, err := a.Batches.New(ctx, openai.BatchNewParams{InputFileID: f.ID, Endpoint: openai.BatchNewParamsEndpointV1ChatCompletions, CompletionWindow: openai.BatchNewParamsCompletionWindow24h})
	if err != nil {
		t.Fatal(err)
	}
	up, err := a.Uploads.New(ctx, openai.UploadNewParams{Bytes: 10, Filename: "u.jsonl", MimeType: "application/jsonl", Purpose: openai.FilePurposeBatch})
	if err != nil {
		t.Fatal(err)
	}
	status := func(method, path, body string) int {
		req, _ := http.NewRequest(method, st.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer sk-other")
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, c := range []struct{ method, path, body string }{
		{"GET", "/v1/files/" + f.ID, ""},
		{"GET", "/v1/files/" + f.ID + "/content", ""},
		{"DELETE", "/v1/files/" + f.ID, ""},
		{"GET", "/v1/batches/" + b.ID, ""},
		{"POST", "/v1/batches/" + b.ID + "/cancel", ""},
		{"POST", "/v1/uploads/" + up.ID + "/complete", `{"part_ids":["part_x"]}`},
		{"POST", "/v1/uploads/" + up.ID + "/cancel", ""},
	} {
		if got := status(c.method, c.path, c.body); got != http.StatusNotFound {
			t.Errorf("%s %s as another tenant: %d, want 404", c.method, c.path, got)
		}
	}
	if got := status("POST", "/v1/batches", fmt.Sprintf(`{"input_file_id":%q,"endpoint":"/v1/chat/completions","completion_window":"24h"}`, f.ID)); got != http.StatusBadRequest {
		t.Errorf("batch from another tenant's file: %d, want 400", got)
	}
	files, err := other.Files.List(ctx, openai.FileListParams{})
	if err != nil || len(files.Data) != 0 {
		t.Fatalf("other tenant lists files %v, %v", files, err)
	}
	batches, err := other.Batches.List(ctx, openai.BatchListParams{})
	if err != nil || len(batches.Data) != 0 {
		t.Fatalf("other tenant lists batches %v, %v", batches, err)
	}
	// The owner still has everything.
	if _, err := a.Files.Get(ctx, f.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Batches.Get(ctx, b.ID); err != nil {
		t.Fatal(err)
	}
}

// TestBatchWebhook: a batch whose metadata names a webhook sends exactly one
// signed batch.completed event carrying the batch object, and none for its
// lines.
func TestBatchWebhook(t *testing.T) {
	t.Parallel()
	st := startStack(t, devstack.Config{Workers: 1, WorkerConcurrency: 16})
	rc := newReceiver(t)
	wh := register(t, st, "sk-lull-dev", rc.srv.URL+"/hook")
	rc.mu.Lock()
	rc.secret = wh.Secret
	rc.mu.Unlock()
	c := sdk(st, "sk-lull-dev")
	ctx := context.Background()
	_, data := batchFile("hook", 12)
	f, err := c.Files.New(ctx, openai.FileNewParams{File: openai.File(bytes.NewReader(data), "h.jsonl", "application/jsonl"), Purpose: openai.FilePurposeBatch})
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Batches.New(ctx, openai.BatchNewParams{InputFileID: f.ID, Endpoint: openai.BatchNewParamsEndpointV1ChatCompletions,
		CompletionWindow: openai.BatchNewParamsCompletionWindow24h, Metadata: map[string]string{"webhook_id": wh.ID}})
	if err != nil {
		t.Fatal(err)
	}
	if b = waitBatch(t, c, b.ID, time.Minute); b.Status != openai.BatchStatusCompleted {
		t.Fatalf("batch %s", b.RawJSON())
	}
	waitFor(t, 30*time.Second, "the batch.completed webhook", func() bool { return rc.count() >= 1 })
	// Every event (the 12 line events included) has been handled once the
	// events queue is empty; only then is the receiver's count final.
	events := sqs.New(st.Clients.SQS, st.EventsURL)
	waitFor(t, 30*time.Second, "the events queue to drain", func() bool {
		v, f, err := events.Depth(ctx)
		return err == nil && v+f == 0
	})
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.bad) > 0 || len(rc.seen) != 1 {
		t.Fatalf("receiver saw %d events (%d bad): %v", len(rc.seen), len(rc.bad), rc.seen)
	}
	// OpenAI's event shape: the batch's ID, to be fetched.
	for id, p := range rc.seen {
		d, _ := p["data"].(map[string]any)
		if p["type"] != "batch.completed" || p["object"] != "event" || p["id"] != id || d["id"] != b.ID || len(d) != 1 {
			t.Fatalf("payload %v", p)
		}
	}
}
