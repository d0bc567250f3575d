package dynamodb

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/lull-ai/lull/shared/lull"
)

// DefaultRetention is how long terminal generations and idempotency keys are
// kept before DynamoDB's TTL removes them, unless Store.Retention says otherwise.
const DefaultRetention = 30 * 24 * time.Hour

func (s *Store) retention() time.Duration {
	if s.Retention > 0 {
		return s.Retention
	}
	return DefaultRetention
}

func (s *Store) fileRetention() time.Duration {
	if s.FileRetention > 0 {
		return s.FileRetention
	}
	return s.retention()
}

// keepUntil is the TTL (Unix seconds) of an item about an object created at
// created whose completion window ends at expires: Retention after the
// later of the two. An idempotency record kept so outlives the longest
// window it can guard: a client retrying until the window ends always gets
// the same object back.
func (s *Store) keepUntil(created, expires time.Time) int64 {
	end := created
	if expires.After(end) {
		end = expires
	}
	return end.Add(s.retention()).Unix()
}

// fileTTL is the TTL of a file item: FileRetention after its creation, or
// its own expiry (expires_after) when sooner.
func (s *Store) fileTTL(f *lull.File) int64 {
	end := f.CreatedAt.Add(s.fileRetention())
	if !f.ExpiresAt.IsZero() && f.ExpiresAt.Before(end) {
		end = f.ExpiresAt
	}
	return end.Unix()
}

// UploadRetention is how long an upload's item is kept: an upload takes
// parts for an hour; the S3 lifecycle keeps uploads/ objects two days.
const UploadRetention = 24 * time.Hour

func n(v int64) types.AttributeValue    { return &types.AttributeValueMemberN{Value: fmt.Sprint(v)} }
func str(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }

// Create implements lull.Generations.
func (s *Store) Create(ctx context.Context, g *lull.Generation, fingerprint string) (*lull.Generation, bool, error) {
	rec := toRecord(g)
	if g.BatchID == "" {
		// Batch lines are left out: the batch job tracks its own enqueue
		// progress (Batches.SetSplitProgress).
		rec.GSI3PK = fmt.Sprintf("%s#%d", unenqueuedPrefix, shard(g.ID))
		rec.GSI3SK = sortKey(g.CreatedAt, g.ID)
	}
	item, err := attributevalue.MarshalMap(rec)
	if err != nil {
		return nil, false, fmt.Errorf("dynamodb: marshal generation %s: %w", g.ID, err)
	}
	if g.IdempotencyKey == "" {
		if err := s.putNew(ctx, item, "generation "+g.ID); err != nil {
			return nil, false, err
		}
		return g, true, nil
	}

	priorID, created, err := s.putOnce(ctx, idemPK(g.Tenant, "", g.IdempotencyKey), "generation_id", g.ID, fingerprint,
		s.keepUntil(g.CreatedAt, g.ExpiresAt), item, "generation "+g.ID)
	if err != nil || created {
		return g, created, err
	}
	existing, err := s.get(ctx, priorID, true)
	if err != nil {
		return nil, false, err
	}
	return existing, false, nil
}

// idemPK is the key of an idempotency record: the tenant, the kind of
// object ("" for generations, "batch#" for batches) and the client's key
// with '%' and '#' escaped, so that no client key ("batch#x") can land on
// another kind's record.
func idemPK(tenant, kind, clientKey string) string {
	return "IDEM#" + tenant + "#" + kind + idemEscaper.Replace(clientKey)
}

var idemEscaper = strings.NewReplacer("%", "%25", "#", "%23")

