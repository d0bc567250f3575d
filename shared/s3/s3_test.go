package s3_test

import (
	"context"
	"testing"

	"github.com/lull-ai/lull/localstack/emutest"
	"github.com/lull-ai/lull/shared/lull"
	"github.com/lull-ai/lull/shared/s3"
	"github.com/lull-ai/lull/shared/storetest"
)

func TestBlobs(t *testing.T) {
	t.Parallel()
	for _, b := range emutest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			bucket := "lull-test-" + lull.NewID("b")[2:12]
			if err := s3.CreateBucket(context.Background(), b.Clients.S3, bucket); err != nil {
				t.Fatal(err)
			}
			storetest.Blobs(t, s3.New(b.Clients.S3, bucket))
		})
	}
}
