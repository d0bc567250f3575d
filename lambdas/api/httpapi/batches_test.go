package httpapi_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lull-ai/lull/shared/lull"
)

// form returns a multipart body with the fields and, unless fileField is
// empty, a file part, and its Content-Type.
func form(fields map[string]string, fileField string, content []byte) (string, map[string]string) {
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	for k, v := range fields {
		_ = w.WriteField(k, v)
	}
	if fileField != "" {
		p, _ := w.CreateFormFile(fileField, "input.jsonl")
		_, _ = p.Write(content)
	}
	_ = w.Close()
	return buf.String(), map[string]string{"Content-Type": w.FormDataContentType()}
}

const line = `{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"test-model","messages":[{"role":"user","content":"hi"}]}}`

func TestBatchBadRequests(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ok, okHdr := form(map[string]string{"purpose": "batch"}, "file", []byte(line+"\n"))
	status, f := e.do(t, "POST", "/v1/files", "sk-a", ok, okHdr)
	if status != 200 || f["object"] != "file" || f["purpose"] != "batch" || f["bytes"] != float64(len(line)+1) {
		t.Fatalf("upload = %d %v", status, f)
	}
	fileID := f["id"].(string)
	status, up := e.do(t, "POST", "/v1/uploads", "sk-a", `{"filename":"x.jsonl","purpose":"batch","bytes":10,"mime_type":"application/jsonl"}`, nil)
	if status != 200 || up["status"] != "pending" {
		t.Fatalf("create upload = %d %v", status, up)
	}
	uploadID := up["id"].(string)
	part, partHdr := form(nil, "data", []byte("0123"))
	if status, p := e.do(t, "POST", "/v1/uploads/"+uploadID+"/parts", "sk-a", part, partHdr); status != 200 || p["object"] != "upload.part" {
		t.Fatalf("add part = %d %v", status, p)
	}

	badPurpose, bpHdr := form(map[string]string{"purpose": "fine-tune"}, "file", []byte(line))
	noFile, nfHdr := form(map[string]string{"purpose": "batch"}, "", nil)
	empty, emHdr := form(map[string]string{"purpose": "batch"}, "file", nil)
	huge, hgHdr := form(map[string]string{"purpose": "batch"}, "file", bytes.Repeat([]byte(line+"\n"), 100))
	batch := func(fields string) string {
		return `{"input_file_id":"` + fileID + `","endpoint":"/v1/chat/completions","completion_window":"24h"` + fields + `}`
	}
	meta := `,"metadata":{`
	for i := range 17 {
		meta += fmt.Sprintf(`%s"k%d":"v"`, map[bool]string{true: "", false: ","}[i == 0], i)
	}
	meta += "}"
	for _, tc := range []struct {
		name, method, path, body string
		hdr                      map[string]string
		status                   int
		code, param              string
	}{
		{"FileNotMultipart", "POST", "/v1/files", `{"purpose":"batch"}`, nil, 415, "unsupported_media", ""},
		{"FileBadPurpose", "POST", "/v1/files", badPurpose, bpHdr, 400, "invalid_request", "purpose"},
		{"FileMissing", "POST", "/v1/files", noFile, nfHdr, 400, "invalid_request", "file"},
		{"FileEmpty", "POST", "/v1/files", empty, emHdr, 400, "invalid_request", "file"},
		{"FileTooLarge", "POST", "/v1/files", huge, hgHdr, 413, "request_too_large", ""},
		{"FileNotFound", "GET", "/v1/files/" + lull.NewID("file"), "", nil, 404, "not_found", ""},
		{"FileBadID", "GET", "/v1/files/nope", "", nil, 404, "not_found", ""},
		{"FileContentNotFound", "GET", "/v1/files/" + lull.NewID("file") + "/content", "", nil, 404, "not_found", ""},
		{"FilesBadLimit", "GET", "/v1/files?limit=0", "", nil, 400, "invalid_request", "limit"},
		{"FilesBadOrder", "GET", "/v1/files?order=asc", "", nil, 400, "invalid_request", "order"},
		{"FilesBadCursor", "GET", "/v1/files?after=" + lull.NewID("file"), "", nil, 400, "invalid_request", "after"},
		{"BatchNoFile", "POST", "/v1/batches", `{"endpoint":"/v1/chat/completions","completion_window":"24h"}`, nil, 400, "invalid_request", "input_file_id"},
		{"BatchUnknownFile", "POST", "/v1/batches", `{"input_file_id":"` + lull.NewID("file") + `","endpoint":"/v1/chat/completions","completion_window":"24h"}`, nil, 400, "invalid_request", "input_file_id"},
		{"BatchBadEndpoint", "POST", "/v1/batches", `{"input_file_id":"` + fileID + `","endpoint":"/v1/moderations","completion_window":"24h"}`, nil, 400, "invalid_request", "endpoint"},
		{"BatchNoWindow", "POST", "/v1/batches", `{"input_file_id":"` + fileID + `","endpoint":"/v1/chat/completions"}`, nil, 400, "invalid_request", "completion_window"},
		{"BatchBadWindow", "POST", "/v1/batches", `{"input_file_id":"` + fileID + `","endpoint":"/v1/chat/completions","completion_window":"forever"}`, nil, 400, "invalid_request", "completion_window"},
		{"BatchWindowTooLong", "POST", "/v1/batches", `{"input_file_id":"` + fileID + `","endpoint":"/v1/chat/completions","completion_window":"30d"}`, nil, 400, "invalid_request", "completion_window"},
		{"BatchTooMuchMetadata", "POST", "/v1/batches", batch(meta), nil, 400, "invalid_request", "metadata"},
		{"BatchBadWebhook", "POST", "/v1/batches", batch(`,"metadata":{"webhook_id":"wh_nope"}`), nil, 400, "invalid_request", "metadata.webhook_id"},
		{"BatchWrongType", "POST", "/v1/batches", `{"input_file_id":5}`, nil, 400, "invalid_request", "input_file_id"},
		{"BatchNotJSON", "POST", "/v1/batches", `{"input_file_id":`, nil, 400, "invalid_request", ""},
		{"BatchNotFound", "GET", "/v1/batches/" + lull.NewID("batch"), "", nil, 404, "not_found", ""},
		{"BatchesBadLimit", "GET", "/v1/batches?limit=500", "", nil, 400, "invalid_request", "limit"},
		{"CancelMissingBatch", "POST", "/v1/batches/" + lull.NewID("batch") + "/cancel", "", nil, 404, "not_found", ""},
		{"UploadBadPurpose", "POST", "/v1/uploads", `{"filename":"x","purpose":"vision","bytes":10}`, nil, 400, "invalid_request", "purpose"},
		{"UploadNoName", "POST", "/v1/uploads", `{"purpose":"batch","bytes":10}`, nil, 400, "invalid_request", "filename"},
		{"UploadTooBig", "POST", "/v1/uploads", `{"filename":"x","purpose":"batch","bytes":2000000}`, nil, 400, "invalid_request", "bytes"},
		{"UploadPartMissing", "POST", "/v1/uploads/" + lull.NewID("upload") + "/parts", part, partHdr, 404, "not_found", ""},
		{"UploadCompleteUnknownPart", "POST", "/v1/uploads/" + uploadID + "/complete", `{"part_ids":["part_x"]}`, nil, 400, "invalid_request", "part_ids"},
		{"UploadCompleteNoParts", "POST", "/v1/uploads/" + uploadID + "/complete", `{"part_ids":[]}`, nil, 400, "invalid_request", "part_ids"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			status, body := e.do(t, tc.method, tc.path, "sk-a", tc.body, tc.hdr)
			checkError(t, status, body, tc.status, tc.code, tc.param)
		})
	}
	t.Cleanup(func() {
		ctx := context.Background()
		if batches, _, err := e.store.ListBatches(ctx, "tenant-a", "", 100); err != nil || len(batches) != 0 {
			t.Errorf("bad requests created %d batches (err %v)", len(batches), err)
		}
		if files, _, err := e.store.ListFiles(ctx, "tenant-a", lull.FileListOptions{Limit: 100}); err != nil || len(files) != 1 {
			t.Errorf("bad requests changed the files: %d (err %v), want the 1 good one", len(files), err)
		}
		if v, f, err := e.batchQueue.Depth(ctx); err != nil || v+f != 0 {
			t.Errorf("bad requests queued %d batch jobs (err %v)", v+f, err)
		}
	})
}

