// Package settings declares the environment each lull Lambda reads. The
// structs are loaded with envconfig; infra sets exactly these variables, and
// its tests compare against envconfig.Names of each struct so names cannot drift.
// Each Lambda's constructor (lambdas/<name>/<name>lambda) takes its struct;
// the dev stack fills the same structs from their defaults
// (envconfig.Defaults) and the resources it creates.
package settings

import (
	"fmt"
	"time"

	"github.com/lull-ai/lull/shared/lull"
	"github.com/lull-ai/lull/shared/request"
)

// Storage names the shared table and bucket.
type Storage struct {
	Table  string `env:"LULL_TABLE" required:"true" doc:"DynamoDB table name"`
	Bucket string `env:"LULL_BUCKET" required:"true" doc:"S3 bucket for inputs, outputs and files"`
	// Retention and FileRetention set the DynamoDB TTL of everything a
	// component writes; infra sets the same values on every component and
	// derives the S3 lifecycle from them.
	Retention     time.Duration `env:"LULL_RETENTION" default:"720h" doc:"how long finished generations, batches, deliveries and idempotency keys are kept (DynamoDB TTL, from the end or from the end of the completion window)"`
	FileRetention time.Duration `env:"LULL_FILE_RETENTION" default:"720h" doc:"how long Batch API files are kept after their creation (DynamoDB TTL)"`
}

// Queues names the SQS queues a component sends to.
type Queues struct {
	// ModelQueues maps each served model name to its request queue URL.
	ModelQueues    map[string]string `env:"LULL_MODEL_QUEUES" required:"true" doc:"JSON object: model name -> request queue URL"`
	EventsQueueURL string            `env:"LULL_EVENTS_QUEUE_URL" doc:"events queue URL (webhook fan-out); empty disables events"`
	BatchQueueURL  string            `env:"LULL_BATCH_QUEUE_URL" doc:"batch jobs queue URL; empty disables the Batch API"`
	// ModelTasks says what each model does ("generate" or "embed"); models
	// it does not name generate.
	ModelTasks map[string]string `env:"LULL_MODEL_TASKS" doc:"JSON object: model name -> generate | embed (models not named generate)"`
}

// Tasks returns ModelTasks as domain values, or an error naming a model
// whose task is unknown or that has no queue.
func (q Queues) Tasks() (map[string]lull.Task, error) {
	out := make(map[string]lull.Task, len(q.ModelTasks))
	for model, t := range q.ModelTasks {
		task := lull.Task(t)
		if !task.Valid() {
			return nil, fmt.Errorf("settings: LULL_MODEL_TASKS: model %q: unknown task %q (want generate or embed)", model, t)
		}
		if _, ok := q.ModelQueues[model]; !ok {
			return nil, fmt.Errorf("settings: LULL_MODEL_TASKS: model %q has no queue in LULL_MODEL_QUEUES", model)
		}
		out[model] = task
	}
	return out, nil
}

// API is the configuration of lambdas/api (and of the dev stack's API server).
type API struct {
	Storage
	Queues
	DefaultWindow         time.Duration `env:"LULL_DEFAULT_COMPLETION_WINDOW" default:"24h" doc:"completion window when a request names none"`
	MinWindow             time.Duration `env:"LULL_MIN_COMPLETION_WINDOW" default:"1m" doc:"shortest completion window a request may ask for"`
	MaxWindow             time.Duration `env:"LULL_MAX_COMPLETION_WINDOW" default:"168h" doc:"longest completion window a request may ask for"`
	MaxBodyBytes          int           `env:"LULL_MAX_BODY_BYTES" default:"2097152" doc:"largest accepted request body"`
	AllowInsecureWebhooks bool          `env:"LULL_WEBHOOK_ALLOW_INSECURE" default:"false" doc:"allow http:// and loopback/private webhook URLs (dev only)"`
	SecretsKey            string        `env:"LULL_SECRETS_KEY" doc:"KMS key (ID, ARN or alias) that seals webhook secrets in the table; local:<base64 32 bytes> for a local key (dev stack); empty stores them as they are"`
	request.Limits
}

// Webhooks is the configuration of lambdas/webhooks.
type Webhooks struct {
	Storage
	EventsQueueURL        string        `env:"LULL_EVENTS_QUEUE_URL" required:"true" doc:"events queue URL the Lambda consumes and re-schedules retries on"`
	AllowInsecureWebhooks bool          `env:"LULL_WEBHOOK_ALLOW_INSECURE" default:"false" doc:"allow http:// and loopback/private webhook URLs (dev only)"`
	Timeout               time.Duration `env:"LULL_WEBHOOK_TIMEOUT" default:"10s" doc:"timeout of one delivery attempt"`
	MaxPayloadBytes       int           `env:"LULL_WEBHOOK_MAX_PAYLOAD" default:"262144" doc:"larger generations are delivered without the response, with a link"`
	PublicURL             string        `env:"LULL_PUBLIC_URL" doc:"the API's public base URL, for links in webhook payloads"`
	BatchQueueURL         string        `env:"LULL_BATCH_QUEUE_URL" doc:"batch jobs queue URL: batch lines are counted here and the last one queues the finalize job; empty disables"`
	TimeScale             float64       `env:"LULL_WEBHOOK_TIME_SCALE" default:"1" doc:"multiplies the retry schedule and Retry-After waits; below 1 only for tests and demos"`
	SecretsKey            string        `env:"LULL_SECRETS_KEY" doc:"KMS key (ID, ARN or alias) that seals webhook secrets in the table, as the API's; local:<base64 32 bytes> for a local key (dev stack)"`
}

// Batch is the configuration of lambdas/batch. BatchQueueURL is required
// there: finalize jobs are sent back to it.
type Batch struct {
	Storage
	Queues
	request.Limits
}

// Scaler is the configuration of lambdas/scaler.
type Scaler struct {
	Storage
	Queues
	MetricNamespace string `env:"LULL_METRIC_NAMESPACE" default:"Lull" doc:"CloudWatch namespace of the scaling metrics (BacklogPerInstance, UnservedBacklog)"`
	// ASGNames maps each served model name to its Auto Scaling group name.
	ASGNames   map[string]string `env:"LULL_ASG_NAMES" doc:"JSON object: model name -> Auto Scaling group name"`
	SweepGrace time.Duration     `env:"LULL_SWEEP_GRACE" default:"30s" doc:"how old an accepted-but-unenqueued generation must be before the sweep re-sends it (the API's own send is not raced), and a terminal one listed as unannounced before the sweep announces it"`
	// BatchQuiet is how long an open batch may show no progress before the
	// sweep re-derives it.
	BatchQuiet time.Duration `env:"LULL_BATCH_QUIET" default:"15m" doc:"how long an open batch may show no progress before the sweep sends its jobs again and counts lines that ended uncounted"`
}

// DLQ is the configuration of lambdas/dlq, which fails generations whose
// messages exhausted their receives (re-queuing those a worker still
// holds), fails batches whose jobs did, and sends dead events back.
type DLQ struct {
	Storage
	EventsQueueURL string `env:"LULL_EVENTS_QUEUE_URL" doc:"events queue URL; empty disables events"`
	// ModelQueues maps each served model name to its request queue URL.
	ModelQueues map[string]string `env:"LULL_MODEL_QUEUES" doc:"JSON object: model name -> request queue URL (jobs of generations under a live lease go back there)"`
	// EventRedriveDelay delays each dead event sent back to the events queue.
	EventRedriveDelay time.Duration `env:"LULL_EVENT_REDRIVE_DELAY" default:"15m" doc:"delay of a dead event sent back to the events queue (at most 15m, SQS's longest)"`
}
