// Package chaos is lull's fault-injection harness (`make chaos`). It runs
// the dev stack on the external emulators (DynamoDB Local, fauxqs) behind
// fault-injecting proxies (localstack/faultproxy), with GPU workers as
// separate processes that it SIGKILLs mid-generation, a vLLM simulator behind
// a proxy that answers 5xx and stalls past the worker's timeout, and a real
// webhook receiver that verifies Standard Webhooks signatures and fails,
// hangs and answers 429/503 with Retry-After for a share of deliveries.
//
// It drives slow requests (Idempotency-Key, client retries), webhooks and
// batches (one cancelled midway, one expiring) while the faults are on,
// heals everything, waits (bounded) for the system to converge, and checks
// the guarantees: every accepted request terminal and completed, none
// completed twice, every terminal generation and batch delivered to the
// receiver with a verified signature, every batch terminal with each line
// exactly once in its output or error file and counts that agree.
package chaos

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lull-ai/lull/localstack/devstack"
	"github.com/lull-ai/lull/localstack/faultproxy"
	"github.com/lull-ai/lull/localstack/vllmsim"
	"github.com/lull-ai/lull/shared/awsclients"
	"github.com/lull-ai/lull/shared/lull"
)

// Config configures a run.
type Config struct {
	Profile Profile
	// Endpoints are the emulators' base URLs (LULL_EXT_* from
	// localstack/scripts/emulators.sh); the proxies go in front of them.
	Endpoints awsclients.Endpoints
	// WorkerBinary is a built gpuworker.
	WorkerBinary string
	// LogDir receives workers.log and stack.log; a new temporary directory
	// when empty.
	LogDir string
	// Logger reports progress.
	Logger *slog.Logger
}

func (c *Config) validate() error {
	var errs []error
	if c.Endpoints.DynamoDB == "" || c.Endpoints.SQS == "" || c.Endpoints.S3 == "" {
		errs = append(errs, errors.New("chaos: Endpoints needs DynamoDB, SQS and S3 (run under localstack/scripts/emulators.sh)"))
	}
	if c.WorkerBinary == "" {
		errs = append(errs, errors.New("chaos: WorkerBinary is required"))
	}
	p := c.Profile
	if p.Requests < 1 || p.Clients < 1 || p.Workers < 1 || p.WorkerConcurrency < 1 || p.Converge <= 0 || p.EngineTimeout <= 0 {
		errs = append(errs, fmt.Errorf("chaos: profile %q: Requests, Clients, Workers, WorkerConcurrency, Converge and EngineTimeout must be positive", p.Name))
	}
	return errors.Join(errs...)
}

const model = "lull-sim-1"

// run is one run's state.
type run struct {
	cfg     Config
	p       Profile
	log     *slog.Logger
	st      *devstack.Stack
	api     *client
	rc      *receiver
	pool    *workerPool
	proxies []*faultproxy.Proxy
	engine  *faultproxy.Proxy

	mu       sync.Mutex
	accepted map[int]string // request number → generation ID
	rejected []string       // final client errors
	batches  []*batchRun
	apiRetry atomic.Int64
}

type batchRun struct {
	spec      BatchSpec
	id        string
	customIDs []string
	cancelled bool   // the cancel was accepted
	cancelErr string // why not
}

// Run executes one chaos run and returns its report. The error is for runs
// that could not be carried out; broken guarantees are in Report.Failures.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.LogDir == "" {
		dir, err := os.MkdirTemp("", "lull-chaos-")
		if err != nil {
			return nil, err
		}
		cfg.LogDir = dir
	}
	if err := os.MkdirAll(cfg.LogDir, 0o755); err != nil {
		return nil, err
	}
	r := &run{cfg: cfg, p: cfg.Profile, log: cfg.Logger, accepted: map[int]string{}}
	defer r.close()
	return r.run(ctx)
}