// putOnce writes item together with the idempotency record idemPK → id
// (idAttr names the ID's attribute), both only if absent, in one
// transaction. When idemPK is recorded already it writes nothing and
// returns the recorded ID and created=false, or ECONFLICT (param
// Idempotency-Key) when that request's fingerprint differs.
func (s *Store) putOnce(ctx context.Context, idemPK, idAttr, id, fingerprint string, ttl int64,
	item map[string]types.AttributeValue, what string) (string, bool, error) {
	notExists := aws.String("attribute_not_exists(pk)")
	idem := key(idemPK, "IDEM")
	idem[idAttr] = str(id)
	idem["fingerprint"] = str(fingerprint)
	idem["ttl"] = n(ttl)
	_, err := s.c.TransactWriteItems(ctx, &ddb.TransactWriteItemsInput{TransactItems: []types.TransactWriteItem{
		{Put: &types.Put{TableName: &s.table, Item: idem, ConditionExpression: notExists}},
		{Put: &types.Put{TableName: &s.table, Item: item, ConditionExpression: notExists}},
	}})
	if err == nil {
		return id, true, nil
	}
	if !cancelledByCondition(err, 0) {
		return "", false, wrap(err, "create %s with idempotency key", what)
	}
	prior, err := s.getItem(ctx, idemPK, "IDEM", true, "idempotency key", "idempotency key vanished")
	if err != nil {
		return "", false, err
	}
	priorID, _ := prior[idAttr].(*types.AttributeValueMemberS)
	priorFP, _ := prior["fingerprint"].(*types.AttributeValueMemberS)
	if priorID == nil || priorID.Value == "" {
		return "", false, fmt.Errorf("dynamodb: idempotency record %s is malformed", idemPK)
	}
	if priorFP == nil || priorFP.Value != fingerprint {
		return "", false, &lull.Error{Code: lull.ECONFLICT, Param: "Idempotency-Key",
			Message: "This Idempotency-Key was already used with a different request."}
	}
	return priorID.Value, false, nil
}

// Get implements lull.Generations.
func (s *Store) Get(ctx context.Context, id string) (*lull.Generation, error) {
	return s.get(ctx, id, true)
}

func (s *Store) get(ctx context.Context, id string, consistent bool) (*lull.Generation, error) {
	item, err := s.getItem(ctx, genPK(id), "GEN", consistent, "generation "+id, fmt.Sprintf("No generation found with id '%s'.", id))
	if err != nil {
		return nil, err
	}
	return decode(item)
}

func decode(item map[string]types.AttributeValue) (*lull.Generation, error) {
	var r genRecord
	if err := attributevalue.UnmarshalMap(item, &r); err != nil {
		return nil, fmt.Errorf("dynamodb: decode generation: %w", err)
	}
	return r.generation(), nil
}

// List implements lull.Generations. With a status filter it reads at most
// ListBudget items of the tenant's index per call.
func (s *Store) List(ctx context.Context, tenant string, opts lull.ListOptions) ([]*lull.Generation, string, error) {
	limit := min(max(opts.Limit, 1), 100)
	var afterAt time.Time
	if opts.After != "" {
		after, err := s.get(ctx, opts.After, false)
		if err != nil || after.Tenant != tenant {
			return nil, "", &lull.Error{Code: lull.EINVALID, Param: "after", Message: fmt.Sprintf("No generation found with id '%s'.", opts.After)}
		}
		afterAt = after.CreatedAt
	}
	in := s.newestFirst("T#"+tenant, afterAt, opts.After)
	if opts.Status != "" {
		in.FilterExpression = aws.String("#st = :st")
		in.ExpressionAttributeNames = map[string]string{"#st": "status"}
		in.ExpressionAttributeValues[":st"] = str(string(opts.Status))
	}
	var gens []*lull.Generation
	next, err := s.listPage(ctx, in, limit, func(item map[string]types.AttributeValue) (string, error) {
		g, err := decode(item)
		if err != nil {
			return "", err
		}
		gens = append(gens, g)
		return g.ID, nil
	})
	if err != nil {
		return nil, "", wrap(err, "list generations of %s", tenant)
	}
	return gens, next, nil
}

// The prefixes of gsi3's sparse partitions: generations whose job may not
// have reached a queue, and terminal ones whose event may not have been sent.
const (
	unenqueuedPrefix  = "UNENQ"
	unannouncedPrefix = "UNANN"
)

// MarkEnqueued implements lull.Generations. It leaves a generation that
// already finished (and may wait for its announcement) as it is.
func (s *Store) MarkEnqueued(ctx context.Context, id string) error {
	_, err := s.c.UpdateItem(ctx, &ddb.UpdateItemInput{
		TableName: &s.table, Key: key(genPK(id), "GEN"),
		UpdateExpression:    aws.String("REMOVE gsi3pk, gsi3sk"),
		ConditionExpression: aws.String("attribute_exists(pk) AND attribute_not_exists(unannounced)"),
	})
	if isConditionFailed(err) {
		_, gerr := s.get(ctx, id, true)
		return gerr // missing: ENOTFOUND; waiting for its announcement: nothing to do
	}
	return wrap(err, "mark generation %s enqueued", id)
}

