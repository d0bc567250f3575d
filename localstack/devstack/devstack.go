// Package devstack runs the whole of lull on one machine: AWS-protocol
// emulators (in-process, or external ones such as LocalStack), the table,
// queues and bucket, the API on a local port, GPU workers against a vLLM
// simulator (or a real engine), the DLQ consumer through a local event-source
// poller, and the sweeper on a ticker. `make run` and the integration tests
// both use it.
//
// Every component is built by the same constructor its deployed binary calls
// (apilambda, webhookslambda, batchlambda, dlqlambda, scalerlambda,
// awsworker) from the same settings structs, filled from their defaults
// (envconfig.Defaults) and the resources the stack creates; the stack
// changes a setting only where Config asks it to.
package devstack

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/lull-ai/lull/gpuworker/awsworker"
	"github.com/lull-ai/lull/gpuworker/worker"
	"github.com/lull-ai/lull/lambdas/api/apilambda"
	"github.com/lull-ai/lull/lambdas/api/httpapi"
	"github.com/lull-ai/lull/lambdas/batch/batchlambda"
	"github.com/lull-ai/lull/lambdas/dlq/dlqlambda"
	"github.com/lull-ai/lull/lambdas/scaler/scalerlambda"
	"github.com/lull-ai/lull/lambdas/webhooks/webhookslambda"
	"github.com/lull-ai/lull/localstack/emulators"
	"github.com/lull-ai/lull/localstack/poller"
	"github.com/lull-ai/lull/localstack/vllmsim"
	"github.com/lull-ai/lull/shared/awsclients"
	"github.com/lull-ai/lull/shared/dynamodb"
	"github.com/lull-ai/lull/shared/envconfig"
	"github.com/lull-ai/lull/shared/lull"
	"github.com/lull-ai/lull/shared/request"
	"github.com/lull-ai/lull/shared/s3"
	"github.com/lull-ai/lull/shared/sealing"
	"github.com/lull-ai/lull/shared/settings"
	"github.com/lull-ai/lull/shared/sqs"
)

// Config configures a dev stack. Zero values take the defaults noted.
type Config struct {
	// APIAddr is where the API listens; "127.0.0.1:8080" by default, ":0"
	// style addresses pick a free port.
	APIAddr string
	// DevAPIKey is seeded for tenant "dev"; "sk-lull-dev" by default.
	DevAPIKey string
	// Model is the generation model served; "lull-sim-1" by default.
	Model string
	// EmbedModel is the embedding model served, by its own simulator,
	// queue and worker; "lull-sim-embed-1" by default, "-" for none. With
	// VLLMURL set there is none unless EmbedVLLMURL names its engine.
	EmbedModel string
	// EmbedVLLMURL points the embedding worker at an external engine.
	EmbedVLLMURL string
	// VLLMURL points the workers at an external OpenAI-compatible engine
	// instead of the built-in simulator.
	VLLMURL string
	// Endpoints uses external emulators (LocalStack, DynamoDB Local, fauxqs)
	// instead of the in-process ones when set.
	Endpoints awsclients.Endpoints
	// Prefix names the resources (table, queues, bucket); "lull-dev" by default.
	Prefix string
	// Workers is the number of GPU workers; 1 by default, -1 for none.
	Workers int
	// Gate is the workers' load gate ("fixed", "metrics" or "queue-depth");
	// worker.Config's default when empty.
	Gate string
	// WorkerConcurrency is each worker's concurrency; worker.Config's
	// default when zero.
	WorkerConcurrency int
	// DrainTimeout bounds how long a stopping worker lets generations
	// finish; 30s by default (a dev stack stops sooner than a GPU instance).
	DrainTimeout time.Duration
	// Visibility is the request queues' visibility timeout, which the
	// workers hold and extend; 30s by default.
	Visibility time.Duration
	// MaxReceives is how many receives a job gets before its DLQ; 5 by default.
	MaxReceives int
	// EventsVisibility is the events queue's visibility timeout (how long a
	// webhook event whose handling failed waits before it is retried); 60s
	// by default.
	EventsVisibility time.Duration
	// BatchVisibility is the batch queue's visibility timeout; 5m by default.
	BatchVisibility time.Duration
	// SweepEvery is the sweeper's period; 10s by default.
	SweepEvery time.Duration
	// SweepGrace is how old an unenqueued generation must be to be re-sent,
	// and an unannounced terminal one to be announced again; 5s by default.
	SweepGrace time.Duration
	// BatchQuiet is how long a batch may show no progress before the
	// sweeper re-derives it (sends its jobs again, counts lines that ended
	// uncounted); it also delays dead events sent back to the events queue.
	// 1m by default.
	BatchQuiet time.Duration
	// Sim configures the built-in vLLM simulator (its Model is set to Model).
	Sim vllmsim.Config
	// SecureWebhooks applies production webhook rules (https only, no
	// loopback or private destinations). Off by default in the dev stack so
	// a receiver on 127.0.0.1 works.
	SecureWebhooks bool
	// WebhookTimeScale speeds up the webhook retry schedule (1 = real
	// time); settings.Webhooks' default when zero.
	WebhookTimeScale float64
	// WebhookTimeout bounds one delivery attempt; settings.Webhooks'
	// default when zero.
	WebhookTimeout time.Duration
	// MinWindow is the shortest completion window clients may ask for;
	// settings.API's default when zero.
	MinWindow time.Duration
	// Limits bound what one request may ask of the engine, for the API,
	// the batch Lambda and the workers alike (request.DefaultLimits when zero).
	Limits request.Limits
	Logger *slog.Logger
}

