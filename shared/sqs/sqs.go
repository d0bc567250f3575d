// Package sqs implements lull.Queue over Amazon SQS with aws-sdk-go-v2.
package sqs

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	sqssdk "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"

	"github.com/lull-ai/lull/shared/lull"
)

// client lists the SQS calls a Queue makes.
type client interface {
	SendMessage(context.Context, *sqssdk.SendMessageInput, ...func(*sqssdk.Options)) (*sqssdk.SendMessageOutput, error)
	SendMessageBatch(context.Context, *sqssdk.SendMessageBatchInput, ...func(*sqssdk.Options)) (*sqssdk.SendMessageBatchOutput, error)
	ReceiveMessage(context.Context, *sqssdk.ReceiveMessageInput, ...func(*sqssdk.Options)) (*sqssdk.ReceiveMessageOutput, error)
	DeleteMessage(context.Context, *sqssdk.DeleteMessageInput, ...func(*sqssdk.Options)) (*sqssdk.DeleteMessageOutput, error)
	ChangeMessageVisibility(context.Context, *sqssdk.ChangeMessageVisibilityInput, ...func(*sqssdk.Options)) (*sqssdk.ChangeMessageVisibilityOutput, error)
	GetQueueAttributes(context.Context, *sqssdk.GetQueueAttributesInput, ...func(*sqssdk.Options)) (*sqssdk.GetQueueAttributesOutput, error)
}

// Queue is one SQS queue.
type Queue struct {
	c   client
	url string
}

var (
	_ lull.Queue       = (*Queue)(nil)
	_ lull.BatchSender = (*Queue)(nil)
)

// New returns the queue at url.
func New(c *sqssdk.Client, url string) *Queue { return &Queue{c: c, url: url} }

// URL returns the queue's URL.
func (q *Queue) URL() string { return q.url }

// Send implements lull.Sender.
func (q *Queue) Send(ctx context.Context, body []byte, groupID string, delay time.Duration) error {
	in := &sqssdk.SendMessageInput{QueueUrl: &q.url, MessageBody: aws.String(string(body))}
	if groupID != "" {
		in.MessageGroupId = &groupID
	}
	if delay > 0 {
		in.DelaySeconds = int32(min(delay, 15*time.Minute).Seconds())
	}
	_, err := q.c.SendMessage(ctx, in)
	return wrap(err, "send to %s", q.url)
}

// SendBatch implements lull.BatchSender with SendMessageBatch calls of up to
// ten messages. Entries SQS reports as failed are sent again (up to three
// tries) and then reported. Success is judged from the Failed list only:
// some emulators list no Successful entries.
func (q *Queue) SendBatch(ctx context.Context, bodies [][]byte, groupID string) error {
	for start := 0; start < len(bodies); start += 10 {
		chunk := bodies[start:min(start+10, len(bodies))]
		pending := make(map[string][]byte, len(chunk))
		for i, b := range chunk {
			pending[strconv.Itoa(i)] = b
		}
		for try := 0; len(pending) > 0; try++ {
			in := &sqssdk.SendMessageBatchInput{QueueUrl: &q.url}
			for id, b := range pending {
				e := types.SendMessageBatchRequestEntry{Id: aws.String(id), MessageBody: aws.String(string(b))}
				if groupID != "" {
					e.MessageGroupId = aws.String(groupID)
				}
				in.Entries = append(in.Entries, e)
			}
			out, err := q.c.SendMessageBatch(ctx, in)
			if err != nil {
				return wrap(err, "send batch to %s", q.url)
			}
			failed := make(map[string][]byte, len(out.Failed))
			var last string
			for _, f := range out.Failed {
				id := aws.ToString(f.Id)
				if b, ok := pending[id]; ok {
					failed[id] = b
				}
				last = aws.ToString(f.Code) + ": " + aws.ToString(f.Message)
			}
			if len(failed) > 0 && try == 2 {
				return fmt.Errorf("sqs: send batch to %s: %d of %d entries failed (%s)", q.url, len(failed), len(chunk), last)
			}
			pending = failed
		}
	}
	return nil
}

// Receive implements lull.Queue.
func (q *Queue) Receive(ctx context.Context, maxN int, wait, visibility time.Duration) ([]lull.Message, error) {
	out, err := q.c.ReceiveMessage(ctx, &sqssdk.ReceiveMessageInput{
		QueueUrl:            &q.url,
		MaxNumberOfMessages: int32(min(max(maxN, 1), 10)),
		WaitTimeSeconds:     int32(min(wait, 20*time.Second).Seconds()),
		VisibilityTimeout:   int32(max(visibility.Seconds(), 0)),
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{
			types.MessageSystemAttributeNameApproximateReceiveCount,
			types.MessageSystemAttributeNameMessageGroupId,
		},
	})
	if err != nil {
		return nil, wrap(err, "receive from %s", q.url)
	}
	msgs := make([]lull.Message, 0, len(out.Messages))
	for _, m := range out.Messages {
		count, _ := strconv.Atoi(m.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)])
		msgs = append(msgs, lull.Message{
			ID: aws.ToString(m.MessageId), Receipt: aws.ToString(m.ReceiptHandle), Body: []byte(aws.ToString(m.Body)),
			ReceiveCount: count, GroupID: m.Attributes[string(types.MessageSystemAttributeNameMessageGroupId)],
		})
	}
	return msgs, nil
}

