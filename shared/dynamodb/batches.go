package dynamodb

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/lull-ai/lull/shared/lull"
)

type fileRecord struct {
	PK        string `dynamodbav:"pk"`
	SK        string `dynamodbav:"sk"`
	ID        string `dynamodbav:"id"`
	Tenant    string `dynamodbav:"tenant"`
	Purpose   string `dynamodbav:"purpose"`
	Filename  string `dynamodbav:"filename"`
	Bytes     int64  `dynamodbav:"bytes"`
	CreatedAt int64  `dynamodbav:"created_at"`
	Key       string `dynamodbav:"blob_key"`
	GSI1PK    string `dynamodbav:"gsi1pk"`
	GSI1SK    string `dynamodbav:"gsi1sk"`
}

type partRecord struct {
	ID        string `dynamodbav:"id"`
	Bytes     int64  `dynamodbav:"bytes"`
	CreatedAt int64  `dynamodbav:"created_at"`
	Key       string `dynamodbav:"blob_key"`
}

type uploadRecord struct {
	PK        string `dynamodbav:"pk"`
	SK        string `dynamodbav:"sk"`
	ID        string `dynamodbav:"id"`
	Tenant    string `dynamodbav:"tenant"`
	Filename  string `dynamodbav:"filename"`
	Purpose   string `dynamodbav:"purpose"`
	MimeType  string `dynamodbav:"mime_type,omitempty"`
	Bytes     int64  `dynamodbav:"bytes"`
	Status    string `dynamodbav:"status"`
	CreatedAt int64  `dynamodbav:"created_at"`
	ExpiresAt int64  `dynamodbav:"expires_at,omitempty"`
	// Parts is absent until the first part: minidyn (the in-process
	// emulator) mishandles an empty list attribute, which breaks decoding
	// and later queries over the table. AddUploadPart copes with either.
	Parts  []partRecord `dynamodbav:"parts,omitempty"`
	FileID string       `dynamodbav:"file_id,omitempty"`
}

type batchErrorAttr struct {
	Code    string `dynamodbav:"code"`
	Message string `dynamodbav:"message"`
	Param   string `dynamodbav:"param,omitempty"`
	Line    int    `dynamodbav:"line,omitempty"`
}

type batchRecord struct {
	PK               string            `dynamodbav:"pk"`
	SK               string            `dynamodbav:"sk"`
	ID               string            `dynamodbav:"id"`
	Tenant           string            `dynamodbav:"tenant"`
	Endpoint         string            `dynamodbav:"endpoint"`
	InputFileID      string            `dynamodbav:"input_file_id"`
	CompletionWindow string            `dynamodbav:"completion_window"`
	Status           string            `dynamodbav:"status"`
	Metadata         map[string]string `dynamodbav:"metadata,omitempty"`
	WebhookID        string            `dynamodbav:"webhook_id,omitempty"`
	CancelRequested  bool              `dynamodbav:"cancel_requested"`
	CreatedAt        int64             `dynamodbav:"created_at"`
	InProgressAt     int64             `dynamodbav:"in_progress_at,omitempty"`
	FinalizingAt     int64             `dynamodbav:"finalizing_at,omitempty"`
	CompletedAt      int64             `dynamodbav:"completed_at,omitempty"`
	FailedAt         int64             `dynamodbav:"failed_at,omitempty"`
	ExpiredAt        int64             `dynamodbav:"expired_at,omitempty"`
	CancellingAt     int64             `dynamodbav:"cancelling_at,omitempty"`
	CancelledAt      int64             `dynamodbav:"cancelled_at,omitempty"`
	ExpiresAt        int64             `dynamodbav:"expires_at,omitempty"`
	Total            int               `dynamodbav:"total"`
	Completed        int               `dynamodbav:"completed"`
	Failed           int               `dynamodbav:"failed"`
	Created          int               `dynamodbav:"created"`
	SplitDone        bool              `dynamodbav:"split_done"`
	OutputFileID     string            `dynamodbav:"output_file_id,omitempty"`
	ErrorFileID      string            `dynamodbav:"error_file_id,omitempty"`
	Errors           []batchErrorAttr  `dynamodbav:"errors,omitempty"`
	GSI1PK           string            `dynamodbav:"gsi1pk"`
	GSI1SK           string            `dynamodbav:"gsi1sk"`
}

