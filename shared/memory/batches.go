package memory

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/lull-ai/lull/shared/lull"
)

// batchItem is a stored batch and its split claim.
type batchItem struct {
	b          lull.Batch
	splitOwner string
	splitUntil time.Time
}

func fileCopy(f *lull.File) *lull.File {
	c := *f
	c.CreatedAt, c.ExpiresAt = ms(f.CreatedAt), ms(f.ExpiresAt)
	return &c
}

func uploadCopy(u *lull.Upload) *lull.Upload {
	c := *u
	c.CreatedAt, c.ExpiresAt = ms(u.CreatedAt), ms(u.ExpiresAt)
	c.Parts = nil
	for _, p := range u.Parts {
		p.CreatedAt = ms(p.CreatedAt)
		c.Parts = append(c.Parts, p)
	}
	return &c
}

func batchCopy(b *lull.Batch) *lull.Batch {
	c := *b
	for _, t := range []*time.Time{&c.CreatedAt, &c.InProgressAt, &c.FinalizingAt, &c.CompletedAt, &c.FailedAt,
		&c.ExpiredAt, &c.CancellingAt, &c.CancelledAt, &c.ExpiresAt} {
		*t = ms(*t)
	}
	c.Metadata = maps.Clone(b.Metadata)
	if len(c.Metadata) == 0 {
		c.Metadata = nil
	}
	c.Errors = slices.Clone(b.Errors)
	if len(c.Errors) == 0 {
		c.Errors = nil
	}
	return &c
}

// CreateFile implements lull.Batches.
func (s *Store) CreateFile(_ context.Context, f *lull.File) error {
	if err := s.begin("CreateFile", f.ID); err != nil {
		return err
	}
	defer s.end()
	if _, ok := s.files[f.ID]; ok {
		return lull.Errorf(lull.ECONFLICT, "file %s already exists", f.ID)
	}
	s.files[f.ID] = fileCopy(f)
	return nil
}

// GetFile implements lull.Batches.
func (s *Store) GetFile(_ context.Context, id string) (*lull.File, error) {
	if err := s.begin("GetFile", id); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	f, ok := s.files[id]
	if !ok {
		return nil, lull.Errorf(lull.ENOTFOUND, "No such File object: %s", id)
	}
	return fileCopy(f), nil
}

// ListFiles implements lull.Batches.
func (s *Store) ListFiles(_ context.Context, tenant string, opts lull.FileListOptions) ([]*lull.File, string, error) {
	if err := s.begin("ListFiles", tenant); err != nil {
		return nil, "", err
	}
	defer s.mu.Unlock()
	limit := min(max(opts.Limit, 1), MaxFilesPage)
	var after *lull.File
	if opts.After != "" {
		a, ok := s.files[opts.After]
		if !ok || a.Tenant != tenant {
			return nil, "", &lull.Error{Code: lull.EINVALID, Param: "after", Message: fmt.Sprintf("No such File object: %s", opts.After)}
		}
		after = a
	}
	var out []*lull.File
	for _, f := range s.files {
		if f.Tenant != tenant || (opts.Purpose != "" && f.Purpose != opts.Purpose) ||
			(after != nil && !olderThan(f.CreatedAt, f.ID, after.CreatedAt, after.ID)) {
			continue
		}
		out = append(out, fileCopy(f))
	}
	slices.SortFunc(out, func(a, b *lull.File) int { return newestFirst(a.CreatedAt, a.ID, b.CreatedAt, b.ID) })
	if len(out) > limit {
		return out[:limit], out[limit-1].ID, nil
	}
	return out, "", nil
}

// MaxFilesPage is the most files one ListFiles call returns, as in the
// DynamoDB store.
const MaxFilesPage = 1000

// DeleteFile implements lull.Batches.
func (s *Store) DeleteFile(_ context.Context, id string) error {
	if err := s.begin("DeleteFile", id); err != nil {
		return err
	}
	defer s.end()
	if _, ok := s.files[id]; !ok {
		return lull.Errorf(lull.ENOTFOUND, "No such File object: %s", id)
	}
	delete(s.files, id)
	return nil
}

