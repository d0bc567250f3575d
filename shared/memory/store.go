package memory

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lull-ai/lull/shared/lull"
)

// Store keeps lull's state in memory. It implements lull.Generations,
// lull.APIKeys, lull.Webhooks and lull.Batches with the semantics of
// shared/dynamodb's Store. The zero value is not usable; NewStore makes one.
// It is safe for concurrent use; every method is atomic.
type Store struct {
	mu    sync.Mutex
	fault FaultFunc

	gens    map[string]*genItem
	idem    map[string]idemItem // "<tenant>#<key>" and "<tenant>#batch#<key>", '#' and '%' escaped in <key>
	keys    map[string]string   // key hash → tenant
	hooks   map[string]*lull.Webhook
	dlvs    map[dlvKey]*lull.Delivery
	tries   map[dlvKey]map[int]lull.Attempt // attempts live apart from their delivery, as in DynamoDB
	files   map[string]*lull.File
	uploads map[string]*lull.Upload
	batches map[string]*batchItem

	changed chan struct{} // closed and replaced after every call
}

var (
	_ lull.Generations = (*Store)(nil)
	_ lull.APIKeys     = (*Store)(nil)
	_ lull.Webhooks    = (*Store)(nil)
	_ lull.Batches     = (*Store)(nil)
)

// genItem is a stored generation and the index entries DynamoDB keeps for it.
type genItem struct {
	g lull.Generation
	// unenqueued: in the "job may not have reached a queue" index
	// (Create of a generation outside a batch, until MarkEnqueued or Finish).
	unenqueued bool
	// open: in the expiry index (non-terminal when written, until Finish).
	open bool
	// counted: the line was added to its batch's counters (CountLine).
	counted bool
}

type idemItem struct{ id, fingerprint string }

type dlvKey struct{ webhook, delivery string }

// NewStore returns an empty store.
func NewStore() *Store {
	return &Store{
		gens: map[string]*genItem{}, idem: map[string]idemItem{}, keys: map[string]string{},
		hooks: map[string]*lull.Webhook{}, dlvs: map[dlvKey]*lull.Delivery{}, tries: map[dlvKey]map[int]lull.Attempt{},
		files: map[string]*lull.File{}, uploads: map[string]*lull.Upload{}, batches: map[string]*batchItem{},
		changed: make(chan struct{}),
	}
}

// SetFault installs f (nil removes it): every later call asks it first
// whether to fail.
func (s *Store) SetFault(f FaultFunc) {
	s.mu.Lock()
	s.fault = f
	s.mu.Unlock()
}

// begin asks the fault function about op on key and, when the call may
// go ahead, locks the store; the caller unlocks it.
func (s *Store) begin(op, key string) error {
	s.mu.Lock()
	f := s.fault
	s.mu.Unlock()
	if f != nil {
		if err := f(op, key); err != nil {
			return err
		}
	}
	s.mu.Lock()
	return nil
}

