package httpapi

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/lull-ai/lull/shared/genview"
	"github.com/lull-ai/lull/shared/lull"
)

// The Files and Uploads APIs, wire-compatible with OpenAI's, for batch input
// files (purpose "batch") and the output and error files batches write
// (purpose "batch_output").

func (s *Server) fileRoutes() {
	s.route("/v1/files", map[string]handler{http.MethodPost: s.createFile, http.MethodGet: s.listFiles})
	s.route("/v1/files/{id}", map[string]handler{http.MethodGet: s.getFile, http.MethodDelete: s.deleteFile})
	s.route("/v1/files/{id}/content", map[string]handler{http.MethodGet: s.fileContent})
	s.route("/v1/uploads", map[string]handler{http.MethodPost: s.createUpload})
	s.route("/v1/uploads/{id}/parts", map[string]handler{http.MethodPost: s.addUploadPart})
	s.route("/v1/uploads/{id}/complete", map[string]handler{http.MethodPost: s.completeUpload})
	s.route("/v1/uploads/{id}/cancel", map[string]handler{http.MethodPost: s.cancelUpload})
}

// countingReader counts bytes and fails once more than limit pass.
type countingReader struct {
	r     io.Reader
	n     int64
	limit int64
}

var errTooLarge = errors.New("file over the size limit")

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n > c.limit {
		return n, errTooLarge
	}
	return n, err
}

// multipartForm reads a multipart/form-data body: small fields into the
// returned map, and the file part named fileField through store (which must
// consume it). It returns the file name and size.
func (s *Server) multipartForm(w http.ResponseWriter, r *http.Request, fileField string, limit int64,
	store func(io.Reader) (int64, error)) (fields map[string]string, filename string, size int64, err error) {
	mt, _, perr := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if perr != nil || mt != "multipart/form-data" {
		return nil, "", 0, lull.Errorf(lull.EUNSUPPORTED, "Content-Type must be multipart/form-data.")
	}
	r.Body = http.MaxBytesReader(w, r.Body, limit+1<<20)
	mr, err := r.MultipartReader()
	if err != nil {
		return nil, "", 0, &lull.Error{Code: lull.EINVALID, Message: "Could not read the multipart form.", Err: err}
	}
	tooLarge := lull.Errorf(lull.ETOOLARGE, "The file is larger than %d bytes.", limit)
	isTooLarge := func(err error) bool {
		_, body := errors.AsType[*http.MaxBytesError](err)
		return body || errors.Is(err, errTooLarge)
	}
	fields = map[string]string{}
	seen := false
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if isTooLarge(err) {
			return nil, "", 0, tooLarge
		}
		if err != nil {
			return nil, "", 0, &lull.Error{Code: lull.EINVALID, Message: "Could not read the multipart form.", Err: err}
		}
		name := part.FormName()
		if name == fileField && !seen {
			seen = true
			filename = part.FileName()
			cr := &countingReader{r: part, limit: limit}
			size, err = store(cr)
			if isTooLarge(err) || cr.n > limit {
				return nil, "", 0, tooLarge
			}
			if err != nil {
				return nil, "", 0, err
			}
			continue
		}
		v, err := io.ReadAll(io.LimitReader(part, 4096))
		if err != nil {
			return nil, "", 0, &lull.Error{Code: lull.EINVALID, Message: "Could not read the multipart form.", Err: err}
		}
		fields[name] = string(v)
	}
	if !seen {
		return nil, "", 0, lull.ParamError(fileField, "Missing required parameter: '%s'.", fileField)
	}
	return fields, filename, size, nil
}

func (s *Server) createFile(w http.ResponseWriter, r *http.Request) error {
	t := tenant(r)
	id := lull.NewID("file")
	key := lull.FileKey(t, id)
	fields, name, size, err := s.multipartForm(w, r, "file", s.cfg.MaxFileBytes, func(body io.Reader) (int64, error) {
		return s.cfg.Blobs.PutStream(r.Context(), key, body, "application/jsonl")
	})
	if err == nil && fields["purpose"] != lull.PurposeBatch {
		err = lull.ParamError("purpose", "Invalid purpose %q: lull stores files for the Batch API only; use 'batch'.", fields["purpose"])
	}
	if err == nil && size == 0 {
		err = lull.ParamError("file", "The file is empty.")
	}
	var expiresAfter time.Duration
	if err == nil {
		expiresAfter, err = parseExpiresAfter("expires_after", fields["expires_after[anchor]"], fields["expires_after[seconds]"])
	}
	if err != nil {
		_ = s.cfg.Blobs.Delete(r.Context(), key)
		return err
	}
	f := &lull.File{ID: id, Tenant: t, Purpose: lull.PurposeBatch, Filename: cleanName(name), Bytes: size,
		CreatedAt: s.cfg.Now().UTC(), Key: key}
	if expiresAfter > 0 {
		f.ExpiresAt = f.CreatedAt.Add(expiresAfter)
	}
	if err := s.cfg.Files.CreateFile(r.Context(), f); err != nil {
		return err
	}
	s.cfg.Logger.InfoContext(r.Context(), "file stored", "request_id", requestID(r.Context()), "tenant", t, "file_id", id, "bytes", size)
	writeJSON(w, http.StatusOK, genview.File(f))
	return nil
}

