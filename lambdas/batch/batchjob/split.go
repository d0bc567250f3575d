package batchjob

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/lull-ai/lull/shared/dispatch"
	"github.com/lull-ai/lull/shared/lull"
	"github.com/lull-ai/lull/shared/parallel"
	"github.com/lull-ai/lull/shared/request"
)

// splitClaim is how long a run holds the right to store a batch's lines:
// longer than a Lambda can run.
const splitClaim = 16 * time.Minute

// maxReportedErrors bounds the errors kept on a failed batch (the batch item
// must stay well under DynamoDB's 400 KB); the last one says how many more
// there were.
const maxReportedErrors = 100

// inputLine is one line of an input file.
type inputLine struct {
	CustomID *string         `json:"custom_id"`
	Method   string          `json:"method"`
	URL      string          `json:"url"`
	Body     json.RawMessage `json:"body"`
}

// parsedLine is a valid line.
type parsedLine struct {
	n        int // 0-based request number
	customID string
	model    string
	body     []byte
}

// scanLines calls f for each request line of the input file (blank lines are
// skipped and not numbered), with the 1-based line number in the file. It
// stops with an error that is a *lull.BatchError for file-level problems.
func (h *Handler) scanLines(ctx context.Context, f *lull.File, each func(fileLine int, raw []byte) error) error {
	r, err := h.Blobs.Open(ctx, f.Key)
	if err != nil {
		return err
	}
	defer r.Close()
	sc := bufio.NewScanner(&limitedReader{r: r, left: h.MaxBytes})
	sc.Buffer(make([]byte, 64<<10), h.MaxLineBytes)
	fileLine := 0
	for sc.Scan() {
		fileLine++
		raw := bytes.TrimSpace(sc.Bytes())
		if len(raw) == 0 {
			continue
		}
		if err := each(fileLine, raw); err != nil {
			return err
		}
	}
	switch err := sc.Err(); {
	case errors.Is(err, bufio.ErrTooLong):
		return &batchErr{lull.BatchError{Code: "line_too_long", Line: fileLine + 1,
			Message: fmt.Sprintf("Line %d is longer than %d bytes.", fileLine+1, h.MaxLineBytes)}}
	case errors.Is(err, errFileTooLarge):
		return &batchErr{lull.BatchError{Code: "file_too_large",
			Message: fmt.Sprintf("The input file is larger than %d bytes.", h.MaxBytes)}}
	case err != nil:
		return fmt.Errorf("batchjob: read input file %s: %w", f.ID, err)
	}
	return nil
}

// batchErr carries a file-level validation error out of scanLines.
type batchErr struct{ e lull.BatchError }

func (b *batchErr) Error() string { return b.e.Code + ": " + b.e.Message }

var errFileTooLarge = errors.New("input file too large")

type limitedReader struct {
	r    io.Reader
	left int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	l.left -= int64(n)
	if l.left < 0 {
		return n, errFileTooLarge
	}
	return n, err
}

// parse checks one line against the batch; it returns the line or the error
// to report for it.
func (h *Handler) parse(b *lull.Batch, fileLine int, raw []byte) (*parsedLine, *lull.BatchError) {
	bad := func(code, param, format string, args ...any) *lull.BatchError {
		return &lull.BatchError{Code: code, Param: param, Line: fileLine, Message: fmt.Sprintf(format, args...)}
	}
	var in inputLine
	if err := json.Unmarshal(raw, &in); err != nil {
		return nil, bad("invalid_json_line", "", "This line is not parseable as valid JSON.")
	}
	switch {
	case in.CustomID == nil || *in.CustomID == "":
		return nil, bad("missing_required_parameter", "custom_id", "Missing required parameter: 'custom_id'.")
	case len(*in.CustomID) > 512:
		return nil, bad("invalid_value", "custom_id", "'custom_id' is longer than 512 characters.")
	case in.Method != "POST":
		return nil, bad("invalid_value", "method", "Invalid method %q: only POST is supported.", in.Method)
	case in.URL != "/v1"+string(b.Endpoint):
		return nil, bad("mismatched_endpoint", "url", "The url %q does not match the batch's endpoint /v1%s.", in.URL, b.Endpoint)
	case len(in.Body) == 0 || in.Body[0] != '{':
		return nil, bad("missing_required_parameter", "body", "Missing required parameter: 'body' (a JSON object).")
	}
	req, err := request.Check(b.Endpoint, in.Body, func(m string) (lull.Task, bool) { _, ok := h.Queues[m]; return h.Tasks[m], ok }, h.Limits)
	if err != nil {
		var le *lull.Error
		if errors.As(err, &le) {
			param := le.Param
			if param != "" {
				param = "body." + param
			}
			code := "invalid_request"
			if le.Code == request.CodeModelNotFound {
				code = "model_not_found"
			}
			return nil, bad(code, param, "%s", le.Message)
		}
		return nil, bad("invalid_request", "body", "The body is not a valid request.")
	}
	return &parsedLine{customID: *in.CustomID, model: req.Model, body: req.Canonical}, nil
}