func (r *run) close() {
	if r.pool != nil {
		r.pool.stop(15 * time.Second)
	}
	if r.st != nil {
		_ = r.st.Close()
	}
	if r.rc != nil {
		_ = r.rc.close()
	}
	for _, p := range append(r.proxies, r.engine) {
		if p != nil {
			_ = p.Close()
		}
	}
}

func (r *run) run(ctx context.Context) (*Report, error) {
	p := r.p
	started := time.Now()
	stackLog, err := os.Create(filepath.Join(r.cfg.LogDir, "stack.log"))
	if err != nil {
		return nil, err
	}
	defer stackLog.Close()
	workerLog, err := os.Create(filepath.Join(r.cfg.LogDir, "workers.log"))
	if err != nil {
		return nil, err
	}
	defer workerLog.Close()

	// Proxies in front of the emulators: one per distinct target, so that
	// fauxqs (SQS and S3 on one port) gets one proxy that tells its two
	// services apart per call. Faults stay off during setup.
	ep := r.cfg.Endpoints
	byTarget := map[string]*faultproxy.Proxy{}
	proxied := func(target string) (string, error) {
		if px, ok := byTarget[target]; ok {
			return px.URL, nil
		}
		px, err := faultproxy.New(faultproxy.Config{Target: target, Default: faultproxy.S3, Seed: p.Seed + uint64(len(byTarget))*101,
			Rules: map[faultproxy.Service]faultproxy.Rule{faultproxy.DynamoDB: p.AWS, faultproxy.SQS: p.AWS, faultproxy.S3: p.AWS}})
		if err != nil {
			return "", err
		}
		px.Heal()
		if err := px.Start(); err != nil {
			return "", err
		}
		byTarget[target] = px
		r.proxies = append(r.proxies, px)
		return px.URL, nil
	}
	var pep awsclients.Endpoints
	for _, x := range []struct {
		in  string
		out *string
	}{{ep.DynamoDB, &pep.DynamoDB}, {ep.SQS, &pep.SQS}, {ep.S3, &pep.S3}} {
		if *x.out, err = proxied(x.in); err != nil {
			return nil, err
		}
	}

	// The engine: a simulator behind its own proxy.
	sim, err := vllmsim.New(vllmsim.Config{Model: model, TimeScale: p.SimTimeScale, MaxNumSeqs: 128, KVBlocks: 8192})
	if err != nil {
		return nil, err
	}
	defer sim.Close()
	simURL, stopSim, err := serve(sim)
	if err != nil {
		return nil, err
	}
	defer stopSim()
	if r.engine, err = faultproxy.New(faultproxy.Config{Target: simURL, Default: faultproxy.Engine, Seed: p.Seed + 7,
		Rules: map[faultproxy.Service]faultproxy.Rule{faultproxy.Engine: p.Engine}}); err != nil {
		return nil, err
	}
	r.engine.Heal()
	if err := r.engine.Start(); err != nil {
		return nil, err
	}

	// The dev stack on the proxied emulators, without in-process workers.
	r.st, err = devstack.Start(ctx, devstack.Config{
		APIAddr: "127.0.0.1:0", Prefix: "chaos-" + strings.ToLower(lull.NewID("s")[2:10]), Endpoints: pep,
		VLLMURL: r.engine.URL, Workers: -1, Visibility: 10 * time.Second, SweepEvery: 2 * time.Second, SweepGrace: 3 * time.Second,
		WebhookTimeScale: p.WebhookTimeScale, WebhookTimeout: p.WebhookTimeout, MinWindow: time.Second,
		EventsVisibility: 15 * time.Second, BatchVisibility: time.Minute, BatchQuiet: 10 * time.Second,
		Logger: slog.New(slog.NewTextHandler(stackLog, &slog.HandlerOptions{Level: slog.LevelInfo})),
	})
	if err != nil {
		return nil, fmt.Errorf("chaos: start dev stack: %w", err)
	}
	r.api = &client{base: r.st.URL, key: "sk-lull-dev", http: &http.Client{Timeout: time.Minute}, tries: 12,
		retries: func() { r.apiRetry.Add(1) }}

	// The webhook receiver, registered while nothing fails.
	if r.rc, err = newReceiver(p.Seed+3, p.WebhookFail, p.WebhookTimeout+time.Second); err != nil {
		return nil, err
	}
	var wh struct{ ID, Secret string }
	if err := r.api.postJSON(ctx, "/v1/webhooks", "", map[string]any{"url": r.rc.url}, &wh); err != nil {
		return nil, fmt.Errorf("chaos: register webhook: %w", err)
	}
	r.rc.setSecret(wh.Secret)

	// Workers as processes.
	env := append(r.st.WorkerEnv(),
		"LULL_ENGINE_TIMEOUT="+p.EngineTimeout.String(), "LULL_ENGINE_RETRIES=3",
		fmt.Sprintf("LULL_CONCURRENCY=%d", p.WorkerConcurrency), "LULL_GATE=fixed")
	r.pool = newWorkerPool(r.cfg.WorkerBinary, env, workerLog, p.Seed+5)
	for range p.Workers {
		if err := r.pool.start(); err != nil {
			return nil, err
		}
	}
	r.log.Info("chaos: stack up", "profile", p.Name, "api", r.st.URL, "logs", r.cfg.LogDir, "setup", time.Since(started).Round(time.Millisecond).String())

	// Faults on.
	rep0 := &Report{}
	for _, px := range r.proxies {
		px.Enable()
	}
	r.engine.Enable()
	faultsOn := time.Now()
	var wg sync.WaitGroup
	wg.Go(func() { r.submit(ctx, faultsOn) })
	for _, spec := range p.Batches {
		b := &batchRun{spec: spec}
		r.batches = append(r.batches, b)
		wg.Go(func() { r.runBatch(ctx, b) })
	}
	wg.Go(func() { r.kill(ctx, faultsOn) })
	wg.Wait()
	if wait := p.MinFaultWindow - time.Since(faultsOn); wait > 0 {
		sleep(ctx, wait)
	}

	// Heal.
	for _, px := range r.proxies {
		px.Heal()
	}
	r.engine.Heal()
	healed := time.Now()
	r.collectFaults(rep0)
	faultWindow := healed.Sub(faultsOn)
	r.log.Info("chaos: healed", "fault_window", faultWindow.Round(time.Second).String(), "accepted", len(r.accepted))

	rep := r.converge(ctx, healed)
	rep.Faults = rep0.Faults
	rep.Profile, rep.FaultWindow, rep.Total = p.Name, faultWindow, time.Since(started)
	rep.Converged = time.Since(healed)
	r.checkFiles(ctx, rep)
	rep.evaluate()
	return rep, nil
}

