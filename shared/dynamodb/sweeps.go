package dynamodb

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/lull-ai/lull/shared/lull"
)

// OpenBatches returns up to limit batches that are not terminal and were
// created before olderThan, oldest first per shard: the batches the
// sweeper re-derives (batchjob.Counter.Reconcile).
func (s *Store) OpenBatches(ctx context.Context, olderThan time.Time, limit int) ([]*lull.Batch, error) {
	var out []*lull.Batch
	for sh := 0; sh < Shards && len(out) < limit; sh++ {
		in := &ddb.QueryInput{
			TableName:              &s.table,
			IndexName:              aws.String("gsi2"),
			KeyConditionExpression: aws.String("gsi2pk = :pk AND gsi2sk < :t"),
			ExpressionAttributeValues: map[string]types.AttributeValue{
				":pk": str(fmt.Sprintf("%s#%d", openBatchPrefix, sh)),
				":t":  str(fmt.Sprintf("%013d", olderThan.UnixMilli())),
			},
		}
		for len(out) < limit {
			in.Limit = aws.Int32(int32(limit - len(out)))
			res, err := s.c.Query(ctx, in)
			if err != nil {
				return nil, wrap(err, "query open batches shard %d", sh)
			}
			for _, item := range res.Items {
				b, err := decodeBatch(item)
				if err != nil {
					return nil, err
				}
				out = append(out, b)
			}
			if len(res.LastEvaluatedKey) == 0 {
				break
			}
			in.ExclusiveStartKey = res.LastEvaluatedKey
		}
	}
	return out, nil
}

// MarkRecounted records that the batch's lines were recounted at at: it
// moves CountedAt forward (never back), so the sweeper recounts a batch
// that shows no progress once per quiet period.
func (s *Store) MarkRecounted(ctx context.Context, id string, at time.Time) error {
	_, err := s.c.UpdateItem(ctx, &ddb.UpdateItemInput{
		TableName: &s.table, Key: key(batchPK(id), "BATCH"),
		UpdateExpression:          aws.String("SET counted_at = :at"),
		ConditionExpression:       aws.String("attribute_exists(pk) AND (attribute_not_exists(counted_at) OR counted_at < :at)"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":at": n(ms(at))},
	})
	if isConditionFailed(err) {
		return nil // missing, or counted since
	}
	return wrap(err, "mark batch %s recounted", id)
}