// CreateUpload implements lull.Batches; an empty status is stored as pending.
func (s *Store) CreateUpload(_ context.Context, u *lull.Upload) error {
	if err := s.begin("CreateUpload", u.ID); err != nil {
		return err
	}
	defer s.end()
	if _, ok := s.uploads[u.ID]; ok {
		return lull.Errorf(lull.ECONFLICT, "upload %s already exists", u.ID)
	}
	c := uploadCopy(u)
	c.Status = cmp.Or(c.Status, lull.UploadPending)
	s.uploads[u.ID] = c
	return nil
}

func uploadNotFound(id string) error {
	return lull.Errorf(lull.ENOTFOUND, "No such Upload object: %s", id)
}

// GetUpload implements lull.Batches.
func (s *Store) GetUpload(_ context.Context, id string) (*lull.Upload, error) {
	if err := s.begin("GetUpload", id); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	u, ok := s.uploads[id]
	if !ok {
		return nil, uploadNotFound(id)
	}
	return uploadCopy(u), nil
}

// pendingUpload returns the pending upload id, ENOTFOUND or ECONFLICT.
func (s *Store) pendingUpload(id string) (*lull.Upload, error) {
	u, ok := s.uploads[id]
	if !ok {
		return nil, uploadNotFound(id)
	}
	if u.Status != lull.UploadPending {
		return nil, lull.Errorf(lull.ECONFLICT, "Upload %s is %s, not pending.", id, u.Status)
	}
	return u, nil
}

// AddUploadPart implements lull.Batches.
func (s *Store) AddUploadPart(_ context.Context, uploadID string, p lull.UploadPart) error {
	if err := s.begin("AddUploadPart", uploadID); err != nil {
		return err
	}
	defer s.end()
	u, err := s.pendingUpload(uploadID)
	if err != nil {
		return err
	}
	p.CreatedAt = ms(p.CreatedAt)
	u.Parts = append(u.Parts, p)
	return nil
}

// FinishUpload implements lull.Batches.
func (s *Store) FinishUpload(_ context.Context, id string, status lull.UploadStatus, fileID string) (*lull.Upload, error) {
	if status == lull.UploadPending || status == "" {
		return nil, fmt.Errorf("memory: finish upload %s: %q is not a final status", id, status)
	}
	if err := s.begin("FinishUpload", id); err != nil {
		return nil, err
	}
	defer s.end()
	u, err := s.pendingUpload(id)
	if err != nil {
		return nil, err
	}
	u.Status = status
	if fileID != "" {
		u.FileID = fileID
	}
	return uploadCopy(u), nil
}

// CreateBatch implements lull.Batches.
func (s *Store) CreateBatch(_ context.Context, b *lull.Batch) error {
	if err := s.begin("CreateBatch", b.ID); err != nil {
		return err
	}
	defer s.end()
	if _, ok := s.batches[b.ID]; ok {
		return lull.Errorf(lull.ECONFLICT, "batch %s already exists", b.ID)
	}
	s.batches[b.ID] = &batchItem{b: *batchCopy(b)}
	return nil
}

// CreateBatchOnce implements lull.Batches.
func (s *Store) CreateBatchOnce(_ context.Context, b *lull.Batch, idemKey, fingerprint string) (*lull.Batch, bool, error) {
	if err := s.begin("CreateBatchOnce", b.ID); err != nil {
		return nil, false, err
	}
	defer s.end()
	k := b.Tenant + "#batch#" + idemEscaper.Replace(idemKey)
	if prior, ok := s.idem[k]; ok {
		if prior.fingerprint != fingerprint {
			return nil, false, &lull.Error{Code: lull.ECONFLICT, Param: "Idempotency-Key",
				Message: "This Idempotency-Key was already used with a different request."}
		}
		it, ok := s.batches[prior.id]
		if !ok {
			return nil, false, batchNotFound(prior.id)
		}
		return batchCopy(&it.b), false, nil
	}
	if _, ok := s.batches[b.ID]; ok {
		return nil, false, fmt.Errorf("memory: create batch %s with idempotency key: transaction cancelled: the batch exists", b.ID)
	}
	s.idem[k] = idemItem{id: b.ID, fingerprint: fingerprint}
	s.batches[b.ID] = &batchItem{b: *batchCopy(b)}
	return b, true, nil
}