// cleanName keeps a client's file name printable and short.
func cleanName(name string) string {
	name = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, name)
	if len(name) > 255 {
		name = name[:255]
	}
	if name == "" {
		name = "upload.jsonl"
	}
	return name
}

// ownFile returns the caller's file id, or ENOTFOUND (also once the file
// has expired).
func (s *Server) ownFile(r *http.Request, id string) (*lull.File, error) {
	f, err := own(r, "file", id, "No such File object: "+id, s.cfg.Files.GetFile, func(f *lull.File) string { return f.Tenant })
	if err == nil && f.Expired(s.cfg.Now()) {
		return nil, lull.Errorf(lull.ENOTFOUND, "No such File object: %s (it expired at %s)", id, f.ExpiresAt.Format(time.RFC3339))
	}
	return f, err
}

// parseExpiresAfter reads OpenAI's expires_after (anchor "created_at",
// seconds between an hour and 30 days) from its two parts; 0 when both are
// absent. param names the field in errors.
func parseExpiresAfter(param, anchor, seconds string) (time.Duration, error) {
	if anchor == "" && seconds == "" {
		return 0, nil
	}
	if anchor != "" && anchor != "created_at" {
		return 0, lull.ParamError(param+".anchor", "Invalid '%s.anchor' %q: the only anchor is 'created_at'.", param, anchor)
	}
	n, err := strconv.ParseInt(seconds, 10, 64)
	d := time.Duration(n) * time.Second
	if err != nil || d < lull.MinExpiresAfter || d > lull.MaxExpiresAfter {
		return 0, lull.ParamError(param+".seconds", "'%s.seconds' must be an integer between %d (1 hour) and %d (30 days).",
			param, int64(lull.MinExpiresAfter/time.Second), int64(lull.MaxExpiresAfter/time.Second))
	}
	return d, nil
}

func (s *Server) getFile(w http.ResponseWriter, r *http.Request) error {
	f, err := s.ownFile(r, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, genview.File(f))
	return nil
}

func (s *Server) listFiles(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	opts := lull.FileListOptions{Limit: 10000, After: q.Get("after"), Purpose: q.Get("purpose")}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 10000 {
			return lull.ParamError("limit", "'limit' must be an integer between 1 and 10000.")
		}
		opts.Limit = n
	}
	if o := q.Get("order"); o != "" && o != "desc" {
		return lull.ParamError("order", "Only order=desc (newest first) is supported.")
	}
	if opts.After != "" && !lull.ValidID("file", opts.After) {
		return lull.ParamError("after", "No such File object: %s", opts.After)
	}
	files, next, err := s.cfg.Files.ListFiles(r.Context(), tenant(r), opts)
	if err != nil {
		return err
	}
	page := Page[genview.FileView]{Object: "list", Data: make([]genview.FileView, 0, len(files))}
	now := s.cfg.Now()
	var kept []*lull.File
	for _, f := range files {
		if !f.Expired(now) {
			kept = append(kept, f)
			page.Data = append(page.Data, genview.File(f))
		}
	}
	page.cursor(next, func(i int) string { return kept[i].ID })
	writeJSON(w, http.StatusOK, page)
	return nil
}

// FileDeleted is the answer to DELETE /v1/files/{id}.
type FileDeleted struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Deleted bool   `json:"deleted"`
}

func (s *Server) deleteFile(w http.ResponseWriter, r *http.Request) error {
	f, err := s.ownFile(r, r.PathValue("id"))
	if err != nil {
		return err
	}
	if err := s.cfg.Files.DeleteFile(r.Context(), f.ID); err != nil {
		return err
	}
	if err := s.cfg.Blobs.Delete(r.Context(), f.Key); err != nil {
		s.cfg.Logger.WarnContext(r.Context(), "file content not deleted; lifecycle rules will", "file_id", f.ID, "err", err)
	}
	writeJSON(w, http.StatusOK, FileDeleted{ID: f.ID, Object: "file", Deleted: true})
	return nil
}

// fileContent streams a file. Files larger than ContentInlineLimit (more
// than a Lambda response can carry) are answered with a redirect to a
// short-lived presigned S3 URL, which HTTP clients and the OpenAI SDKs follow.
func (s *Server) fileContent(w http.ResponseWriter, r *http.Request) error {
	f, err := s.ownFile(r, r.PathValue("id"))
	if err != nil {
		return err
	}
	if f.Bytes > s.cfg.ContentInlineLimit {
		url, err := s.cfg.Blobs.PresignGet(r.Context(), f.Key, 15*time.Minute)
		if err != nil {
			return err
		}
		http.Redirect(w, r, url, http.StatusFound)
		return nil
	}
	body, err := s.cfg.Blobs.Open(r.Context(), f.Key)
	if err != nil {
		return err
	}
	defer body.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(f.Bytes, 10))
	w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", f.Filename))
	w.WriteHeader(http.StatusOK)
	if _, err := io.Copy(w, body); err != nil {
		s.cfg.Logger.WarnContext(r.Context(), "file content cut short", "file_id", f.ID, "err", err)
	}
	return nil
}
