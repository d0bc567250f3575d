package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/lull-ai/lull/shared/genview"
	"github.com/lull-ai/lull/shared/lull"
)

// UploadView is OpenAI's Upload object.
type UploadView struct {
	ID        string            `json:"id"`
	Object    string            `json:"object"`
	Bytes     int64             `json:"bytes"`
	CreatedAt int64             `json:"created_at"`
	Filename  string            `json:"filename"`
	Purpose   string            `json:"purpose"`
	Status    lull.UploadStatus `json:"status"`
	ExpiresAt int64             `json:"expires_at"`
	File      *genview.FileView `json:"file"`
}

// PartView is OpenAI's Upload Part object.
type PartView struct {
	ID        string `json:"id"`
	Object    string `json:"object"`
	CreatedAt int64  `json:"created_at"`
	UploadID  string `json:"upload_id"`
}

func uploadView(u *lull.Upload, f *lull.File) UploadView {
	v := UploadView{ID: u.ID, Object: "upload", Bytes: u.Bytes, CreatedAt: u.CreatedAt.Unix(), Filename: u.Filename,
		Purpose: u.Purpose, Status: u.Status, ExpiresAt: u.ExpiresAt.Unix()}
	if f != nil {
		fv := genview.File(f)
		v.File = &fv
	}
	return v
}

// uploadTTL is how long an upload accepts parts, as OpenAI's.
const uploadTTL = time.Hour

