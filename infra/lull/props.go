// Package lull is the reusable CDK construct that deploys the whole lull
// system into one account and region: the DynamoDB table, the SQS queues, the
// S3 bucket, the HTTP API and its Lambdas, one spot GPU fleet per model, and
// the alarms and dashboard that watch them.
//
// The environment each runtime binary reads is declared once, in the root
// module (settings.API, settings.Webhooks, settings.Batch, settings.Scaler,
// settings.DLQ and worker.Config). NewService sets exactly those variables,
// refuses extra worker variables the worker does not read, and its tests
// compare the synthesized template against envconfig.Vars of each struct.
package lull

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-cdk-go/awscdk/v2/awsec2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslogs"

	"github.com/lull-ai/lull/gpuworker/worker"
	"github.com/lull-ai/lull/lambdas/scaler/backlog"
	"github.com/lull-ai/lull/shared/envconfig"
	"github.com/lull-ai/lull/shared/request"
)

// Props configures a lull deployment. Zero values take the documented
// defaults; Validate reports what is wrong, naming the field.
type Props struct {
	// Models are the models the fleet serves; at least one.
	Models []ModelProps

	// BuildDir holds the prebuilt artifacts (`make lambdas gpuworker-dist`):
	// lambda/<name>/bootstrap for each Lambda and
	// gpuworker/linux-<arch>/gpuworker for each worker architecture.
	BuildDir string

	// DefaultCompletionWindow applies when a request names none; 24h.
	DefaultCompletionWindow time.Duration
	// MaxCompletionWindow is the longest window a request may ask for; 168h.
	// Request queues keep messages this long plus a day (at most 14 days,
	// the SQS limit), so it may be at most 13 days.
	MaxCompletionWindow time.Duration
	// Retention is how long finished generations are kept: the DynamoDB TTL
	// the API sets and the expiry of inputs/ and outputs/ objects; 720h.
	Retention time.Duration
	// FileRetention is how long files/ objects (Batch API inputs and
	// outputs) live; Retention when zero.
	FileRetention time.Duration
	// LogRetention applies to every log group; one month when zero.
	LogRetention awslogs.RetentionDays

	// MetricNamespace is where the scaler publishes BacklogPerInstance;
	// "Lull/<stack name>", so that two deployments in one account and
	// region never share (and both scale on) one metric.
	MetricNamespace string
	// NamePrefix prefixes the physical names of queues, so two deployments
	// can share an account and region; "" gives requests-<model-slug>.
	NamePrefix string

	// ThrottleRate and ThrottleBurst limit the HTTP API's default stage
	// (requests per second, burst); 100 and 200.
	ThrottleRate  float64
	ThrottleBurst int
	// Domain, when set, serves the API on a custom domain.
	Domain *DomainProps

	// VPC hosts the GPU fleet; nil creates a VPC with public subnets only
	// (no NAT gateway: instances reach AWS APIs through gateway endpoints
	// and the internet through their public address; nothing may connect
	// in).
	VPC awsec2.IVpc
	// AvailabilityZones, when set, are the zones the created VPC spans,
	// e.g. those that offer the models' GPU types. Otherwise the VPC spans
	// MaxAZs of the region's zones.
	AvailabilityZones []string
	// MaxAZs bounds how many of the region's zones the created VPC spans;
	// 0: all of them (at most 16). Every zone is one more spot pool per
	// instance type. Only a stack with an explicit environment (account
	// and region) knows the region's zones: an environment-agnostic stack
	// gets 2, whatever MaxAZs says.
	MaxAZs int
	// AlarmEmail, when set, subscribes this address to the alarm topic.
	AlarmEmail string
	// HuggingFaceTokenParameter names an SSM SecureString parameter holding
	// a Hugging Face token, for gated models; the worker exports it as
	// HF_TOKEN to vLLM.
	HuggingFaceTokenParameter string
	// DestroyOnRemoval deletes the table and the bucket when the stack is
	// deleted (the bucket must be empty). Off: both are retained.
	DestroyOnRemoval bool

	// Limits bound what one request may ask of the engine; the API, the
	// batch Lambda and every worker get the same values (zero fields:
	// request.DefaultLimits).
	Limits request.Limits

	// APIReservedConcurrency reserves this many concurrent executions for
	// the API Lambda, so that no other Lambda of the account (a burst of
	// slow webhook receivers, a batch) can starve it; 100 when zero, -1
	// reserves none. It must stay below the account's concurrency limit
	// minus 100 (AWS keeps 100 unreserved).
	APIReservedConcurrency int
	// WebhooksMaxConcurrency, BatchMaxConcurrency and DLQMaxConcurrency cap
	// the concurrent invocations each SQS event source may start (2 to
	// 1000); 20, 5 and 2 when zero.
	WebhooksMaxConcurrency int
	BatchMaxConcurrency    int
	DLQMaxConcurrency      int

	// VLLMLockDir holds the hash-pinned requirements the GPU instances
	// install vLLM from, requirements-<version>-<arch>.txt (`make
	// vllm-lock`); BuildDir/vllm when empty.
	VLLMLockDir string
}

