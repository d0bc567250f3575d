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
	Parked        bool   `dynamodbav:"parked,omitempty"`
	TTL           int64  `dynamodbav:"ttl"`
	// A webhook's deliveries are listed newest first from gsi1.
	GSI1PK string `dynamodbav:"gsi1pk"`
	GSI1SK string `dynamodbav:"gsi1sk"`
	// A parked delivery sits in gsi2 (sparse) under DUE#<shard>, by due time.
	GSI2PK string `dynamodbav:"gsi2pk,omitempty"`
	GSI2SK string `dynamodbav:"gsi2sk,omitempty"`
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

// deliveriesPK is the gsi1 partition of a webhook's deliveries.
func deliveriesPK(webhookID string) string { return "D#" + webhookID }

// MaxDeliveriesPage is the most deliveries one ListDeliveries call
// returns, and MaxListedAttempts the most recent attempts listed with each.
const (
	MaxDeliveriesPage = 100
	MaxListedAttempts = 20
)

func whCountKey(tenant string) map[string]types.AttributeValue {
	return key("WHCOUNT#"+tenant, "WHCOUNT")
}

// CreateWebhook implements lull.Webhooks: the endpoint and the tenant's
// endpoint count go in one transaction whose condition keeps the count at
// most lull.MaxWebhooksPerTenant, so concurrent registrations cannot pass
// the cap.
func (s *Store) CreateWebhook(ctx context.Context, w *lull.Webhook) error {
	events := w.Events
	if len(events) == 0 {
		events = nil // all events; an empty list would be stored as NULL and not read back
	}
	secret, err := s.seal(ctx, w.Secret, w.ID)
	if err != nil {
		return err
	}
	prev, err := s.seal(ctx, w.PrevSecret, w.ID)
	if err != nil {
		return err
	}
	item, err := attributevalue.MarshalMap(webhookRecord{
		PK: whPK(w.ID), SK: "WH", ID: w.ID, Tenant: w.Tenant, URL: w.URL, Description: w.Description, Events: events,
		Secret: secret, PrevSecret: prev, PrevSecretUntil: ms(w.PrevSecretUntil), Disabled: w.Disabled,
		DisabledReason: w.DisabledReason, CreatedAt: ms(w.CreatedAt), UpdatedAt: ms(w.UpdatedAt),
		GSI1PK: "T#" + w.Tenant + "#WH", GSI1SK: sortKey(w.CreatedAt, w.ID),
	})
	if err != nil {
		return fmt.Errorf("dynamodb: marshal webhook %s: %w", w.ID, err)
	}
	_, err = s.c.TransactWriteItems(ctx, &ddb.TransactWriteItemsInput{TransactItems: []types.TransactWriteItem{
		{Put: &types.Put{TableName: &s.table, Item: item, ConditionExpression: aws.String("attribute_not_exists(pk)")}},
		{Update: &types.Update{TableName: &s.table, Key: whCountKey(w.Tenant),
			UpdateExpression:          aws.String("SET n = if_not_exists(n, :zero) + :one"),
			ConditionExpression:       aws.String("attribute_not_exists(n) OR n < :max"),
			ExpressionAttributeValues: map[string]types.AttributeValue{":zero": n(0), ":one": n(1), ":max": n(lull.MaxWebhooksPerTenant)},
		}},
	}})
	switch {
	case cancelledByCondition(err, 0):
		return lull.Errorf(lull.ECONFLICT, "webhook %s already exists", w.ID)
	case cancelledByCondition(err, 1):
		return lull.Errorf(lull.EINVALID, "A tenant may register at most %d webhook endpoints.", lull.MaxWebhooksPerTenant)
	}
	return wrap(err, "create webhook %s", w.ID)
}