// MarkAnnounced implements lull.Announcements.
func (s *Store) MarkAnnounced(ctx context.Context, id string) error {
	_, err := s.c.UpdateItem(ctx, &ddb.UpdateItemInput{
		TableName: &s.table, Key: key(genPK(id), "GEN"),
		UpdateExpression:    aws.String("REMOVE gsi3pk, gsi3sk, unannounced"),
		ConditionExpression: aws.String("attribute_exists(unannounced)"),
	})
	if isConditionFailed(err) {
		return nil // marked already, or never waiting
	}
	return wrap(err, "mark generation %s announced", id)
}

// Unannounced implements lull.Announcements.
func (s *Store) Unannounced(ctx context.Context, olderThan time.Time, limit int) ([]*lull.Generation, error) {
	return s.sweep(ctx, "gsi3", unannouncedPrefix, olderThan, limit)
}

var _ lull.Announcements = (*Store)(nil)

// Unenqueued implements lull.Generations.
func (s *Store) Unenqueued(ctx context.Context, olderThan time.Time, limit int) ([]*lull.Generation, error) {
	return s.sweep(ctx, "gsi3", unenqueuedPrefix, olderThan, limit)
}

// DueToExpire implements lull.Generations.
func (s *Store) DueToExpire(ctx context.Context, now time.Time, limit int) ([]*lull.Generation, error) {
	return s.sweep(ctx, "gsi2", "OPEN", now, limit)
}

// sweep reads up to limit items of a sharded sparse index whose sort key is
// before t, oldest first.
func (s *Store) sweep(ctx context.Context, index, prefix string, before time.Time, limit int) ([]*lull.Generation, error) {
	var gens []*lull.Generation
	for sh := 0; sh < Shards && len(gens) < limit; sh++ {
		in := &ddb.QueryInput{
			TableName:              &s.table,
			IndexName:              aws.String(index),
			KeyConditionExpression: aws.String(index + "pk = :pk AND " + index + "sk < :t"),
			ExpressionAttributeValues: map[string]types.AttributeValue{
				":pk": str(fmt.Sprintf("%s#%d", prefix, sh)),
				":t":  str(fmt.Sprintf("%013d", before.UnixMilli())),
			},
		}
		for len(gens) < limit {
			in.Limit = aws.Int32(int32(limit - len(gens)))
			out, err := s.c.Query(ctx, in)
			if err != nil {
				return nil, wrap(err, "query %s shard %d", index, sh)
			}
			for _, item := range out.Items {
				g, err := decode(item)
				if err != nil {
					return nil, err
				}
				gens = append(gens, g)
			}
			if len(out.LastEvaluatedKey) == 0 {
				break
			}
			in.ExclusiveStartKey = out.LastEvaluatedKey
		}
	}
	return gens, nil
}

// Start implements lull.Generations.
func (s *Store) Start(ctx context.Context, id, owner string, now, leaseUntil time.Time) (*lull.Generation, error) {
	out, err := s.c.UpdateItem(ctx, &ddb.UpdateItemInput{
		TableName: &s.table, Key: key(genPK(id), "GEN"),
		UpdateExpression: aws.String("SET #st = :run, lease_owner = :me, lease_until = :until, " +
			"started_at = if_not_exists(started_at, :now), attempts = attempts + :one"),
		ConditionExpression: aws.String("attribute_exists(pk) AND expires_at > :now AND " +
			"(#st = :queued OR (#st = :run AND (lease_until < :now OR lease_owner = :me)))"),
		ExpressionAttributeNames: map[string]string{"#st": "status"},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":run": str(string(lull.StatusInProgress)), ":queued": str(string(lull.StatusQueued)),
			":me": str(owner), ":until": n(ms(leaseUntil)), ":now": n(ms(now)), ":one": n(1),
		},
		ReturnValues: types.ReturnValueAllNew,
	})
	if isConditionFailed(err) {
		return nil, lull.Errorf(lull.ECONFLICT, "generation %s cannot start now", id)
	}
	if err != nil {
		return nil, wrap(err, "start generation %s", id)
	}
	return decode(out.Attributes)
}

// Renew implements lull.Generations.
func (s *Store) Renew(ctx context.Context, id, owner string, leaseUntil time.Time) error {
	_, err := s.c.UpdateItem(ctx, &ddb.UpdateItemInput{
		TableName: &s.table, Key: key(genPK(id), "GEN"),
		UpdateExpression:         aws.String("SET lease_until = :until"),
		ConditionExpression:      aws.String("#st = :run AND lease_owner = :me"),
		ExpressionAttributeNames: map[string]string{"#st": "status"},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":run": str(string(lull.StatusInProgress)), ":me": str(owner), ":until": n(ms(leaseUntil)),
		},
	})
	if isConditionFailed(err) {
		return lull.Errorf(lull.ECONFLICT, "lease on generation %s lost", id)
	}
	return wrap(err, "renew lease on generation %s", id)
}