// DomainProps is a custom domain for the HTTP API.
type DomainProps struct {
	// Name is the domain, e.g. api.example.com; point a CNAME (or alias) at
	// the stack output RegionalDomainName.
	Name string
	// CertificateArn is an ACM certificate for Name in the stack's region.
	CertificateArn string
}

// ModelProps is one model and the GPU fleet that serves it.
type ModelProps struct {
	// ModelID is what vLLM loads, e.g. "Qwen/Qwen2.5-7B-Instruct".
	ModelID string
	// Name is the model name clients send; ModelID when empty. The key of
	// LULL_MODEL_QUEUES and the slug of the queue and group names.
	Name string
	// Task is what the model serves: "generate" (chat, completions,
	// responses; the default) or "embed" (embeddings: vLLM runs it with
	// --runner pooling; add "--convert", "embed" to VLLMArgs for a model
	// that is not an embedding model by architecture). The API and the
	// batch Lambda learn it from LULL_MODEL_TASKS.
	Task string
	// VLLMArgs are extra `vllm serve` arguments, e.g. --max-model-len 8192.
	// No argument may contain whitespace or quotes.
	VLLMArgs []string
	// VLLMVersion is the vllm package installed from PyPI; DefaultVLLMVersion.
	VLLMVersion string
	// InstanceTypes are the GPU types the group may launch (several, for
	// spot capacity), all of one CPU architecture; e.g. g6.xlarge,
	// g5.xlarge, g6e.xlarge.
	InstanceTypes []string
	// MinInstances and MaxInstances bound the group; 0 and 4.
	MinInstances int
	MaxInstances int
	// TargetBacklogPerInstance is the target tracking target;
	// backlog.DefaultTargetBacklogPerInstance when zero.
	TargetBacklogPerInstance float64
	// RootVolumeGiB is the encrypted gp3 root volume (the AMI needs 75 GiB;
	// weights are cached there); 200.
	RootVolumeGiB int
	// RootVolumeThroughput (MiB/s) and RootVolumeIOPS size the root volume
	// for boot, which writes the vLLM environment (several GB) and the
	// weights and then reads them back: gp3's baseline 125 MiB/s would make
	// a boot throughput-bound for many minutes. 1000 and 6000 (about $0.07
	// an hour above the baseline; an instance uses what its EBS bandwidth
	// allows). gp3 allows 125–2000 MiB/s, 3000–80000 IOPS and at most
	// 0.25 MiB/s per IOPS.
	RootVolumeThroughput int
	RootVolumeIOPS       int
	// WorkerEnv sets further worker.Config variables (e.g.
	// LULL_GATE_TARGET_RUNNING); any name worker.Config does not read is an
	// error.
	WorkerEnv map[string]string
	// UnpinnedVLLM installs vLLM from PyPI by version alone, without the
	// hash-pinned lock file (Props.VLLMLockDir): anything PyPI serves under
	// those names then runs on the GPU hosts. Off by default; the synth
	// warns when it is on.
	UnpinnedVLLM bool
}

// DefaultVLLMVersion is the vLLM release the fleet installs unless a model
// names another.
const DefaultVLLMVersion = "0.33.0"

// Root volume performance for boot (ModelProps.RootVolumeThroughput and
// RootVolumeIOPS).
const (
	DefaultRootVolumeThroughput = 1000
	DefaultRootVolumeIOPS       = 6000
)

