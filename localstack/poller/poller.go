// Package poller runs SQS-triggered Lambda handlers locally the way Lambda's
// event source mapping does: it receives batches, invokes the handler with an
// events.SQSEvent, deletes the records that succeeded and leaves reported
// batch item failures (or the whole batch, on a handler error) to reappear
// after their visibility timeout.
package poller

import (
	"context"
	"log/slog"
	"strconv"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/lull-ai/lull/shared/lull"
)

// Handler is an SQS-triggered Lambda handler with partial batch responses.
type Handler func(context.Context, events.SQSEvent) (events.SQSEventResponse, error)

// Poller feeds one queue to one handler.
type Poller struct {
	Name       string
	Queue      lull.Queue
	Handler    Handler
	BatchSize  int           // 10 when zero
	Visibility time.Duration // 30s when zero
	Logger     *slog.Logger
}

// Run polls until ctx is cancelled.
func (p *Poller) Run(ctx context.Context) {
	batch := p.BatchSize
	if batch == 0 {
		batch = 10
	}
	vis := p.Visibility
	if vis == 0 {
		vis = 30 * time.Second
	}
	for ctx.Err() == nil {
		msgs, err := p.Queue.Receive(ctx, batch, 5*time.Second, vis)
		if err != nil {
			if ctx.Err() == nil {
				p.Logger.WarnContext(ctx, "poll failed", "poller", p.Name, "err", err)
				time.Sleep(500 * time.Millisecond)
			}
			continue
		}
		if len(msgs) == 0 {
			continue
		}
		ev := events.SQSEvent{Records: make([]events.SQSMessage, len(msgs))}
		for i, m := range msgs {
			ev.Records[i] = events.SQSMessage{
				MessageId: m.ID, ReceiptHandle: m.Receipt, Body: string(m.Body), EventSource: "aws:sqs",
				Attributes: map[string]string{
					"ApproximateReceiveCount": strconv.Itoa(m.ReceiveCount),
					"MessageGroupId":          m.GroupID,
				},
			}
		}
		resp, err := p.Handler(ctx, ev)
		if err != nil {
			p.Logger.WarnContext(ctx, "handler failed; batch will be retried", "poller", p.Name, "records", len(msgs), "err", err)
			continue
		}
		failed := map[string]bool{}
		for _, f := range resp.BatchItemFailures {
			failed[f.ItemIdentifier] = true
		}
		for _, m := range msgs {
			if failed[m.ID] {
				continue
			}
			if err := p.Queue.Delete(context.WithoutCancel(ctx), m.Receipt); err != nil {
				p.Logger.WarnContext(ctx, "delete failed", "poller", p.Name, "message_id", m.ID, "err", err)
			}
		}
	}
}
