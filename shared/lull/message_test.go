package lull_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/lull-ai/lull/shared/lull"
)

// TestMessageKindOf: every job and batch job declares its kind, and
// messages sent before kinds were declared are still told apart.
func TestMessageKindOf(t *testing.T) {
	t.Parallel()
	g := &lull.Generation{ID: lull.NewID("gen"), Tenant: "t", Model: "m", Endpoint: lull.EndpointChat, ExpiresAt: time.Now()}
	b := &lull.Batch{ID: lull.NewID("batch"), Tenant: "t"}
	marshal := func(v any) string { raw, _ := json.Marshal(v); return string(raw) }
	for _, tc := range []struct {
		name, body string
		want       string
		wantErr    bool
	}{
		{"Job", marshal(lull.JobFor(g)), lull.KindJob, false},
		{"BatchJob", marshal(lull.BatchJobFor(lull.BatchJobSplit, b)), lull.KindBatchJob, false},
		// The declared kind wins over the fields present.
		{"DeclaredJobWithBatchFields", `{"message_kind":"job","generation_id":"gen_1","kind":"split","batch_id":"batch_1"}`, lull.KindJob, false},
		{"LegacyJob", `{"generation_id":"gen_1","tenant":"t","model":"m","endpoint":"/v1/chat/completions"}`, lull.KindJob, false},
		{"LegacyBatchJob", `{"kind":"finalize","batch_id":"batch_1","tenant":"t"}`, lull.KindBatchJob, false},
		{"UnknownKind", `{"message_kind":"event","generation_id":"gen_1"}`, "", true},
		{"NoKind", `{"tenant":"t"}`, "", true},
		{"NotJSON", `not json`, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := lull.MessageKindOf([]byte(tc.body))
			if got != tc.want || (err != nil) != tc.wantErr {
				t.Fatalf("MessageKindOf(%s) = %q, %v; want %q (error: %v)", tc.body, got, err, tc.want, tc.wantErr)
			}
		})
	}
}

// TestKeys: every key layout starts with its declared prefix, and one
// generation's outputs differ per attempt.
func TestKeys(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ key, prefix, want string }{
		{lull.InputKey("t1", "gen_a"), lull.PrefixInputs, "inputs/t1/gen_a.json"},
		{lull.OutputKey("t1", "gen_a", 2), lull.PrefixOutputs, "outputs/t1/gen_a/2.json"},
		{lull.BatchOutputKey("t1", "batch_b", "output.jsonl"), lull.PrefixOutputs, "outputs/t1/batch_b/output.jsonl"},
		{lull.FileKey("t1", "file_c"), lull.PrefixFiles, "files/t1/file_c"},
		{lull.UploadPartKey("t1", "upload_d", "part_e"), lull.PrefixUploads, "uploads/t1/upload_d/part_e"},
	} {
		if tc.key != tc.want || tc.key[:len(tc.prefix)] != tc.prefix {
			t.Errorf("key %q, want %q under %q", tc.key, tc.want, tc.prefix)
		}
	}
	if lull.OutputKey("t", "gen_a", 1) == lull.OutputKey("t", "gen_a", 2) {
		t.Error("two attempts share an output key")
	}
}