func filePK(id string) string   { return "FILE#" + id }
func uploadPK(id string) string { return "UPLOAD#" + id }
func batchPK(id string) string  { return "BATCH#" + id }

func (r *fileRecord) file() *lull.File {
	return &lull.File{ID: r.ID, Tenant: r.Tenant, Purpose: r.Purpose, Filename: r.Filename, Bytes: r.Bytes,
		CreatedAt: fromMS(r.CreatedAt), Key: r.Key}
}

func decodeFile(item map[string]types.AttributeValue) (*lull.File, error) {
	var r fileRecord
	if err := attributevalue.UnmarshalMap(item, &r); err != nil {
		return nil, fmt.Errorf("dynamodb: decode file: %w", err)
	}
	return r.file(), nil
}

func decodeUpload(item map[string]types.AttributeValue) (*lull.Upload, error) {
	var r uploadRecord
	if err := attributevalue.UnmarshalMap(item, &r); err != nil {
		return nil, fmt.Errorf("dynamodb: decode upload: %w", err)
	}
	u := &lull.Upload{ID: r.ID, Tenant: r.Tenant, Filename: r.Filename, Purpose: r.Purpose, MimeType: r.MimeType,
		Bytes: r.Bytes, Status: lull.UploadStatus(r.Status), CreatedAt: fromMS(r.CreatedAt), ExpiresAt: fromMS(r.ExpiresAt),
		FileID: r.FileID}
	for _, p := range r.Parts {
		u.Parts = append(u.Parts, lull.UploadPart{ID: p.ID, Bytes: p.Bytes, CreatedAt: fromMS(p.CreatedAt), Key: p.Key})
	}
	return u, nil
}

func batchErrors(errs []lull.BatchError) []batchErrorAttr {
	out := make([]batchErrorAttr, len(errs))
	for i, e := range errs {
		out[i] = batchErrorAttr{Code: e.Code, Message: e.Message, Param: e.Param, Line: e.Line}
	}
	return out
}

func toBatchRecord(b *lull.Batch) batchRecord {
	r := batchRecord{
		PK: batchPK(b.ID), SK: "BATCH", ID: b.ID, Tenant: b.Tenant, Endpoint: string(b.Endpoint), InputFileID: b.InputFileID,
		CompletionWindow: b.CompletionWindow, Status: string(b.Status), Metadata: b.Metadata, WebhookID: b.WebhookID,
		CancelRequested: b.CancelRequested, CreatedAt: ms(b.CreatedAt), InProgressAt: ms(b.InProgressAt),
		FinalizingAt: ms(b.FinalizingAt), CompletedAt: ms(b.CompletedAt), FailedAt: ms(b.FailedAt), ExpiredAt: ms(b.ExpiredAt),
		CancellingAt: ms(b.CancellingAt), CancelledAt: ms(b.CancelledAt), ExpiresAt: ms(b.ExpiresAt),
		Total: b.Total, Completed: b.Completed, Failed: b.Failed, Created: b.Created, SplitDone: b.SplitDone,
		OutputFileID: b.OutputFileID, ErrorFileID: b.ErrorFileID,
		GSI1PK: "T#" + b.Tenant + "#BATCHES", GSI1SK: sortKey(b.CreatedAt, b.ID),
	}
	if len(b.Errors) > 0 {
		r.Errors = batchErrors(b.Errors)
	}
	return r
}