// submit sends the slow requests, paced over SubmitOver, from Clients
// concurrent clients.
func (r *run) submit(ctx context.Context, from time.Time) {
	p := r.p
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range p.Clients {
		wg.Go(func() {
			for i := range jobs {
				var acc struct{ ID, Status string }
				body := chatBody(model, fmt.Sprintf("chaos request %d of run %d", i, p.Seed), p.MaxTokens)
				err := r.api.postJSON(ctx, "/v1/slow/chat/completions", fmt.Sprintf("chaos-%d-%d", p.Seed, i), body, &acc)
				r.mu.Lock()
				if err != nil || !lull.ValidID("gen", acc.ID) {
					r.rejected = append(r.rejected, fmt.Sprintf("request %d: %v", i, err))
				} else {
					r.accepted[i] = acc.ID
				}
				r.mu.Unlock()
			}
		})
	}
	for i := range p.Requests {
		at := from.Add(time.Duration(int64(p.SubmitOver) * int64(i) / int64(p.Requests)))
		sleep(ctx, time.Until(at))
		select {
		case jobs <- i:
		case <-ctx.Done():
		}
	}
	close(jobs)
	wg.Wait()
}

// runBatch uploads a batch's input, creates it (with an Idempotency-Key)
// and, for a cancelled one, cancels it once a quarter of its lines ended.
func (r *run) runBatch(ctx context.Context, b *batchRun) {
	var file bytes.Buffer
	for i := range b.spec.Lines {
		id := fmt.Sprintf("%s-%d", b.spec.Name, i)
		b.customIDs = append(b.customIDs, id)
		line := batchLine(model, id, fmt.Sprintf("batch %s line %d", b.spec.Name, i), cmp.Or(b.spec.MaxTokens, r.p.MaxTokens))
		if b.spec.IgnoreEOS {
			line = bytes.Replace(line, []byte(`"max_tokens"`), []byte(`"ignore_eos":true,"max_tokens"`), 1)
		}
		file.Write(line)
	}
	fileID, err := r.api.uploadFile(ctx, b.spec.Name+".jsonl", file.Bytes())
	if err != nil {
		b.cancelErr = "upload: " + err.Error()
		return
	}
	window := "24h"
	if b.spec.Window > 0 {
		window = fmt.Sprintf("%ds", int(b.spec.Window.Seconds()))
	}
	var created struct{ ID string }
	if err := r.api.postJSON(ctx, "/v1/batches", fmt.Sprintf("chaos-%d-batch-%s", r.p.Seed, b.spec.Name),
		map[string]any{"input_file_id": fileID, "endpoint": "/v1/chat/completions", "completion_window": window}, &created); err != nil {
		b.cancelErr = "create: " + err.Error()
		return
	}
	r.mu.Lock()
	b.id = created.ID
	r.mu.Unlock()
	if !b.spec.Cancel {
		return
	}
	// Cancel once a quarter of the lines ended, judged from a sample of
	// the lines themselves: request_counts lag behind, as the events that
	// count lines are behind the workers under load.
	const sample = 20
	for ctx.Err() == nil {
		var v batchView
		if err := r.api.get(ctx, "/v1/batches/"+b.id, &v); err == nil && lull.BatchStatus(v.Status).Terminal() {
			b.cancelErr = "the batch ended before a quarter of it did: " + v.Status
			return
		}
		ended := 0
		for i := range sample {
			var g struct{ Status string }
			if err := r.api.get(ctx, "/v1/generation/"+lull.LineID(b.id, i*b.spec.Lines/sample), &g); err == nil && lull.Status(g.Status).Terminal() {
				ended++
			}
		}
		if ended >= sample/4 {
			break
		}
		sleep(ctx, 200*time.Millisecond)
	}
	err = r.api.postJSON(ctx, "/v1/batches/"+b.id+"/cancel", "", struct{}{}, nil)
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case err == nil:
		b.cancelled = true
	case statusOf(err) == http.StatusConflict:
		b.cancelErr = "cancel refused: " + err.Error()
	default:
		// A lost answer to a cancel that took effect: the batch says.
		var v batchView
		if gerr := r.api.get(ctx, "/v1/batches/"+b.id, &v); gerr == nil && (v.Status == "cancelling" || v.Status == "cancelled") {
			b.cancelled = true
		} else {
			b.cancelErr = "cancel: " + err.Error()
		}
	}
}

