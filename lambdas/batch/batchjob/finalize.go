package batchjob

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/lull-ai/lull/shared/dispatch"
	"github.com/lull-ai/lull/shared/lull"
	"github.com/lull-ai/lull/shared/parallel"
)

// OutputLine is one line of a batch's output or error file, in OpenAI's
// format.
type OutputLine struct {
	ID       string          `json:"id"`
	CustomID string          `json:"custom_id"`
	Response *LineResponse   `json:"response"`
	Error    *lull.Failure   `json:"error"`
	Body     json.RawMessage `json:"-"`
}

// LineResponse is the response part of an output line.
type LineResponse struct {
	StatusCode int             `json:"status_code"`
	RequestID  string          `json:"request_id"`
	Body       json.RawMessage `json:"body"`
}

// lineFailure is what the error file says about a line that did not complete.
func lineFailure(g *lull.Generation) *lull.Failure {
	switch g.Status {
	case lull.StatusExpired:
		return &lull.Failure{Code: "batch_expired", Message: "This request could not be executed before the completion window expired."}
	case lull.StatusCancelled:
		return &lull.Failure{Code: "batch_cancelled", Message: "This request was cancelled with its batch before it ran."}
	}
	if g.Failure != nil {
		return g.Failure
	}
	return &lull.Failure{Code: "server_error", Message: "The request failed."}
}

// fileSink streams lines into one blob through a pipe.
type fileSink struct {
	w     *io.PipeWriter
	buf   *bufio.Writer
	done  chan error
	key   string
	lines int
	size  int64 // set by close
}

func (h *Handler) newSink(ctx context.Context, key string) *fileSink {
	r, w := io.Pipe()
	s := &fileSink{w: w, buf: bufio.NewWriterSize(w, 256<<10), done: make(chan error, 1), key: key}
	go func() {
		n, err := h.Blobs.PutStream(ctx, key, r, "application/jsonl")
		r.CloseWithError(cmpErr(err, io.ErrClosedPipe))
		s.size = n
		s.done <- err
	}()
	return s
}

func cmpErr(err, otherwise error) error {
	if err != nil {
		return err
	}
	return otherwise
}

func (s *fileSink) write(l OutputLine) error {
	b, err := json.Marshal(l)
	if err != nil {
		return err
	}
	s.lines++
	if _, err := s.buf.Write(b); err != nil {
		return err
	}
	return s.buf.WriteByte('\n')
}

func (s *fileSink) close() error {
	if err := s.buf.Flush(); err != nil {
		s.w.CloseWithError(err)
		<-s.done
		return err
	}
	s.w.Close()
	return <-s.done
}

// finalize writes b's output and error files and ends it: cancelled when a
// cancel was asked for, expired when lines ran out of time, else completed.
// A batch that already ended is announced again (receivers de-duplicate).
func (h *Handler) finalize(ctx context.Context, b *lull.Batch) error {
	if b.Status.Terminal() {
		return dispatch.AnnounceBatch(ctx, h.Events, b)
	}
	if b.Status != lull.BatchFinalizing {
		if !b.ReadyToFinalize() {
			return nil
		}
		fin, err := h.Batches.UpdateBatch(ctx, b.ID, []lull.BatchStatus{lull.BatchInProgress, lull.BatchCancelling},
			lull.BatchChange{Status: lull.BatchFinalizing, At: h.Now().UTC()})
		if lull.IsConflict(err) {
			return nil // another finalize got there first
		}
		if err != nil {
			return err
		}
		b = fin
	}
	log := h.Logger.With("batch_id", b.ID, "tenant", b.Tenant)
	start := time.Now()
	out, errs := h.newSink(ctx, lull.BatchOutputKey(b.Tenant, b.ID, "output.jsonl")), h.newSink(ctx, lull.BatchOutputKey(b.Tenant, b.ID, "errors.jsonl"))
	expired, err := h.writeLines(ctx, b, out, errs)
	if err != nil {
		// Abandon both uploads: nothing half written is recorded.
		out.w.CloseWithError(err)
		errs.w.CloseWithError(err)
		<-out.done
		<-errs.done
		return err
	}
	cerr1, cerr2 := out.close(), errs.close()
	if err != nil {
		return err
	}
	if cerr1 != nil || cerr2 != nil {
		return fmt.Errorf("batchjob: write files of %s: %v %v", b.ID, cerr1, cerr2)
	}
	// request_counts become what the files hold, so the two always agree.
	completed, failed := out.lines, errs.lines
	ch := lull.BatchChange{Status: lull.BatchCompleted, At: h.Now().UTC(), Completed: &completed, Failed: &failed}
	switch {
	case b.CancelRequested:
		ch.Status = lull.BatchCancelled
	case expired > 0:
		ch.Status = lull.BatchExpired
	}
	if ch.OutputFileID, err = h.fileFor(ctx, b, out, "output"); err != nil {
		return err
	}
	if ch.ErrorFileID, err = h.fileFor(ctx, b, errs, "error"); err != nil {
		return err
	}
	done, err := h.Batches.UpdateBatch(ctx, b.ID, []lull.BatchStatus{lull.BatchFinalizing}, ch)
	if lull.IsConflict(err) {
		return nil
	}
	if err != nil {
		return err
	}
	log.InfoContext(ctx, "batch ended", "status", string(done.Status), "completed", done.Completed, "failed", done.Failed,
		"total", done.Total, "took", time.Since(start).String())
	return dispatch.AnnounceBatch(ctx, h.Events, done)
}