func decodeBatch(item map[string]types.AttributeValue) (*lull.Batch, error) {
	var r batchRecord
	if err := attributevalue.UnmarshalMap(item, &r); err != nil {
		return nil, fmt.Errorf("dynamodb: decode batch: %w", err)
	}
	b := &lull.Batch{
		ID: r.ID, Tenant: r.Tenant, Endpoint: lull.Endpoint(r.Endpoint), InputFileID: r.InputFileID,
		CompletionWindow: r.CompletionWindow, Status: lull.BatchStatus(r.Status), Metadata: r.Metadata, WebhookID: r.WebhookID,
		CancelRequested: r.CancelRequested, CreatedAt: fromMS(r.CreatedAt), InProgressAt: fromMS(r.InProgressAt),
		FinalizingAt: fromMS(r.FinalizingAt), CompletedAt: fromMS(r.CompletedAt), FailedAt: fromMS(r.FailedAt),
		ExpiredAt: fromMS(r.ExpiredAt), CancellingAt: fromMS(r.CancellingAt), CancelledAt: fromMS(r.CancelledAt),
		ExpiresAt: fromMS(r.ExpiresAt), Total: r.Total, Completed: r.Completed, Failed: r.Failed, Created: r.Created,
		SplitDone: r.SplitDone, OutputFileID: r.OutputFileID, ErrorFileID: r.ErrorFileID,
	}
	for _, e := range r.Errors {
		b.Errors = append(b.Errors, lull.BatchError{Code: e.Code, Message: e.Message, Param: e.Param, Line: e.Line})
	}
	return b, nil
}

// page runs the query until limit items passed to add, and reports whether
// more exist. Without a filter it asks for no more than it needs.
func (s *Store) page(ctx context.Context, in *ddb.QueryInput, limit int, add func(map[string]types.AttributeValue) error) (bool, error) {
	count := 0
	for {
		if in.FilterExpression == nil {
			in.Limit = aws.Int32(int32(limit + 1 - count))
		}
		out, err := s.c.Query(ctx, in)
		if err != nil {
			return false, err
		}
		for _, item := range out.Items {
			if count == limit {
				return true, nil
			}
			if err := add(item); err != nil {
				return false, err
			}
			count++
		}
		if len(out.LastEvaluatedKey) == 0 {
			return false, nil
		}
		in.ExclusiveStartKey = out.LastEvaluatedKey
	}
}

// CreateFile implements lull.Batches.
func (s *Store) CreateFile(ctx context.Context, f *lull.File) error {
	item, err := attributevalue.MarshalMap(fileRecord{
		PK: filePK(f.ID), SK: "FILE", ID: f.ID, Tenant: f.Tenant, Purpose: f.Purpose, Filename: f.Filename, Bytes: f.Bytes,
		CreatedAt: ms(f.CreatedAt), Key: f.Key, GSI1PK: "T#" + f.Tenant + "#FILES", GSI1SK: sortKey(f.CreatedAt, f.ID),
	})
	if err != nil {
		return fmt.Errorf("dynamodb: marshal file %s: %w", f.ID, err)
	}
	return s.putNew(ctx, item, "file "+f.ID)
}

// GetFile implements lull.Batches.
func (s *Store) GetFile(ctx context.Context, id string) (*lull.File, error) {
	return s.getFile(ctx, id, true)
}

func (s *Store) getFile(ctx context.Context, id string, consistent bool) (*lull.File, error) {
	item, err := s.getItem(ctx, filePK(id), "FILE", consistent, "file "+id, "No such File object: "+id)
	if err != nil {
		return nil, err
	}
	return decodeFile(item)
}

// ListFiles implements lull.Batches. Limit is clamped to 1..10000; After
// must name one of the tenant's files (EINVALID otherwise).
func (s *Store) ListFiles(ctx context.Context, tenant string, opts lull.FileListOptions) ([]*lull.File, bool, error) {
	limit := min(max(opts.Limit, 1), 10000)
	var afterAt time.Time
	if opts.After != "" {
		after, err := s.getFile(ctx, opts.After, false)
		if err != nil || after.Tenant != tenant {
			return nil, false, &lull.Error{Code: lull.EINVALID, Param: "after", Message: fmt.Sprintf("No such File object: %s", opts.After)}
		}
		afterAt = after.CreatedAt
	}
	in := s.newestFirst("T#"+tenant+"#FILES", afterAt, opts.After)
	if opts.Purpose != "" {
		in.FilterExpression = aws.String("purpose = :purpose")
		in.ExpressionAttributeValues[":purpose"] = str(opts.Purpose)
	}
	var files []*lull.File
	more, err := s.page(ctx, in, limit, func(item map[string]types.AttributeValue) error {
		f, err := decodeFile(item)
		if err == nil {
			files = append(files, f)
		}
		return err
	})
	if err != nil {
		return nil, false, wrap(err, "list files of %s", tenant)
	}
	return files, more, nil
}