// EditWebhook implements lull.Webhooks with a partial update of the
// endpoint's settings.
func (s *Store) EditWebhook(ctx context.Context, w *lull.Webhook) error {
	set := []string{"#url = :url", "updated_at = :at"}
	var remove []string
	vals := map[string]types.AttributeValue{":url": str(w.URL), ":at": n(ms(w.UpdatedAt))}
	if w.Description == "" {
		remove = append(remove, "description")
	} else {
		set = append(set, "description = :d")
		vals[":d"] = str(w.Description)
	}
	if len(w.Events) == 0 {
		remove = append(remove, "events") // every event
	} else {
		ev, err := attributevalue.Marshal(w.Events)
		if err != nil {
			return fmt.Errorf("dynamodb: marshal events of webhook %s: %w", w.ID, err)
		}
		set = append(set, "events = :ev")
		vals[":ev"] = ev
	}
	update := "SET " + strings.Join(set, ", ")
	if len(remove) > 0 {
		update += " REMOVE " + strings.Join(remove, ", ")
	}
	_, err := s.c.UpdateItem(ctx, &ddb.UpdateItemInput{
		TableName: &s.table, Key: key(whPK(w.ID), "WH"),
		UpdateExpression:          aws.String(update),
		ConditionExpression:       aws.String("attribute_exists(pk)"),
		ExpressionAttributeNames:  map[string]string{"#url": "url"},
		ExpressionAttributeValues: vals,
	})
	if isConditionFailed(err) {
		return lull.Errorf(lull.ENOTFOUND, "No webhook found with id '%s'.", w.ID)
	}
	return wrap(err, "edit webhook %s", w.ID)
}

// DisableWebhook implements lull.Webhooks with a partial update: nothing
// else of the endpoint (a secret rotated meanwhile) is written.
func (s *Store) DisableWebhook(ctx context.Context, id, reason string) error {
	_, err := s.c.UpdateItem(ctx, &ddb.UpdateItemInput{
		TableName: &s.table, Key: key(whPK(id), "WH"),
		UpdateExpression:    aws.String("SET disabled = :t, disabled_reason = :r"),
		ConditionExpression: aws.String("attribute_exists(pk)"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":t": &types.AttributeValueMemberBOOL{Value: true}, ":r": str(reason),
		},
	})
	if isConditionFailed(err) {
		return lull.Errorf(lull.ENOTFOUND, "No webhook found with id '%s'.", id)
	}
	return wrap(err, "disable webhook %s", id)
}

// RotateSecret implements lull.Webhooks with a partial update conditional
// on the stored (sealed) current secret, which becomes the previous one.
func (s *Store) RotateSecret(ctx context.Context, id, oldSecret, newSecret string, at, prevUntil time.Time) error {
	item, err := s.getItem(ctx, whPK(id), "WH", true, "webhook "+id, fmt.Sprintf("No webhook found with id '%s'.", id))
	if err != nil {
		return err
	}
	stored, _ := item["secret"].(*types.AttributeValueMemberS)
	if stored == nil {
		return fmt.Errorf("dynamodb: webhook %s has no secret", id)
	}
	current, err := s.open(ctx, stored.Value, id)
	if err != nil {
		return err
	}
	if current != oldSecret {
		return lull.Errorf(lull.ECONFLICT, "The secret of webhook %s was rotated meanwhile; rotate again.", id)
	}
	sealed, err := s.seal(ctx, newSecret, id)
	if err != nil {
		return err
	}
	update := "SET secret = :new, prev_secret = :old, prev_secret_until = :until, updated_at = :at"
	vals := map[string]types.AttributeValue{":new": str(sealed), ":old": str(stored.Value), ":until": n(ms(prevUntil)), ":at": n(ms(at))}
	if prevUntil.IsZero() {
		update = "SET secret = :new, updated_at = :at REMOVE prev_secret, prev_secret_until"
		delete(vals, ":until")
	}
	_, err = s.c.UpdateItem(ctx, &ddb.UpdateItemInput{
		TableName: &s.table, Key: key(whPK(id), "WH"),
		UpdateExpression:          aws.String(update),
		ConditionExpression:       aws.String("attribute_exists(pk) AND secret = :old"),
		ExpressionAttributeValues: vals,
	})
	if isConditionFailed(err) {
		if _, gerr := s.GetWebhook(ctx, id); lull.IsNotFound(gerr) {
			return gerr
		}
		return lull.Errorf(lull.ECONFLICT, "The secret of webhook %s was rotated meanwhile; rotate again.", id)
	}
	return wrap(err, "rotate secret of webhook %s", id)
}

