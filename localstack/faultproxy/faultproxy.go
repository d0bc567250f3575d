// Package faultproxy is a fault-injecting HTTP reverse proxy for lull's
// chaos runs: placed in front of an AWS-protocol emulator (DynamoDB Local,
// fauxqs for SQS and S3) or an inference engine, it fails a configurable
// share of calls the way the real services do.
//
// Each call is told apart by service (X-Amz-Target for DynamoDB and SQS's
// JSON protocol, the form's Action for SQS's query protocol, anything else
// is the proxy's default service: S3 in front of fauxqs, the engine in front
// of a vLLM server) and gets one fate, drawn from a seeded generator:
//
//   - before: answered at once with a realistic error (500 InternalServerError,
//     503 ServiceUnavailable, 400 ThrottlingException or
//     ProvisionedThroughputExceededException, S3's 503 SlowDown) in the
//     service's wire shape: JSON for DynamoDB and SQS-JSON, XML for S3 and
//     SQS-query, vLLM's error object for the engine. The call never reaches
//     the target.
//   - after: forwarded (it takes effect), then the real answer is dropped and
//     an error is returned instead, as when a response is lost.
//   - cut: forwarded (it takes effect), then the connection is closed with no
//     answer at all.
//   - slow: delayed by up to Rule.SlowFor before it is forwarded.
//   - stall: held for Rule.StallFor (or until the caller gives up) before it
//     is forwarded, to push a caller past its timeout.
//
// The proxy listens on 127.0.0.1 only and forwards only to loopback
// targets. It counts calls and faults by service and kind, and Heal turns
// every fault off at once.
package faultproxy

