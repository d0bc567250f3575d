package dynamodb

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/lull-ai/lull/shared/lull"
)

// genRecord is a generation as stored. Times are Unix milliseconds so that
// condition expressions can compare them.
type genRecord struct {
	PK             string       `dynamodbav:"pk"`
	SK             string       `dynamodbav:"sk"`
	ID             string       `dynamodbav:"id"`
	Tenant         string       `dynamodbav:"tenant"`
	Model          string       `dynamodbav:"model"`
	Endpoint       string       `dynamodbav:"endpoint"`
	Status         string       `dynamodbav:"status"`
	CreatedAt      int64        `dynamodbav:"created_at"`
	StartedAt      int64        `dynamodbav:"started_at,omitempty"`
	CompletedAt    int64        `dynamodbav:"completed_at,omitempty"`
	ExpiresAt      int64        `dynamodbav:"expires_at"`
	Request        string       `dynamodbav:"request,omitempty"`
	RequestKey     string       `dynamodbav:"request_key,omitempty"`
	ResponseKey    string       `dynamodbav:"response_key,omitempty"`
	ResponseBytes  int64        `dynamodbav:"response_bytes,omitempty"`
	Usage          *lull.Usage  `dynamodbav:"usage,omitempty"`
	Failure        *failureAttr `dynamodbav:"failure,omitempty"`
	WebhookID      string       `dynamodbav:"webhook_id,omitempty"`
	IdempotencyKey string       `dynamodbav:"idem_key,omitempty"`
	BatchID        string       `dynamodbav:"batch_id,omitempty"`
	CustomID       string       `dynamodbav:"custom_id,omitempty"`
	Line           int          `dynamodbav:"line,omitempty"`
	Counted        bool         `dynamodbav:"counted,omitempty"`
	Attempts       int          `dynamodbav:"attempts"`
	LeaseOwner     string       `dynamodbav:"lease_owner,omitempty"`
	LeaseUntil     int64        `dynamodbav:"lease_until,omitempty"`
	LastError      string       `dynamodbav:"last_error,omitempty"`
	TTL            int64        `dynamodbav:"ttl,omitempty"`
	GSI1PK         string       `dynamodbav:"gsi1pk,omitempty"`
	GSI1SK         string       `dynamodbav:"gsi1sk,omitempty"`
	GSI2PK         string       `dynamodbav:"gsi2pk,omitempty"`
	GSI2SK         string       `dynamodbav:"gsi2sk,omitempty"`
	GSI3PK         string       `dynamodbav:"gsi3pk,omitempty"`
	GSI3SK         string       `dynamodbav:"gsi3sk,omitempty"`
}

type failureAttr struct {
	Code    string `dynamodbav:"code"`
	Message string `dynamodbav:"message"`
}

func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v).UTC()
}

func genPK(id string) string { return "GEN#" + id }

// linePK and lineSK are the gsi1 keys of a batch line: the batch's lines
// sort by their 0-based line number.
func linePK(batchID string) string { return "B#" + batchID }
func lineSK(line int) string       { return fmt.Sprintf("%09d", line) }

func sortKey(t time.Time, id string) string { return fmt.Sprintf("%013d#%s", t.UnixMilli(), id) }

func toRecord(g *lull.Generation) genRecord {
	r := genRecord{
		PK: genPK(g.ID), SK: "GEN", ID: g.ID, Tenant: g.Tenant, Model: g.Model,
		Endpoint: string(g.Endpoint), Status: string(g.Status),
		CreatedAt: ms(g.CreatedAt), StartedAt: ms(g.StartedAt), CompletedAt: ms(g.CompletedAt), ExpiresAt: ms(g.ExpiresAt),
		Request: string(g.Request), RequestKey: g.RequestKey, ResponseKey: g.ResponseKey, ResponseBytes: g.ResponseBytes, Usage: g.Usage,
		WebhookID: g.WebhookID, IdempotencyKey: g.IdempotencyKey, BatchID: g.BatchID, CustomID: g.CustomID, Line: g.Line,
		Attempts: g.Attempts, LeaseOwner: g.LeaseOwner, LeaseUntil: ms(g.LeaseUntil), LastError: g.LastError,
		GSI1PK: "T#" + g.Tenant, GSI1SK: sortKey(g.CreatedAt, g.ID),
	}
	if g.BatchID != "" {
		// A batch's lines are listed by the batch in input order, never
		// among the tenant's generations.
		r.GSI1PK, r.GSI1SK = linePK(g.BatchID), lineSK(g.Line)
	}
	if g.Failure != nil {
		r.Failure = &failureAttr{Code: g.Failure.Code, Message: g.Failure.Message}
	}
	if !g.Status.Terminal() {
		r.GSI2PK = fmt.Sprintf("OPEN#%d", shard(g.ID))
		r.GSI2SK = sortKey(g.ExpiresAt, g.ID)
	}
	return r
}

func (r *genRecord) generation() *lull.Generation {
	g := &lull.Generation{
		ID: r.ID, Tenant: r.Tenant, Model: r.Model, Endpoint: lull.Endpoint(r.Endpoint), Status: lull.Status(r.Status),
		CreatedAt: fromMS(r.CreatedAt), StartedAt: fromMS(r.StartedAt), CompletedAt: fromMS(r.CompletedAt), ExpiresAt: fromMS(r.ExpiresAt),
		RequestKey: r.RequestKey, ResponseKey: r.ResponseKey, ResponseBytes: r.ResponseBytes, Usage: r.Usage,
		WebhookID: r.WebhookID, IdempotencyKey: r.IdempotencyKey, BatchID: r.BatchID, CustomID: r.CustomID, Line: r.Line,
		Counted:  r.Counted,
		Attempts: r.Attempts, LeaseOwner: r.LeaseOwner, LeaseUntil: fromMS(r.LeaseUntil), LastError: r.LastError,
	}
	if r.Request != "" {
		g.Request = json.RawMessage(r.Request)
	}
	if r.Failure != nil {
		g.Failure = &lull.Failure{Code: r.Failure.Code, Message: r.Failure.Message}
	}
	return g
}
