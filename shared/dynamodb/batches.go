package dynamodb

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/lull-ai/lull/shared/lull"
)

var (
	_ lull.Files      = (*Store)(nil)
	_ lull.Uploads    = (*Store)(nil)
	_ lull.Batches    = (*Store)(nil)
	_ lull.BatchLines = (*Store)(nil)
)

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
	OutputExpiresS   int64             `dynamodbav:"output_expires_after_s,omitempty"`
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
	SplitUntil       int64             `dynamodbav:"split_until,omitempty"`
	CountedAt        int64             `dynamodbav:"counted_at,omitempty"`
	GSI1PK           string            `dynamodbav:"gsi1pk"`
	GSI1SK           string            `dynamodbav:"gsi1sk"`
	// GSI2PK and GSI2SK list the batch among the open (non-terminal) ones,
	// by creation time, for the sweeper (OpenBatches).
	GSI2PK string `dynamodbav:"gsi2pk,omitempty"`
	GSI2SK string `dynamodbav:"gsi2sk,omitempty"`
}

// openBatchPrefix is the prefix of gsi2's partitions of open batches.
const openBatchPrefix = "BOPEN"

func batchPK(id string) string { return "BATCH#" + id }

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
		CompletionWindow: b.CompletionWindow, OutputExpiresS: int64(b.OutputExpiresAfter / time.Second),
		Status: string(b.Status), Metadata: b.Metadata, WebhookID: b.WebhookID,
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
	if !b.Status.Terminal() {
		r.GSI2PK, r.GSI2SK = fmt.Sprintf("%s#%d", openBatchPrefix, shard(b.ID)), sortKey(b.CreatedAt, b.ID)
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
		CompletionWindow: r.CompletionWindow, OutputExpiresAfter: time.Duration(r.OutputExpiresS) * time.Second, Status: lull.BatchStatus(r.Status), Metadata: r.Metadata, WebhookID: r.WebhookID,
		CancelRequested: r.CancelRequested, CreatedAt: fromMS(r.CreatedAt), InProgressAt: fromMS(r.InProgressAt),
		FinalizingAt: fromMS(r.FinalizingAt), CompletedAt: fromMS(r.CompletedAt), FailedAt: fromMS(r.FailedAt),
		ExpiredAt: fromMS(r.ExpiredAt), CancellingAt: fromMS(r.CancellingAt), CancelledAt: fromMS(r.CancelledAt),
		ExpiresAt: fromMS(r.ExpiresAt), Total: r.Total, Completed: r.Completed, Failed: r.Failed, Created: r.Created,
		SplitDone: r.SplitDone, OutputFileID: r.OutputFileID, ErrorFileID: r.ErrorFileID,
		SplitUntil: fromMS(r.SplitUntil), CountedAt: fromMS(r.CountedAt),
	}
	for _, e := range r.Errors {
		b.Errors = append(b.Errors, lull.BatchError{Code: e.Code, Message: e.Message, Param: e.Param, Line: e.Line})
	}
	return b, nil
}

// CreateBatch implements lull.Batches; ECONFLICT when the ID exists.
func (s *Store) CreateBatch(ctx context.Context, b *lull.Batch) error {
	item, err := s.batchItem(b)
	if err != nil {
		return err
	}
	return s.putNew(ctx, item, "batch "+b.ID)
}

// batchItem is b as stored, with its TTL: Retention after its completion
// window ends, so it outlives every one of its lines (each kept Retention
// after it ends, by the window's end at the latest).
func (s *Store) batchItem(b *lull.Batch) (map[string]types.AttributeValue, error) {
	item, err := attributevalue.MarshalMap(toBatchRecord(b))
	if err != nil {
		return nil, fmt.Errorf("dynamodb: marshal batch %s: %w", b.ID, err)
	}
	item["ttl"] = n(s.keepUntil(b.CreatedAt, b.ExpiresAt))
	return item, nil
}

// CreateBatchOnce implements lull.Batches.
func (s *Store) CreateBatchOnce(ctx context.Context, b *lull.Batch, idemKey, fingerprint string) (*lull.Batch, bool, error) {
	item, err := s.batchItem(b)
	if err != nil {
		return nil, false, err
	}
	priorID, created, err := s.putOnce(ctx, idemPK(b.Tenant, "batch#", idemKey), "batch_id", b.ID, fingerprint,
		s.keepUntil(b.CreatedAt, b.ExpiresAt), item, "batch "+b.ID)
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
	next, err := s.listPage(ctx, in, limit, func(item map[string]types.AttributeValue) (string, error) {
		b, err := decodeBatch(item)
		if err != nil {
			return "", err
		}
		batches = append(batches, b)
		return b.ID, nil
	})
	if err != nil {
		return nil, false, wrap(err, "list batches of %s", tenant)
	}
	return batches, next != "", nil
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
	if ch.Completed != nil {
		set = append(set, "completed = :completed")
		vals[":completed"] = n(int64(*ch.Completed))
	}
	if ch.Failed != nil {
		set = append(set, "failed = :failed")
		vals[":failed"] = n(int64(*ch.Failed))
	}
	update := "SET " + strings.Join(set, ", ")
	if ch.Status.Terminal() {
		update += " REMOVE gsi2pk, gsi2sk" // no longer open
	}
	in := make([]string, len(from))
	for i, f := range from {
		in[i] = fmt.Sprintf(":from%d", i)
		vals[in[i]] = str(string(f))
	}
	out, err := s.c.UpdateItem(ctx, &ddb.UpdateItemInput{
		TableName: &s.table, Key: key(batchPK(id), "BATCH"),
		UpdateExpression:          aws.String(update),
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
