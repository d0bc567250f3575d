package dynamodb

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/lull-ai/lull/shared/lull"
)

var _ lull.Webhooks = (*Store)(nil)

type webhookRecord struct {
	PK              string   `dynamodbav:"pk"`
	SK              string   `dynamodbav:"sk"`
	ID              string   `dynamodbav:"id"`
	Tenant          string   `dynamodbav:"tenant"`
	URL             string   `dynamodbav:"url"`
	Description     string   `dynamodbav:"description,omitempty"`
	Events          []string `dynamodbav:"events,omitempty"`
	Secret          string   `dynamodbav:"secret"`
	PrevSecret      string   `dynamodbav:"prev_secret,omitempty"`
	PrevSecretUntil int64    `dynamodbav:"prev_secret_until,omitempty"`
	Disabled        bool     `dynamodbav:"disabled"`
	DisabledReason  string   `dynamodbav:"disabled_reason,omitempty"`
	CreatedAt       int64    `dynamodbav:"created_at"`
	UpdatedAt       int64    `dynamodbav:"updated_at,omitempty"`
	GSI1PK          string   `dynamodbav:"gsi1pk"`
	GSI1SK          string   `dynamodbav:"gsi1sk"`
}

type deliveryRecord struct {
	PK            string `dynamodbav:"pk"`
	SK            string `dynamodbav:"sk"`
	ID            string `dynamodbav:"id"`
	WebhookID     string `dynamodbav:"webhook_id"`
	Tenant        string `dynamodbav:"tenant"`
	EventID       string `dynamodbav:"event_id"`
	EventType     string `dynamodbav:"event_type"`
	GenerationID  string `dynamodbav:"generation_id,omitempty"`
	BatchID       string `dynamodbav:"batch_id,omitempty"`
	EventAt       int64  `dynamodbav:"event_at,omitempty"`
	Status        string `dynamodbav:"status"`
	CreatedAt     int64  `dynamodbav:"created_at"`
	UpdatedAt     int64  `dynamodbav:"updated_at"`
	NextAttemptAt int64  `dynamodbav:"next_attempt_at,omitempty"`
	TTL           int64  `dynamodbav:"ttl"`
}

type attemptRecord struct {
	PK         string `dynamodbav:"pk"`
	SK         string `dynamodbav:"sk"`
	N          int    `dynamodbav:"n"`
	At         int64  `dynamodbav:"at"`
	StatusCode int    `dynamodbav:"status_code"`
	LatencyMS  int64  `dynamodbav:"latency_ms"`
	Error      string `dynamodbav:"error,omitempty"`
	TTL        int64  `dynamodbav:"ttl"`
}

func whPK(id string) string { return "WH#" + id }

func (s *Store) putWebhook(ctx context.Context, w *lull.Webhook, cond string) error {
	item, err := attributevalue.MarshalMap(webhookRecord{
		PK: whPK(w.ID), SK: "WH", ID: w.ID, Tenant: w.Tenant, URL: w.URL, Description: w.Description, Events: w.Events,
		Secret: w.Secret, PrevSecret: w.PrevSecret, PrevSecretUntil: ms(w.PrevSecretUntil), Disabled: w.Disabled,
		DisabledReason: w.DisabledReason, CreatedAt: ms(w.CreatedAt), UpdatedAt: ms(w.UpdatedAt),
		GSI1PK: "T#" + w.Tenant + "#WH", GSI1SK: sortKey(w.CreatedAt, w.ID),
	})
	if err != nil {
		return fmt.Errorf("dynamodb: marshal webhook %s: %w", w.ID, err)
	}
	_, err = s.c.PutItem(ctx, &ddb.PutItemInput{TableName: &s.table, Item: item, ConditionExpression: aws.String(cond)})
	return err
}

// CreateWebhook implements lull.Webhooks.
func (s *Store) CreateWebhook(ctx context.Context, w *lull.Webhook) error {
	err := s.putWebhook(ctx, w, "attribute_not_exists(pk)")
	if isConditionFailed(err) {
		return lull.Errorf(lull.ECONFLICT, "webhook %s already exists", w.ID)
	}
	return wrap(err, "create webhook %s", w.ID)
}

// UpdateWebhook implements lull.Webhooks.
func (s *Store) UpdateWebhook(ctx context.Context, w *lull.Webhook) error {
	err := s.putWebhook(ctx, w, "attribute_exists(pk)")
	if isConditionFailed(err) {
		return lull.Errorf(lull.ENOTFOUND, "No webhook found with id '%s'.", w.ID)
	}
	return wrap(err, "update webhook %s", w.ID)
}

