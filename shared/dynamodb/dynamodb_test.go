package dynamodb_test

import (
	"context"
	"testing"

	"github.com/lull-ai/lull/localstack/emutest"
	"github.com/lull-ai/lull/shared/dynamodb"
	"github.com/lull-ai/lull/shared/lull"
	"github.com/lull-ai/lull/shared/storetest"
)

func TestStore(t *testing.T) {
	t.Parallel()
	for _, b := range emutest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			s := dynamodb.New(b.Clients.DynamoDB, "lull-test-"+lull.NewID("t"))
			if err := s.CreateTable(context.Background()); err != nil {
				t.Fatal(err)
			}
			storetest.Generations(t, s)
			storetest.Webhooks(t, s)
			storetest.Batches(t, s, s)
		})
	}
}