// DeleteFile implements lull.Batches. It removes the record only; the blob
// is the caller's to delete.
func (s *Store) DeleteFile(ctx context.Context, id string) error {
	_, err := s.c.DeleteItem(ctx, &ddb.DeleteItemInput{TableName: &s.table, Key: key(filePK(id), "FILE"),
		ConditionExpression: aws.String("attribute_exists(pk)")})
	if isConditionFailed(err) {
		return lull.Errorf(lull.ENOTFOUND, "No such File object: %s", id)
	}
	return wrap(err, "delete file %s", id)
}

// CreateUpload implements lull.Batches; ECONFLICT when the ID exists.
func (s *Store) CreateUpload(ctx context.Context, u *lull.Upload) error {
	r := uploadRecord{
		PK: uploadPK(u.ID), SK: "UPLOAD", ID: u.ID, Tenant: u.Tenant, Filename: u.Filename, Purpose: u.Purpose,
		MimeType: u.MimeType, Bytes: u.Bytes, Status: string(u.Status), CreatedAt: ms(u.CreatedAt), ExpiresAt: ms(u.ExpiresAt),
		FileID: u.FileID,
	}
	if r.Status == "" {
		r.Status = string(lull.UploadPending)
	}
	for _, p := range u.Parts {
		r.Parts = append(r.Parts, partRecord{ID: p.ID, Bytes: p.Bytes, CreatedAt: ms(p.CreatedAt), Key: p.Key})
	}
	item, err := attributevalue.MarshalMap(r)
	if err != nil {
		return fmt.Errorf("dynamodb: marshal upload %s: %w", u.ID, err)
	}
	return s.putNew(ctx, item, "upload "+u.ID)
}

// GetUpload implements lull.Batches.
func (s *Store) GetUpload(ctx context.Context, id string) (*lull.Upload, error) {
	item, err := s.getItem(ctx, uploadPK(id), "UPLOAD", true, "upload "+id, "No such Upload object: "+id)
	if err != nil {
		return nil, err
	}
	return decodeUpload(item)
}

// notPending turns a failed "still pending" condition on an upload into
// ENOTFOUND when the upload is missing and ECONFLICT otherwise.
func (s *Store) notPending(ctx context.Context, id string) error {
	u, err := s.GetUpload(ctx, id)
	if err != nil {
		return err
	}
	return lull.Errorf(lull.ECONFLICT, "Upload %s is %s, not pending.", id, u.Status)
}

// AddUploadPart implements lull.Batches. Parts are appended in call order;
// ENOTFOUND when the upload is missing.
func (s *Store) AddUploadPart(ctx context.Context, uploadID string, p lull.UploadPart) error {
	part, err := attributevalue.Marshal([]partRecord{{ID: p.ID, Bytes: p.Bytes, CreatedAt: ms(p.CreatedAt), Key: p.Key}})
	if err != nil {
		return fmt.Errorf("dynamodb: marshal upload part: %w", err)
	}
	_, err = s.c.UpdateItem(ctx, &ddb.UpdateItemInput{
		TableName: &s.table, Key: key(uploadPK(uploadID), "UPLOAD"),
		UpdateExpression:         aws.String("SET parts = list_append(if_not_exists(parts, :none), :part)"),
		ConditionExpression:      aws.String("attribute_exists(pk) AND #st = :pending"),
		ExpressionAttributeNames: map[string]string{"#st": "status"},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":part": part, ":none": &types.AttributeValueMemberL{Value: []types.AttributeValue{}},
			":pending": str(string(lull.UploadPending)),
		},
	})
	if isConditionFailed(err) {
		return s.notPending(ctx, uploadID)
	}
	return wrap(err, "add part to upload %s", uploadID)
}