// webhook decodes r, opening its sealed secrets.
func (s *Store) webhook(ctx context.Context, r *webhookRecord) (*lull.Webhook, error) {
	secret, err := s.open(ctx, r.Secret, r.ID)
	if err != nil {
		return nil, err
	}
	prev, err := s.open(ctx, r.PrevSecret, r.ID)
	if err != nil {
		return nil, err
	}
	return &lull.Webhook{ID: r.ID, Tenant: r.Tenant, URL: r.URL, Description: r.Description, Events: r.Events,
		Secret: secret, PrevSecret: prev, PrevSecretUntil: fromMS(r.PrevSecretUntil), Disabled: r.Disabled,
		DisabledReason: r.DisabledReason, CreatedAt: fromMS(r.CreatedAt), UpdatedAt: fromMS(r.UpdatedAt)}, nil
}

// seal returns what to store for the webhook id's secret: sealed with
// Store.Sealer, or as is without one.
func (s *Store) seal(ctx context.Context, secret, id string) (string, error) {
	if secret == "" || s.Sealer == nil {
		return secret, nil
	}
	out, err := s.Sealer.Seal(ctx, []byte(secret), id)
	if err != nil {
		return "", fmt.Errorf("dynamodb: seal secret of webhook %s: %w", id, err)
	}
	return out, nil
}

// open returns the secret stored as stored for webhook id. Secrets written
// before sealing began ("whsec_…") read as they are.
func (s *Store) open(ctx context.Context, stored, id string) (string, error) {
	if stored == "" || strings.HasPrefix(stored, "whsec_") {
		return stored, nil
	}
	if s.Sealer == nil {
		return "", fmt.Errorf("dynamodb: webhook %s has a sealed secret and the store has no Sealer", id)
	}
	b, err := s.Sealer.Open(ctx, stored, id)
	if err != nil {
		return "", fmt.Errorf("dynamodb: open secret of webhook %s: %w", id, err)
	}
	return string(b), nil
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
	return s.webhook(ctx, &r)
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
			w, err := s.webhook(ctx, &r)
			if err != nil {
				return nil, err
			}
			out = append(out, w)
		}
		if len(page.LastEvaluatedKey) == 0 {
			return out, nil
		}
		in.ExclusiveStartKey = page.LastEvaluatedKey
	}
}

