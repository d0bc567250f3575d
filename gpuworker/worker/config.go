package worker

import (
	"errors"
	"time"

	"github.com/lull-ai/lull/gpuworker/vllm"
	"github.com/lull-ai/lull/shared/request"
)

// Config is everything a GPU worker reads from its environment. The infra
// package sets these variables in the instance user data; envconfig.Names(&Config{})
// is the list a deployment must match.
type Config struct {
	Model             string        `env:"LULL_MODEL" required:"true" doc:"model name the worker serves (as clients send it)"`
	QueueURL          string        `env:"LULL_QUEUE_URL" required:"true" doc:"SQS URL of the model's request queue"`
	EventsQueueURL    string        `env:"LULL_EVENTS_QUEUE_URL" doc:"SQS URL of the events queue (webhook fan-out); empty disables events"`
	Table             string        `env:"LULL_TABLE" required:"true" doc:"DynamoDB table name"`
	Bucket            string        `env:"LULL_BUCKET" required:"true" doc:"S3 bucket for inputs and outputs"`
	VLLMURL           string        `env:"VLLM_URL" default:"http://127.0.0.1:8000" doc:"base URL of the local vLLM OpenAI server"`
	VLLMCommand       string        `env:"LULL_VLLM_COMMAND" doc:"command line that starts the engine (split on spaces), e.g. 'vllm serve <model> --port 8000 --scheduling-policy priority'; empty: attach to VLLM_URL"`
	EngineModel       string        `env:"LULL_ENGINE_MODEL" doc:"model name the engine expects, when it differs from LULL_MODEL"`
	AsyncPriority     int           `env:"LULL_ASYNC_PRIORITY" default:"0" doc:"vLLM request priority for async work when the engine runs --scheduling-policy priority (higher runs later; 0 sends none)"`
	Concurrency       int           `env:"LULL_CONCURRENCY" default:"16" doc:"most generations in flight at once"`
	Visibility        time.Duration `env:"LULL_VISIBILITY_TIMEOUT" default:"60s" doc:"SQS visibility the worker holds and extends while a generation runs"`
	RequestTimeout    time.Duration `env:"LULL_ENGINE_TIMEOUT" default:"10m" doc:"longest one engine call may take"`
	EngineRetries     int           `env:"LULL_ENGINE_RETRIES" default:"3" doc:"attempts per delivery on transient engine errors"`
	WorkerID          string        `env:"LULL_WORKER_ID" doc:"name in logs and DynamoDB leases; defaults to the hostname"`
	MetricsAddr       string        `env:"LULL_METRICS_ADDR" default:"127.0.0.1:9400" doc:"listen address of the worker's Prometheus /metrics"`
	DrainTimeout      time.Duration `env:"LULL_DRAIN_TIMEOUT" default:"90s" doc:"on SIGTERM, how long in-flight generations may finish before they are released (keep under systemd's TimeoutStopSec); also cuts short a notice's drain that SIGTERM interrupts"`
	ScaleInDrainMax   time.Duration `env:"LULL_SCALE_IN_DRAIN_MAX" default:"24h" doc:"longest a scale-in drain (termination lifecycle hook, no deadline) waits for running generations, extending the hook meanwhile; keep under the hook's global timeout (100 heartbeat timeouts, at most 48h). Spot interruptions drain until the notice's deadline"`
	LifecycleBeat     time.Duration `env:"LULL_LIFECYCLE_HEARTBEAT" default:"5m" doc:"how often a scale-in drain extends the termination lifecycle hook (RecordLifecycleActionHeartbeat); well under the hook's heartbeat timeout"`
	EngineMaxFailures int           `env:"LULL_ENGINE_MAX_FAILED_STARTS" default:"3" doc:"engine starts in a row that may fail (exit, or no /health within the start timeout) before the worker marks its instance Unhealthy so Auto Scaling replaces it; 0 never does"`
	Retention         time.Duration `env:"LULL_RETENTION" default:"720h" doc:"how long finished generations are kept (DynamoDB TTL); the same value as every other component's"`
	AWSTimeout        time.Duration `env:"LULL_AWS_TIMEOUT" default:"30s" doc:"longest one DynamoDB, SQS or S3 call may take (a receive: its 10 s wait plus this); 30s when zero"`
	Gate              string        `env:"LULL_GATE" default:"fixed" doc:"how the worker decides to take work: fixed (LULL_CONCURRENCY slots), metrics (vLLM /metrics headroom) or queue-depth (budget 1 - waiting/target; for comparison)"`
	GateTarget        int           `env:"LULL_GATE_TARGET_RUNNING" default:"64" doc:"metrics gate: sequences the engine should run at once (about --max-num-seqs)"`
	GateReserve       int           `env:"LULL_GATE_RESERVE" default:"0" doc:"metrics gate: sequences always kept free for other (interactive) traffic; the gate keeps at least the recent peak of that traffic free"`
	GateReserveWindow time.Duration `env:"LULL_GATE_RESERVE_WINDOW" doc:"metrics gate: how long the peak of other traffic is remembered (longer than an async request runs); default 30s, or the latest scrape alone with LULL_GATE_ENGINE_PREEMPTS"`
	GatePreempts      bool          `env:"LULL_GATE_ENGINE_PREEMPTS" default:"false" doc:"metrics gate: the engine preempts running requests for waiting ones of better priority (vLLM V0, or V1 with the fix for vllm#40004), so the gate fills around current interactive load and ignores preemptions"`
	GateKVHigh        float64       `env:"LULL_GATE_KV_HIGH" default:"0.9" doc:"metrics gate: KV-cache usage that closes the gate"`
	GateInterval      time.Duration `env:"LULL_GATE_INTERVAL" default:"200ms" doc:"metrics gate: scrape period"`
	IMDSURL           string        `env:"LULL_IMDS_URL" doc:"EC2 metadata service to watch for spot interruptions and scale-in (http://169.254.169.254 on EC2); empty disables"`
	IMDSInterval      time.Duration `env:"LULL_IMDS_INTERVAL" default:"2s" doc:"how often the metadata service is polled"`
	ASGName           string        `env:"LULL_ASG_NAME" doc:"Auto Scaling group whose termination lifecycle hook the worker completes after draining"`
	LifecycleHook     string        `env:"LULL_LIFECYCLE_HOOK" doc:"name of that termination lifecycle hook"`
	// Limits are checked again on every request before it reaches the
	// engine, with the API's values (a body stored by an older version or
	// put on the queue by anything else runs only if it passes).
	request.Limits
}

