package dynamodb_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/lull-ai/lull/localstack/emutest"
	"github.com/lull-ai/lull/shared/dynamodb"
	"github.com/lull-ai/lull/shared/localseal"
	"github.com/lull-ai/lull/shared/lull"
	"github.com/lull-ai/lull/shared/whsign"
)

// TestWebhookSecretsAreSealed holds issue 13 f: with a Sealer the table
// holds only ciphertext of webhook secrets; the store reads them back for
// its own key only, a ciphertext copied onto another endpoint does not
// open, rotation keeps working, and secrets stored before sealing still read.
func TestWebhookSecretsAreSealed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := emutest.Backends(t)[0]
	table := "sealed-" + lull.NewID("t")
	s := dynamodb.New(b.Clients.DynamoDB, table)
	if err := s.CreateTable(ctx); err != nil {
		t.Fatal(err)
	}
	sealer, err := localseal.New(localseal.NewKey())
	if err != nil {
		t.Fatal(err)
	}
	s.Sealer = sealer
	raw := func(id, attr string) string {
		t.Helper()
		out, err := b.Clients.DynamoDB.GetItem(ctx, &ddb.GetItemInput{TableName: aws.String(table), ConsistentRead: aws.Bool(true),
			Key: map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: "WH#" + id}, "sk": &types.AttributeValueMemberS{Value: "WH"}}})
		if err != nil {
			t.Fatal(err)
		}
		v, _ := out.Item[attr].(*types.AttributeValueMemberS)
		if v == nil {
			return ""
		}
		return v.Value
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	secret := whsign.NewSecret()
	w := &lull.Webhook{ID: lull.NewID("wh"), Tenant: "t", URL: "https://a.example.com", Secret: secret, CreatedAt: now}
	if err := s.CreateWebhook(ctx, w); err != nil {
		t.Fatal(err)
	}
	stored := raw(w.ID, "secret")
	if stored == secret || strings.Contains(stored, strings.TrimPrefix(secret, "whsec_")) {
		t.Fatalf("the table holds the secret in the clear: %q", stored)
	}
	if got, err := s.GetWebhook(ctx, w.ID); err != nil || got.Secret != secret {
		t.Fatalf("GetWebhook secret = %q, %v", got.Secret, err)
	}
	if list, err := s.ListWebhooks(ctx, "t"); err != nil || len(list) != 1 || list[0].Secret != secret {
		t.Fatalf("ListWebhooks = %+v, %v", list, err)
	}
	// Rotation: the old secret becomes the previous one, both sealed.
	next := whsign.NewSecret()
	if err := s.RotateSecret(ctx, w.ID, secret, next, now, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetWebhook(ctx, w.ID); err != nil || got.Secret != next || got.PrevSecret != secret {
		t.Fatalf("after rotation: %+v, %v", got, err)
	}
	if p := raw(w.ID, "prev_secret"); strings.HasPrefix(p, "whsec_") {
		t.Fatalf("previous secret stored in the clear: %q", p)
	}
	// Without the key, or under another one, nothing opens.
	for name, other := range map[string]*dynamodb.Store{"NoSealer": dynamodb.New(b.Clients.DynamoDB, table), "OtherKey": func() *dynamodb.Store {
		o := dynamodb.New(b.Clients.DynamoDB, table)
		o.Sealer, _ = localseal.New(localseal.NewKey())
		return o
	}()} {
		if got, err := other.GetWebhook(ctx, w.ID); err == nil {
			t.Errorf("%s: read the secret %q", name, got.Secret)
		}
	}
	// A sealed secret copied onto another endpoint does not open there.
	v := &lull.Webhook{ID: lull.NewID("wh"), Tenant: "t", URL: "https://b.example.com", Secret: whsign.NewSecret(), CreatedAt: now}
	if err := s.CreateWebhook(ctx, v); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Clients.DynamoDB.UpdateItem(ctx, &ddb.UpdateItemInput{TableName: aws.String(table),
		Key:                       map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: "WH#" + v.ID}, "sk": &types.AttributeValueMemberS{Value: "WH"}},
		UpdateExpression:          aws.String("SET secret = :s"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":s": &types.AttributeValueMemberS{Value: raw(w.ID, "secret")}}}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetWebhook(ctx, v.ID); err == nil {
		t.Errorf("a secret copied from %s opened for %s: %q", w.ID, v.ID, got.Secret)
	}
	// Secrets written before sealing began still read.
	legacy := &lull.Webhook{ID: lull.NewID("wh"), Tenant: "u", URL: "https://c.example.com", Secret: whsign.NewSecret(), CreatedAt: now}
	if err := dynamodb.New(b.Clients.DynamoDB, table).CreateWebhook(ctx, legacy); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetWebhook(ctx, legacy.ID); err != nil || got.Secret != legacy.Secret {
		t.Fatalf("legacy secret = %q, %v", got.Secret, err)
	}
}
