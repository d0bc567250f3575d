package dynamodb

import (
	"context"

	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/lull-ai/lull/shared/lull"
)

// TenantForKey implements lull.APIKeys.
func (s *Store) TenantForKey(ctx context.Context, keyHash string) (string, error) {
	out, err := s.c.GetItem(ctx, &ddb.GetItemInput{TableName: &s.table, Key: key("KEY#"+keyHash, "KEY")})
	if err != nil {
		return "", wrap(err, "get api key")
	}
	t, ok := out.Item["tenant"].(*types.AttributeValueMemberS)
	if !ok || t.Value == "" {
		return "", lull.Errorf(lull.EUNAUTHORIZED, "Incorrect API key provided.")
	}
	return t.Value, nil
}

// PutKey implements lull.APIKeys.
func (s *Store) PutKey(ctx context.Context, keyHash, tenant string) error {
	item := key("KEY#"+keyHash, "KEY")
	item["tenant"] = str(tenant)
	item["gsi1pk"] = str("T#" + tenant + "#KEYS")
	item["gsi1sk"] = str(keyHash)
	_, err := s.c.PutItem(ctx, &ddb.PutItemInput{TableName: &s.table, Item: item})
	return wrap(err, "put api key for %s", tenant)
}