import (
	"bytes"
	"cmp"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Service is the kind of endpoint a call is for.
type Service string

// The services the proxy tells apart.
const (
	DynamoDB Service = "dynamodb"
	SQS      Service = "sqs"
	S3       Service = "s3"
	Engine   Service = "engine"
)

// Kind is what happens to a call.
type Kind string

// The fault kinds; Pass is a call forwarded untouched.
const (
	Pass   Kind = "pass"
	Before Kind = "before"
	After  Kind = "after"
	Cut    Kind = "cut"
	Slow   Kind = "slow"
	Stall  Kind = "stall"
)

// Kinds lists the fault kinds in report order.
var Kinds = []Kind{Before, After, Cut, Slow, Stall}

// Rule gives the shares (0..1) of a service's calls that get each fault.
// The shares are drawn from one number, so they add up: their sum must not
// exceed 1.
type Rule struct {
	Before, After, Cut, Slow, Stall float64
	// SlowFor is the most a slow call is delayed (uniformly in
	// [0, SlowFor]); 200ms when zero.
	SlowFor time.Duration
	// StallFor is how long a stalled call is held before it is forwarded;
	// 30s when zero.
	StallFor time.Duration
	// Only, when set, limits faults to calls for which it returns true
	// (e.g. the engine's completions, not its /metrics); other calls pass.
	Only func(op string) bool `json:"-"`
}

func (r Rule) validate() error {
	shares := []float64{r.Before, r.After, r.Cut, r.Slow, r.Stall}
	sum := 0.0
	for _, s := range shares {
		if s < 0 || s > 1 {
			return fmt.Errorf("faultproxy: a fault share must be within 0..1, got %v", s)
		}
		sum += s
	}
	if sum > 1+1e-9 {
		return fmt.Errorf("faultproxy: fault shares add up to %v, more than 1", sum)
	}
	if r.SlowFor < 0 || r.StallFor < 0 {
		return errors.New("faultproxy: SlowFor and StallFor must not be negative")
	}
	return nil
}

// Config configures a Proxy.
type Config struct {
	// Target is the base URL calls are forwarded to; its host must be a
	// loopback address or "localhost".
	Target string
	// Default is the service of calls that name none (no X-Amz-Target, no
	// form Action): S3 in front of fauxqs, Engine in front of an engine.
	// S3 when empty.
	Default Service
	// Rules gives each service's fault shares; services without one pass
	// untouched.
	Rules map[Service]Rule
	// Seed seeds the fault draws: the same seed and the same call order
	// give the same faults.
	Seed uint64
	// Logger receives one debug line per fault; nil discards them.
	Logger *slog.Logger
}

// Proxy is a running fault-injecting reverse proxy. Its methods are safe for
// concurrent use.
type Proxy struct {
	target  *url.URL
	def     Service
	log     *slog.Logger
	rp      *httputil.ReverseProxy
	enabled atomic.Bool

	mu    sync.Mutex
	rules map[Service]Rule
	rng   *rand.Rand

	counts sync.Map // countKey → *atomic.Int64

	ln  net.Listener
	srv *http.Server
	// URL is the proxy's base URL (http://127.0.0.1:port) once started.
	URL string
}

type countKey struct {
	svc  Service
	kind Kind
}

// New validates cfg and returns a proxy with faults enabled; Start makes it
// listen.
func New(cfg Config) (*Proxy, error) {
	target, err := url.Parse(cfg.Target)
	if err != nil || target.Scheme == "" || target.Host == "" {
		return nil, fmt.Errorf("faultproxy: Target %q is not an absolute URL", cfg.Target)
	}
	if !loopback(target.Hostname()) {
		return nil, fmt.Errorf("faultproxy: Target %q is not a loopback address", cfg.Target)
	}
	for svc, r := range cfg.Rules {
		if err := r.validate(); err != nil {
			return nil, fmt.Errorf("%w (service %s)", err, svc)
		}
	}
	p := &Proxy{
		target: target, def: cmp.Or(cfg.Default, S3), log: cfg.Logger,
		rules: map[Service]Rule{}, rng: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	for svc, r := range cfg.Rules {
		p.rules[svc] = r
	}
	p.enabled.Store(true)
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			// The SDKs sign the Host header, and fauxqs builds queue URLs
			// from it: keep the proxy's.
			pr.Out.Host = pr.In.Host
		},
		Transport: &http.Transport{
			Proxy: nil, MaxIdleConns: 512, MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second,
			DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		},
		ModifyResponse: func(resp *http.Response) error {
			switch f := fateOf(resp.Request.Context()); f.kind {
			case After:
				// Read the whole answer first: the call took effect.
				_, _ = io.Copy(io.Discard, resp.Body)
				return errAfter
			case Cut:
				_, _ = io.Copy(io.Discard, resp.Body)
				return errCut
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			f := fateOf(r.Context())
			switch {
			case errors.Is(err, errAfter):
				writeError(w, r, f.svc, f.proto, f.err)
			case errors.Is(err, errCut):
				// Closes the connection without writing a response.
				panic(http.ErrAbortHandler)
			case r.Context().Err() != nil:
				// The caller went away (its timeout); nobody reads an answer.
			default:
				p.log.Warn("faultproxy: target unreachable", "target", p.target.String(), "err", err)
				w.WriteHeader(http.StatusBadGateway)
			}
		},
		ErrorLog: nil,
	}
	return p, nil
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

var (
	errAfter = errors.New("faultproxy: answer dropped after the call took effect")
	errCut   = errors.New("faultproxy: connection cut after the call took effect")
)

// Start listens on a free 127.0.0.1 port and serves until Close.
func (p *Proxy) Start() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("faultproxy: listen: %w", err)
	}
	p.ln = ln
	p.URL = "http://" + ln.Addr().String()
	p.srv = &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(slog.DiscardHandler, slog.LevelError)}
	go func() { _ = p.srv.Serve(ln) }()
	return nil
}

// Close stops listening and drops open connections.
func (p *Proxy) Close() error {
	if p.srv == nil {
		return nil
	}
	return p.srv.Close()
}

// Heal turns every fault off: from now on calls pass untouched (calls
// already held by a slow or stall fault finish as drawn).
func (p *Proxy) Heal() { p.enabled.Store(false) }

// Enable turns faults on again (the default).
func (p *Proxy) Enable() { p.enabled.Store(true) }

// SetRule replaces the rule of one service.
func (p *Proxy) SetRule(svc Service, r Rule) error {
	if err := r.validate(); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rules[svc] = r
	return nil
}

// Count is the number of calls of one service that met one fate.
type Count struct {
	Service Service
	Kind    Kind
	N       int64
}

// Counts returns every non-zero count, by service then kind (Pass counts
// the calls forwarded untouched).
func (p *Proxy) Counts() []Count {
	var out []Count
	p.counts.Range(func(k, v any) bool {
		key := k.(countKey)
		if n := v.(*atomic.Int64).Load(); n > 0 {
			out = append(out, Count{Service: key.svc, Kind: key.kind, N: n})
		}
		return true
	})
	order := append([]Kind{Pass}, Kinds...)
	slices.SortFunc(out, func(a, b Count) int {
		return cmp.Or(cmp.Compare(a.Service, b.Service),
			cmp.Compare(slices.Index(order, a.Kind), slices.Index(order, b.Kind)))
	})
	return out
}