// DeleteWebhook implements lull.Webhooks; the tenant's endpoint count
// goes down in the same transaction.
func (s *Store) DeleteWebhook(ctx context.Context, id string) error {
	w, err := s.GetWebhook(ctx, id)
	if err != nil {
		return err
	}
	del := types.TransactWriteItem{Delete: &types.Delete{TableName: &s.table, Key: key(whPK(id), "WH"),
		ConditionExpression: aws.String("attribute_exists(pk)")}}
	_, err = s.c.TransactWriteItems(ctx, &ddb.TransactWriteItemsInput{TransactItems: []types.TransactWriteItem{del,
		{Update: &types.Update{TableName: &s.table, Key: whCountKey(w.Tenant),
			UpdateExpression:          aws.String("SET n = n - :one"),
			ConditionExpression:       aws.String("n > :zero"),
			ExpressionAttributeValues: map[string]types.AttributeValue{":zero": n(0), ":one": n(1)},
		}},
	}})
	if cancelledByCondition(err, 1) && !cancelledByCondition(err, 0) {
		// No count to decrement (an endpoint created before counting began).
		_, err = s.c.DeleteItem(ctx, &ddb.DeleteItemInput{TableName: &s.table, Key: key(whPK(id), "WH"),
			ConditionExpression: aws.String("attribute_exists(pk)")})
		if isConditionFailed(err) {
			return lull.Errorf(lull.ENOTFOUND, "No webhook found with id '%s'.", id)
		}
	}
	if cancelledByCondition(err, 0) {
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
	r := deliveryRecord{
		PK: whPK(d.WebhookID), SK: "DLV#" + d.ID, ID: d.ID, WebhookID: d.WebhookID, Tenant: d.Tenant, EventID: d.EventID,
		EventType: d.EventType, GenerationID: d.GenerationID, BatchID: d.BatchID, EventAt: ms(d.EventAt), Status: d.Status, CreatedAt: ms(d.CreatedAt),
		UpdatedAt: ms(d.UpdatedAt), NextAttemptAt: ms(d.NextAttemptAt), TTL: d.CreatedAt.Add(s.retention()).Unix(),
		GSI1PK: deliveriesPK(d.WebhookID), GSI1SK: sortKey(d.CreatedAt, d.ID),
	}
	if d.Parked && d.Status == lull.DeliveryPending && !d.NextAttemptAt.IsZero() {
		r.Parked, r.GSI2PK, r.GSI2SK = true, fmt.Sprintf("DUE#%d", shard(d.ID)), sortKey(d.NextAttemptAt, d.ID)
	}
	item, err := attributevalue.MarshalMap(r)
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

func (r *deliveryRecord) delivery() *lull.Delivery {
	return &lull.Delivery{ID: r.ID, WebhookID: r.WebhookID, Tenant: r.Tenant, EventID: r.EventID,
		EventType: r.EventType, GenerationID: r.GenerationID, BatchID: r.BatchID, EventAt: fromMS(r.EventAt),
		Status: r.Status, CreatedAt: fromMS(r.CreatedAt),
		UpdatedAt: fromMS(r.UpdatedAt), NextAttemptAt: fromMS(r.NextAttemptAt), Parked: r.Parked}
}

func (a *attemptRecord) attempt() lull.Attempt {
	return lull.Attempt{N: a.N, At: fromMS(a.At), StatusCode: a.StatusCode,
		Latency: time.Duration(a.LatencyMS) * time.Millisecond, Error: a.Error}
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
				attempts[dlv] = append(attempts[dlv], a.attempt())
				continue
			}
			var r deliveryRecord
			if err := attributevalue.UnmarshalMap(item, &r); err != nil {
				return nil, fmt.Errorf("dynamodb: decode delivery: %w", err)
			}
			byID[r.ID] = r.delivery()
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

// ListDeliveries implements lull.Webhooks: one query of the webhook's
// deliveries by time (at most MaxDeliveriesPage) and one per delivery for
// its MaxListedAttempts most recent attempts; never the whole history.
func (s *Store) ListDeliveries(ctx context.Context, webhookID, after string, limit int) ([]*lull.Delivery, string, error) {
	limit = min(max(limit, 1), MaxDeliveriesPage)
	var afterAt time.Time
	if after != "" {
		item, err := s.getItem(ctx, whPK(webhookID), "DLV#"+after, false, "delivery "+after, "")
		if lull.IsNotFound(err) {
			return nil, "", &lull.Error{Code: lull.EINVALID, Param: "after", Message: fmt.Sprintf("No delivery found with id '%s'.", after)}
		}
		if err != nil {
			return nil, "", err
		}
		var r deliveryRecord
		if err := attributevalue.UnmarshalMap(item, &r); err != nil {
			return nil, "", fmt.Errorf("dynamodb: decode delivery: %w", err)
		}
		afterAt = fromMS(r.CreatedAt)
	}
	in := s.newestFirst(deliveriesPK(webhookID), afterAt, after)
	var out []*lull.Delivery
	next, err := s.listPage(ctx, in, limit, func(item map[string]types.AttributeValue) (string, error) {
		var r deliveryRecord
		if err := attributevalue.UnmarshalMap(item, &r); err != nil {
			return "", fmt.Errorf("dynamodb: decode delivery: %w", err)
		}
		out = append(out, r.delivery())
		return r.ID, nil
	})
	if err != nil {
		return nil, "", wrap(err, "list deliveries of %s", webhookID)
	}
	if next != "" {
		next = out[len(out)-1].ID // the index key's pk names the webhook
	}
	for _, d := range out {
		q := &ddb.QueryInput{
			TableName:              &s.table,
			KeyConditionExpression: aws.String("pk = :pk AND begins_with(sk, :p)"),
			ExpressionAttributeValues: map[string]types.AttributeValue{
				":pk": str(whPK(webhookID)), ":p": str("DLV#" + d.ID + "#A#"),
			},
			ScanIndexForward: aws.Bool(false),
			Limit:            aws.Int32(MaxListedAttempts),
		}
		page, err := s.c.Query(ctx, q)
		if err != nil {
			return nil, "", wrap(err, "list attempts of delivery %s", d.ID)
		}
		for i := len(page.Items) - 1; i >= 0; i-- {
			var a attemptRecord
			if err := attributevalue.UnmarshalMap(page.Items[i], &a); err != nil {
				return nil, "", fmt.Errorf("dynamodb: decode attempt: %w", err)
			}
			d.Attempts = append(d.Attempts, a.attempt())
		}
	}
	return out, next, nil
}

// DueDeliveries implements lull.Webhooks: one query per DUE shard of gsi2,
// bounded by limit.
func (s *Store) DueDeliveries(ctx context.Context, now time.Time, limit int) ([]*lull.Delivery, error) {
	var out []*lull.Delivery
	for sh := 0; sh < Shards && len(out) < limit; sh++ {
		in := &ddb.QueryInput{
			TableName:              &s.table,
			IndexName:              aws.String("gsi2"),
			KeyConditionExpression: aws.String("gsi2pk = :pk AND gsi2sk < :t"),
			ExpressionAttributeValues: map[string]types.AttributeValue{
				":pk": str(fmt.Sprintf("DUE#%d", sh)), ":t": str(fmt.Sprintf("%013d", now.UnixMilli()+1)),
			},
		}
		for len(out) < limit {
			in.Limit = aws.Int32(int32(limit - len(out)))
			page, err := s.c.Query(ctx, in)
			if err != nil {
				return nil, wrap(err, "query due deliveries, shard %d", sh)
			}
			for _, item := range page.Items {
				var r deliveryRecord
				if err := attributevalue.UnmarshalMap(item, &r); err != nil {
					return nil, fmt.Errorf("dynamodb: decode delivery: %w", err)
				}
				out = append(out, r.delivery())
			}
			if len(page.LastEvaluatedKey) == 0 {
				break
			}
			in.ExclusiveStartKey = page.LastEvaluatedKey
		}
	}
	return out, nil
}

// Unpark implements lull.Webhooks with an UpdateItem conditional on the
// due time.
func (s *Store) Unpark(ctx context.Context, webhookID, deliveryID string, due time.Time) error {
	_, err := s.c.UpdateItem(ctx, &ddb.UpdateItemInput{
		TableName: &s.table, Key: key(whPK(webhookID), "DLV#"+deliveryID),
		UpdateExpression:          aws.String("REMOVE parked, gsi2pk, gsi2sk"),
		ConditionExpression:       aws.String("attribute_exists(pk) AND next_attempt_at = :due"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":due": n(ms(due))},
	})
	if isConditionFailed(err) {
		return nil
	}
	return wrap(err, "unpark delivery %s", deliveryID)
}
