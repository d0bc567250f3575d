package sqs_test

import (
	"context"
	"testing"
	"time"

	"github.com/lull-ai/lull/localstack/emutest"
	"github.com/lull-ai/lull/shared/lull"
	"github.com/lull-ai/lull/shared/sqs"
	"github.com/lull-ai/lull/shared/storetest"
)

func TestQueue(t *testing.T) {
	t.Parallel()
	for _, b := range emutest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			storetest.Queue(t, storetest.QueueQuirks{StaticReceiveCount: b.Name == "inprocess"}, func(t *testing.T, maxReceives int) (lull.Queue, lull.Queue) {
				url, dlqURL, err := sqs.CreateQueue(context.Background(), b.Clients.SQS, "q-"+lull.NewID("t")[2:], 30*time.Second, maxReceives)
				if err != nil {
					t.Fatal(err)
				}
				if dlqURL == "" {
					return sqs.New(b.Clients.SQS, url), nil
				}
				return sqs.New(b.Clients.SQS, url), sqs.New(b.Clients.SQS, dlqURL)
			})
		})
	}
}
