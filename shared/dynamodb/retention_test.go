package dynamodb_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/lull-ai/lull/localstack/emutest"
	"github.com/lull-ai/lull/shared/dynamodb"
	"github.com/lull-ai/lull/shared/lull"
)

// TestEveryItemExpires holds issue 13 c: every kind of item the store
// writes carries a DynamoDB TTL — files, uploads and batches included — and
// idempotency records outlive the completion window they guard, so a client
// retrying until its window ends always finds its first object.
func TestEveryItemExpires(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := emutest.Backends(t)[0]
	table := "ttl-" + lull.NewID("t")
	s := dynamodb.New(b.Clients.DynamoDB, table)
	if err := s.CreateTable(ctx); err != nil {
		t.Fatal(err)
	}
	const retention, fileRetention = 48 * time.Hour, 72 * time.Hour
	s.Retention, s.FileRetention = retention, fileRetention
	now := time.Now().UTC().Truncate(time.Second)
	window := 7 * 24 * time.Hour // longer than the retention

	ttlOf := func(pk, sk string) int64 {
		t.Helper()
		out, err := b.Clients.DynamoDB.GetItem(ctx, &ddb.GetItemInput{TableName: aws.String(table), ConsistentRead: aws.Bool(true),
			Key: map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: pk}, "sk": &types.AttributeValueMemberS{Value: sk}}})
		if err != nil || out.Item == nil {
			t.Fatalf("item %s/%s: %v", pk, sk, err)
		}
		v, ok := out.Item["ttl"].(*types.AttributeValueMemberN)
		if !ok {
			t.Errorf("item %s/%s has no ttl", pk, sk)
			return 0
		}
		n, _ := strconv.ParseInt(v.Value, 10, 64)
		return n
	}
	atLeast := func(what string, got int64, want time.Time) {
		t.Helper()
		if got < want.Unix() {
			t.Errorf("%s expires at %s, before %s", what, time.Unix(got, 0).UTC(), want)
		}
	}

	f := &lull.File{ID: lull.NewID("file"), Tenant: "t", Purpose: lull.PurposeBatch, Filename: "in.jsonl", Bytes: 1, CreatedAt: now, Key: "files/x"}
	if err := s.CreateFile(ctx, f); err != nil {
		t.Fatal(err)
	}
	if got := ttlOf("FILE#"+f.ID, "FILE"); got != now.Add(fileRetention).Unix() {
		t.Errorf("file ttl %d, want created + FileRetention (%d)", got, now.Add(fileRetention).Unix())
	}
	u := &lull.Upload{ID: lull.NewID("upload"), Tenant: "t", Filename: "in.jsonl", Purpose: lull.PurposeBatch, Bytes: 10,
		Status: lull.UploadPending, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := s.CreateUpload(ctx, u); err != nil {
		t.Fatal(err)
	}
	atLeast("upload", ttlOf("UPLOAD#"+u.ID, "UPLOAD"), u.ExpiresAt)

	bt := &lull.Batch{ID: lull.NewID("batch"), Tenant: "t", Endpoint: lull.EndpointChat, InputFileID: f.ID, CompletionWindow: "168h",
		Status: lull.BatchValidating, CreatedAt: now, ExpiresAt: now.Add(window)}
	if _, _, err := s.CreateBatchOnce(ctx, bt, "nightly", "fp"); err != nil {
		t.Fatal(err)
	}
	atLeast("batch", ttlOf("BATCH#"+bt.ID, "BATCH"), bt.ExpiresAt.Add(retention))
	atLeast("batch idempotency key", ttlOf("IDEM#t#batch#nightly", "IDEM"), bt.ExpiresAt.Add(retention))

	g := &lull.Generation{ID: lull.NewID("gen"), Tenant: "t", Model: "m", Endpoint: lull.EndpointChat, Status: lull.StatusQueued,
		CreatedAt: now, ExpiresAt: now.Add(window), IdempotencyKey: "retry-me"}
	if _, _, err := s.Create(ctx, g, "fp"); err != nil {
		t.Fatal(err)
	}
	atLeast("generation idempotency key", ttlOf("IDEM#t#retry-me", "IDEM"), g.ExpiresAt)
	if _, err := s.Finish(ctx, g.ID, lull.StatusCancelled, lull.Outcome{At: now}); err != nil {
		t.Fatal(err)
	}
	atLeast("finished generation", ttlOf("GEN#"+g.ID, "GEN"), now.Add(retention))

	d := &lull.Delivery{ID: lull.NewID("dlv"), WebhookID: lull.NewID("wh"), Tenant: "t", EventID: "evt", EventType: lull.EventGenerationFailed,
		Status: lull.DeliveryPending, CreatedAt: now, UpdatedAt: now}
	if _, err := s.CreateDelivery(ctx, d); err != nil {
		t.Fatal(err)
	}
	atLeast("delivery", ttlOf("WH#"+d.WebhookID, "DLV#"+d.ID), now.Add(retention))
}
