package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/lull-ai/lull/localstack/devstack"
	"github.com/lull-ai/lull/localstack/vllmsim"
	"github.com/lull-ai/lull/shared/dispatch"
	"github.com/lull-ai/lull/shared/lull"
	"github.com/lull-ai/lull/shared/sqs"
)

// engineLog records the bodies an engine receives.
type engineLog struct {
	mu     sync.Mutex
	bodies [][]byte
}

func (l *engineLog) record(r vllmsim.Received) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.bodies = append(l.bodies, r.Body)
}

// count returns how many received bodies contain marker.
func (l *engineLog) count(marker string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, b := range l.bodies {
		if bytes.Contains(b, []byte(marker)) {
			n++
		}
	}
	return n
}

// TestWorkerRevalidatesStoredRequests holds issue 13 a on the worker's
// side: a stored request that would not pass validation (written by an
// older version, or by anything else that reached the table and the
// queue) ends failed with invalid_request and never reaches the engine;
// a valid one runs.
func TestWorkerRevalidatesStoredRequests(t *testing.T) {
	t.Parallel()
	st := startStack(t, devstack.Config{})
	log := &engineLog{}
	st.Sim.Record(log.record)
	ctx := context.Background()
	q := sqs.New(st.Clients.SQS, st.QueueURL)
	bodies := map[string]string{
		"case":     `{"model":%q,"n":100000,"N":1,"messages":[{"role":"user","content":"%s"}]}`,
		"dup":      `{"model":%q,"max_tokens":1,"max_tokens":100000000,"messages":[{"role":"user","content":"%s"}]}`,
		"priority": `{"model":%q,"priority":-100,"messages":[{"role":"user","content":"%s"}]}`,
		"template": `{"model":%q,"chat_template":"{{ x }}","messages":[{"role":"user","content":"%s"}]}`,
		"remote":   `{"model":%q,"messages":[{"role":"user","content":[{"type":"text","text":"%s"},{"type":"image_url","image_url":{"url":"http://169.254.169.254/"}}]}]}`,
		"valid":    `{"model":%q,"max_tokens":4,"messages":[{"role":"user","content":"%s"}]}`,
	}
	ids := map[string]string{}
	now := time.Now().UTC().Truncate(time.Millisecond)
	for name, format := range bodies {
		g := &lull.Generation{ID: lull.NewID("gen"), Tenant: "dev", Model: simModel, Endpoint: lull.EndpointChat,
			Status: lull.StatusQueued, CreatedAt: now, ExpiresAt: now.Add(time.Hour),
			Request: json.RawMessage(fmt.Sprintf(format, simModel, "stored-"+name))}
		if _, _, err := st.Store.Create(ctx, g, ""); err != nil {
			t.Fatal(err)
		}
		if err := dispatch.Enqueue(ctx, st.Store, q, g); err != nil {
			t.Fatal(err)
		}
		ids[name] = g.ID
	}
	for name, id := range ids {
		g := waitTerminal(t, st, "sk-lull-dev", []string{id}, time.Minute)[id]
		want := "failed"
		if name == "valid" {
			want = "completed"
		}
		if g.Status != want {
			t.Errorf("%s: status %s (%+v), want %s", name, g.Status, g.Error, want)
		}
		if want == "failed" && (g.Error == nil || g.Error.Code != "invalid_request") {
			t.Errorf("%s: error %+v, want invalid_request", name, g.Error)
		}
		if n, wantN := log.count("stored-"+name), map[bool]int{true: 1, false: 0}[name == "valid"]; n != wantN {
			t.Errorf("%s: the engine got it %d times, want %d", name, n, wantN)
		}
	}
}

// TestDuplicateMessagesRunOnce holds issue 13 d: when a worker receives a
// second copy of the message of a generation it is running, it does not run
// the generation a second time alongside (the lease cannot tell: the owner
// is the same worker).
func TestDuplicateMessagesRunOnce(t *testing.T) {
	t.Parallel()
	st := startStack(t, devstack.Config{WorkerConcurrency: 8})
	log := &engineLog{}
	st.Sim.Record(log.record)
	st.Sim.SetDelay(700 * time.Millisecond) // both copies arrive while the first runs
	ctx := context.Background()
	id := submit(t, st.URL, "sk-lull-dev", "duplicate-me")
	g, err := st.Store.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if err := dispatch.Enqueue(ctx, st.Store, sqs.New(st.Clients.SQS, st.QueueURL), g); err != nil {
		t.Fatal(err)
	}
	if got := waitTerminal(t, st, "sk-lull-dev", []string{id}, time.Minute)[id]; got.Status != "completed" {
		t.Fatalf("status %s", got.Status)
	}
	if n := log.count("duplicate-me"); n != 1 {
		t.Fatalf("the engine ran the generation %d times, want once", n)
	}
}