// FinishUpload implements lull.Batches. status must not be pending;
// ENOTFOUND when the upload is missing.
func (s *Store) FinishUpload(ctx context.Context, id string, status lull.UploadStatus, fileID string) (*lull.Upload, error) {
	if status == lull.UploadPending || status == "" {
		return nil, fmt.Errorf("dynamodb: finish upload %s: %q is not a final status", id, status)
	}
	set := "SET #st = :to"
	vals := map[string]types.AttributeValue{":to": str(string(status)), ":pending": str(string(lull.UploadPending))}
	if fileID != "" {
		set += ", file_id = :file"
		vals[":file"] = str(fileID)
	}
	out, err := s.c.UpdateItem(ctx, &ddb.UpdateItemInput{
		TableName: &s.table, Key: key(uploadPK(id), "UPLOAD"),
		UpdateExpression:          aws.String(set),
		ConditionExpression:       aws.String("attribute_exists(pk) AND #st = :pending"),
		ExpressionAttributeNames:  map[string]string{"#st": "status"},
		ExpressionAttributeValues: vals,
		ReturnValues:              types.ReturnValueAllNew,
	})
	if isConditionFailed(err) {
		return nil, s.notPending(ctx, id)
	}
	if err != nil {
		return nil, wrap(err, "finish upload %s as %s", id, status)
	}
	return decodeUpload(out.Attributes)
}

// CreateBatch implements lull.Batches; ECONFLICT when the ID exists.
func (s *Store) CreateBatch(ctx context.Context, b *lull.Batch) error {
	item, err := attributevalue.MarshalMap(toBatchRecord(b))
	if err != nil {
		return fmt.Errorf("dynamodb: marshal batch %s: %w", b.ID, err)
	}
	return s.putNew(ctx, item, "batch "+b.ID)
}

// CreateBatchOnce implements lull.Batches.
func (s *Store) CreateBatchOnce(ctx context.Context, b *lull.Batch, idemKey, fingerprint string) (*lull.Batch, bool, error) {
	item, err := attributevalue.MarshalMap(toBatchRecord(b))
	if err != nil {
		return nil, false, fmt.Errorf("dynamodb: marshal batch %s: %w", b.ID, err)
	}
	priorID, created, err := s.putOnce(ctx, "IDEM#"+b.Tenant+"#batch#"+idemKey, "batch_id", b.ID, fingerprint,
		b.CreatedAt.Add(s.retention()).Unix(), item, "batch "+b.ID)
	if err != nil || created {
		return b, created, err
	}
	prior, err := s.getBatch(ctx, priorID, true)
	if err != nil {
		return nil, false, err
	}
	return prior, false, nil
}

// GetBatch implements lull.Batches.
func (s *Store) GetBatch(ctx context.Context, id string) (*lull.Batch, error) {
	return s.getBatch(ctx, id, true)
}

func (s *Store) getBatch(ctx context.Context, id string, consistent bool) (*lull.Batch, error) {
	item, err := s.getItem(ctx, batchPK(id), "BATCH", consistent, "batch "+id, "No such Batch object: "+id)
	if err != nil {
		return nil, err
	}
	return decodeBatch(item)
}

// ListBatches implements lull.Batches. limit is clamped to 1..100; after
// must name one of the tenant's batches (EINVALID otherwise).
func (s *Store) ListBatches(ctx context.Context, tenant, after string, limit int) ([]*lull.Batch, bool, error) {
	limit = min(max(limit, 1), 100)
	var afterAt time.Time
	if after != "" {
		a, err := s.getBatch(ctx, after, false)
		if err != nil || a.Tenant != tenant {
			return nil, false, &lull.Error{Code: lull.EINVALID, Param: "after", Message: fmt.Sprintf("No batch found with id '%s'.", after)}
		}
		afterAt = a.CreatedAt
	}
	in := s.newestFirst("T#"+tenant+"#BATCHES", afterAt, after)
	var batches []*lull.Batch
	more, err := s.page(ctx, in, limit, func(item map[string]types.AttributeValue) error {
		b, err := decodeBatch(item)
		if err == nil {
			batches = append(batches, b)
		}
		return err
	})
	if err != nil {
		return nil, false, wrap(err, "list batches of %s", tenant)
	}
	return batches, more, nil
}