// kill SIGKILLs Kills workers, spread over the submission period.
func (r *run) kill(ctx context.Context, from time.Time) {
	for k := 1; k <= r.p.Kills; k++ {
		sleep(ctx, time.Until(from.Add(time.Duration(int64(r.p.SubmitOver)*int64(k)/int64(r.p.Kills+1)))))
		if ctx.Err() != nil {
			return
		}
		name, mid, err := r.pool.killOne(10 * time.Second)
		r.log.Info("chaos: worker killed", "worker", name, "mid_generation", mid, "err", err)
	}
}

// batchView is the part of OpenAI's batch object the harness reads.
type batchView struct {
	ID            string  `json:"id"`
	Status        string  `json:"status"`
	OutputFileID  *string `json:"output_file_id"`
	ErrorFileID   *string `json:"error_file_id"`
	RequestCounts struct {
		Total, Completed, Failed int
	} `json:"request_counts"`
}

// converge polls until every accepted generation and batch is terminal and
// every expected webhook event arrived, or Converge passes.
func (r *run) converge(ctx context.Context, healed time.Time) *Report {
	rep := &Report{Generations: map[string]string{}, Batches: map[string]batchView{}}
	r.mu.Lock()
	ids := make([]string, 0, len(r.accepted))
	for _, id := range r.accepted {
		ids = append(ids, id)
	}
	rep.Requests, rep.Accepted, rep.Rejected = r.p.Requests, len(r.accepted), slices.Clone(r.rejected)
	r.mu.Unlock()
	slices.Sort(ids)
	deadline := healed.Add(r.p.Converge)
	lastLog := time.Now()
	for {
		r.pollGenerations(ctx, rep, ids)
		r.pollBatches(ctx, rep)
		missing := r.missingEvents(rep)
		if len(rep.Generations) == len(ids) && len(missing)*100 <= len(ids) {
			// The receiver keeps failing until every generation ended and
			// 99 % of the events arrived, so that its faults meet most
			// deliveries (the events pipeline runs behind the workers).
			r.rc.heal()
		}
		done := len(rep.Generations) == len(ids) && len(missing) == 0
		for _, b := range r.batches {
			if v, ok := rep.Batches[b.id]; b.id != "" && (!ok || !lull.BatchStatus(v.Status).Terminal()) {
				done = false
			}
		}
		if time.Now().After(deadline.Add(-r.p.Converge / 2)) {
			r.rc.heal()
		}
		if done || time.Now().After(deadline) || ctx.Err() != nil {
			rep.TimedOut = !done
			return rep
		}
		if time.Since(lastLog) > 10*time.Second {
			r.log.Info("chaos: converging", "terminal", len(rep.Generations), "accepted", len(ids), "events_missing", len(missing))
			lastLog = time.Now()
		}
		sleep(ctx, time.Second)
	}
}

