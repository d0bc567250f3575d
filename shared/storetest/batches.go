package storetest

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lull-ai/lull/shared/lull"
)

func newFile(tenant, purpose string, created time.Time) *lull.File {
	id := lull.NewID("file")
	return &lull.File{ID: id, Tenant: tenant, Purpose: purpose, Filename: id + ".jsonl", Bytes: 42, CreatedAt: created, Key: "files/" + id}
}

func newBatch(tenant string, created time.Time) *lull.Batch {
	return &lull.Batch{
		ID: lull.NewID("batch"), Tenant: tenant, Endpoint: lull.EndpointChat, InputFileID: lull.NewID("file"),
		CompletionWindow: "24h", Status: lull.BatchValidating, CreatedAt: created, ExpiresAt: created.Add(24 * time.Hour),
	}
}

// BatchStore is what the batch suite needs: files, uploads, batches and
// their lines, as one store keeps them.
type BatchStore interface {
	lull.Files
	lull.Uploads
	lull.Batches
	lull.BatchLines
}

// Batches runs the suite for lull.Files, lull.Uploads, lull.Batches and
// lull.BatchLines. gens must be the same store's lull.Generations: a
// batch's lines are generations.
func Batches(t *testing.T, s BatchStore, gens lull.Generations) {
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Millisecond)

	t.Run("FileCreateGetDelete", func(t *testing.T) {
		t.Parallel()
		f := newFile(lull.NewID("t"), lull.PurposeBatch, now)
		f.ExpiresAt = now.Add(time.Hour)
		if err := s.CreateFile(ctx, f); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateFile(ctx, f); !lull.IsConflict(err) {
			t.Fatalf("second CreateFile: %v, want conflict", err)
		}
		got, err := s.GetFile(ctx, f.ID)
		if err != nil || !reflect.DeepEqual(got, f) {
			t.Fatalf("GetFile = %+v, %v; want %+v", got, err, f)
		}
		if err := s.DeleteFile(ctx, f.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := s.GetFile(ctx, f.ID); !lull.IsNotFound(err) {
			t.Fatalf("GetFile after delete: %v, want not found", err)
		}
	})

	t.Run("ErrNotFound", func(t *testing.T) {
		t.Parallel()
		for name, err := range map[string]error{
			"GetFile":          second(s.GetFile(ctx, lull.NewID("file"))),
			"DeleteFile":       s.DeleteFile(ctx, lull.NewID("file")),
			"GetUpload":        second(s.GetUpload(ctx, lull.NewID("upload"))),
			"AddUploadPart":    s.AddUploadPart(ctx, lull.NewID("upload"), lull.UploadPart{ID: lull.NewID("part")}),
			"FinishUpload":     second(s.FinishUpload(ctx, lull.NewID("upload"), lull.UploadCancelled, "")),
			"GetBatch":         second(s.GetBatch(ctx, lull.NewID("batch"))),
			"UpdateBatch":      second(s.UpdateBatch(ctx, lull.NewID("batch"), []lull.BatchStatus{lull.BatchValidating}, lull.BatchChange{Status: lull.BatchFailed, At: now})),
			"SetSplitProgress": s.SetSplitProgress(ctx, lull.NewID("batch"), 1, false),
		} {
			if !lull.IsNotFound(err) {
				t.Errorf("%s on a missing object: %v, want not found", name, err)
			}
		}
	})

	t.Run("FileList", func(t *testing.T) {
		t.Parallel()
		tenant := lull.NewID("t")
		var all, inputs []string // newest first
		for i := range 7 {
			purpose := lull.PurposeBatch
			if i%3 == 0 {
				purpose = lull.PurposeBatchOutput
			}
			f := newFile(tenant, purpose, now.Add(time.Duration(i)*time.Second))
			if err := s.CreateFile(ctx, f); err != nil {
				t.Fatal(err)
			}
			all = append([]string{f.ID}, all...)
			if purpose == lull.PurposeBatch {
				inputs = append([]string{f.ID}, inputs...)
			}
		}
		other := newFile(lull.NewID("t"), lull.PurposeBatch, now)
		if err := s.CreateFile(ctx, other); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name    string
			purpose string
			want    []string
		}{{"All", "", all}, {"Purpose", lull.PurposeBatch, inputs}} {
			var got []string
			after := ""
			for page := 0; ; page++ {
				files, next, err := s.ListFiles(ctx, tenant, lull.FileListOptions{Limit: 2, After: after, Purpose: tc.purpose})
				if err != nil {
					t.Fatal(err)
				}
				for _, f := range files {
					got = append(got, f.ID)
				}
				if next == "" {
					break
				}
				if len(files) != 2 || page > 10 || next != files[1].ID {
					t.Fatalf("%s: page %d has %d files and goes on after %s", tc.name, page, len(files), next)
				}
				after = next
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("%s: ListFiles = %v, want %v", tc.name, got, tc.want)
			}
		}
		if files, next, err := s.ListFiles(ctx, lull.NewID("t"), lull.FileListOptions{Limit: 100}); err != nil || next != "" || len(files) != 0 {
			t.Fatalf("another tenant's list = %v, %q, %v; want empty", files, next, err)
		}
		if _, _, err := s.ListFiles(ctx, tenant, lull.FileListOptions{Limit: 10, After: other.ID}); !isParamError(err, "after") {
			t.Fatalf("After another tenant's file: %v, want invalid after", err)
		}
		if _, _, err := s.ListFiles(ctx, tenant, lull.FileListOptions{Limit: 10, After: lull.NewID("file")}); !isParamError(err, "after") {
			t.Fatalf("After a missing file: %v, want invalid after", err)
		}
	})

	t.Run("Uploads", func(t *testing.T) {
		t.Parallel()
		u := &lull.Upload{ID: lull.NewID("upload"), Tenant: lull.NewID("t"), Filename: "in.jsonl", Purpose: lull.PurposeBatch,
			MimeType: "application/jsonl", Bytes: 30, Status: lull.UploadPending, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
		if err := s.CreateUpload(ctx, u); err != nil {
			t.Fatal(err)
		}
		got, err := s.GetUpload(ctx, u.ID)
		if err != nil || got.Status != lull.UploadPending || len(got.Parts) != 0 || got.MimeType != u.MimeType ||
			!got.ExpiresAt.Equal(u.ExpiresAt) || got.Bytes != 30 {
			t.Fatalf("GetUpload = %+v, %v", got, err)
		}
		var parts []lull.UploadPart
		for i := range 3 {
			p := lull.UploadPart{ID: lull.NewID("part"), Bytes: int64(10 + i), CreatedAt: now.Add(time.Duration(i) * time.Second), Key: fmt.Sprintf("parts/%d", i)}
			if err := s.AddUploadPart(ctx, u.ID, p); err != nil {
				t.Fatal(err)
			}
			parts = append(parts, p)
		}
		fileID := lull.NewID("file")
		done, err := s.FinishUpload(ctx, u.ID, lull.UploadCompleted, fileID)
		if err != nil || done.Status != lull.UploadCompleted || done.FileID != fileID || !reflect.DeepEqual(done.Parts, parts) {
			t.Fatalf("FinishUpload = %+v, %v; want parts %+v", done, err, parts)
		}
		if got, err := s.GetUpload(ctx, u.ID); err != nil || !reflect.DeepEqual(got, done) {
			t.Fatalf("GetUpload after finish = %+v, %v; want %+v", got, err, done)
		}
		if err := s.AddUploadPart(ctx, u.ID, lull.UploadPart{ID: lull.NewID("part")}); !lull.IsConflict(err) {
			t.Fatalf("AddUploadPart after finish: %v, want conflict", err)
		}
		if _, err := s.FinishUpload(ctx, u.ID, lull.UploadCancelled, ""); !lull.IsConflict(err) {
			t.Fatalf("FinishUpload twice: %v, want conflict", err)
		}
	})

	t.Run("BatchCreateGetList", func(t *testing.T) {
		t.Parallel()
		tenant := lull.NewID("t")
		var want []string
		for i := range 5 {
			b := newBatch(tenant, now.Add(time.Duration(i)*time.Second))
			b.Metadata = map[string]string{"n": fmt.Sprint(i), "webhook_id": "wh_1"}
			b.WebhookID = "wh_1"
			b.OutputExpiresAfter = time.Duration(i) * time.Hour
			if err := s.CreateBatch(ctx, b); err != nil {
				t.Fatal(err)
			}
			got, err := s.GetBatch(ctx, b.ID)
			if err != nil || !reflect.DeepEqual(got, b) {
				t.Fatalf("GetBatch = %+v, %v; want %+v", got, err, b)
			}
			want = append([]string{b.ID}, want...)
		}
		other := newBatch(lull.NewID("t"), now)
		if err := s.CreateBatch(ctx, other); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateBatch(ctx, other); !lull.IsConflict(err) {
			t.Fatalf("second CreateBatch: %v, want conflict", err)
		}
		var got []string
		after := ""
		for page := 0; ; page++ {
			bs, more, err := s.ListBatches(ctx, tenant, after, 2)
			if err != nil {
				t.Fatal(err)
			}
			for _, b := range bs {
				got = append(got, b.ID)
			}
			if !more {
				break
			}
			if page > 5 {
				t.Fatal("pagination does not end")
			}
			after = bs[len(bs)-1].ID
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("ListBatches = %v, want %v", got, want)
		}
		if bs, more, err := s.ListBatches(ctx, lull.NewID("t"), "", 10); err != nil || more || len(bs) != 0 {
			t.Fatalf("another tenant's list = %v, %v, %v; want empty", bs, more, err)
		}
		if _, _, err := s.ListBatches(ctx, tenant, other.ID, 10); !isParamError(err, "after") {
			t.Fatalf("after another tenant's batch: %v, want invalid after", err)
		}
	})

	t.Run("UpdateBatch", func(t *testing.T) {
		t.Parallel()
		b := newBatch(lull.NewID("t"), now)
		if err := s.CreateBatch(ctx, b); err != nil {
			t.Fatal(err)
		}
		total := 3
		errs := []lull.BatchError{{Code: "invalid_json", Message: "bad", Param: "body", Line: 2}}
		steps := []struct {
			from  []lull.BatchStatus
			ch    lull.BatchChange
			check func(*lull.Batch) bool
		}{
			{[]lull.BatchStatus{lull.BatchValidating}, lull.BatchChange{Status: lull.BatchInProgress, At: now.Add(1 * time.Second), Total: &total},
				func(b *lull.Batch) bool { return b.InProgressAt.Equal(now.Add(time.Second)) && b.Total == 3 }},
			{[]lull.BatchStatus{lull.BatchValidating, lull.BatchInProgress}, lull.BatchChange{Status: lull.BatchCancelling, At: now.Add(2 * time.Second), CancelRequested: true},
				func(b *lull.Batch) bool { return b.CancellingAt.Equal(now.Add(2*time.Second)) && b.CancelRequested }},
			{[]lull.BatchStatus{lull.BatchInProgress, lull.BatchCancelling}, lull.BatchChange{Status: lull.BatchFinalizing, At: now.Add(3 * time.Second)},
				func(b *lull.Batch) bool { return b.FinalizingAt.Equal(now.Add(3*time.Second)) && b.CancelRequested }},
			{[]lull.BatchStatus{lull.BatchFinalizing}, lull.BatchChange{Status: lull.BatchCancelled, At: now.Add(4 * time.Second),
				OutputFileID: "file_out", ErrorFileID: "file_err", Errors: errs},
				func(b *lull.Batch) bool {
					return b.CancelledAt.Equal(now.Add(4*time.Second)) && b.OutputFileID == "file_out" && b.ErrorFileID == "file_err" &&
						reflect.DeepEqual(b.Errors, errs) && b.Total == 3 && b.InProgressAt.Equal(now.Add(time.Second)) && b.CompletedAt.IsZero()
				}},
		}
		for i, st := range steps {
			got, err := s.UpdateBatch(ctx, b.ID, st.from, st.ch)
			if err != nil || got.Status != st.ch.Status || !st.check(got) {
				t.Fatalf("step %d to %s = %+v, %v", i, st.ch.Status, got, err)
			}
			again, err := s.GetBatch(ctx, b.ID)
			if err != nil || !reflect.DeepEqual(again, got) {
				t.Fatalf("step %d: GetBatch = %+v, %v; want %+v", i, again, err, got)
			}
		}
		if _, err := s.UpdateBatch(ctx, b.ID, []lull.BatchStatus{lull.BatchFinalizing, lull.BatchInProgress},
			lull.BatchChange{Status: lull.BatchCompleted, At: now}); !lull.IsConflict(err) {
			t.Fatalf("cancelled → completed: %v, want conflict", err)
		}
		if got, _ := s.GetBatch(ctx, b.ID); got == nil || got.Status != lull.BatchCancelled || !got.CompletedAt.IsZero() {
			t.Fatalf("a refused update changed the batch: %+v", got)
		}
	})

	t.Run("SetSplitProgress", func(t *testing.T) {
		t.Parallel()
		b := newBatch(lull.NewID("t"), now)
		if err := s.CreateBatch(ctx, b); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			created  int
			done     bool
			want     int
			wantDone bool
		}{{10, false, 10, false}, {5, false, 10, false}, {10, false, 10, false}, {25, true, 25, true}, {20, false, 25, true}} {
			if err := s.SetSplitProgress(ctx, b.ID, tc.created, tc.done); err != nil {
				t.Fatalf("SetSplitProgress(%d, %v): %v", tc.created, tc.done, err)
			}
			got, err := s.GetBatch(ctx, b.ID)
			if err != nil || got.Created != tc.want || got.SplitDone != tc.wantDone {
				t.Fatalf("after SetSplitProgress(%d, %v): created %d done %v, %v; want %d %v",
					tc.created, tc.done, got.Created, got.SplitDone, err, tc.want, tc.wantDone)
			}
		}
	})

	t.Run("ClaimSplit", func(t *testing.T) {
		t.Parallel()
		b := newBatch(lull.NewID("t"), now)
		if err := s.CreateBatch(ctx, b); err != nil {
			t.Fatal(err)
		}
		if err := s.ClaimSplit(ctx, b.ID, "run-1", now, now.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if err := s.ClaimSplit(ctx, b.ID, "run-1", now, now.Add(2*time.Minute)); err != nil {
			t.Fatalf("the owner renews: %v", err)
		}
		if err := s.ClaimSplit(ctx, b.ID, "run-2", now.Add(time.Minute), now.Add(3*time.Minute)); !lull.IsConflict(err) {
			t.Fatalf("another run during the claim: %v, want conflict", err)
		}
		if err := s.ClaimSplit(ctx, b.ID, "run-2", now.Add(3*time.Minute), now.Add(4*time.Minute)); err != nil {
			t.Fatalf("another run after the claim passed: %v", err)
		}
		if err := s.ClaimSplit(ctx, lull.NewID("batch"), "run-1", now, now.Add(time.Minute)); !lull.IsNotFound(err) {
			t.Fatalf("missing batch: %v", err)
		}
	})
	t.Run("CreateBatchOnce", func(t *testing.T) {
		t.Parallel()
		tenant := lull.NewID("t")
		first := newBatch(tenant, now)
		stored, created, err := s.CreateBatchOnce(ctx, first, "key-1", "fp")
		if err != nil || !created || stored.ID != first.ID {
			t.Fatalf("first CreateBatchOnce = %v, %v, %v", stored, created, err)
		}
		again := newBatch(tenant, now)
		stored, created, err = s.CreateBatchOnce(ctx, again, "key-1", "fp")
		if err != nil || created || stored.ID != first.ID {
			t.Fatalf("replay = %v, %v, %v; want the first batch, not created", stored, created, err)
		}
		if _, err := s.GetBatch(ctx, again.ID); !lull.IsNotFound(err) {
			t.Fatalf("the replay stored a second batch: %v", err)
		}
		if _, _, err := s.CreateBatchOnce(ctx, newBatch(tenant, now), "key-1", "other"); !lull.IsConflict(err) {
			t.Fatalf("same key, other request: %v, want conflict", err)
		}
		other := newBatch(lull.NewID("t"), now) // the key is per tenant
		if stored, created, err := s.CreateBatchOnce(ctx, other, "key-1", "fp"); err != nil || !created || stored.ID != other.ID {
			t.Fatalf("another tenant's key = %v, %v, %v", stored, created, err)
		}
	})
	t.Run("CreateLines", func(t *testing.T) {
		t.Parallel()
		b := newBatch(lull.NewID("t"), now)
		if err := s.CreateBatch(ctx, b); err != nil {
			t.Fatal(err)
		}
		var lines []*lull.Generation
		for i := range 60 { // three BatchWriteItem calls
			lines = append(lines, newLine(b, i, now))
		}
		if err := s.CreateLines(ctx, lines); err != nil {
			t.Fatal(err)
		}
		got, next, err := s.Lines(ctx, b.ID, "", 100)
		if err != nil || next != "" || len(got) != 60 {
			t.Fatalf("Lines = %d, %q, %v; want 60", len(got), next, err)
		}
		for i, g := range got {
			if g.ID != lines[i].ID || g.Status != lull.StatusQueued || string(g.Request) != string(lines[i].Request) || g.Line != i {
				t.Fatalf("line %d = %+v, want %+v", i, g, lines[i])
			}
		}
		if err := s.CreateLines(ctx, []*lull.Generation{newGen(b.Tenant, now)}); err == nil {
			t.Fatal("CreateLines took a generation outside any batch")
		}
	})
	t.Run("Lines", func(t *testing.T) {
		t.Parallel()
		b := newBatch(lull.NewID("t"), now)
		if err := s.CreateBatch(ctx, b); err != nil {
			t.Fatal(err)
		}
		const n = 25
		var want []string
		for i := range n {
			g := newLine(b, i, now)
			if _, _, err := gens.Create(ctx, g, ""); err != nil {
				t.Fatal(err)
			}
			want = append(want, g.ID)
		}
		var got []string
		cursor := ""
		for page := 0; ; page++ {
			lines, next, err := s.Lines(ctx, b.ID, cursor, 10)
			if err != nil {
				t.Fatal(err)
			}
			if wantLen := min(10, n-10*page); len(lines) != wantLen {
				t.Fatalf("page %d has %d lines, want %d", page, len(lines), wantLen)
			}
			for _, g := range lines {
				if g.BatchID != b.ID || g.CustomID != fmt.Sprintf("req-%d", g.Line) {
					t.Fatalf("line %+v lost its batch fields", g)
				}
				got = append(got, g.ID)
			}
			if next == "" {
				break
			}
			if page > 5 {
				t.Fatal("pagination does not end")
			}
			cursor = next
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("Lines = %v, want %v", got, want)
		}
		if listed, _, err := gens.List(ctx, b.Tenant, lull.ListOptions{Limit: 100}); err != nil || len(listed) != 0 {
			t.Fatalf("tenant's generations = %v, %v; batch lines must not be listed", ids(listed), err)
		}
		if un, err := gens.Unenqueued(ctx, now.Add(time.Hour), 10000); err != nil || contains(un, want[0]) {
			t.Fatalf("Unenqueued holds a batch line (%v)", err)
		}
		if lines, next, err := s.Lines(ctx, lull.NewID("batch"), "", 10); err != nil || len(lines) != 0 || next != "" {
			t.Fatalf("Lines of an unknown batch = %v, %q, %v", ids(lines), next, err)
		}
	})

	t.Run("CountLineOnce", func(t *testing.T) {
		t.Parallel()
		b := newBatch(lull.NewID("t"), now)
		if err := s.CreateBatch(ctx, b); err != nil {
			t.Fatal(err)
		}
		line := func(i int) *lull.Generation {
			g := newLine(b, i, now)
			if _, _, err := gens.Create(ctx, g, ""); err != nil {
				t.Fatal(err)
			}
			return g
		}
		queued := line(0)
		if got, counted, err := s.CountLine(ctx, queued); err != nil || counted || got.Completed+got.Failed != 0 {
			t.Fatalf("CountLine of a queued line = %+v, %v, %v; want not counted", got, counted, err)
		}

		ok := line(1)
		if _, err := gens.Start(ctx, ok.ID, "w", now, now.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		done, err := gens.Finish(ctx, ok.ID, lull.StatusCompleted, lull.Outcome{At: now})
		if err != nil {
			t.Fatal(err)
		}
		var counts atomic.Int32
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				got, counted, err := s.CountLine(ctx, done)
				if err != nil {
					t.Error(err)
					return
				}
				if got == nil || got.ID != b.ID {
					t.Errorf("CountLine returned batch %+v", got)
				}
				if counted {
					counts.Add(1)
				}
			})
		}
		wg.Wait()
		if counts.Load() != 1 {
			t.Fatalf("line counted %d times, want 1", counts.Load())
		}

		bad := line(2)
		failed, err := gens.Finish(ctx, bad.ID, lull.StatusFailed, lull.Outcome{At: now, Failure: &lull.Failure{Code: "x", Message: "y"}})
		if err != nil {
			t.Fatal(err)
		}
		for i, wantCounted := range []bool{true, false} {
			if _, counted, err := s.CountLine(ctx, failed); err != nil || counted != wantCounted {
				t.Fatalf("CountLine of failed line, call %d = %v, %v; want %v", i, counted, err, wantCounted)
			}
		}
		got, err := s.GetBatch(ctx, b.ID)
		if err != nil || got.Completed != 1 || got.Failed != 1 {
			t.Fatalf("batch counts = %+v, %v; want completed 1 failed 1", got, err)
		}

		orphan := newLine(newBatch(b.Tenant, now), 0, now)
		orphan.Status = lull.StatusCompleted
		if _, _, err := gens.Create(ctx, orphan, ""); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.CountLine(ctx, orphan); !lull.IsNotFound(err) {
			t.Fatalf("CountLine with a missing batch: %v, want not found", err)
		}
	})
}

func newLine(b *lull.Batch, i int, created time.Time) *lull.Generation {
	g := newGen(b.Tenant, created)
	g.ID = lull.LineID(b.ID, i)
	g.BatchID, g.CustomID, g.Line = b.ID, fmt.Sprintf("req-%d", i), i
	return g
}

func second[T any](_ T, err error) error { return err }

func isParamError(err error, param string) bool {
	e, ok := err.(*lull.Error)
	return ok && e.Code == lull.EINVALID && e.Param == param
}