// validate reads the whole input file and returns its number of requests, or
// the errors that make the batch fail. Memory: the set of custom IDs.
func (h *Handler) validate(ctx context.Context, b *lull.Batch, f *lull.File) (int, []lull.BatchError, error) {
	var errs []lull.BatchError
	more := 0
	report := func(e lull.BatchError) {
		if len(errs) < maxReportedErrors {
			errs = append(errs, e)
		} else {
			more++
		}
	}
	ids := make(map[string]int)
	n := 0
	err := h.scanLines(ctx, f, func(fileLine int, raw []byte) error {
		n++
		if n > h.MaxLines {
			return &batchErr{lull.BatchError{Code: "too_many_requests", Line: fileLine,
				Message: fmt.Sprintf("The input file has more than %d requests.", h.MaxLines)}}
		}
		l, bad := h.parse(b, fileLine, raw)
		if bad != nil {
			report(*bad)
			return nil
		}
		if first, dup := ids[l.customID]; dup {
			report(lull.BatchError{Code: "duplicate_custom_id", Param: "custom_id", Line: fileLine,
				Message: fmt.Sprintf("The custom_id %q is also used on line %d; each request needs a unique custom_id.", l.customID, first)})
			return nil
		}
		ids[l.customID] = fileLine
		return nil
	})
	if be, ok := errors.AsType[*batchErr](err); ok {
		report(be.e)
	} else if err != nil {
		return 0, nil, err
	}
	if n == 0 && len(errs) == 0 {
		report(lull.BatchError{Code: "empty_file", Message: "The input file has no requests."})
	}
	if more > 0 {
		errs = append(errs, lull.BatchError{Code: "too_many_errors", Message: fmt.Sprintf("%d more lines have errors.", more)})
	}
	return n, errs, nil
}