// TestFileContentAndUpload: content comes back whole (a redirect to a
// presigned URL above the inline limit), an upload's size must match its
// parts, and a completed upload takes no more parts.
func TestFileContentAndUpload(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	small, sh := form(map[string]string{"purpose": "batch"}, "file", []byte("x\n"))
	_, f := e.do(t, "POST", "/v1/files", "sk-a", small, sh)
	big := bytes.Repeat([]byte(line+"\n"), 3) // over ContentInlineLimit (100 bytes)
	bigForm, bh := form(map[string]string{"purpose": "batch"}, "file", big)
	_, fb := e.do(t, "POST", "/v1/files", "sk-a", bigForm, bh)
	for _, c := range []struct {
		id   string
		want []byte
	}{{f["id"].(string), []byte("x\n")}, {fb["id"].(string), big}} {
		req, _ := http.NewRequest("GET", e.url+"/v1/files/"+c.id+"/content", nil)
		req.Header.Set("Authorization", "Bearer sk-a")
		resp, err := http.DefaultClient.Do(req) // follows the redirect, dropping the API key
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !bytes.Equal(got, c.want) {
			t.Fatalf("content of %s = %d %q", c.id, resp.StatusCode, got)
		}
	}
	_, up := e.do(t, "POST", "/v1/uploads", "sk-a", `{"filename":"x.jsonl","purpose":"batch","bytes":6}`, nil)
	id := up["id"].(string)
	p1, h1 := form(nil, "data", []byte("abc"))
	_, part1 := e.do(t, "POST", "/v1/uploads/"+id+"/parts", "sk-a", p1, h1)
	if status, _ := e.do(t, "POST", "/v1/uploads/"+id+"/complete", "sk-a", `{"part_ids":["`+part1["id"].(string)+`"]}`, nil); status != 400 {
		t.Fatalf("complete with 3 of 6 bytes = %d, want 400", status)
	}
	_, part2 := e.do(t, "POST", "/v1/uploads/"+id+"/parts", "sk-a", p1, h1)
	status, done := e.do(t, "POST", "/v1/uploads/"+id+"/complete", "sk-a",
		`{"part_ids":["`+part2["id"].(string)+`","`+part1["id"].(string)+`"]}`, nil)
	if status != 200 || done["status"] != "completed" {
		t.Fatalf("complete = %d %v", status, done)
	}
	file := done["file"].(map[string]any)
	if file["bytes"] != float64(6) || file["filename"] != "x.jsonl" {
		t.Fatalf("file = %v", file)
	}
	if status, _ := e.do(t, "POST", "/v1/uploads/"+id+"/parts", "sk-a", p1, h1); status != 409 {
		t.Fatalf("part after completion = %d, want 409", status)
	}
	if status, del := e.do(t, "DELETE", "/v1/files/"+file["id"].(string), "sk-a", "", nil); status != 200 || del["deleted"] != true {
		t.Fatalf("delete = %d %v", status, del)
	}
	if status, _ := e.do(t, "GET", "/v1/files/"+file["id"].(string), "sk-a", "", nil); status != 404 {
		t.Fatalf("get after delete = %d", status)
	}
}