// fileFor records the file a sink wrote (nothing for an empty one) under an
// ID derived from the batch, so a retried finalize records the same file.
func (h *Handler) fileFor(ctx context.Context, b *lull.Batch, s *fileSink, kind string) (string, error) {
	if s.lines == 0 {
		return "", h.Blobs.Delete(ctx, s.key)
	}
	size := s.size
	f := &lull.File{ID: lull.DerivedID("file", b.ID, kind), Tenant: b.Tenant, Purpose: lull.PurposeBatchOutput,
		Filename: fmt.Sprintf("%s_%s.jsonl", b.ID, kind), Bytes: size, CreatedAt: h.Now().UTC(), Key: s.key}
	if b.OutputExpiresAfter > 0 {
		f.ExpiresAt = f.CreatedAt.Add(b.OutputExpiresAfter)
	}
	if err := h.Batches.CreateFile(ctx, f); err != nil && !lull.IsConflict(err) {
		return "", err
	}
	return f.ID, nil
}

// writeLines writes every line of b to out (completed) or errs (the rest),
// in input order, fetching responses concurrently a page at a time. Lines
// are listed from an index that may lag the table; any listed as not yet
// terminal is read again with a strongly consistent read, and one that is
// still not terminal fails the run (it is retried) rather than landing in
// the wrong file. It returns how many lines expired.
func (h *Handler) writeLines(ctx context.Context, b *lull.Batch, out, errs *fileSink) (int, error) {
	expired := 0
	err := h.eachPage(ctx, b.ID, func(lines []*lull.Generation) error {
		bodies := make([]json.RawMessage, len(lines))
		err := parallel.Each(ctx, h.Concurrency, len(lines), func(ctx context.Context, i int) error {
			g := lines[i]
			if !g.Status.Terminal() {
				cur, err := h.Generations.Get(ctx, g.ID)
				if err != nil {
					return fmt.Errorf("batchjob: read line %s: %w", g.ID, err)
				}
				if !cur.Status.Terminal() {
					return fmt.Errorf("batchjob: line %s of %s is still %s", g.ID, b.ID, cur.Status)
				}
				g, lines[i] = cur, cur
			}
			if g.Status != lull.StatusCompleted || g.ResponseKey == "" {
				return nil
			}
			body, err := h.Blobs.Get(ctx, g.ResponseKey)
			if err != nil {
				return fmt.Errorf("batchjob: response of line %s: %w", g.ID, err)
			}
			bodies[i] = body
			return nil
		})
		if err != nil {
			return err
		}
		for i, g := range lines {
			l := OutputLine{ID: "batch_req_" + strings.TrimPrefix(g.ID, "gen_"), CustomID: g.CustomID}
			if bodies[i] != nil {
				l.Response = &LineResponse{StatusCode: 200, RequestID: "req_" + strings.TrimPrefix(g.ID, "gen_"), Body: bodies[i]}
				err = out.write(l)
			} else {
				if g.Status == lull.StatusExpired {
					expired++
				}
				l.Error = lineFailure(g)
				err = errs.write(l)
			}
			if err != nil {
				return fmt.Errorf("batchjob: write line of %s: %w", b.ID, err)
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return expired, nil
}
