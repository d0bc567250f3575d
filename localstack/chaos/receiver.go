package chaos

import (
	"crypto/hmac"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lull-ai/lull/shared/whsign"
)

// receiver is a real webhook endpoint on 127.0.0.1. It verifies every POST's
// Standard Webhooks signature with the endpoint's secret, records each
// verified event once by its webhook-id, and, while failing, answers a
// share of deliveries badly: 500, a hang past the sender's timeout, 429 or
// 503 with Retry-After, or a 500 after recording the event (the receiver
// processed it but its answer was lost).
type receiver struct {
	srv *http.Server
	url string

	mu       sync.Mutex
	secret   string
	rng      *rand.Rand
	failRate float64
	hang     time.Duration
	events   map[string]receivedEvent // webhook-id → first verified delivery
	posts    int
	dups     int
	badSig   []string
	faults   map[string]int // answer → count

	healed atomic.Bool
}

// receivedEvent is a verified delivery.
type receivedEvent struct {
	Type   string
	ObjID  string // data.id: the generation or batch
	Status string // data.status
}

// receiverFaults are the bad answers, in report order.
var receiverFaults = []string{"500", "timeout", "429+Retry-After", "503+Retry-After", "500 after processing"}

func newReceiver(seed uint64, failRate float64, hang time.Duration) (*receiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("chaos: receiver: %w", err)
	}
	rc := &receiver{
		url: "http://" + ln.Addr().String() + "/hook", rng: rand.New(rand.NewPCG(seed, seed+1)),
		failRate: failRate, hang: hang, events: map[string]receivedEvent{}, faults: map[string]int{},
	}
	rc.srv = &http.Server{Handler: rc, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = rc.srv.Serve(ln) }()
	return rc, nil
}

func (rc *receiver) setSecret(s string) {
	rc.mu.Lock()
	rc.secret = s
	rc.mu.Unlock()
}

// heal makes every later delivery succeed.
func (rc *receiver) heal() { rc.healed.Store(true) }

func (rc *receiver) close() error { return rc.srv.Close() }

// verify checks the Standard Webhooks headers of r against body.
func verify(secret string, r *http.Request, body []byte) (string, error) {
	id, ts, sigs := r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"), r.Header.Get("webhook-signature")
	if id == "" || ts == "" || sigs == "" {
		return "", errors.New("missing Standard Webhooks headers")
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || time.Since(time.Unix(sec, 0)).Abs() > 5*time.Minute {
		return "", fmt.Errorf("timestamp %q outside the 5-minute tolerance", ts)
	}
	want, err := whsign.Signature(secret, id, time.Unix(sec, 0), body)
	if err != nil {
		return "", err
	}
	for _, s := range strings.Fields(sigs) {
		if hmac.Equal([]byte(s), []byte(want)) {
			return id, nil
		}
	}
	return "", errors.New("no valid signature")
}

// ServeHTTP implements http.Handler.
func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	rc.posts++
	secret := rc.secret
	fault := ""
	if !rc.healed.Load() && rc.rng.Float64() < rc.failRate {
		fault = receiverFaults[rc.rng.IntN(len(receiverFaults))]
		rc.faults[fault]++
	}
	rc.mu.Unlock()
	switch fault {
	case "500":
		w.WriteHeader(http.StatusInternalServerError)
		return
	case "timeout":
		select {
		case <-time.After(rc.hang):
		case <-r.Context().Done():
		}
		w.WriteHeader(http.StatusGatewayTimeout)
		return
	case "429+Retry-After":
		w.Header().Set("Retry-After", "2")
		w.WriteHeader(http.StatusTooManyRequests)
		return
	case "503+Retry-After":
		w.Header().Set("Retry-After", "3")
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	id, err := verify(secret, r, body)
	if err != nil {
		rc.mu.Lock()
		rc.badSig = append(rc.badSig, err.Error())
		rc.mu.Unlock()
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var p struct {
		Type string `json:"type"`
		Data struct {
			ID     string `json:"id"`
			Status string `json:"status"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	if _, seen := rc.events[id]; seen {
		rc.dups++
	} else {
		rc.events[id] = receivedEvent{Type: p.Type, ObjID: p.Data.ID, Status: p.Data.Status}
	}
	rc.mu.Unlock()
	if fault == "500 after processing" {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// snapshot returns a copy of the verified events and the counters.
func (rc *receiver) snapshot() (events map[string]receivedEvent, posts, dups int, bad []string, faults map[string]int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	events = make(map[string]receivedEvent, len(rc.events))
	for k, v := range rc.events {
		events[k] = v
	}
	faults = make(map[string]int, len(rc.faults))
	for k, v := range rc.faults {
		faults[k] = v
	}
	return events, rc.posts, rc.dups, append([]string(nil), rc.badSig...), faults
}

// has reports whether the event with webhook-id id was received.
func (rc *receiver) has(id string) bool {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	_, ok := rc.events[id]
	return ok
}