func (c *Config) withDefaults() {
	c.APIAddr = cmp.Or(c.APIAddr, "127.0.0.1:8080")
	c.DevAPIKey = cmp.Or(c.DevAPIKey, "sk-lull-dev")
	c.Model = cmp.Or(c.Model, "lull-sim-1")
	if c.EmbedModel == "" && (c.VLLMURL == "" || c.EmbedVLLMURL != "") {
		c.EmbedModel = "lull-sim-embed-1"
	}
	if c.EmbedModel == "-" {
		c.EmbedModel = ""
	}
	c.Prefix = cmp.Or(c.Prefix, "lull-dev")
	c.Workers = cmp.Or(c.Workers, 1)
	c.DrainTimeout = cmp.Or(c.DrainTimeout, 30*time.Second)
	c.Visibility = cmp.Or(c.Visibility, 30*time.Second)
	c.MaxReceives = cmp.Or(c.MaxReceives, 5)
	c.EventsVisibility = cmp.Or(c.EventsVisibility, 60*time.Second)
	c.BatchVisibility = cmp.Or(c.BatchVisibility, 5*time.Minute)
	c.SweepEvery = cmp.Or(c.SweepEvery, 10*time.Second)
	c.SweepGrace = cmp.Or(c.SweepGrace, 5*time.Second)
	c.BatchQuiet = cmp.Or(c.BatchQuiet, time.Minute)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Stack is a running dev stack.
type Stack struct {
	cfg Config
	// URL is the API's base URL, e.g. http://127.0.0.1:8080.
	URL string
	// EngineURL is the engine the workers use.
	EngineURL string
	// Sim is the built-in simulator, nil with an external engine.
	Sim *vllmsim.Server
	// EmbedSim, EmbedEngineURL and EmbedQueueURL are the embedding
	// model's simulator (nil with an external engine), engine and queue;
	// empty without an embedding model.
	EmbedSim                      *vllmsim.Server
	EmbedEngineURL, EmbedQueueURL string
	embedDLQURL                   string
	// Clients talk to the stack's AWS endpoints.
	Clients   *awsclients.Clients
	Endpoints awsclients.Endpoints
	Store     *dynamodb.Store
	Blobs     *s3.Blobs
	// Table, Bucket and the queue URLs name the stack's resources.
	Table, Bucket                             string
	QueueURL, DLQURL, EventsURL, EventsDLQURL string
	BatchURL, BatchDLQURL                     string
	API                                       *httpapi.Server

	emu       *emulators.Emulators
	workerCfg worker.Config
	// runCtx ends when the stack closes; every component runs on it.
	runCtx  context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	srv     *http.Server
	simSrv  *http.Server
	servers []*http.Server
	workers []*worker.Worker
	mu      sync.Mutex
}

// Config returns the stack's configuration with its defaults applied.
func (s *Stack) Config() Config { return s.cfg }

var slugRE = regexp.MustCompile(`[^a-zA-Z0-9_-]+`)

// QueueName returns the request queue name for a model.
func QueueName(prefix, model string) string {
	return prefix + "-requests-" + strings.Trim(slugRE.ReplaceAllString(model, "-"), "-")
}

// Start brings the stack up. Close it when done.
func Start(ctx context.Context, cfg Config) (*Stack, error) {
	cfg.withDefaults()
	s := &Stack{cfg: cfg, Endpoints: cfg.Endpoints}
	if err := s.start(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Stack) start(ctx context.Context) error {
	cfg := s.cfg
	log := cfg.Logger
	if s.Endpoints == (awsclients.Endpoints{}) {
		emu, err := emulators.Start()
		if err != nil {
			return err
		}
		s.emu, s.Endpoints = emu, emu.Endpoints
	}
	var err error
	if s.Clients, err = awsclients.New(ctx, s.Endpoints); err != nil {
		return err
	}
	s.Table, s.Bucket = cfg.Prefix+"-state", cfg.Prefix+"-data"
	s.Store = dynamodb.New(s.Clients.DynamoDB, s.Table)
	if err := s.Store.CreateTable(ctx); err != nil {
		return err
	}
	if err := s3.CreateBucket(ctx, s.Clients.S3, s.Bucket); err != nil {
		return err
	}
	s.Blobs = s3.New(s.Clients.S3, s.Bucket)
	if s.QueueURL, s.DLQURL, err = sqs.CreateQueue(ctx, s.Clients.SQS, QueueName(cfg.Prefix, cfg.Model), cfg.Visibility, cfg.MaxReceives); err != nil {
		return err
	}
	if s.EventsURL, s.EventsDLQURL, err = sqs.CreateQueue(ctx, s.Clients.SQS, cfg.Prefix+"-events", cfg.EventsVisibility, 20); err != nil {
		return err
	}
	if s.BatchURL, s.BatchDLQURL, err = sqs.CreateQueue(ctx, s.Clients.SQS, cfg.Prefix+"-batch", cfg.BatchVisibility, 10); err != nil {
		return err
	}
	if cfg.EmbedModel != "" {
		if s.EmbedQueueURL, s.embedDLQURL, err = sqs.CreateQueue(ctx, s.Clients.SQS, QueueName(cfg.Prefix, cfg.EmbedModel), cfg.Visibility, cfg.MaxReceives); err != nil {
			return err
		}
	}
	if err := s.AddKey(ctx, cfg.DevAPIKey, "dev"); err != nil {
		return err
	}

	s.runCtx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	runCtx := s.runCtx

	// The engine: the simulator unless an external one is named.
	s.EngineURL = cfg.VLLMURL
	if s.EngineURL == "" {
		simCfg := cfg.Sim
		simCfg.Model = cfg.Model
		if s.Sim, err = vllmsim.New(simCfg); err != nil {
			return err
		}
		if s.EngineURL, s.simSrv, err = serve("127.0.0.1:0", s.Sim); err != nil {
			return err
		}
	}
	if cfg.EmbedModel != "" {
		s.EmbedEngineURL = cfg.EmbedVLLMURL
		if s.EmbedEngineURL == "" {
			simCfg := cfg.Sim
			simCfg.Model, simCfg.Task = cfg.EmbedModel, vllmsim.TaskEmbed
			if s.EmbedSim, err = vllmsim.New(simCfg); err != nil {
				return err
			}
			var srv *http.Server
			if s.EmbedEngineURL, srv, err = serve("127.0.0.1:0", s.EmbedSim); err != nil {
				return err
			}
			s.servers = append(s.servers, srv)
		}
	}

	// Every component's settings: its defaults, this stack's resources, and
	// what cfg asks to change.
	storage := settings.Storage{Table: s.Table, Bucket: s.Bucket}
	queues := settings.Queues{ModelQueues: map[string]string{cfg.Model: s.QueueURL}, EventsQueueURL: s.EventsURL, BatchQueueURL: s.BatchURL}
	if cfg.EmbedModel != "" {
		queues.ModelQueues[cfg.EmbedModel] = s.EmbedQueueURL
		queues.ModelTasks = map[string]string{cfg.EmbedModel: string(lull.TaskEmbed)}
	}
	var (
		apiCfg    settings.API
		hooksCfg  settings.Webhooks
		batchCfg  settings.Batch
		dlqCfg    settings.DLQ
		scalerCfg settings.Scaler
	)
	for _, c := range []any{&apiCfg, &hooksCfg, &batchCfg, &dlqCfg, &scalerCfg, &s.workerCfg} {
		if err := envconfig.Defaults(c); err != nil {
			return err
		}
	}
	apiCfg.Storage, apiCfg.Queues = storage, queues
	apiCfg.AllowInsecureWebhooks = !cfg.SecureWebhooks
	apiCfg.MinWindow = cmp.Or(cfg.MinWindow, apiCfg.MinWindow)
	hooksCfg.Storage, hooksCfg.EventsQueueURL, hooksCfg.BatchQueueURL = storage, s.EventsURL, s.BatchURL
	hooksCfg.AllowInsecureWebhooks = !cfg.SecureWebhooks
	hooksCfg.TimeScale = cmp.Or(cfg.WebhookTimeScale, hooksCfg.TimeScale)
	hooksCfg.Timeout = cmp.Or(cfg.WebhookTimeout, hooksCfg.Timeout)
	batchCfg.Storage, batchCfg.Queues = storage, queues
	dlqCfg.Storage, dlqCfg.EventsQueueURL, dlqCfg.ModelQueues = storage, s.EventsURL, queues.ModelQueues
	dlqCfg.EventRedriveDelay = min(cfg.BatchQuiet, dlqCfg.EventRedriveDelay)
	scalerCfg.Storage, scalerCfg.Queues = storage, queues
	scalerCfg.SweepGrace, scalerCfg.BatchQuiet = cfg.SweepGrace, cfg.BatchQuiet
	w := &s.workerCfg
	w.Model, w.QueueURL, w.EventsQueueURL, w.Table, w.Bucket = cfg.Model, s.QueueURL, s.EventsURL, s.Table, s.Bucket
	w.VLLMURL, w.Visibility, w.DrainTimeout = s.EngineURL, cfg.Visibility, cfg.DrainTimeout
	w.Concurrency = cmp.Or(cfg.WorkerConcurrency, w.Concurrency)
	w.Gate = cmp.Or(cfg.Gate, w.Gate)
	// Worker processes started from WorkerEnv must not fight over a port.
	w.MetricsAddr = "127.0.0.1:0"
	// One set of request limits for the API, the batch Lambda and the workers.
	if cfg.Limits != (request.Limits{}) {
		apiCfg.Limits = cfg.Limits.WithDefaults()
	}
	batchCfg.Limits, w.Limits = apiCfg.Limits, apiCfg.Limits
	// Webhook secrets are sealed as in a deployment, with a local key (no
	// KMS here); the stack's own store opens them too.
	secretsKey := sealing.LocalSetting()
	apiCfg.SecretsKey, hooksCfg.SecretsKey = secretsKey, secretsKey
	if s.Store.Sealer, err = sealing.FromSetting(secretsKey, nil); err != nil {
		return err
	}

	// The API.
	if s.API, err = apilambda.New(apiCfg, s.Clients, log); err != nil {
		return err
	}
	if s.URL, s.srv, err = serve(cfg.APIAddr, s.API); err != nil {
		return err
	}
	hooksCfg.PublicURL = s.URL

	// Workers.
	for range max(cfg.Workers, 0) {
		if _, err := s.StartWorker(runCtx, nil); err != nil {
			return err
		}
	}
	if cfg.EmbedModel != "" && cfg.Workers >= 0 {
		if _, err := s.StartWorker(runCtx, func(c *worker.Config) {
			c.Model, c.QueueURL, c.VLLMURL = cfg.EmbedModel, s.EmbedQueueURL, s.EmbedEngineURL
		}); err != nil {
			return err
		}
	}

	// The webhook dispatcher on the events queue, as Lambda's event source
	// mapping would run it.
	hooks, err := webhookslambda.New(hooksCfg, s.Clients, log)
	if err != nil {
		return err
	}
	events := sqs.New(s.Clients.SQS, s.EventsURL)
	for range 4 { // concurrent invocations, as Lambda scales an SQS event source
		s.goRun(func() {
			(&poller.Poller{Name: "webhooks", Queue: events, Handler: hooks.Handle, Logger: log, Visibility: cfg.EventsVisibility}).Run(runCtx)
		})
	}

	// The batch Lambda on the batch queue, one job at a time as the deployed
	// event source mapping runs it (batch size 1). One poller: idle pollers
	// cost the in-process SQS a short poll every 20 ms each.
	batches, err := batchlambda.New(batchCfg, s.Clients, log)
	if err != nil {
		return err
	}
	s.goRun(func() {
		(&poller.Poller{Name: "batch", Queue: sqs.New(s.Clients.SQS, s.BatchURL), Handler: batches.Handle, Logger: log, BatchSize: 1, Visibility: cfg.BatchVisibility}).Run(runCtx)
	})

	// The DLQ consumer, through a local event-source poller, on every DLQ.
	dlq, err := dlqlambda.New(dlqCfg, s.Clients, log)
	if err != nil {
		return err
	}
	for _, url := range []string{s.DLQURL, s.BatchDLQURL, s.embedDLQURL, s.EventsDLQURL} {
		if url == "" {
			continue
		}
		s.goRun(func() {
			(&poller.Poller{Name: "dlq", Queue: sqs.New(s.Clients.SQS, url), Handler: dlq.Handle, Logger: log}).Run(runCtx)
		})
	}

	// The sweeper on a ticker, as EventBridge runs the scaler Lambda (whose
	// scaling step has no Auto Scaling groups to read here).
	scaler, err := scalerlambda.New(scalerCfg, s.Clients, log, io.Discard)
	if err != nil {
		return err
	}
	s.goRun(func() {
		t := time.NewTicker(cfg.SweepEvery)
		defer t.Stop()
		for {
			select {
			case <-runCtx.Done():
				return
			case <-t.C:
				if _, err := scaler.Sweeper.Sweep(runCtx); err != nil && runCtx.Err() == nil {
					log.Warn("sweep failed", "err", err)
				}
			}
		}
	})
	return nil
}

func (s *Stack) goRun(f func()) { s.wg.Go(f) }

// EmbedModel returns the embedding model served, "" for none.
func (s *Stack) EmbedModel() string { return s.cfg.EmbedModel }

// WorkerConfig returns the configuration a worker of this stack runs with:
// worker.Config's defaults, this stack's resources and engine, and what
// Config asks to change.
func (s *Stack) WorkerConfig() worker.Config { return s.workerCfg }

// WorkerEnv returns the environment a separate gpuworker process needs to
// join this stack (used by tests that kill a worker process): WorkerConfig
// as the worker reads it (envconfig.Environ), and the stack's AWS endpoints.
func (s *Stack) WorkerEnv() []string {
	return append(envconfig.Environ(s.WorkerConfig()),
		"AWS_ENDPOINT_URL_DYNAMODB="+s.Endpoints.DynamoDB, "AWS_ENDPOINT_URL_SQS="+s.Endpoints.SQS,
		"AWS_ENDPOINT_URL_S3="+s.Endpoints.S3, "AWS_REGION=us-east-1",
		"AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test")
}

// StartWorker starts one more in-process worker, built as the gpuworker
// command builds it (awsworker.New), that runs until ctx ends or the stack
// closes, whichever comes first. change, when non-nil, adjusts its
// configuration.
func (s *Stack) StartWorker(ctx context.Context, change func(*worker.Config)) (*worker.Worker, error) {
	cfg := s.WorkerConfig()
	if change != nil {
		change(&cfg)
	}
	w, err := awsworker.New(cfg, s.Clients, s.cfg.Logger, awsworker.Options{})
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.workers = append(s.workers, w)
	s.mu.Unlock()
	wctx, stop := context.WithCancel(s.runCtx)
	stopWithCaller := context.AfterFunc(ctx, stop)
	s.goRun(func() {
		defer stopWithCaller()
		defer stop()
		_ = w.Run(wctx)
	})
	return w, nil
}

// Workers returns the in-process workers started so far.
func (s *Stack) Workers() []*worker.Worker {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*worker.Worker(nil), s.workers...)
}

// AddKey seeds an API key for a tenant.
func (s *Stack) AddKey(ctx context.Context, key, tenant string) error {
	return s.Store.PutKey(ctx, lull.HashKey(key), tenant)
}

// Close stops everything: API, workers (draining), pollers, simulator and
// emulators.
func (s *Stack) Close() error {
	var errs []error
	if s.srv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		errs = append(errs, s.srv.Shutdown(sctx))
		cancel()
	}
	if s.cancel != nil {
		s.cancel()
	}
	s.wg.Wait()
	if s.simSrv != nil {
		errs = append(errs, s.simSrv.Close())
	}
	for _, srv := range s.servers {
		errs = append(errs, srv.Close())
	}
	if s.Sim != nil {
		s.Sim.Close()
	}
	if s.EmbedSim != nil {
		s.EmbedSim.Close()
	}
	if s.emu != nil {
		errs = append(errs, s.emu.Close())
	}
	return errors.Join(errs...)
}

func serve(addr string, h http.Handler) (string, *http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("devstack: listen on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), srv, nil
}