// pollGenerations reads the generations not yet known terminal.
func (r *run) pollGenerations(ctx context.Context, rep *Report, ids []string) {
	var todo []string
	for _, id := range ids {
		if _, ok := rep.Generations[id]; !ok {
			todo = append(todo, id)
		}
	}
	var mu sync.Mutex
	work := make(chan string)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for id := range work {
				var g struct{ Status string }
				if err := r.api.get(ctx, "/v1/generation/"+id, &g); err != nil {
					continue
				}
				if lull.Status(g.Status).Terminal() {
					mu.Lock()
					rep.Generations[id] = g.Status
					mu.Unlock()
				}
			}
		})
	}
	for _, id := range todo {
		work <- id
	}
	close(work)
	wg.Wait()
}

func (r *run) pollBatches(ctx context.Context, rep *Report) {
	for _, b := range r.batches {
		if b.id == "" {
			continue
		}
		var v batchView
		if err := r.api.get(ctx, "/v1/batches/"+b.id, &v); err == nil {
			rep.Batches[b.id] = v
		}
	}
}

// missingEvents lists the webhook-ids the receiver should have and has not:
// one per terminal generation with an event type, one per terminal batch.
func (r *run) missingEvents(rep *Report) []string {
	var missing []string
	for id, status := range rep.Generations {
		if lull.EventTypeFor(lull.Status(status)) == "" {
			continue
		}
		if ev := "evt_" + strings.TrimPrefix(id, "gen_") + "_" + status; !r.rc.has(ev) {
			missing = append(missing, ev)
		}
	}
	for id, v := range rep.Batches {
		if !lull.BatchStatus(v.Status).Terminal() {
			continue
		}
		if ev := "evt_" + strings.TrimPrefix(id, "batch_") + "_" + v.Status; !r.rc.has(ev) {
			missing = append(missing, ev)
		}
	}
	slices.Sort(missing)
	return missing
}