func (r *webhookRecord) webhook() *lull.Webhook {
	return &lull.Webhook{ID: r.ID, Tenant: r.Tenant, URL: r.URL, Description: r.Description, Events: r.Events,
		Secret: r.Secret, PrevSecret: r.PrevSecret, PrevSecretUntil: fromMS(r.PrevSecretUntil), Disabled: r.Disabled,
		DisabledReason: r.DisabledReason, CreatedAt: fromMS(r.CreatedAt), UpdatedAt: fromMS(r.UpdatedAt)}
}

// GetWebhook implements lull.Webhooks.
func (s *Store) GetWebhook(ctx context.Context, id string) (*lull.Webhook, error) {
	item, err := s.getItem(ctx, whPK(id), "WH", true, "webhook "+id, fmt.Sprintf("No webhook found with id '%s'.", id))
	if err != nil {
		return nil, err
	}
	var r webhookRecord
	if err := attributevalue.UnmarshalMap(item, &r); err != nil {
		return nil, fmt.Errorf("dynamodb: decode webhook %s: %w", id, err)
	}
	return r.webhook(), nil
}

// ListWebhooks implements lull.Webhooks.
func (s *Store) ListWebhooks(ctx context.Context, tenant string) ([]*lull.Webhook, error) {
	in := &ddb.QueryInput{
		TableName: &s.table, IndexName: aws.String("gsi1"),
		KeyConditionExpression:    aws.String("gsi1pk = :pk"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":pk": str("T#" + tenant + "#WH")},
	}
	var out []*lull.Webhook
	for {
		page, err := s.c.Query(ctx, in)
		if err != nil {
			return nil, wrap(err, "list webhooks of %s", tenant)
		}
		for _, item := range page.Items {
			var r webhookRecord
			if err := attributevalue.UnmarshalMap(item, &r); err != nil {
				return nil, fmt.Errorf("dynamodb: decode webhook: %w", err)
			}
			out = append(out, r.webhook())
		}
		if len(page.LastEvaluatedKey) == 0 {
			return out, nil
		}
		in.ExclusiveStartKey = page.LastEvaluatedKey
	}
}

// DeleteWebhook implements lull.Webhooks.
func (s *Store) DeleteWebhook(ctx context.Context, id string) error {
	_, err := s.c.DeleteItem(ctx, &ddb.DeleteItemInput{TableName: &s.table, Key: key(whPK(id), "WH"),
		ConditionExpression: aws.String("attribute_exists(pk)")})
	if isConditionFailed(err) {
		return lull.Errorf(lull.ENOTFOUND, "No webhook found with id '%s'.", id)
	}
	return wrap(err, "delete webhook %s", id)
}

// CreateDelivery implements lull.Webhooks.
func (s *Store) CreateDelivery(ctx context.Context, d *lull.Delivery) (bool, error) {
	err := s.putDelivery(ctx, d, aws.String("attribute_not_exists(pk)"))
	if isConditionFailed(err) {
		return false, nil
	}
	return err == nil, wrap(err, "create delivery %s", d.ID)
}

// SaveDelivery implements lull.Webhooks.
func (s *Store) SaveDelivery(ctx context.Context, d *lull.Delivery) error {
	var cond *string
	if d.Status == lull.DeliveryPending {
		cond = aws.String("attribute_not_exists(pk) OR #st = :pending")
	}
	err := s.putDelivery(ctx, d, cond)
	if isConditionFailed(err) {
		return nil // already finished: that state stands
	}
	return wrap(err, "save delivery %s", d.ID)
}

// ReopenDelivery implements lull.Webhooks.
func (s *Store) ReopenDelivery(ctx context.Context, d *lull.Delivery) error {
	return wrap(s.putDelivery(ctx, d, nil), "reopen delivery %s", d.ID)
}

func (s *Store) putDelivery(ctx context.Context, d *lull.Delivery, cond *string) error {
	item, err := attributevalue.MarshalMap(deliveryRecord{
		PK: whPK(d.WebhookID), SK: "DLV#" + d.ID, ID: d.ID, WebhookID: d.WebhookID, Tenant: d.Tenant, EventID: d.EventID,
		EventType: d.EventType, GenerationID: d.GenerationID, BatchID: d.BatchID, EventAt: ms(d.EventAt), Status: d.Status, CreatedAt: ms(d.CreatedAt),
		UpdatedAt: ms(d.UpdatedAt), NextAttemptAt: ms(d.NextAttemptAt), TTL: d.CreatedAt.Add(s.retention()).Unix(),
	})
	if err != nil {
		return fmt.Errorf("dynamodb: marshal delivery %s: %w", d.ID, err)
	}
	in := &ddb.PutItemInput{TableName: &s.table, Item: item, ConditionExpression: cond}
	if cond != nil && strings.Contains(*cond, ":pending") {
		in.ExpressionAttributeNames = map[string]string{"#st": "status"}
		in.ExpressionAttributeValues = map[string]types.AttributeValue{":pending": str(lull.DeliveryPending)}
	}
	_, err = s.c.PutItem(ctx, in)
	return err
}

