package dynamodb

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/lull-ai/lull/shared/lull"
)

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

// CountLine implements lull.BatchLines with one transaction that marks the
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
			UpdateExpression:          aws.String("ADD #n :one SET counted_at = :now"),
			ConditionExpression:       aws.String("attribute_exists(pk)"),
			ExpressionAttributeNames:  map[string]string{"#n": counter},
			ExpressionAttributeValues: map[string]types.AttributeValue{":one": n(1), ":now": n(time.Now().UnixMilli())},
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

// Lines implements lull.BatchLines. limit is clamped to 1..1000; the cursor is
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
	next, err := s.listPage(ctx, in, limit, func(item map[string]types.AttributeValue) (string, error) {
		g, err := decode(item)
		if err != nil {
			return "", err
		}
		gens = append(gens, g)
		return g.ID, nil
	})
	if err != nil {
		return nil, "", wrap(err, "list lines of batch %s", batchID)
	}
	if next == "" {
		return gens, "", nil
	}
	return gens, lineSK(gens[len(gens)-1].Line), nil
}

// CreateLines implements lull.BatchLines with BatchWriteItem calls of 25 items,
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