// N returns how many calls of svc met fate kind.
func (p *Proxy) N(svc Service, kind Kind) int64 {
	if v, ok := p.counts.Load(countKey{svc, kind}); ok {
		return v.(*atomic.Int64).Load()
	}
	return 0
}

func (p *Proxy) count(svc Service, kind Kind) {
	v, _ := p.counts.LoadOrStore(countKey{svc, kind}, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
}

// fate is what was drawn for one call.
type fate struct {
	svc   Service
	op    string
	proto protocol
	kind  Kind
	err   awsError
	delay time.Duration
}

type fateKey struct{}

func fateOf(ctx context.Context) fate {
	f, _ := ctx.Value(fateKey{}).(fate)
	return f
}

// draw picks a call's fate.
func (p *Proxy) draw(svc Service, op string, proto protocol) fate {
	f := fate{svc: svc, op: op, proto: proto, kind: Pass}
	if !p.enabled.Load() {
		return f
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	r, ok := p.rules[svc]
	if !ok || (r.Only != nil && !r.Only(op)) {
		return f
	}
	x := p.rng.Float64()
	for _, c := range []struct {
		share float64
		kind  Kind
	}{{r.Before, Before}, {r.After, After}, {r.Cut, Cut}, {r.Slow, Slow}, {r.Stall, Stall}} {
		if x < c.share {
			f.kind = c.kind
			break
		}
		x -= c.share
	}
	switch f.kind {
	case Before, After:
		choices := errorsFor(svc, proto)
		f.err = choices[p.rng.IntN(len(choices))]
	case Slow:
		f.delay = time.Duration(p.rng.Int64N(int64(cmp.Or(r.SlowFor, 200*time.Millisecond)) + 1))
	case Stall:
		f.delay = cmp.Or(r.StallFor, 30*time.Second)
	}
	return f
}

// ServeHTTP implements http.Handler.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	svc, op, proto, err := p.classify(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f := p.draw(svc, op, proto)
	p.count(svc, f.kind)
	if f.kind != Pass {
		p.log.Debug("fault", "service", string(svc), "op", op, "kind", string(f.kind), "error", f.err.code, "delay", f.delay.String())
	}
	switch f.kind {
	case Before:
		writeError(w, r, svc, proto, f.err)
		return
	case Slow, Stall:
		t := time.NewTimer(f.delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	p.rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), fateKey{}, f)))
}

// protocol is the wire format a call's errors must take.
type protocol int

const (
	protoJSON    protocol = iota // awsJson1_0: DynamoDB, SQS
	protoQuery                   // SQS's query protocol (XML answers)
	protoRESTXML                 // S3
	protoOpenAI                  // an inference engine
)

// maxFormAction bounds the form body read to find an SQS query Action.
const maxFormAction = 64 << 10

// classify tells the call's service, operation and protocol. A form body is
// read (and put back) to find SQS's query Action.
func (p *Proxy) classify(r *http.Request) (Service, string, protocol, error) {
	if t := r.Header.Get("X-Amz-Target"); t != "" {
		prefix, op, _ := strings.Cut(t, ".")
		switch {
		case strings.HasPrefix(prefix, "DynamoDB"):
			return DynamoDB, op, protoJSON, nil
		case prefix == "AmazonSQS":
			return SQS, op, protoJSON, nil
		}
	}
	if r.Method == http.MethodPost && strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		body, err := io.ReadAll(io.LimitReader(r.Body, maxFormAction+1))
		if err != nil {
			return "", "", 0, fmt.Errorf("faultproxy: read form body: %w", err)
		}
		rest := r.Body
		r.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(body), rest), rest}
		if len(body) <= maxFormAction {
			if v, err := url.ParseQuery(string(body)); err == nil && v.Get("Action") != "" {
				return SQS, v.Get("Action"), protoQuery, nil
			}
		}
	}
	if a := r.URL.Query().Get("Action"); a != "" && p.def != Engine {
		return SQS, a, protoQuery, nil
	}
	if p.def == Engine {
		return Engine, r.Method + " " + r.URL.Path, protoOpenAI, nil
	}
	return p.def, s3Op(r), protoRESTXML, nil
}

// s3Op names an S3 call roughly: the method and whether it addresses a
// bucket or an object (path-style addressing).
func s3Op(r *http.Request) string {
	parts := strings.SplitN(strings.Trim(r.URL.Path, "/"), "/", 2)
	what := "Bucket"
	if len(parts) == 2 && parts[1] != "" {
		what = "Object"
	}
	return r.Method + what
}