// AddAttempt implements lull.Webhooks.
func (s *Store) AddAttempt(ctx context.Context, webhookID, deliveryID string, a lull.Attempt) error {
	item, err := attributevalue.MarshalMap(attemptRecord{
		PK: whPK(webhookID), SK: fmt.Sprintf("DLV#%s#A#%04d", deliveryID, a.N), N: a.N, At: ms(a.At),
		StatusCode: a.StatusCode, LatencyMS: a.Latency.Milliseconds(), Error: a.Error, TTL: a.At.Add(s.retention()).Unix(),
	})
	if err != nil {
		return fmt.Errorf("dynamodb: marshal attempt: %w", err)
	}
	_, err = s.c.PutItem(ctx, &ddb.PutItemInput{TableName: &s.table, Item: item})
	return wrap(err, "add attempt %d of delivery %s", a.N, deliveryID)
}

// deliveries reads delivery and attempt items whose sort key starts with prefix.
func (s *Store) deliveries(ctx context.Context, webhookID, prefix string) ([]*lull.Delivery, error) {
	in := &ddb.QueryInput{
		TableName:              &s.table,
		KeyConditionExpression: aws.String("pk = :pk AND begins_with(sk, :p)"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":pk": str(whPK(webhookID)), ":p": str(prefix),
		},
		ConsistentRead: aws.Bool(true),
	}
	byID := map[string]*lull.Delivery{}
	attempts := map[string][]lull.Attempt{}
	for {
		page, err := s.c.Query(ctx, in)
		if err != nil {
			return nil, wrap(err, "list deliveries of %s", webhookID)
		}
		for _, item := range page.Items {
			sk := item["sk"].(*types.AttributeValueMemberS).Value
			if dlv, _, isAttempt := strings.Cut(strings.TrimPrefix(sk, "DLV#"), "#A#"); isAttempt {
				var a attemptRecord
				if err := attributevalue.UnmarshalMap(item, &a); err != nil {
					return nil, fmt.Errorf("dynamodb: decode attempt: %w", err)
				}
				attempts[dlv] = append(attempts[dlv], lull.Attempt{N: a.N, At: fromMS(a.At), StatusCode: a.StatusCode,
					Latency: time.Duration(a.LatencyMS) * time.Millisecond, Error: a.Error})
				continue
			}
			var r deliveryRecord
			if err := attributevalue.UnmarshalMap(item, &r); err != nil {
				return nil, fmt.Errorf("dynamodb: decode delivery: %w", err)
			}
			byID[r.ID] = &lull.Delivery{ID: r.ID, WebhookID: r.WebhookID, Tenant: r.Tenant, EventID: r.EventID,
				EventType: r.EventType, GenerationID: r.GenerationID, BatchID: r.BatchID, EventAt: fromMS(r.EventAt),
				Status: r.Status, CreatedAt: fromMS(r.CreatedAt),
				UpdatedAt: fromMS(r.UpdatedAt), NextAttemptAt: fromMS(r.NextAttemptAt)}
		}
		if len(page.LastEvaluatedKey) == 0 {
			break
		}
		in.ExclusiveStartKey = page.LastEvaluatedKey
	}
	out := make([]*lull.Delivery, 0, len(byID))
	for id, d := range byID {
		d.Attempts = attempts[id]
		sort.Slice(d.Attempts, func(i, j int) bool { return d.Attempts[i].N < d.Attempts[j].N })
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.After(out[j].CreatedAt)
		}
		return out[i].ID > out[j].ID
	})
	return out, nil
}

// GetDelivery implements lull.Webhooks.
func (s *Store) GetDelivery(ctx context.Context, webhookID, deliveryID string) (*lull.Delivery, error) {
	ds, err := s.deliveries(ctx, webhookID, "DLV#"+deliveryID)
	if err != nil {
		return nil, err
	}
	for _, d := range ds {
		if d.ID == deliveryID {
			return d, nil
		}
	}
	return nil, lull.Errorf(lull.ENOTFOUND, "No delivery found with id '%s'.", deliveryID)
}

// ListDeliveries implements lull.Webhooks.
func (s *Store) ListDeliveries(ctx context.Context, webhookID string, limit int) ([]*lull.Delivery, error) {
	ds, err := s.deliveries(ctx, webhookID, "DLV#")
	if err != nil {
		return nil, err
	}
	if limit > 0 && len(ds) > limit {
		ds = ds[:limit]
	}
	return ds, nil
}