func batchNotFound(id string) error {
	return lull.Errorf(lull.ENOTFOUND, "No such Batch object: %s", id)
}

// GetBatch implements lull.Batches.
func (s *Store) GetBatch(_ context.Context, id string) (*lull.Batch, error) {
	if err := s.begin("GetBatch", id); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	it, ok := s.batches[id]
	if !ok {
		return nil, batchNotFound(id)
	}
	return batchCopy(&it.b), nil
}

// ListBatches implements lull.Batches.
func (s *Store) ListBatches(_ context.Context, tenant, after string, limit int) ([]*lull.Batch, bool, error) {
	if err := s.begin("ListBatches", tenant); err != nil {
		return nil, false, err
	}
	defer s.mu.Unlock()
	limit = min(max(limit, 1), 100)
	var cursor *lull.Batch
	if after != "" {
		a, ok := s.batches[after]
		if !ok || a.b.Tenant != tenant {
			return nil, false, &lull.Error{Code: lull.EINVALID, Param: "after", Message: fmt.Sprintf("No batch found with id '%s'.", after)}
		}
		cursor = &a.b
	}
	var out []*lull.Batch
	for _, it := range s.batches {
		b := &it.b
		if b.Tenant != tenant || (cursor != nil && !olderThan(b.CreatedAt, b.ID, cursor.CreatedAt, cursor.ID)) {
			continue
		}
		out = append(out, batchCopy(b))
	}
	slices.SortFunc(out, func(a, b *lull.Batch) int { return newestFirst(a.CreatedAt, a.ID, b.CreatedAt, b.ID) })
	if len(out) > limit {
		return out[:limit], true, nil
	}
	return out, false, nil
}

// batchStamp returns the field recording when b entered status st.
func batchStamp(b *lull.Batch, st lull.BatchStatus) *time.Time {
	switch st {
	case lull.BatchInProgress:
		return &b.InProgressAt
	case lull.BatchFinalizing:
		return &b.FinalizingAt
	case lull.BatchCompleted:
		return &b.CompletedAt
	case lull.BatchFailed:
		return &b.FailedAt
	case lull.BatchExpired:
		return &b.ExpiredAt
	case lull.BatchCancelling:
		return &b.CancellingAt
	case lull.BatchCancelled:
		return &b.CancelledAt
	}
	return nil
}

// UpdateBatch implements lull.Batches.
func (s *Store) UpdateBatch(_ context.Context, id string, from []lull.BatchStatus, ch lull.BatchChange) (*lull.Batch, error) {
	if len(from) == 0 || ch.Status == "" {
		return nil, fmt.Errorf("memory: update batch %s: a status and the statuses it may come from are required", id)
	}
	if err := s.begin("UpdateBatch", id); err != nil {
		return nil, err
	}
	defer s.end()
	it, ok := s.batches[id]
	if !ok {
		return nil, batchNotFound(id)
	}
	b := &it.b
	if !slices.Contains(from, b.Status) {
		return nil, lull.Errorf(lull.ECONFLICT, "batch %s is %s and cannot become %s", id, b.Status, ch.Status)
	}
	b.Status = ch.Status
	if at := batchStamp(b, ch.Status); at != nil && !ch.At.IsZero() {
		*at = ms(ch.At)
	}
	if ch.Total != nil {
		b.Total = *ch.Total
	}
	if ch.OutputFileID != "" {
		b.OutputFileID = ch.OutputFileID
	}
	if ch.ErrorFileID != "" {
		b.ErrorFileID = ch.ErrorFileID
	}
	if len(ch.Errors) > 0 {
		b.Errors = slices.Clone(ch.Errors)
	}
	if ch.CancelRequested {
		b.CancelRequested = true
	}
	return batchCopy(b), nil
}