// awsError is one realistic error answer.
type awsError struct {
	status int
	code   string
	// queryCode is the SQS query-protocol code, sent in x-amzn-query-error
	// by SQS's JSON protocol.
	queryCode string
	fault     string // Sender or Receiver
	message   string
}

var (
	dynamoErrors = []awsError{
		{status: 500, code: "InternalServerError", fault: "Receiver", message: "Internal server error"},
		{status: 503, code: "ServiceUnavailable", fault: "Receiver", message: "Service unavailable"},
		{status: 400, code: "ThrottlingException", fault: "Sender", message: "Rate of requests exceeds the allowed throughput."},
		{status: 400, code: "ProvisionedThroughputExceededException", fault: "Sender",
			message: "The level of configured provisioned throughput for the table was exceeded."},
	}
	sqsErrors = []awsError{
		{status: 500, code: "InternalError", queryCode: "InternalError", fault: "Receiver", message: "We encountered an internal error. Please try again."},
		{status: 503, code: "ServiceUnavailable", queryCode: "ServiceUnavailable", fault: "Receiver", message: "Service is unable to handle request."},
		{status: 400, code: "ThrottlingException", queryCode: "ThrottlingException", fault: "Sender", message: "Rate exceeded"},
	}
	s3Errors = []awsError{
		{status: 500, code: "InternalError", fault: "Receiver", message: "We encountered an internal error. Please try again."},
		{status: 503, code: "ServiceUnavailable", fault: "Receiver", message: "Reduce your request rate."},
		{status: 503, code: "SlowDown", fault: "Receiver", message: "Please reduce your request rate."},
	}
	engineErrors = []awsError{
		{status: 500, code: "InternalServerError", message: "Injected engine fault: internal error."},
		{status: 502, code: "BadGateway", message: "Injected engine fault: bad gateway."},
		{status: 503, code: "ServiceUnavailable", message: "Injected engine fault: overloaded."},
	}
)

func errorsFor(svc Service, proto protocol) []awsError {
	switch {
	case proto == protoOpenAI:
		return engineErrors
	case svc == DynamoDB:
		return dynamoErrors
	case svc == SQS:
		return sqsErrors
	}
	return s3Errors
}

func requestID() string {
	b := make([]byte, 16)
	_, _ = crand.Read(b)
	return strings.ToUpper(hex.EncodeToString(b))
}

// writeError answers e in the wire shape of the call's protocol.
func writeError(w http.ResponseWriter, r *http.Request, svc Service, proto protocol, e awsError) {
	id := requestID()
	h := w.Header()
	h.Set("x-amzn-RequestId", id)
	switch proto {
	case protoJSON:
		prefix := "com.amazonaws.dynamodb.v20120810#"
		if svc == SQS {
			prefix = "com.amazonaws.sqs#"
			h.Set("x-amzn-query-error", e.queryCode+";"+e.fault)
		}
		h.Set("Content-Type", "application/x-amz-json-1.0")
		body, _ := json.Marshal(map[string]string{"__type": prefix + e.code, "message": e.message})
		w.WriteHeader(e.status)
		_, _ = w.Write(body)
	case protoQuery:
		h.Set("Content-Type", "text/xml")
		w.WriteHeader(e.status)
		fmt.Fprintf(w, `<?xml version="1.0"?><ErrorResponse xmlns="http://queue.amazonaws.com/doc/2012-11-05/">`+
			`<Error><Type>%s</Type><Code>%s</Code><Message>%s</Message><Detail/></Error><RequestId>%s</RequestId></ErrorResponse>`,
			e.fault, e.code, e.message, id)
	case protoRESTXML:
		h.Set("x-amz-request-id", id)
		if r.Method == http.MethodHead {
			w.WriteHeader(e.status)
			return
		}
		h.Set("Content-Type", "application/xml")
		w.WriteHeader(e.status)
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>`+
			`<Error><Code>%s</Code><Message>%s</Message><RequestId>%s</RequestId><HostId>%s</HostId></Error>`,
			e.code, e.message, id, id)
	default:
		h.Set("Content-Type", "application/json")
		body, _ := json.Marshal(map[string]any{"object": "error", "message": e.message, "type": e.code, "param": nil, "code": e.status})
		w.WriteHeader(e.status)
		_, _ = w.Write(body)
	}
}