// Limits of the services, checked by Validate and NewService.
const (
	// MaxQueueNameLength is SQS's limit on a queue name.
	MaxQueueNameLength = 80
	// MaxLambdaEnvironmentBytes is Lambda's limit on the total size of a
	// function's environment variables (names and values).
	MaxLambdaEnvironmentBytes = 4096
	// maxAZs is how many /20 public subnets the created VPC's /16 holds.
	maxAZs = 16
)

// UVVersion is the uv release the user data installs vLLM with (its lock
// file is requirements-uv-<UVVersion>.txt).
const UVVersion = "0.13.8"

// LambdaNames lists the Lambdas; the code of each is BuildDir/lambda/<name>/bootstrap.
var LambdaNames = []string{"api", "webhooks", "batch", "scaler", "dlq"}

// withDefaults returns p with every zero value replaced by its default.
func (p Props) withDefaults() Props {
	if p.DefaultCompletionWindow == 0 {
		p.DefaultCompletionWindow = 24 * time.Hour
	}
	if p.MaxCompletionWindow == 0 {
		p.MaxCompletionWindow = 168 * time.Hour
	}
	if p.Retention == 0 {
		p.Retention = 720 * time.Hour
	}
	if p.FileRetention == 0 {
		p.FileRetention = p.Retention
	}
	if p.LogRetention == "" {
		p.LogRetention = awslogs.RetentionDays_ONE_MONTH
	}
	if p.ThrottleRate == 0 {
		p.ThrottleRate = 100
	}
	if p.ThrottleBurst == 0 {
		p.ThrottleBurst = 200
	}
	p.Limits = p.Limits.WithDefaults()
	if p.APIReservedConcurrency == 0 {
		p.APIReservedConcurrency = 100
	}
	if p.WebhooksMaxConcurrency == 0 {
		p.WebhooksMaxConcurrency = 20
	}
	if p.BatchMaxConcurrency == 0 {
		p.BatchMaxConcurrency = 5
	}
	if p.DLQMaxConcurrency == 0 {
		p.DLQMaxConcurrency = 2
	}
	if p.VLLMLockDir == "" && p.BuildDir != "" {
		p.VLLMLockDir = filepath.Join(p.BuildDir, "vllm")
	}
	models := make([]ModelProps, len(p.Models))
	for i, m := range p.Models {
		if m.Name == "" {
			m.Name = m.ModelID
		}
		if m.VLLMVersion == "" {
			m.VLLMVersion = DefaultVLLMVersion
		}
		if m.MaxInstances == 0 {
			m.MaxInstances = 4
		}
		if m.TargetBacklogPerInstance == 0 {
			m.TargetBacklogPerInstance = backlog.DefaultTargetBacklogPerInstance
		}
		if m.RootVolumeGiB == 0 {
			m.RootVolumeGiB = 200
		}
		if m.RootVolumeThroughput == 0 {
			m.RootVolumeThroughput = DefaultRootVolumeThroughput
		}
		if m.RootVolumeIOPS == 0 {
			m.RootVolumeIOPS = DefaultRootVolumeIOPS
		}
		models[i] = m
	}
	p.Models = models
	return p
}

var (
	prefixRe    = regexp.MustCompile(`^[A-Za-z0-9_-]*$`)
	namespaceRe = regexp.MustCompile(`^[A-Za-z0-9 ./_#:-]*$`)
	safeArg     = regexp.MustCompile(`^[^\s"'\\$` + "`" + `]+$`)
	instanceRe  = regexp.MustCompile(`^[a-z][a-z0-9-]*\.[a-z0-9]+$`)
	graviton    = regexp.MustCompile(`^[a-z]+[0-9]+[a-z]*g[a-z]*$`)
	versionRe   = regexp.MustCompile(`^[0-9][0-9A-Za-z.+-]*$`)
	managedVars = []string{"LULL_MODEL", "LULL_QUEUE_URL", "LULL_EVENTS_QUEUE_URL", "LULL_TABLE", "LULL_BUCKET",
		"LULL_VLLM_COMMAND", "LULL_ENGINE_MODEL", "LULL_IMDS_URL", "LULL_ASG_NAME", "LULL_LIFECYCLE_HOOK",
		"LULL_RETENTION", "LULL_MAX_SEQUENCES", "LULL_MAX_TOKENS", "LULL_REQUEST_EXTRA_FIELDS", "LULL_ALLOW_REMOTE_MEDIA"}
)