// split validates b's input file, then stores and enqueues its lines from
// the last checkpoint on.
func (h *Handler) split(ctx context.Context, b *lull.Batch) error {
	log := h.Logger.With("batch_id", b.ID, "tenant", b.Tenant)
	if b.Status.Terminal() || b.Status == lull.BatchFinalizing {
		return nil
	}
	f, err := h.Batches.GetFile(ctx, b.InputFileID)
	if lull.IsNotFound(err) {
		return h.fail(ctx, b, []lull.BatchError{{Code: "file_not_found", Message: "The input file was deleted before the batch read it."}})
	}
	if err != nil {
		return err
	}
	if b.Status == lull.BatchValidating || (b.Status == lull.BatchCancelling && b.InProgressAt.IsZero()) {
		start := time.Now()
		n, errs, err := h.validate(ctx, b, f)
		if err != nil {
			return err
		}
		if len(errs) > 0 {
			log.InfoContext(ctx, "batch failed validation", "errors", len(errs), "first", errs[0].Message)
			return h.fail(ctx, b, errs)
		}
		log.InfoContext(ctx, "batch validated", "requests", n, "bytes", f.Bytes, "took", time.Since(start).String())
		started, err := h.Batches.UpdateBatch(ctx, b.ID, []lull.BatchStatus{lull.BatchValidating},
			lull.BatchChange{Status: lull.BatchInProgress, At: h.Now().UTC(), Total: &n})
		if lull.IsConflict(err) {
			cur, gerr := h.Batches.GetBatch(ctx, b.ID)
			if gerr != nil {
				return gerr
			}
			if cur.Status != lull.BatchCancelling || !cur.InProgressAt.IsZero() {
				// Another delivery of this job validated it first.
				started, err = cur, nil
			}
		}
		if lull.IsConflict(err) {
			// Cancelled while validating: nothing was stored, end it empty.
			zero := 0
			if _, err := h.Batches.UpdateBatch(ctx, b.ID, []lull.BatchStatus{lull.BatchCancelling}, lull.BatchChange{Status: lull.BatchCancelling, Total: &zero}); err != nil {
				return err
			}
			if err := h.Batches.SetSplitProgress(ctx, b.ID, 0, true); err != nil {
				return err
			}
			cur, err := h.Batches.GetBatch(ctx, b.ID)
			if err != nil {
				return err
			}
			return h.finalize(ctx, cur)
		}
		if err != nil {
			return err
		}
		b = started
	}
	if !b.SplitDone {
		// One run stores lines at a time: a second delivery of the job (SQS
		// delivers at least once) must not write chunks the first is writing.
		// The claim outlives the Lambda's 15-minute limit. A job that finds
		// it held fails, so SQS retries it later: by then the other run has
		// finished (the retry finds nothing to do) or died (its claim passed).
		now, owner := h.Now(), lull.NewID("run")
		err := h.Batches.ClaimSplit(ctx, b.ID, owner, now, now.Add(splitClaim))
		if lull.IsConflict(err) {
			// A duplicate of a job another run is doing. Dropping it keeps
			// duplicates from adding receives towards the batch DLQ; if
			// that run dies, its own message comes back, and the sweeper
			// sends the job again once the claim lapses (Reconcile).
			log.InfoContext(ctx, "another run is splitting the batch; duplicate job dropped")
			return nil
		}
		if err != nil {
			return fmt.Errorf("batchjob: split of %s: %w", b.ID, err)
		}
		if err := h.store(ctx, b, f); err != nil {
			// Give the claim up, so that the retry of this job (SQS
			// redelivers it) resumes at once instead of being taken for a
			// duplicate until the claim lapses. A run that dies keeps it:
			// the sweeper sends the job again once it lapses.
			if rerr := h.Batches.ClaimSplit(context.WithoutCancel(ctx), b.ID, owner, now, h.Now()); rerr != nil {
				log.WarnContext(ctx, "split claim not given up; it lapses by itself", "err", rerr)
			}
			return err
		}
	}
	b, err = h.Batches.GetBatch(ctx, b.ID)
	if err != nil {
		return err
	}
	if b.CancelRequested {
		return h.cancelLines(ctx, b)
	}
	return h.finalizeIfDone(ctx, b)
}

// fail ends a batch that failed validation and announces it.
func (h *Handler) fail(ctx context.Context, b *lull.Batch, errs []lull.BatchError) error {
	done, err := h.Batches.UpdateBatch(ctx, b.ID, []lull.BatchStatus{lull.BatchValidating, lull.BatchCancelling},
		lull.BatchChange{Status: lull.BatchFailed, At: h.Now().UTC(), Errors: errs})
	if lull.IsConflict(err) {
		return nil
	}
	if err != nil {
		return err
	}
	return dispatch.AnnounceBatch(ctx, h.Events, done)
}