// ClaimSplit implements lull.Batches.
func (s *Store) ClaimSplit(_ context.Context, id, owner string, now, until time.Time) error {
	if err := s.begin("ClaimSplit", id); err != nil {
		return err
	}
	defer s.end()
	it, ok := s.batches[id]
	if !ok {
		return batchNotFound(id)
	}
	if !it.splitUntil.IsZero() && !msLess(it.splitUntil, now) && it.splitOwner != owner {
		return lull.Errorf(lull.ECONFLICT, "batch %s is being split by another run", id)
	}
	it.splitOwner, it.splitUntil = owner, ms(until)
	return nil
}

// SetSplitProgress implements lull.Batches: the created count only grows
// (a lower value changes nothing and is not an error).
func (s *Store) SetSplitProgress(_ context.Context, id string, created int, done bool) error {
	if err := s.begin("SetSplitProgress", id); err != nil {
		return err
	}
	defer s.end()
	it, ok := s.batches[id]
	if !ok {
		return batchNotFound(id)
	}
	if it.b.Created <= created {
		it.b.Created, it.b.SplitDone = created, done
	}
	return nil
}

// CountLine implements lull.Batches. Whether the line is terminal and
// counted is read from the store; which counter grows is read from gen.
func (s *Store) CountLine(_ context.Context, gen *lull.Generation) (*lull.Batch, bool, error) {
	if gen.BatchID == "" {
		return nil, false, fmt.Errorf("memory: count line %s: not a batch line", gen.ID)
	}
	if err := s.begin("CountLine", gen.ID); err != nil {
		return nil, false, err
	}
	defer s.end()
	bi, ok := s.batches[gen.BatchID]
	line, lineOK := s.gens[gen.ID]
	if !lineOK || line.counted || !line.g.Status.Terminal() {
		if !ok {
			return nil, false, batchNotFound(gen.BatchID)
		}
		return batchCopy(&bi.b), false, nil
	}
	if !ok {
		return nil, false, lull.Errorf(lull.ENOTFOUND, "No batch found with id '%s'.", gen.BatchID)
	}
	line.counted = true
	if gen.Status == lull.StatusCompleted {
		bi.b.Completed++
	} else {
		bi.b.Failed++
	}
	return batchCopy(&bi.b), true, nil
}

// CreateLines implements lull.Batches: lines are stored (replacing any
// stored before) in the order given until one outside a batch stops it.
func (s *Store) CreateLines(_ context.Context, lines []*lull.Generation) error {
	if len(lines) == 0 {
		return nil
	}
	if err := s.begin("CreateLines", lines[0].BatchID); err != nil {
		return err
	}
	defer s.end()
	for _, g := range lines {
		if g.BatchID == "" {
			return fmt.Errorf("memory: create lines: generation %s has no batch", g.ID)
		}
		s.putGen(g, false)
	}
	return nil
}

// lineCursor is the opaque cursor after line n (the index key DynamoDB uses).
func lineCursor(n int) string { return fmt.Sprintf("%09d", n) }

// Lines implements lull.Batches.
func (s *Store) Lines(_ context.Context, batchID, cursor string, limit int) ([]*lull.Generation, string, error) {
	if err := s.begin("Lines", batchID); err != nil {
		return nil, "", err
	}
	defer s.mu.Unlock()
	limit = min(max(limit, 1), 1000)
	var all []*lull.Generation
	for _, it := range s.gens {
		if it.g.BatchID == batchID && lineCursor(it.g.Line) > cursor {
			all = append(all, &it.g)
		}
	}
	slices.SortFunc(all, func(a, b *lull.Generation) int { return cmp.Compare(a.Line, b.Line) })
	next := ""
	if len(all) > limit {
		all = all[:limit]
		next = lineCursor(all[len(all)-1].Line)
	}
	out := make([]*lull.Generation, len(all))
	for i, g := range all {
		out[i] = genCopy(g)
	}
	return out, next, nil
}