// Validate reports every invalid field of p (after defaults), or nil.
func (p Props) Validate() error {
	p = p.withDefaults()
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if len(p.Models) == 0 {
		bad("Models: at least one model is required")
	}
	if p.BuildDir == "" {
		bad("BuildDir is required")
	}
	if p.DefaultCompletionWindow > p.MaxCompletionWindow {
		bad("DefaultCompletionWindow %s exceeds MaxCompletionWindow %s", p.DefaultCompletionWindow, p.MaxCompletionWindow)
	}
	if p.MaxCompletionWindow > 13*24*time.Hour {
		bad("MaxCompletionWindow %s: at most 312h (SQS keeps messages 14 days)", p.MaxCompletionWindow)
	}
	if p.Retention < 24*time.Hour || p.FileRetention < 24*time.Hour {
		bad("Retention and FileRetention must be at least 24h")
	}
	// A finished request must stay readable at least as long as a client
	// may have waited for it, and a batch's files as long as it may run.
	if p.Retention < p.MaxCompletionWindow {
		bad("Retention %s is shorter than MaxCompletionWindow %s: a result could expire before a client that waited the whole window reads it", p.Retention, p.MaxCompletionWindow)
	}
	if p.FileRetention < p.MaxCompletionWindow {
		bad("FileRetention %s is shorter than MaxCompletionWindow %s: a batch's input file could expire while the batch may still run", p.FileRetention, p.MaxCompletionWindow)
	}
	if err := p.Limits.Validate(); err != nil {
		bad("Limits: %v", err)
	}
	if p.APIReservedConcurrency < -1 || p.APIReservedConcurrency > 10000 {
		bad("APIReservedConcurrency %d: -1 (none) or 1 to 10000", p.APIReservedConcurrency)
	}
	for name, v := range map[string]int{"WebhooksMaxConcurrency": p.WebhooksMaxConcurrency, "BatchMaxConcurrency": p.BatchMaxConcurrency, "DLQMaxConcurrency": p.DLQMaxConcurrency} {
		if v < 2 || v > 1000 {
			bad("%s %d: SQS event sources take 2 to 1000", name, v)
		}
	}
	if p.Domain != nil && (p.Domain.Name == "" || p.Domain.CertificateArn == "") {
		bad("Domain: Name and CertificateArn are both required")
	}
	if !prefixRe.MatchString(p.NamePrefix) {
		bad("NamePrefix %q: SQS queue names take only letters, digits, '-' and '_'", p.NamePrefix)
	}
	for _, q := range []string{"events-dlq", "batch-dlq"} {
		if n := p.NamePrefix + q; len(n) > MaxQueueNameLength {
			bad("NamePrefix %q: queue name %q is %d characters; SQS allows %d", p.NamePrefix, n, len(n), MaxQueueNameLength)
		}
	}
	if len(p.MetricNamespace) > 255 || !namespaceRe.MatchString(p.MetricNamespace) || strings.HasPrefix(p.MetricNamespace, "AWS/") {
		bad("MetricNamespace %q: up to 255 letters, digits and . - _ / # : or spaces, not starting with AWS/", p.MetricNamespace)
	}
	if p.MaxAZs < 0 || p.MaxAZs > maxAZs || len(p.AvailabilityZones) > maxAZs {
		bad("MaxAZs %d, AvailabilityZones %v: at most %d zones (one /20 subnet each in a /16)", p.MaxAZs, p.AvailabilityZones, maxAZs)
	}
	if p.VPC != nil && (p.MaxAZs != 0 || len(p.AvailabilityZones) > 0) {
		bad("MaxAZs and AvailabilityZones apply to the VPC the construct creates; with VPC set, choose the subnets there")
	}
	known := envconfig.Names(&worker.Config{})
	slugs := map[string]string{}
	for i, m := range p.Models {
		field := fmt.Sprintf("Models[%d]", i)
		if m.ModelID == "" {
			bad("%s.ModelID is required", field)
		}
		slug := Slug(m.Name)
		if slug == "" {
			bad("%s.Name %q has no letters or digits", field, m.Name)
		} else if other, dup := slugs[slug]; dup {
			bad("%s.Name %q and %q share the slug %q", field, m.Name, other, slug)
		}
		slugs[slug] = m.Name
		if q := p.NamePrefix + "requests-" + slug + "-dlq"; len(q) > MaxQueueNameLength {
			bad("%s.Name %q: its queue name %q is %d characters; SQS allows %d (shorten the name or NamePrefix)",
				field, m.Name, q, len(q), MaxQueueNameLength)
		}
		if len(m.InstanceTypes) == 0 {
			bad("%s.InstanceTypes: at least one GPU instance type is required", field)
		}
		arch := ""
		for _, it := range m.InstanceTypes {
			if !instanceRe.MatchString(it) {
				bad("%s.InstanceTypes: %q is not an instance type", field, it)
				continue
			}
			if a := Arch(it); arch == "" {
				arch = a
			} else if a != arch {
				bad("%s.InstanceTypes mix architectures (%s and %s): one launch template has one AMI", field, arch, a)
			}
		}
		if m.MinInstances < 0 || m.MaxInstances < 1 || m.MinInstances > m.MaxInstances {
			bad("%s: need 0 <= MinInstances (%d) <= MaxInstances (%d), MaxInstances >= 1", field, m.MinInstances, m.MaxInstances)
		}
		if m.TargetBacklogPerInstance <= 0 {
			bad("%s.TargetBacklogPerInstance must be positive", field)
		}
		if m.RootVolumeGiB < 75 {
			bad("%s.RootVolumeGiB %d: the Deep Learning AMI needs at least 75", field, m.RootVolumeGiB)
		}
		if tp, iops := m.RootVolumeThroughput, m.RootVolumeIOPS; tp < 125 || tp > 2000 || iops < 3000 || iops > 80000 || 4*tp > iops {
			bad("%s: gp3 RootVolumeThroughput %d MiB/s and RootVolumeIOPS %d: need 125–2000 MiB/s, 3000–80000 IOPS, and IOPS at least 4 × throughput",
				field, tp, iops)
		}
		if !versionRe.MatchString(m.VLLMVersion) {
			bad("%s.VLLMVersion %q is not a version", field, m.VLLMVersion)
		}
		if m.Task != "" && m.Task != "generate" && m.Task != "embed" {
			bad("%s.Task %q: want \"generate\" or \"embed\"", field, m.Task)
		}
		for _, a := range append([]string{m.ModelID}, m.VLLMArgs...) {
			if a != "" && !safeArg.MatchString(a) {
				bad("%s: vLLM argument %q may not contain whitespace, quotes, '$', '`' or '\\'", field, a)
			}
		}
		for k, v := range m.WorkerEnv {
			switch {
			case !slices.Contains(known, k):
				bad("%s.WorkerEnv: %s is not read by the worker (worker.Config)", field, k)
			case slices.Contains(managedVars, k):
				bad("%s.WorkerEnv: %s is set by the construct", field, k)
			case strings.ContainsAny(v, "\"\n\\$`"):
				bad("%s.WorkerEnv: %s may not contain quotes, newlines, '$', '`' or '\\'", field, k)
			}
		}
	}
	return errors.Join(errs...)
}

// Slug turns a model name into the lowercase [a-z0-9-] form used in queue
// and group names ("meta-llama/Llama-3.1-8B" → "meta-llama-llama-3-1-8b"),
// at most 48 characters.
func Slug(name string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(name) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
			dash = false
		} else if !dash && b.Len() > 0 {
			b.WriteByte('-')
			dash = true
		}
	}
	s := strings.TrimRight(b.String(), "-")
	if len(s) > 48 {
		s = strings.TrimRight(s[:48], "-")
	}
	return s
}

// Arch is the CPU architecture of an instance type as the worker build
// names it: "arm64" for Graviton families (g5g, c7g…), else "amd64".
func Arch(instanceType string) string {
	family, _, _ := strings.Cut(instanceType, ".")
	if graviton.MatchString(family) {
		return "arm64"
	}
	return "amd64"
}