// checkFiles reads every terminal batch's output and error files and checks
// that each input line is in exactly one of them, once, and that the counts
// agree with request_counts.
func (r *run) checkFiles(ctx context.Context, rep *Report) {
	rep.Events, rep.Posts, rep.DupPosts, rep.BadSignatures, rep.ReceiverFaults = r.rc.snapshot()
	rep.MissingEvents = r.missingEvents(rep)
	rep.CompletedTwice, rep.WorkerCompletions = r.pool.completedTwice()
	r.pool.mu.Lock()
	rep.Kills, rep.MidGenerationKills = r.pool.kills, r.pool.midKills
	r.pool.mu.Unlock()
	rep.APIRetries = r.apiRetry.Load()
	for _, b := range r.batches {
		br := BatchResult{Name: b.spec.Name, ID: b.id, Lines: b.spec.Lines, Cancelled: b.cancelled, Note: b.cancelErr}
		v, ok := rep.Batches[b.id]
		if b.id == "" || !ok {
			rep.BatchResults = append(rep.BatchResults, br)
			continue
		}
		br.Status, br.Counts = v.Status, v.RequestCounts
		seen := map[string]int{}
		read := func(id *string, into map[string]int) error {
			if id == nil {
				return nil
			}
			var body []byte
			if err := r.api.get(ctx, "/v1/files/"+*id+"/content", &body); err != nil {
				return err
			}
			for line := range bytes.SplitSeq(bytes.TrimSpace(body), []byte("\n")) {
				if len(line) == 0 {
					continue
				}
				var l struct {
					CustomID string `json:"custom_id"`
					Response *struct {
						StatusCode int             `json:"status_code"`
						Body       json.RawMessage `json:"body"`
					} `json:"response"`
					Error *struct{ Code string } `json:"error"`
				}
				if err := json.Unmarshal(line, &l); err != nil {
					return fmt.Errorf("bad line %.100s: %w", line, err)
				}
				seen[l.CustomID]++
				code := "completed"
				if l.Error != nil {
					code = l.Error.Code
				} else if l.Response == nil || l.Response.StatusCode != 200 || len(l.Response.Body) == 0 {
					code = "malformed"
				}
				into[code]++
			}
			return nil
		}
		br.Out, br.Err = map[string]int{}, map[string]int{}
		if err := read(v.OutputFileID, br.Out); err != nil {
			br.Note = strings.TrimSpace(br.Note + " output file: " + err.Error())
		}
		if err := read(v.ErrorFileID, br.Err); err != nil {
			br.Note = strings.TrimSpace(br.Note + " error file: " + err.Error())
		}
		for _, id := range b.customIDs {
			switch seen[id] {
			case 1:
				br.Once++
			case 0:
				br.Missing++
			default:
				br.Twice++
			}
			delete(seen, id)
		}
		br.Unknown = len(seen)
		rep.BatchResults = append(rep.BatchResults, br)
	}
}

func (r *run) collectFaults(rep *Report) {
	rep.Faults = map[faultproxy.Service]map[faultproxy.Kind]int64{}
	for _, px := range append(slices.Clone(r.proxies), r.engine) {
		for _, c := range px.Counts() {
			if rep.Faults[c.Service] == nil {
				rep.Faults[c.Service] = map[faultproxy.Kind]int64{}
			}
			rep.Faults[c.Service][c.Kind] += c.N
		}
	}
}

// serve runs h on a free 127.0.0.1 port.
func serve(h http.Handler) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), func() { _ = srv.Close() }, nil
}

func sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
