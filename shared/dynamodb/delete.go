package dynamodb

import (
	"context"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/lull-ai/lull/shared/lull"
)

// Delete implements lull.Generations: one conditional DeleteItem, so a
// generation that a worker or the sweeper is still moving is never
// removed under it.
func (s *Store) Delete(ctx context.Context, id string) error {
	vals := map[string]types.AttributeValue{}
	conds := []string{}
	for _, st := range lull.Statuses {
		if st.Terminal() {
			k := fmt.Sprintf(":t%d", len(conds))
			conds = append(conds, "#st = "+k)
			vals[k] = str(string(st))
		}
	}
	_, err := s.c.DeleteItem(ctx, &ddb.DeleteItemInput{
		TableName: &s.table, Key: key(genPK(id), "GEN"),
		ConditionExpression:       aws.String("attribute_exists(pk) AND (" + strings.Join(conds, " OR ") + ")"),
		ExpressionAttributeNames:  map[string]string{"#st": "status"},
		ExpressionAttributeValues: vals,
	})
	if isConditionFailed(err) {
		g, gerr := s.get(ctx, id, true)
		if gerr != nil {
			return gerr
		}
		return lull.Errorf(lull.ECONFLICT, "generation %s is %s, not terminal: it cannot be deleted yet", id, g.Status)
	}
	return wrap(err, "delete generation %s", id)
}