// end wakes WaitFor callers and unlocks the store; every call that may
// change the store ends with it (reads unlock without waking anyone, so a
// WaitFor condition may read the store).
func (s *Store) end() {
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

// WaitFor blocks until cond reports true: it is called at once and again
// after every call that may change the store (reads do not wake it, so
// cond may read the store). It returns ctx's error if ctx ends first.
// Tests use it to wait for an outcome (a lease renewed, a status reached)
// without sleeping.
func (s *Store) WaitFor(ctx context.Context, cond func() bool) error {
	for {
		s.mu.Lock()
		changed := s.changed
		s.mu.Unlock()
		if cond() {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("memory: waiting on the store: %w", ctx.Err())
		case <-changed:
		}
	}
}

// ms keeps a time to the millisecond in UTC, as the DynamoDB store does
// (zero stays zero).
func ms(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return time.UnixMilli(t.UnixMilli()).UTC()
}

// msLess compares times at millisecond precision, as DynamoDB's conditions do.
func msLess(a, b time.Time) bool { return unixMS(a) < unixMS(b) }

func unixMS(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func genCopy(g *lull.Generation) *lull.Generation {
	c := *g
	c.CreatedAt, c.StartedAt, c.CompletedAt, c.ExpiresAt, c.LeaseUntil = ms(g.CreatedAt), ms(g.StartedAt), ms(g.CompletedAt), ms(g.ExpiresAt), ms(g.LeaseUntil)
	if len(g.Request) > 0 {
		c.Request = json.RawMessage(slices.Clone(g.Request))
	} else {
		c.Request = nil
	}
	if g.Usage != nil {
		u := *g.Usage
		c.Usage = &u
	}
	if g.Failure != nil {
		f := *g.Failure
		c.Failure = &f
	}
	return &c
}

func genNotFound(id string) error {
	return lull.Errorf(lull.ENOTFOUND, "No generation found with id '%s'.", id)
}

// Create implements lull.Generations.
func (s *Store) Create(_ context.Context, g *lull.Generation, fingerprint string) (*lull.Generation, bool, error) {
	if err := s.begin("Create", g.ID); err != nil {
		return nil, false, err
	}
	defer s.end()
	if g.IdempotencyKey != "" {
		k := g.Tenant + "#" + idemEscaper.Replace(g.IdempotencyKey)
		if prior, ok := s.idem[k]; ok {
			if prior.fingerprint != fingerprint {
				return nil, false, &lull.Error{Code: lull.ECONFLICT, Param: "Idempotency-Key",
					Message: "This Idempotency-Key was already used with a different request."}
			}
			it, ok := s.gens[prior.id]
			if !ok {
				return nil, false, genNotFound(prior.id)
			}
			return genCopy(&it.g), false, nil
		}
		if _, ok := s.gens[g.ID]; ok {
			return nil, false, fmt.Errorf("memory: create generation %s with idempotency key: transaction cancelled: the generation exists", g.ID)
		}
		s.idem[k] = idemItem{id: g.ID, fingerprint: fingerprint}
	} else if _, ok := s.gens[g.ID]; ok {
		return nil, false, lull.Errorf(lull.ECONFLICT, "generation %s already exists", g.ID)
	}
	s.putGen(g, g.BatchID == "")
	return g, true, nil
}

// idemEscaper escapes client idempotency keys as the DynamoDB store does,
// so that a generation's "batch#x" is not a batch's "x".
var idemEscaper = strings.NewReplacer("%", "%25", "#", "%23")

// putGen stores g as a fresh item (no existence check).
func (s *Store) putGen(g *lull.Generation, unenqueued bool) {
	s.gens[g.ID] = &genItem{g: *genCopy(g), unenqueued: unenqueued, open: !g.Status.Terminal()}
}

// Get implements lull.Generations.
func (s *Store) Get(_ context.Context, id string) (*lull.Generation, error) {
	if err := s.begin("Get", id); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	it, ok := s.gens[id]
	if !ok {
		return nil, genNotFound(id)
	}
	return genCopy(&it.g), nil
}

// newestFirst orders by (created, ID) descending, the order of the
// tenant index.
func newestFirst(aAt time.Time, aID string, bAt time.Time, bID string) int {
	if c := cmp.Compare(unixMS(bAt), unixMS(aAt)); c != 0 {
		return c
	}
	return cmp.Compare(bID, aID)
}

// olderThan reports whether (at, id) sorts after the cursor (cAt, cID) in
// newest-first order.
func olderThan(at time.Time, id string, cAt time.Time, cID string) bool {
	return newestFirst(cAt, cID, at, id) < 0
}

// List implements lull.Generations. Batch lines are not listed.
func (s *Store) List(_ context.Context, tenant string, opts lull.ListOptions) ([]*lull.Generation, string, error) {
	if err := s.begin("List", tenant); err != nil {
		return nil, "", err
	}
	defer s.mu.Unlock()
	limit := min(max(opts.Limit, 1), 100)
	var after *lull.Generation
	if opts.After != "" {
		it, ok := s.gens[opts.After]
		if !ok || it.g.Tenant != tenant {
			return nil, "", &lull.Error{Code: lull.EINVALID, Param: "after", Message: fmt.Sprintf("No generation found with id '%s'.", opts.After)}
		}
		after = &it.g
	}
	var all []*lull.Generation
	for _, it := range s.gens {
		g := &it.g
		if g.Tenant != tenant || g.BatchID != "" || (opts.Status != "" && g.Status != opts.Status) {
			continue
		}
		if after != nil && !olderThan(g.CreatedAt, g.ID, after.CreatedAt, after.ID) {
			continue
		}
		all = append(all, g)
	}
	slices.SortFunc(all, func(a, b *lull.Generation) int { return newestFirst(a.CreatedAt, a.ID, b.CreatedAt, b.ID) })
	more := len(all) > limit
	if more {
		all = all[:limit]
	}
	out := make([]*lull.Generation, len(all))
	for i, g := range all {
		out[i] = genCopy(g)
	}
	if !more {
		return out, "", nil
	}
	return out, out[len(out)-1].ID, nil
}

// MarkEnqueued implements lull.Generations.
func (s *Store) MarkEnqueued(_ context.Context, id string) error {
	if err := s.begin("MarkEnqueued", id); err != nil {
		return err
	}
	defer s.end()
	it, ok := s.gens[id]
	if !ok {
		return genNotFound(id)
	}
	it.unenqueued = false
	return nil
}

// sweep returns up to limit generations whose index entry is set by in
// and whose key time (by at) is before t, oldest first.
func (s *Store) sweep(in func(*genItem) bool, at func(*lull.Generation) time.Time, t time.Time, limit int) []*lull.Generation {
	var all []*lull.Generation
	for _, it := range s.gens {
		if in(it) && msLess(at(&it.g), t) {
			all = append(all, &it.g)
		}
	}
	slices.SortFunc(all, func(a, b *lull.Generation) int {
		return cmp.Or(cmp.Compare(unixMS(at(a)), unixMS(at(b))), cmp.Compare(a.ID, b.ID))
	})
	all = all[:min(len(all), max(limit, 0))]
	out := make([]*lull.Generation, len(all))
	for i, g := range all {
		out[i] = genCopy(g)
	}
	return out
}

// Unenqueued implements lull.Generations.
func (s *Store) Unenqueued(_ context.Context, olderThan time.Time, limit int) ([]*lull.Generation, error) {
	if err := s.begin("Unenqueued", ""); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	return s.sweep(func(it *genItem) bool { return it.unenqueued },
		func(g *lull.Generation) time.Time { return g.CreatedAt }, olderThan, limit), nil
}

// DueToExpire implements lull.Generations.
func (s *Store) DueToExpire(_ context.Context, now time.Time, limit int) ([]*lull.Generation, error) {
	if err := s.begin("DueToExpire", ""); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	return s.sweep(func(it *genItem) bool { return it.open },
		func(g *lull.Generation) time.Time { return g.ExpiresAt }, now, limit), nil
}

// Start implements lull.Generations: ECONFLICT when the generation is
// missing or terminal, its window has passed at now (a generation without
// a window never starts), or another owner's lease has not passed now.
func (s *Store) Start(_ context.Context, id, owner string, now, leaseUntil time.Time) (*lull.Generation, error) {
	if err := s.begin("Start", id); err != nil {
		return nil, err
	}
	defer s.end()
	it, ok := s.gens[id]
	if !ok {
		return nil, lull.Errorf(lull.ECONFLICT, "generation %s cannot start now", id)
	}
	g := &it.g
	if !msLess(now, g.ExpiresAt) ||
		!(g.Status == lull.StatusQueued || g.Status == lull.StatusInProgress && (msLess(g.LeaseUntil, now) || g.LeaseOwner == owner)) {
		return nil, lull.Errorf(lull.ECONFLICT, "generation %s cannot start now", id)
	}
	g.Status, g.LeaseOwner, g.LeaseUntil = lull.StatusInProgress, owner, ms(leaseUntil)
	if g.StartedAt.IsZero() {
		g.StartedAt = ms(now)
	}
	g.Attempts++
	return genCopy(g), nil
}

// Renew implements lull.Generations.
func (s *Store) Renew(_ context.Context, id, owner string, leaseUntil time.Time) error {
	if err := s.begin("Renew", id); err != nil {
		return err
	}
	defer s.end()
	it, ok := s.gens[id]
	if !ok || it.g.Status != lull.StatusInProgress || it.g.LeaseOwner != owner {
		return lull.Errorf(lull.ECONFLICT, "lease on generation %s lost", id)
	}
	it.g.LeaseUntil = ms(leaseUntil)
	return nil
}

// Finish implements lull.Generations.
func (s *Store) Finish(_ context.Context, id string, to lull.Status, o lull.Outcome) (*lull.Generation, error) {
	from := to.From()
	if !to.Terminal() || len(from) == 0 {
		return nil, fmt.Errorf("memory: finish generation %s: %q is not a terminal status", id, to)
	}
	if err := s.begin("Finish", id); err != nil {
		return nil, err
	}
	defer s.end()
	it, ok := s.gens[id]
	if !ok || !slices.Contains(from, it.g.Status) {
		return nil, lull.Errorf(lull.ECONFLICT, "generation %s cannot become %s from its current status", id, to)
	}
	g := &it.g
	g.Status, g.CompletedAt = to, ms(o.At)
	if o.ResponseKey != "" {
		g.ResponseKey = o.ResponseKey
	}
	if o.Usage != nil {
		u := *o.Usage
		g.Usage = &u
	}
	if o.Failure != nil {
		f := *o.Failure
		g.Failure = &f
	}
	g.LeaseOwner, g.LeaseUntil = "", time.Time{}
	it.open, it.unenqueued = false, false
	return genCopy(g), nil
}

// NoteError implements lull.Generations.
func (s *Store) NoteError(_ context.Context, id, msg string) error {
	if err := s.begin("NoteError", id); err != nil {
		return err
	}
	defer s.end()
	it, ok := s.gens[id]
	if !ok {
		return genNotFound(id)
	}
	if len(msg) > 1000 {
		msg = msg[:1000]
	}
	it.g.LastError = msg
	return nil
}

// Delete implements lull.Generations.
func (s *Store) Delete(_ context.Context, id string) error {
	if err := s.begin("Delete", id); err != nil {
		return err
	}
	defer s.end()
	it, ok := s.gens[id]
	if !ok {
		return genNotFound(id)
	}
	if !it.g.Status.Terminal() {
		return lull.Errorf(lull.ECONFLICT, "generation %s is %s, not terminal: it cannot be deleted yet", id, it.g.Status)
	}
	delete(s.gens, id)
	return nil
}

// TenantForKey implements lull.APIKeys.
func (s *Store) TenantForKey(_ context.Context, keyHash string) (string, error) {
	if err := s.begin("TenantForKey", keyHash); err != nil {
		return "", err
	}
	defer s.mu.Unlock()
	t, ok := s.keys[keyHash]
	if !ok || !lull.ValidTenant(t) {
		return "", lull.Errorf(lull.EUNAUTHORIZED, "Incorrect API key provided.")
	}
	return t, nil
}

// PutKey implements lull.APIKeys.
func (s *Store) PutKey(_ context.Context, keyHash, tenant string) error {
	if err := s.begin("PutKey", keyHash); err != nil {
		return err
	}
	defer s.end()
	if !lull.ValidTenant(tenant) {
		return lull.Errorf(lull.EINVALID, "invalid tenant ID %q", tenant)
	}
	s.keys[keyHash] = tenant
	return nil
}