func (c *Config) validate() error {
	var errs []error
	if c.Concurrency < 1 {
		errs = append(errs, errors.New("LULL_CONCURRENCY must be at least 1"))
	}
	if c.Visibility < 10*time.Second {
		errs = append(errs, errors.New("LULL_VISIBILITY_TIMEOUT must be at least 10s"))
	}
	if c.AWSTimeout < 0 {
		errs = append(errs, errors.New("LULL_AWS_TIMEOUT must not be negative"))
	}
	if c.EngineRetries < 1 {
		errs = append(errs, errors.New("LULL_ENGINE_RETRIES must be at least 1"))
	}
	if c.DrainTimeout < 0 || c.ScaleInDrainMax < 0 {
		errs = append(errs, errors.New("LULL_DRAIN_TIMEOUT and LULL_SCALE_IN_DRAIN_MAX may not be negative"))
	}
	if c.ScaleInDrainMax > 48*time.Hour {
		errs = append(errs, errors.New("LULL_SCALE_IN_DRAIN_MAX: at most 48h (a lifecycle hook's longest wait)"))
	}
	if c.EngineMaxFailures < 0 {
		errs = append(errs, errors.New("LULL_ENGINE_MAX_FAILED_STARTS may not be negative"))
	}
	if c.Gate != "fixed" && c.Gate != "metrics" && c.Gate != "queue-depth" {
		errs = append(errs, errors.New("LULL_GATE must be fixed, metrics or queue-depth"))
	}
	if err := c.Limits.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// NewEngine returns the engine client this configuration describes: the
// engine at VLLMURL, the engine-side model name, and the async priority.
func NewEngine(c Config) *vllm.Client {
	e := vllm.New(c.VLLMURL, nil)
	e.Model = c.EngineModel
	if c.AsyncPriority != 0 {
		p := c.AsyncPriority
		e.Priority = &p
	}
	return e
}