// store creates and enqueues the lines from b.Created on, in chunks, and
// records a checkpoint after each.
func (h *Handler) store(ctx context.Context, b *lull.Batch, f *lull.File) error {
	log := h.Logger.With("batch_id", b.ID, "tenant", b.Tenant)
	start, created := time.Now(), b.Created
	var chunk []*parsedLine
	n := 0
	// The first chunk of a run may have been half stored by a run that
	// crashed: it is stored line by line, keeping lines that exist. Later
	// chunks were never touched and go in BatchWriteItem calls.
	fresh := false
	flush := func() error {
		if len(chunk) == 0 {
			return nil
		}
		if err := h.storeChunk(ctx, b, chunk, fresh); err != nil {
			return err
		}
		end := chunk[len(chunk)-1].n + 1
		if err := h.Batches.SetSplitProgress(ctx, b.ID, end, end == b.Total); err != nil {
			return err
		}
		created, chunk, fresh = end, chunk[:0], true
		return nil
	}
	err := h.scanLines(ctx, f, func(fileLine int, raw []byte) error {
		i := n
		n++
		if i < b.Created {
			return nil // stored before a restart
		}
		l, bad := h.parse(b, fileLine, raw)
		if bad != nil {
			return fmt.Errorf("batchjob: line %d of %s no longer valid: %s", fileLine, f.ID, bad.Message)
		}
		l.n = i
		chunk = append(chunk, l)
		if len(chunk) >= h.Chunk {
			return flush()
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := flush(); err != nil {
		return err
	}
	if n != b.Total {
		return fmt.Errorf("batchjob: input file %s changed: %d requests, validated %d", f.ID, n, b.Total)
	}
	if created == b.Total && !b.SplitDone {
		if err := h.Batches.SetSplitProgress(ctx, b.ID, created, true); err != nil {
			return err
		}
	}
	took := time.Since(start)
	log.InfoContext(ctx, "batch lines stored and enqueued", "lines", created-b.Created, "total", b.Total,
		"took", took.String(), "lines_per_s", int(float64(created-b.Created)/max(took.Seconds(), 1e-9)))
	return nil
}

// storeChunk creates the chunk's generations (an existing one, from a run
// that crashed, is kept as it is) and sends their jobs, grouped by model,
// with the tenant as message group.
func (h *Handler) storeChunk(ctx context.Context, b *lull.Batch, chunk []*parsedLine, fresh bool) error {
	gens := make([]*lull.Generation, len(chunk))
	now := h.Now().UTC().Truncate(time.Millisecond)
	err := parallel.Each(ctx, h.Concurrency, len(chunk), func(ctx context.Context, i int) error {
		l := chunk[i]
		g := &lull.Generation{
			ID: lull.LineID(b.ID, l.n), Tenant: b.Tenant, Model: l.model, Endpoint: b.Endpoint, Status: lull.StatusQueued,
			CreatedAt: now, ExpiresAt: b.ExpiresAt, BatchID: b.ID, CustomID: l.customID, Line: l.n,
		}
		if len(l.body) <= h.InlineLimit {
			g.Request = json.RawMessage(l.body)
		} else {
			g.RequestKey = lull.InputKey(b.Tenant, g.ID)
			if err := h.Blobs.Put(ctx, g.RequestKey, l.body, "application/json"); err != nil {
				return err
			}
		}
		gens[i] = g
		if fresh {
			return nil
		}
		if _, _, err := h.Generations.Create(ctx, g, ""); err != nil && !lull.IsConflict(err) {
			return err
		}
		return nil
	})
	if err == nil && fresh {
		// BatchWriteItem takes 25 items a call.
		err = parallel.Each(ctx, h.Concurrency, (len(gens)+24)/25, func(ctx context.Context, i int) error {
			return h.Batches.CreateLines(ctx, gens[i*25:min(i*25+25, len(gens))])
		})
	}
	if err != nil {
		return fmt.Errorf("batchjob: store lines of %s: %w", b.ID, err)
	}
	byModel := map[string][][]byte{}
	for _, g := range gens {
		body, err := json.Marshal(lull.JobFor(g))
		if err != nil {
			return err
		}
		byModel[g.Model] = append(byModel[g.Model], body)
	}
	for model, bodies := range byModel {
		if err := h.Queues[model].SendBatch(ctx, bodies, b.Tenant); err != nil {
			return fmt.Errorf("batchjob: enqueue lines of %s: %w", b.ID, err)
		}
	}
	return nil
}