// batchStampAttr is the attribute holding the time a batch entered status.
var batchStampAttr = map[lull.BatchStatus]string{
	lull.BatchInProgress: "in_progress_at",
	lull.BatchFinalizing: "finalizing_at",
	lull.BatchCompleted:  "completed_at",
	lull.BatchFailed:     "failed_at",
	lull.BatchExpired:    "expired_at",
	lull.BatchCancelling: "cancelling_at",
	lull.BatchCancelled:  "cancelled_at",
}

// UpdateBatch implements lull.Batches with one conditional UpdateItem:
// ECONFLICT when the status is not in from, ENOTFOUND when the batch is
// missing.
func (s *Store) UpdateBatch(ctx context.Context, id string, from []lull.BatchStatus, ch lull.BatchChange) (*lull.Batch, error) {
	if len(from) == 0 || ch.Status == "" {
		return nil, fmt.Errorf("dynamodb: update batch %s: a status and the statuses it may come from are required", id)
	}
	names := map[string]string{"#st": "status"}
	vals := map[string]types.AttributeValue{":to": str(string(ch.Status))}
	set := []string{"#st = :to"}
	if attr, ok := batchStampAttr[ch.Status]; ok && !ch.At.IsZero() {
		set = append(set, attr+" = :at")
		vals[":at"] = n(ms(ch.At))
	}
	if ch.Total != nil {
		set = append(set, "#total = :total")
		names["#total"] = "total"
		vals[":total"] = n(int64(*ch.Total))
	}
	if ch.OutputFileID != "" {
		set = append(set, "output_file_id = :out")
		vals[":out"] = str(ch.OutputFileID)
	}
	if ch.ErrorFileID != "" {
		set = append(set, "error_file_id = :errfile")
		vals[":errfile"] = str(ch.ErrorFileID)
	}
	if len(ch.Errors) > 0 {
		av, err := attributevalue.Marshal(batchErrors(ch.Errors))
		if err != nil {
			return nil, fmt.Errorf("dynamodb: marshal batch errors: %w", err)
		}
		set = append(set, "#errors = :errors")
		names["#errors"] = "errors"
		vals[":errors"] = av
	}
	if ch.CancelRequested {
		set = append(set, "cancel_requested = :cancel")
		vals[":cancel"] = &types.AttributeValueMemberBOOL{Value: true}
	}
	in := make([]string, len(from))
	for i, f := range from {
		in[i] = fmt.Sprintf(":from%d", i)
		vals[in[i]] = str(string(f))
	}
	out, err := s.c.UpdateItem(ctx, &ddb.UpdateItemInput{
		TableName: &s.table, Key: key(batchPK(id), "BATCH"),
		UpdateExpression:          aws.String("SET " + strings.Join(set, ", ")),
		ConditionExpression:       aws.String("attribute_exists(pk) AND #st IN (" + strings.Join(in, ", ") + ")"),
		ExpressionAttributeNames:  names,
		ExpressionAttributeValues: vals,
		ReturnValues:              types.ReturnValueAllNew,
	})
	if isConditionFailed(err) {
		b, gerr := s.GetBatch(ctx, id)
		if gerr != nil {
			return nil, gerr
		}
		return nil, lull.Errorf(lull.ECONFLICT, "batch %s is %s and cannot become %s", id, b.Status, ch.Status)
	}
	if err != nil {
		return nil, wrap(err, "update batch %s to %s", id, ch.Status)
	}
	return decodeBatch(out.Attributes)
}

