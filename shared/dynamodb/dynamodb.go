// Package dynamodb stores lull's state in one DynamoDB table: generations,
// idempotency keys, API keys, webhooks, files, uploads and batches. It
// implements lull.Generations, lull.APIKeys, lull.Webhooks, lull.Files,
// lull.Uploads, lull.Batches and lull.BatchLines over aws-sdk-go-v2, one
// file per entity.
//
// Layout (pk, sk): GEN#<id>/GEN, IDEM#<tenant>#<key>/IDEM (batches:
// IDEM#<tenant>#batch#<key>; '#' and '%' in client keys are escaped),
// KEY#<sha256>/KEY, WHCOUNT#<tenant>/WHCOUNT (the tenant's webhook count),
// WH#<id>/WH (with its deliveries DLV#<id> and attempts DLV#<id>#A#<n>),
// FILE#<id>/FILE, UPLOAD#<id>/UPLOAD (parts as a list attribute) and
// BATCH#<id>/BATCH (with its counters). A batch's lines are generations
// with a batch_id; CountLine marks each one counted as it adds it to the
// batch's counters, in one transaction, so that it is counted once.
// GSIs: gsi1 lists a tenant's items by time (T#<tenant> for generations,
// T#<tenant>#FILES, #BATCHES, #WH, #KEYS for the others) and a batch's lines
// in input order (B#<batch>, zero-padded line number); gsi2 (sparse) holds open
// generations by expiry for the expiry sweep (OPEN#) and open batches by
// creation for the batch sweep (BOPEN#); gsi3 (sparse) holds generations
// whose job may not have been enqueued yet (UNENQ#) and terminal ones whose
// event may not have been sent (UNANN#). Sparse keys are sharded across
// Shards partition values so no GSI partition runs hot.
package dynamodb

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"

	"github.com/lull-ai/lull/shared/lull"
)

// Shards is the number of partition values of each sparse GSI.
const Shards = 8

// client lists the DynamoDB calls the store makes.
type client interface {
	GetItem(context.Context, *ddb.GetItemInput, ...func(*ddb.Options)) (*ddb.GetItemOutput, error)
	PutItem(context.Context, *ddb.PutItemInput, ...func(*ddb.Options)) (*ddb.PutItemOutput, error)
	UpdateItem(context.Context, *ddb.UpdateItemInput, ...func(*ddb.Options)) (*ddb.UpdateItemOutput, error)
	DeleteItem(context.Context, *ddb.DeleteItemInput, ...func(*ddb.Options)) (*ddb.DeleteItemOutput, error)
	Query(context.Context, *ddb.QueryInput, ...func(*ddb.Options)) (*ddb.QueryOutput, error)
	BatchWriteItem(context.Context, *ddb.BatchWriteItemInput, ...func(*ddb.Options)) (*ddb.BatchWriteItemOutput, error)
	TransactWriteItems(context.Context, *ddb.TransactWriteItemsInput, ...func(*ddb.Options)) (*ddb.TransactWriteItemsOutput, error)
	CreateTable(context.Context, *ddb.CreateTableInput, ...func(*ddb.Options)) (*ddb.CreateTableOutput, error)
	DescribeTable(context.Context, *ddb.DescribeTableInput, ...func(*ddb.Options)) (*ddb.DescribeTableOutput, error)
	UpdateTimeToLive(context.Context, *ddb.UpdateTimeToLiveInput, ...func(*ddb.Options)) (*ddb.UpdateTimeToLiveOutput, error)
}

// Store is the DynamoDB implementation of lull's state interfaces.
type Store struct {
	c     client
	table string
	// Retention is how long terminal generations, batches, deliveries and
	// idempotency keys are kept (DynamoDB TTL, counted from the end or from
	// the end of the completion window); DefaultRetention when zero. The S3
	// lifecycle keeps inputs/ and outputs/ objects longer (infra).
	Retention time.Duration
	// FileRetention is how long file items (Batch API inputs and outputs)
	// are kept after their creation; Retention when zero. The S3 lifecycle
	// keeps files/ objects a day longer (infra).
	FileRetention time.Duration
	// Sealer encrypts webhook secrets before they are stored and decrypts
	// them when read; nil stores them as they are (tests). Secrets stored
	// before a Sealer was set ("whsec_…") still read.
	Sealer lull.Sealer
}

var (
	_ lull.Generations = (*Store)(nil)
	_ lull.APIKeys     = (*Store)(nil)
	_ lull.Batches     = (*Store)(nil)
)

// New returns a Store over an existing table.
func New(c *ddb.Client, table string) *Store {
	return &Store{c: c, table: table}
}

func key(pk, sk string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{
		"pk": &types.AttributeValueMemberS{Value: pk},
		"sk": &types.AttributeValueMemberS{Value: sk},
	}
}

func shard(id string) int {
	h := fnv.New32a()
	h.Write([]byte(id))
	return int(h.Sum32() % Shards)
}

