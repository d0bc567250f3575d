package dynamodb

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// CreateTable creates the table with the layout this package expects (the
// same one infra deploys) and waits until it is usable. An existing table is
// left as it is. Used by the dev stack and tests; production tables come
// from CloudFormation.
func (s *Store) CreateTable(ctx context.Context) error {
	strAttr := func(name string) types.AttributeDefinition {
		return types.AttributeDefinition{AttributeName: aws.String(name), AttributeType: types.ScalarAttributeTypeS}
	}
	gsi := func(name string) types.GlobalSecondaryIndex {
		return types.GlobalSecondaryIndex{
			IndexName: aws.String(name),
			KeySchema: []types.KeySchemaElement{
				{AttributeName: aws.String(name + "pk"), KeyType: types.KeyTypeHash},
				{AttributeName: aws.String(name + "sk"), KeyType: types.KeyTypeRange},
			},
			Projection: &types.Projection{ProjectionType: types.ProjectionTypeAll},
		}
	}
	_, err := s.c.CreateTable(ctx, &ddb.CreateTableInput{
		TableName:   &s.table,
		BillingMode: types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{
			strAttr("pk"), strAttr("sk"), strAttr("gsi1pk"), strAttr("gsi1sk"),
			strAttr("gsi2pk"), strAttr("gsi2sk"), strAttr("gsi3pk"), strAttr("gsi3sk"),
		},
		KeySchema: []types.KeySchemaElement{
			{AttributeName: aws.String("pk"), KeyType: types.KeyTypeHash},
			{AttributeName: aws.String("sk"), KeyType: types.KeyTypeRange},
		},
		GlobalSecondaryIndexes: []types.GlobalSecondaryIndex{gsi("gsi1"), gsi("gsi2"), gsi("gsi3")},
	})
	var inUse *types.ResourceInUseException
	if err != nil && !errors.As(err, &inUse) {
		return wrap(err, "create table %s", s.table)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := s.c.DescribeTable(ctx, &ddb.DescribeTableInput{TableName: &s.table})
		if err != nil {
			return wrap(err, "describe table %s", s.table)
		}
		// Some emulators leave TableStatus empty; treat that as ready.
		if st := out.Table.TableStatus; st == types.TableStatusActive || st == "" {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("dynamodb: table %s not active after 30s", s.table)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	// TTL is best effort: not every emulator implements it.
	_, _ = s.c.UpdateTimeToLive(ctx, &ddb.UpdateTimeToLiveInput{
		TableName:               &s.table,
		TimeToLiveSpecification: &types.TimeToLiveSpecification{AttributeName: aws.String("ttl"), Enabled: aws.Bool(true)},
	})
	return nil
}