// SetSplitProgress implements lull.Batches. The created count only grows:
// a lower value than the stored one is ignored. ENOTFOUND when the batch is
// missing.
func (s *Store) SetSplitProgress(ctx context.Context, id string, created int, done bool) error {
	_, err := s.c.UpdateItem(ctx, &ddb.UpdateItemInput{
		TableName: &s.table, Key: key(batchPK(id), "BATCH"),
		UpdateExpression:         aws.String("SET #created = :n, split_done = :done"),
		ConditionExpression:      aws.String("attribute_exists(pk) AND (attribute_not_exists(#created) OR #created <= :n)"),
		ExpressionAttributeNames: map[string]string{"#created": "created"},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":n": n(int64(created)), ":done": &types.AttributeValueMemberBOOL{Value: done},
		},
	})
	if isConditionFailed(err) {
		// Either missing or further along already; only the first is an error.
		_, gerr := s.GetBatch(ctx, id)
		return gerr
	}
	return wrap(err, "set split progress of batch %s", id)
}

// ClaimSplit implements lull.Batches.
func (s *Store) ClaimSplit(ctx context.Context, id, owner string, now, until time.Time) error {
	_, err := s.c.UpdateItem(ctx, &ddb.UpdateItemInput{
		TableName: &s.table, Key: key(batchPK(id), "BATCH"),
		UpdateExpression: aws.String("SET split_owner = :me, split_until = :until"),
		ConditionExpression: aws.String("attribute_exists(pk) AND " +
			"(attribute_not_exists(split_until) OR split_until < :now OR split_owner = :me)"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":me": str(owner), ":until": n(ms(until)), ":now": n(ms(now)),
		},
	})
	if isConditionFailed(err) {
		if _, gerr := s.GetBatch(ctx, id); gerr != nil {
			return gerr
		}
		return lull.Errorf(lull.ECONFLICT, "batch %s is being split by another run", id)
	}
	return wrap(err, "claim split of batch %s", id)
}

// transactionConflict reports whether a transaction was cancelled because
// another one was writing the same items.
func transactionConflict(err error) bool {
	var tce *types.TransactionCanceledException
	if !errors.As(err, &tce) {
		return false
	}
	for _, r := range tce.CancellationReasons {
		if aws.ToString(r.Code) == "TransactionConflict" {
			return true
		}
	}
	return false
}

// countRetries bounds how often CountLine retries a transaction that lost
// to a concurrent one on the same items (TransactionConflict).
const countRetries = 8

// CountLine implements lull.Batches with one transaction that marks the
// line counted (only if terminal and not yet counted) and adds one to the
// batch's Completed or Failed count. A line that is not terminal, already
// counted or missing is not counted and is not an error; ENOTFOUND when the
// batch is missing.
func (s *Store) CountLine(ctx context.Context, gen *lull.Generation) (*lull.Batch, bool, error) {
	if gen.BatchID == "" {
		return nil, false, fmt.Errorf("dynamodb: count line %s: not a batch line", gen.ID)
	}
	counter := "failed"
	if gen.Status == lull.StatusCompleted {
		counter = "completed"
	}
	in := &ddb.TransactWriteItemsInput{TransactItems: []types.TransactWriteItem{
		{Update: &types.Update{
			TableName: &s.table, Key: key(genPK(gen.ID), "GEN"),
			UpdateExpression:         aws.String("SET #counted = :true"),
			ConditionExpression:      aws.String("attribute_exists(pk) AND attribute_not_exists(#counted) AND #st IN (:s0, :s1, :s2, :s3)"),
			ExpressionAttributeNames: map[string]string{"#counted": "counted", "#st": "status"},
			ExpressionAttributeValues: map[string]types.AttributeValue{
				":true": &types.AttributeValueMemberBOOL{Value: true},
				":s0":   str(string(lull.StatusCompleted)), ":s1": str(string(lull.StatusFailed)),
				":s2": str(string(lull.StatusCancelled)), ":s3": str(string(lull.StatusExpired)),
			},
		}},
		{Update: &types.Update{
			TableName: &s.table, Key: key(batchPK(gen.BatchID), "BATCH"),
			UpdateExpression:          aws.String("ADD #n :one"),
			ConditionExpression:       aws.String("attribute_exists(pk)"),
			ExpressionAttributeNames:  map[string]string{"#n": counter},
			ExpressionAttributeValues: map[string]types.AttributeValue{":one": n(1)},
		}},
	}}
	for attempt := 1; ; attempt++ {
		_, err := s.c.TransactWriteItems(ctx, in)
		switch {
		case err == nil:
			b, err := s.GetBatch(ctx, gen.BatchID)
			return b, err == nil, err
		case cancelledByCondition(err, 0):
			b, err := s.GetBatch(ctx, gen.BatchID)
			return b, false, err
		case cancelledByCondition(err, 1):
			return nil, false, lull.Errorf(lull.ENOTFOUND, "No batch found with id '%s'.", gen.BatchID)
		case transactionConflict(err) && attempt < countRetries:
			// Another count of the same batch or line ran at the same time;
			// the retry sees its result.
			select {
			case <-ctx.Done():
				return nil, false, ctx.Err()
			case <-time.After(time.Duration(attempt*10+rand.IntN(20)) * time.Millisecond):
			}
		default:
			return nil, false, wrap(err, "count line %s of batch %s", gen.ID, gen.BatchID)
		}
	}
}