// TestBatchIdempotencyKey: a retried create with the same key returns the
// same batch and queues no second split job; another body with that key is
// a 409, another tenant's key is its own.
func TestBatchIdempotencyKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	body, hdr := form(map[string]string{"purpose": "batch"}, "file", []byte(line+"\n"))
	_, f := e.do(t, "POST", "/v1/files", "sk-a", body, hdr)
	create := `{"input_file_id":"` + f["id"].(string) + `","endpoint":"/v1/chat/completions","completion_window":"24h"}`
	key := map[string]string{"Idempotency-Key": "nightly-2026-12-01"}
	status, first := e.do(t, "POST", "/v1/batches", "sk-a", create, key)
	if status != 200 || first["status"] != "validating" {
		t.Fatalf("create = %d %v", status, first)
	}
	status, again := e.do(t, "POST", "/v1/batches", "sk-a", create, key)
	if status != 200 || again["id"] != first["id"] {
		t.Fatalf("replay = %d %v, want batch %v", status, again, first["id"])
	}
	status, conflict := e.do(t, "POST", "/v1/batches", "sk-a", strings.Replace(create, "24h", "1h", 1), key)
	checkError(t, status, conflict, 409, "conflict", "Idempotency-Key")
	// Still validating, so the replay sent the split job again (its first
	// send may have failed; a duplicate is harmless). Once the batch runs,
	// a replay sends nothing.
	if v, fl, err := e.batchQueue.Depth(context.Background()); err != nil || v+fl != 2 {
		t.Fatalf("%d split jobs queued (err %v), want 2", v+fl, err)
	}
	total := 1
	if _, err := e.store.UpdateBatch(context.Background(), first["id"].(string), []lull.BatchStatus{lull.BatchValidating},
		lull.BatchChange{Status: lull.BatchInProgress, At: time.Now(), Total: &total}); err != nil {
		t.Fatal(err)
	}
	if status, again := e.do(t, "POST", "/v1/batches", "sk-a", create, key); status != 200 || again["status"] != "in_progress" {
		t.Fatalf("replay of a running batch = %d %v", status, again)
	}
	if v, fl, err := e.batchQueue.Depth(context.Background()); err != nil || v+fl != 2 {
		t.Fatalf("%d split jobs queued (err %v), want still 2", v+fl, err)
	}
	if batches, _, err := e.store.ListBatches(context.Background(), "tenant-a", "", 10); err != nil || len(batches) != 1 {
		t.Fatalf("%d batches stored (err %v), want 1", len(batches), err)
	}
}