// Finish implements lull.Generations.
func (s *Store) Finish(ctx context.Context, id string, to lull.Status, o lull.Outcome) (*lull.Generation, error) {
	from := to.From()
	if !to.Terminal() || len(from) == 0 {
		return nil, fmt.Errorf("dynamodb: finish generation %s: %q is not a terminal status", id, to)
	}
	names := map[string]string{"#st": "status", "#ttl": "ttl"}
	vals := map[string]types.AttributeValue{
		":to": str(string(to)), ":at": n(ms(o.At)), ":ttl": n(o.At.Add(s.retention()).Unix()),
	}
	set := []string{"#st = :to", "completed_at = :at", "#ttl = :ttl"}
	if o.ResponseKey != "" {
		set = append(set, "response_key = :rk")
		vals[":rk"] = str(o.ResponseKey)
	}
	if o.ResponseBytes > 0 {
		set = append(set, "response_bytes = :rb")
		vals[":rb"] = n(o.ResponseBytes)
	}
	remove := "gsi2pk, gsi2sk, gsi3pk, gsi3sk, lease_owner, lease_until"
	if o.Announce {
		// Listed by Unannounced until MarkAnnounced.
		set = append(set, "gsi3pk = :unann", "gsi3sk = :unannsk", "unannounced = :true")
		vals[":true"] = &types.AttributeValueMemberBOOL{Value: true}
		vals[":unann"] = str(fmt.Sprintf("%s#%d", unannouncedPrefix, shard(id)))
		vals[":unannsk"] = str(sortKey(o.At, id))
		remove = "gsi2pk, gsi2sk, lease_owner, lease_until"
	}
	if o.Usage != nil {
		u, err := attributevalue.Marshal(o.Usage)
		if err != nil {
			return nil, fmt.Errorf("dynamodb: marshal usage: %w", err)
		}
		set = append(set, "#usage = :usage")
		names["#usage"] = "usage"
		vals[":usage"] = u
	}
	if o.Failure != nil {
		f, err := attributevalue.Marshal(failureAttr{Code: o.Failure.Code, Message: o.Failure.Message})
		if err != nil {
			return nil, fmt.Errorf("dynamodb: marshal failure: %w", err)
		}
		set = append(set, "failure = :fail")
		vals[":fail"] = f
	}
	conds := make([]string, len(from))
	for i, f := range from {
		conds[i] = fmt.Sprintf("#st = :from%d", i)
		vals[fmt.Sprintf(":from%d", i)] = str(string(f))
	}
	out, err := s.c.UpdateItem(ctx, &ddb.UpdateItemInput{
		TableName: &s.table, Key: key(genPK(id), "GEN"),
		UpdateExpression:          aws.String("SET " + strings.Join(set, ", ") + " REMOVE " + remove),
		ConditionExpression:       aws.String("attribute_exists(pk) AND (" + strings.Join(conds, " OR ") + ")"),
		ExpressionAttributeNames:  names,
		ExpressionAttributeValues: vals,
		ReturnValues:              types.ReturnValueAllNew,
	})
	if isConditionFailed(err) {
		return nil, lull.Errorf(lull.ECONFLICT, "generation %s cannot become %s from its current status", id, to)
	}
	if err != nil {
		return nil, wrap(err, "finish generation %s as %s", id, to)
	}
	return decode(out.Attributes)
}

// NoteError implements lull.Generations.
func (s *Store) NoteError(ctx context.Context, id, msg string) error {
	if len(msg) > 1000 {
		msg = msg[:1000]
	}
	_, err := s.c.UpdateItem(ctx, &ddb.UpdateItemInput{
		TableName: &s.table, Key: key(genPK(id), "GEN"),
		UpdateExpression:          aws.String("SET last_error = :e"),
		ConditionExpression:       aws.String("attribute_exists(pk)"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":e": str(msg)},
	})
	if isConditionFailed(err) {
		return lull.Errorf(lull.ENOTFOUND, "No generation found with id '%s'.", id)
	}
	return wrap(err, "note error on generation %s", id)
}
