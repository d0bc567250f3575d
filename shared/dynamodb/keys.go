package dynamodb

import (
	"context"
	"fmt"

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
	if !lull.ValidTenant(t.Value) {
		// Written by something other than PutKey: a tenant holding the key
		// separator could reach other tenants' keys.
		return "", &lull.Error{Code: lull.EUNAUTHORIZED, Message: "Incorrect API key provided.",
			Err: fmt.Errorf("dynamodb: api key maps to invalid tenant ID %q", t.Value)}
	}
	return t.Value, nil
}

// PutKey implements lull.APIKeys; EINVALID when tenant is not a valid
// tenant ID (lull.ValidTenant).
func (s *Store) PutKey(ctx context.Context, keyHash, tenant string) error {
	if !lull.ValidTenant(tenant) {
		return lull.Errorf(lull.EINVALID, "invalid tenant ID %q: use 1 to %d letters, digits or -_.:@", tenant, lull.MaxTenantLen)
	}
	item := key("KEY#"+keyHash, "KEY")
	item["tenant"] = str(tenant)
	item["gsi1pk"] = str("T#" + tenant + "#KEYS")
	item["gsi1sk"] = str(keyHash)
	_, err := s.c.PutItem(ctx, &ddb.PutItemInput{TableName: &s.table, Item: item})
	return wrap(err, "put api key for %s", tenant)
}