// Lines implements lull.Batches. limit is clamped to 1..1000; the cursor is
// opaque to callers (the line's index key).
func (s *Store) Lines(ctx context.Context, batchID, cursor string, limit int) ([]*lull.Generation, string, error) {
	limit = min(max(limit, 1), 1000)
	in := &ddb.QueryInput{
		TableName:                 &s.table,
		IndexName:                 aws.String("gsi1"),
		KeyConditionExpression:    aws.String("gsi1pk = :pk AND gsi1sk > :cursor"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":pk": str(linePK(batchID)), ":cursor": str(cursor)},
		ScanIndexForward:          aws.Bool(true),
	}
	if cursor == "" {
		// DynamoDB rejects an empty string as a key value: start at the top.
		in.KeyConditionExpression = aws.String("gsi1pk = :pk")
		delete(in.ExpressionAttributeValues, ":cursor")
	}
	var gens []*lull.Generation
	more, err := s.page(ctx, in, limit, func(item map[string]types.AttributeValue) error {
		g, err := decode(item)
		if err == nil {
			gens = append(gens, g)
		}
		return err
	})
	if err != nil {
		return nil, "", wrap(err, "list lines of batch %s", batchID)
	}
	if !more {
		return gens, "", nil
	}
	return gens, lineSK(gens[len(gens)-1].Line), nil
}

// CreateLines implements lull.Batches with BatchWriteItem calls of 25 items,
// sending again what DynamoDB leaves unprocessed (with backoff).
func (s *Store) CreateLines(ctx context.Context, lines []*lull.Generation) error {
	for start := 0; start < len(lines); start += 25 {
		var reqs []types.WriteRequest
		for _, g := range lines[start:min(start+25, len(lines))] {
			if g.BatchID == "" {
				return fmt.Errorf("dynamodb: create lines: generation %s has no batch", g.ID)
			}
			item, err := attributevalue.MarshalMap(toRecord(g))
			if err != nil {
				return fmt.Errorf("dynamodb: marshal line %s: %w", g.ID, err)
			}
			reqs = append(reqs, types.WriteRequest{PutRequest: &types.PutRequest{Item: item}})
		}
		for try := 0; len(reqs) > 0; try++ {
			if try == 8 {
				return fmt.Errorf("dynamodb: create lines of %s: %d items still unprocessed", lines[0].BatchID, len(reqs))
			}
			if try > 0 {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(time.Duration(25<<try) * time.Millisecond):
				}
			}
			out, err := s.c.BatchWriteItem(ctx, &ddb.BatchWriteItemInput{RequestItems: map[string][]types.WriteRequest{s.table: reqs}})
			if err != nil {
				return wrap(err, "create lines of %s", lines[0].BatchID)
			}
			reqs = out.UnprocessedItems[s.table]
		}
	}
	return nil
}