// getItem reads the item (pk, sk), strongly consistent when asked; a
// missing item is ENOTFOUND with notFound as its message, and what names the
// item in wrapped errors.
func (s *Store) getItem(ctx context.Context, pk, sk string, consistent bool, what, notFound string) (map[string]types.AttributeValue, error) {
	out, err := s.c.GetItem(ctx, &ddb.GetItemInput{TableName: &s.table, Key: key(pk, sk), ConsistentRead: aws.Bool(consistent)})
	if err != nil {
		return nil, wrap(err, "get %s", what)
	}
	if len(out.Item) == 0 {
		return nil, lull.Errorf(lull.ENOTFOUND, "%s", notFound)
	}
	return out.Item, nil
}

// newestFirst is the query of gsi1 partition pk, newest first; with a
// non-zero afterAt, only items older than the one created then with afterID
// (the OpenAI-style "after" cursor).
func (s *Store) newestFirst(pk string, afterAt time.Time, afterID string) *ddb.QueryInput {
	in := &ddb.QueryInput{
		TableName:                 &s.table,
		IndexName:                 aws.String("gsi1"),
		KeyConditionExpression:    aws.String("gsi1pk = :pk"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":pk": str(pk)},
		ScanIndexForward:          aws.Bool(false),
	}
	if !afterAt.IsZero() {
		in.KeyConditionExpression = aws.String("gsi1pk = :pk AND gsi1sk < :after")
		in.ExpressionAttributeValues[":after"] = str(sortKey(afterAt, afterID))
	}
	return in
}

// ListBudget is the most index items one filtered listing call reads
// (?status= on generations, ?purpose= on files): a filter that matches
// little never makes one call walk a tenant's whole history. A page that
// runs out of budget returns what it found and a cursor to go on from.
const ListBudget = 500

// MaxFilesPage is the most files one ListFiles call returns, whatever
// limit asks for (OpenAI accepts up to 10,000; clients page on has_more).
const MaxFilesPage = 1000

// listPage runs the newest-first query in and passes each returned item
// to add (which returns its ID) until limit items were added, the index
// ends, or, with a filter, ListBudget items were read. It returns the
// cursor that continues the listing: "" at its end; the last added ID when
// the page is full; the last item read (matching or not) when the budget
// ran out first.
func (s *Store) listPage(ctx context.Context, in *ddb.QueryInput, limit int, add func(map[string]types.AttributeValue) (string, error)) (string, error) {
	filtered := in.FilterExpression != nil
	kept, read := 0, 0
	last := ""
	for {
		if filtered {
			in.Limit = aws.Int32(int32(min(100, ListBudget-read)))
		} else {
			in.Limit = aws.Int32(int32(limit + 1 - kept))
		}
		out, err := s.c.Query(ctx, in)
		if err != nil {
			return "", err
		}
		read += int(out.ScannedCount)
		for _, item := range out.Items {
			if kept == limit {
				return last, nil
			}
			id, err := add(item)
			if err != nil {
				return "", err
			}
			last = id
			kept++
		}
		if len(out.LastEvaluatedKey) == 0 {
			return "", nil
		}
		if filtered && read >= ListBudget {
			return idOfKey(out.LastEvaluatedKey), nil
		}
		in.ExclusiveStartKey = out.LastEvaluatedKey
	}
}

// idOfKey returns the object ID in an item key whose pk is "<KIND>#<id>".
func idOfKey(k map[string]types.AttributeValue) string {
	pk, _ := k["pk"].(*types.AttributeValueMemberS)
	if pk == nil {
		return ""
	}
	_, id, _ := strings.Cut(pk.Value, "#")
	return id
}

// putNew writes item only if no item has its key; ECONFLICT when one does.
// what names the item in errors ("batch batch_…").
func (s *Store) putNew(ctx context.Context, item map[string]types.AttributeValue, what string) error {
	_, err := s.c.PutItem(ctx, &ddb.PutItemInput{TableName: &s.table, Item: item, ConditionExpression: aws.String("attribute_not_exists(pk)")})
	if isConditionFailed(err) {
		return lull.Errorf(lull.ECONFLICT, "%s already exists", what)
	}
	return wrap(err, "create %s", what)
}

// isConditionFailed reports whether err is a failed ConditionExpression.
func isConditionFailed(err error) bool {
	var ccf *types.ConditionalCheckFailedException
	if errors.As(err, &ccf) {
		return true
	}
	var api smithy.APIError
	return errors.As(err, &api) && api.ErrorCode() == "ConditionalCheckFailedException"
}

// cancelledByCondition reports whether a transaction failed because the
// condition of item i did not hold.
func cancelledByCondition(err error, i int) bool {
	var tce *types.TransactionCanceledException
	if errors.As(err, &tce) {
		if i < len(tce.CancellationReasons) {
			return aws.ToString(tce.CancellationReasons[i].Code) == "ConditionalCheckFailed"
		}
		return false
	}
	return false
}

// wrap turns SDK errors into domain errors with context.
func wrap(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	msg := fmt.Sprintf(format, args...)
	var api smithy.APIError
	if errors.As(err, &api) {
		switch api.ErrorCode() {
		case "ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded", "InternalServerError", "ServiceUnavailable":
			return &lull.Error{Code: lull.EUNAVAILABLE, Message: "The service is busy; retry later.", Err: fmt.Errorf("dynamodb: %s: %w", msg, err)}
		}
	}
	return fmt.Errorf("dynamodb: %s: %w", msg, err)
}