func (s *Server) createUpload(w http.ResponseWriter, r *http.Request) error {
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	var req struct {
		Filename string `json:"filename"`
		Purpose  string `json:"purpose"`
		Bytes    int64  `json:"bytes"`
		MimeType string `json:"mime_type"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return lull.Errorf(lull.EINVALID, "We could not parse the JSON body of your request.")
	}
	switch {
	case req.Filename == "":
		return lull.ParamError("filename", "Missing required parameter: 'filename'.")
	case req.Purpose != lull.PurposeBatch:
		return lull.ParamError("purpose", "Invalid purpose %q: lull stores files for the Batch API only; use 'batch'.", req.Purpose)
	case req.Bytes < 1 || req.Bytes > s.cfg.MaxUploadBytes:
		return lull.ParamError("bytes", "'bytes' must be between 1 and %d.", s.cfg.MaxUploadBytes)
	}
	now := s.cfg.Now().UTC()
	u := &lull.Upload{ID: lull.NewID("upload"), Tenant: tenant(r), Filename: cleanName(req.Filename), Purpose: req.Purpose,
		MimeType: req.MimeType, Bytes: req.Bytes, Status: lull.UploadPending, CreatedAt: now, ExpiresAt: now.Add(uploadTTL)}
	if err := s.cfg.Uploads.CreateUpload(r.Context(), u); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, uploadView(u, nil))
	return nil
}

// ownUpload returns the caller's upload named in the path, or ENOTFOUND.
func (s *Server) ownUpload(r *http.Request) (*lull.Upload, error) {
	id := r.PathValue("id")
	return own(r, "upload", id, "No such Upload object: "+id, s.cfg.Uploads.GetUpload, func(u *lull.Upload) string { return u.Tenant })
}

// pendingUpload returns the caller's upload if it still takes parts.
func (s *Server) pendingUpload(r *http.Request) (*lull.Upload, error) {
	u, err := s.ownUpload(r)
	if err != nil {
		return nil, err
	}
	if u.Status != lull.UploadPending {
		return nil, lull.Errorf(lull.ECONFLICT, "Upload %s is %s.", u.ID, u.Status)
	}
	if !s.cfg.Now().Before(u.ExpiresAt) {
		return nil, lull.Errorf(lull.ECONFLICT, "Upload %s expired at %s; start a new upload.", u.ID, u.ExpiresAt.Format(time.RFC3339))
	}
	return u, nil
}

func (s *Server) addUploadPart(w http.ResponseWriter, r *http.Request) error {
	u, err := s.pendingUpload(r)
	if err != nil {
		return err
	}
	p := lull.UploadPart{ID: lull.NewID("part"), CreatedAt: s.cfg.Now().UTC()}
	p.Key = lull.UploadPartKey(u.Tenant, u.ID, p.ID)
	_, _, size, err := s.multipartForm(w, r, "data", s.cfg.MaxFileBytes, func(body io.Reader) (int64, error) {
		return s.cfg.Blobs.PutStream(r.Context(), p.Key, body, "application/octet-stream")
	})
	if err != nil {
		_ = s.cfg.Blobs.Delete(r.Context(), p.Key)
		return err
	}
	p.Bytes = size
	if err := s.cfg.Uploads.AddUploadPart(r.Context(), u.ID, p); err != nil {
		_ = s.cfg.Blobs.Delete(r.Context(), p.Key)
		return err
	}
	writeJSON(w, http.StatusOK, PartView{ID: p.ID, Object: "upload.part", CreatedAt: p.CreatedAt.Unix(), UploadID: u.ID})
	return nil
}

func (s *Server) completeUpload(w http.ResponseWriter, r *http.Request) error {
	u, err := s.pendingUpload(r)
	if err != nil {
		return err
	}
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	var req struct {
		PartIDs []string `json:"part_ids"`
	}
	if err := json.Unmarshal(body, &req); err != nil || len(req.PartIDs) == 0 {
		return lull.ParamError("part_ids", "'part_ids' must list the upload's parts in order.")
	}
	byID := map[string]lull.UploadPart{}
	for _, p := range u.Parts {
		byID[p.ID] = p
	}
	var parts []lull.UploadPart
	var total int64
	used := map[string]bool{}
	for _, id := range req.PartIDs {
		p, ok := byID[id]
		if !ok || used[id] {
			return lull.ParamError("part_ids", "Part %q is not a part of upload %s, or is listed twice.", id, u.ID)
		}
		used[id] = true
		parts = append(parts, p)
		total += p.Bytes
	}
	if total != u.Bytes {
		return lull.ParamError("part_ids", "The parts hold %d bytes but the upload was created for %d.", total, u.Bytes)
	}
	// The file's ID derives from the upload's, so a retried completion
	// stores the same file.
	f := &lull.File{ID: lull.DerivedID("file", u.ID), Tenant: u.Tenant, Purpose: u.Purpose, Filename: u.Filename,
		Bytes: total, CreatedAt: s.cfg.Now().UTC()}
	f.Key = lull.FileKey(u.Tenant, f.ID)
	n, err := s.cfg.Blobs.PutStream(r.Context(), f.Key, &partsReader{ctx: r.Context(), blobs: s.cfg.Blobs, parts: parts}, "application/jsonl")
	if err != nil {
		return err
	}
	if n != total {
		return fmt.Errorf("httpapi: upload %s: assembled %d bytes, want %d", u.ID, n, total)
	}
	if err := s.cfg.Files.CreateFile(r.Context(), f); err != nil && !lull.IsConflict(err) {
		return err
	}
	done, err := s.cfg.Uploads.FinishUpload(r.Context(), u.ID, lull.UploadCompleted, f.ID)
	if err != nil {
		return err
	}
	for _, p := range u.Parts {
		_ = s.cfg.Blobs.Delete(r.Context(), p.Key)
	}
	s.cfg.Logger.InfoContext(r.Context(), "upload completed", "request_id", requestID(r.Context()), "tenant", u.Tenant,
		"upload_id", u.ID, "file_id", f.ID, "bytes", total, "parts", len(parts))
	writeJSON(w, http.StatusOK, uploadView(done, f))
	return nil
}

func (s *Server) cancelUpload(w http.ResponseWriter, r *http.Request) error {
	u, err := s.pendingUpload(r)
	if err != nil {
		return err
	}
	done, err := s.cfg.Uploads.FinishUpload(r.Context(), u.ID, lull.UploadCancelled, "")
	if err != nil {
		return err
	}
	for _, p := range u.Parts {
		_ = s.cfg.Blobs.Delete(r.Context(), p.Key)
	}
	writeJSON(w, http.StatusOK, uploadView(done, nil))
	return nil
}

// partsReader reads the parts' blobs one after another, opening each only
// when the previous one ends.
type partsReader struct {
	ctx   context.Context
	blobs lull.Blobs
	parts []lull.UploadPart
	cur   io.ReadCloser
}

func (p *partsReader) Read(b []byte) (int, error) {
	for {
		if p.cur == nil {
			if len(p.parts) == 0 {
				return 0, io.EOF
			}
			rc, err := p.blobs.Open(p.ctx, p.parts[0].Key)
			if err != nil {
				return 0, err
			}
			p.cur, p.parts = rc, p.parts[1:]
		}
		n, err := p.cur.Read(b)
		if err == io.EOF {
			p.cur.Close()
			p.cur = nil
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, err
	}
}