// Delete implements lull.Queue.
func (q *Queue) Delete(ctx context.Context, receipt string) error {
	_, err := q.c.DeleteMessage(ctx, &sqssdk.DeleteMessageInput{QueueUrl: &q.url, ReceiptHandle: &receipt})
	return wrap(err, "delete from %s", q.url)
}

// SetVisibility implements lull.Queue.
func (q *Queue) SetVisibility(ctx context.Context, receipt string, d time.Duration) error {
	_, err := q.c.ChangeMessageVisibility(ctx, &sqssdk.ChangeMessageVisibilityInput{
		QueueUrl: &q.url, ReceiptHandle: &receipt, VisibilityTimeout: int32(max(d.Seconds(), 0)),
	})
	return wrap(err, "change visibility on %s", q.url)
}

// Depth implements lull.Queue.
func (q *Queue) Depth(ctx context.Context) (visible, inFlight int, err error) {
	out, err := q.c.GetQueueAttributes(ctx, &sqssdk.GetQueueAttributesInput{
		QueueUrl: &q.url,
		AttributeNames: []types.QueueAttributeName{
			types.QueueAttributeNameApproximateNumberOfMessages,
			types.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
		},
	})
	if err != nil {
		return 0, 0, wrap(err, "get attributes of %s", q.url)
	}
	visible, _ = strconv.Atoi(out.Attributes[string(types.QueueAttributeNameApproximateNumberOfMessages)])
	inFlight, _ = strconv.Atoi(out.Attributes[string(types.QueueAttributeNameApproximateNumberOfMessagesNotVisible)])
	return visible, inFlight, nil
}

// CreateQueue creates a queue (and, when maxReceives > 0, its dead-letter
// queue "<name>-dlq" with a redrive policy) and returns their URLs. An
// existing queue is returned as is. Used by the dev stack and tests;
// production queues come from CloudFormation.
func CreateQueue(ctx context.Context, c *sqssdk.Client, name string, visibility time.Duration, maxReceives int) (url, dlqURL string, err error) {
	attrs := map[string]string{"VisibilityTimeout": strconv.Itoa(int(visibility.Seconds()))}
	if maxReceives > 0 {
		dlq, err := c.CreateQueue(ctx, &sqssdk.CreateQueueInput{QueueName: aws.String(name + "-dlq")})
		if err != nil {
			return "", "", wrap(err, "create queue %s-dlq", name)
		}
		dlqURL = aws.ToString(dlq.QueueUrl)
		a, err := c.GetQueueAttributes(ctx, &sqssdk.GetQueueAttributesInput{
			QueueUrl: dlq.QueueUrl, AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameQueueArn},
		})
		if err != nil {
			return "", "", wrap(err, "get arn of %s-dlq", name)
		}
		attrs["RedrivePolicy"] = fmt.Sprintf(`{"deadLetterTargetArn":%q,"maxReceiveCount":"%d"}`,
			a.Attributes[string(types.QueueAttributeNameQueueArn)], maxReceives)
	}
	out, err := c.CreateQueue(ctx, &sqssdk.CreateQueueInput{QueueName: &name, Attributes: attrs})
	if err != nil {
		return "", "", wrap(err, "create queue %s", name)
	}
	return aws.ToString(out.QueueUrl), dlqURL, nil
}

func wrap(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	msg := fmt.Sprintf(format, args...)
	var api smithy.APIError
	if errors.As(err, &api) {
		switch api.ErrorCode() {
		case "RequestThrottled", "ThrottlingException", "ServiceUnavailable", "InternalError", "KmsThrottled":
			return &lull.Error{Code: lull.EUNAVAILABLE, Message: "The service is busy; retry later.", Err: fmt.Errorf("sqs: %s: %w", msg, err)}
		case "ReceiptHandleIsInvalid", "InvalidParameterValue", "MessageNotInflight", "AWS.SimpleQueueService.MessageNotInflight":
			return &lull.Error{Code: lull.ENOTFOUND, Message: "message is no longer in flight", Err: fmt.Errorf("sqs: %s: %w", msg, err)}
		}
	}
	return fmt.Errorf("sqs: %s: %w", msg, err)
}

// Senders returns one Queue per entry of urls (e.g. model → queue URL), as
// lull.Senders.
func Senders(c *sqssdk.Client, urls map[string]string) map[string]lull.Sender {
	out := make(map[string]lull.Sender, len(urls))
	for k, u := range urls {
		out[k] = New(c, u)
	}
	return out
}

// Optional returns the queue at url, or nil when url is empty (a disabled
// optional queue such as events).
func Optional(c *sqssdk.Client, url string) lull.Sender {
	if url == "" {
		return nil
	}
	return New(c, url)
}
