package dynamodb_test

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/lull-ai/lull/localstack/emutest"
	"github.com/lull-ai/lull/shared/dynamodb"
	"github.com/lull-ai/lull/shared/lull"
)

// TestTenantIDsCannotHoldSeparator holds issue 13 d: a tenant ID with the
// key separator '#' (which would make "a#FILES"-style keys of one tenant
// those of another) is refused when a key is created for it, and a key item
// naming such a tenant, however it was written, authenticates no one.
func TestTenantIDsCannotHoldSeparator(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := emutest.Backends(t)[0]
	table := "tenants-" + lull.NewID("t")
	s := dynamodb.New(b.Clients.DynamoDB, table)
	if err := s.CreateTable(ctx); err != nil {
		t.Fatal(err)
	}
	for _, tenant := range []string{"a#b", "victim#FILES", "", "with space", "x\x00y"} {
		if err := s.PutKey(ctx, lull.HashKey("sk-"+tenant), tenant); lull.ErrorCode(err) != lull.EINVALID {
			t.Errorf("PutKey for tenant %q: %v, want invalid", tenant, err)
		}
	}
	if err := s.PutKey(ctx, lull.HashKey("sk-ok"), "proj_Abc-1.x"); err != nil {
		t.Fatal(err)
	}
	if got, err := s.TenantForKey(ctx, lull.HashKey("sk-ok")); err != nil || got != "proj_Abc-1.x" {
		t.Fatalf("TenantForKey = %q, %v", got, err)
	}
	// Written around PutKey (an older version, a hand-made item).
	if _, err := b.Clients.DynamoDB.PutItem(ctx, &ddb.PutItemInput{TableName: aws.String(table), Item: map[string]types.AttributeValue{
		"pk": &types.AttributeValueMemberS{Value: "KEY#" + lull.HashKey("sk-raw")}, "sk": &types.AttributeValueMemberS{Value: "KEY"},
		"tenant": &types.AttributeValueMemberS{Value: "evil#WH"},
	}}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.TenantForKey(ctx, lull.HashKey("sk-raw")); lull.ErrorCode(err) != lull.EUNAUTHORIZED {
		t.Fatalf("key of tenant evil#WH = %q, %v; want unauthorized", got, err)
	}
}
