package lull

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsapigatewayv2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsapigatewayv2integrations"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscertificatemanager"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsdynamodb"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsec2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsevents"
	"github.com/aws/aws-cdk-go/awscdk/v2/awseventstargets"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awskms"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambdaeventsources"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslogs"
	"github.com/aws/aws-cdk-go/awscdk/v2/awss3"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssns"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssnssubscriptions"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssqs"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"

	"github.com/lull-ai/lull/shared/lull"
	"github.com/lull-ai/lull/shared/request"
)

// Queue settings shared by every queue pair.
const (
	// MaxReceiveCount is how often a message is received before it moves to
	// its DLQ.
	MaxReceiveCount = 5
	// LifecycleHookName is the termination hook the worker completes.
	LifecycleHookName = "lull-drain"
	// LifecycleHeartbeatTimeout is the hook's heartbeat timeout: how long
	// a terminating instance waits without a heartbeat from its worker.
	LifecycleHeartbeatTimeout = 15 * time.Minute
	// requestVisibility is the request queues' default visibility; the
	// worker sets and extends its own (LULL_VISIBILITY_TIMEOUT).
	requestVisibility = 60 * time.Second
)

// Timeouts of the Lambdas. An SQS event source needs the queue's visibility
// timeout to be at least the function timeout; AWS advises six times.
var lambdaTimeouts = map[string]time.Duration{
	"api": 29 * time.Second, "webhooks": 2 * time.Minute, "batch": 15 * time.Minute,
	"scaler": 50 * time.Second, "dlq": 30 * time.Second,
}

// Service is a deployed lull system. Its fields expose the resources for
// callers that extend it (extra alarms, permissions, outputs).
type Service struct {
	constructs.Construct
	Table      awsdynamodb.Table
	Bucket     awss3.Bucket
	Events     awssqs.Queue
	EventsDLQ  awssqs.Queue
	Batch      awssqs.Queue
	BatchDLQ   awssqs.Queue
	API        awsapigatewayv2.HttpApi
	Functions  map[string]awslambda.Function // by LambdaNames
	Models     map[string]*Model             // by model name
	AlarmTopic awssns.Topic
	// SecretsKey seals webhook secrets; only the API and the webhook
	// dispatcher may use it.
	SecretsKey  awskms.Key
	VPC         awsec2.IVpc
	props       Props
	scope       constructs.Construct
	functionEnv map[string]map[string]*string
	apiID       *string
	route       awsapigatewayv2.HttpRoute
}

// Model is the queue pair and GPU fleet of one model.
type Model struct {
	Props   ModelProps
	Slug    string
	Queue   awssqs.Queue
	DLQ     awssqs.Queue
	Fleet   *Fleet
	asgName *string
}

// NewService adds a lull system to scope. It returns an error, and adds
// nothing, when props are invalid or a prebuilt artifact is missing.
func NewService(scope constructs.Construct, id string, props Props) (*Service, error) {
	if err := props.Validate(); err != nil {
		return nil, fmt.Errorf("lull: %w", err)
	}
	props = props.withDefaults()
	if err := checkArtifacts(props); err != nil {
		return nil, err
	}
	stack := awscdk.Stack_Of(scope)
	if props.MetricNamespace == "" {
		// Per deployment: two stacks in one region must not scale on each
		// other's metrics.
		props.MetricNamespace = "Lull/" + *stack.StackName()
	}
	region := ""
	if r := stack.Region(); !*awscdk.Token_IsUnresolved(r) {
		region = *r
	}
	if err := checkEnvironmentSize(props, id, *stack.StackName(), region); err != nil {
		return nil, fmt.Errorf("lull: %w", err)
	}
	s := &Service{Construct: constructs.NewConstruct(scope, jsii.String(id)), props: props,
		Functions: map[string]awslambda.Function{}, Models: map[string]*Model{}, functionEnv: map[string]map[string]*string{}}
	s.scope = s.Construct
	s.storage()
	s.queues()
	s.alarmTopic()
	s.lambdas()
	s.httpAPI()
	s.network()
	for _, m := range props.Models {
		s.fleet(s.Models[m.Name])
	}
	s.monitoring()
	s.suppressions()
	return s, nil
}

// checkArtifacts fails early, with the make target to run, when a prebuilt
// asset is missing; CDK would otherwise fail with a bare ENOENT.
func checkArtifacts(p Props) error {
	var missing []string
	for _, name := range LambdaNames {
		if _, err := os.Stat(filepath.Join(p.BuildDir, "lambda", name, "bootstrap")); err != nil {
			missing = append(missing, filepath.Join("lambda", name, "bootstrap"))
		}
	}
	arches := map[string]bool{}
	for _, m := range p.Models {
		arches[Arch(m.InstanceTypes[0])] = true
	}
	for arch := range arches {
		if _, err := os.Stat(workerBinary(p.BuildDir, arch)); err != nil {
			missing = append(missing, filepath.Join("gpuworker", "linux-"+arch, "gpuworker"))
		}
	}
	for _, m := range p.Models {
		if m.UnpinnedVLLM {
			continue
		}
		for _, f := range []string{uvLockFile(), vllmLockFile(m.VLLMVersion, Arch(m.InstanceTypes[0]))} {
			if _, err := os.Stat(filepath.Join(p.VLLMLockDir, f)); err != nil && !slices.Contains(missing, filepath.Join(p.VLLMLockDir, f)) {
				missing = append(missing, filepath.Join(p.VLLMLockDir, f))
			}
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return fmt.Errorf("lull: missing build artifacts under %s (run `make lambdas gpuworker-dist vllm-lock`): %s", p.BuildDir, strings.Join(missing, ", "))
	}
	return nil
}

func workerBinary(buildDir, arch string) string {
	return filepath.Join(buildDir, "gpuworker", "linux-"+arch, "gpuworker")
}

func (s *Service) removal() awscdk.RemovalPolicy {
	if s.props.DestroyOnRemoval {
		return awscdk.RemovalPolicy_DESTROY
	}
	return awscdk.RemovalPolicy_RETAIN
}

// storage creates the table and the bucket.
func (s *Service) storage() {
	str := func(name string) *awsdynamodb.Attribute {
		return &awsdynamodb.Attribute{Name: jsii.String(name), Type: awsdynamodb.AttributeType_STRING}
	}
	s.Table = awsdynamodb.NewTable(s.scope, jsii.String("Table"), &awsdynamodb.TableProps{
		PartitionKey:        str("pk"),
		SortKey:             str("sk"),
		BillingMode:         awsdynamodb.BillingMode_PAY_PER_REQUEST,
		TimeToLiveAttribute: jsii.String("ttl"),
		PointInTimeRecoverySpecification: &awsdynamodb.PointInTimeRecoverySpecification{
			PointInTimeRecoveryEnabled: jsii.Bool(true)},
		Encryption:    awsdynamodb.TableEncryption_AWS_MANAGED,
		RemovalPolicy: s.removal(),
	})
	// gsi1: a tenant's items by time; gsi2 (sparse): open generations by
	// expiry, for the expiry sweep; gsi3 (sparse): accepted but not yet
	// enqueued, for the re-enqueue sweep.
	for _, name := range []string{"gsi1", "gsi2", "gsi3"} {
		s.Table.AddGlobalSecondaryIndex(&awsdynamodb.GlobalSecondaryIndexProps{IndexName: jsii.String(name),
			PartitionKey: str(name + "pk"), SortKey: str(name + "sk"), ProjectionType: awsdynamodb.ProjectionType_ALL})
	}
	rule := func(id, prefix string, keep time.Duration) *awss3.LifecycleRule {
		return &awss3.LifecycleRule{Id: jsii.String(id), Prefix: jsii.String(prefix),
			Expiration:                          awscdk.Duration_Days(jsii.Number(days(keep))),
			AbortIncompleteMultipartUploadAfter: awscdk.Duration_Days(jsii.Number(1))}
	}
	// Objects outlive the item that points to them by a day, so a GET never
	// finds the item without its body. An input is written when a request
	// is accepted; its item lives until the request ends (within the
	// longest completion window) plus Retention. An output is written when
	// the request ends; its item lives Retention more. (DynamoDB TTL:
	// shared/dynamodb, from the same LULL_RETENTION every component reads.)
	keepInputs := s.props.MaxCompletionWindow + s.props.Retention + 24*time.Hour
	keep := s.props.Retention + 24*time.Hour
	s.Bucket = awss3.NewBucket(s.scope, jsii.String("Bucket"), &awss3.BucketProps{
		Encryption:        awss3.BucketEncryption_S3_MANAGED,
		EnforceSSL:        jsii.Bool(true),
		BlockPublicAccess: awss3.BlockPublicAccess_BLOCK_ALL(),
		ObjectOwnership:   awss3.ObjectOwnership_BUCKET_OWNER_ENFORCED,
		Versioned:         jsii.Bool(false),
		LifecycleRules: &[]*awss3.LifecycleRule{
			// Request bodies too large to travel inline.
			rule("inputs", prefixInputs, keepInputs),
			// Generation responses written by the workers.
			rule("outputs", prefixOutputs, keep),
			// Batch API files (input JSONL, output and error files).
			rule("files", prefixFiles, s.props.FileRetention+24*time.Hour),
			// Parts of /v1/uploads uploads: an upload takes parts for an
			// hour, and completion or cancel deletes them; this catches the
			// abandoned ones.
			rule("uploads", prefixUploads, 48*time.Hour),
		},
		RemovalPolicy: s.removal(),
	})
}

func days(d time.Duration) float64 {
	n := int(d / (24 * time.Hour))
	if d%(24*time.Hour) != 0 {
		n++
	}
	return float64(max(n, 1))
}

// queuePair creates a queue and its DLQ, both SSE-SQS and TLS-only.
func (s *Service) queuePair(id, name string, visibility, retention time.Duration) (awssqs.Queue, awssqs.Queue) {
	dlq := awssqs.NewQueue(s.scope, jsii.String(id+"DLQ"), &awssqs.QueueProps{
		QueueName: jsii.String(name + "-dlq"),
		// Request DLQs feed the dlq Lambda: six times its timeout.
		VisibilityTimeout: awscdk.Duration_Seconds(jsii.Number(6 * lambdaTimeouts["dlq"].Seconds())),
		Encryption:        awssqs.QueueEncryption_SQS_MANAGED,
		EnforceSSL:        jsii.Bool(true),
		RetentionPeriod:   awscdk.Duration_Days(jsii.Number(14)),
	})
	q := awssqs.NewQueue(s.scope, jsii.String(id), &awssqs.QueueProps{
		QueueName:         jsii.String(name),
		Encryption:        awssqs.QueueEncryption_SQS_MANAGED,
		EnforceSSL:        jsii.Bool(true),
		VisibilityTimeout: awscdk.Duration_Seconds(jsii.Number(visibility.Seconds())),
		RetentionPeriod:   awscdk.Duration_Seconds(jsii.Number(retention.Seconds())),
		DeadLetterQueue:   &awssqs.DeadLetterQueue{Queue: dlq, MaxReceiveCount: jsii.Number(MaxReceiveCount)},
	})
	return q, dlq
}

func (s *Service) queues() {
	p := s.props
	// A queued request must survive its longest completion window; the
	// expiry sweep fails it from DynamoDB, not from SQS.
	retention := min(p.MaxCompletionWindow+24*time.Hour, 14*24*time.Hour)
	for _, m := range p.Models {
		slug := Slug(m.Name)
		q, dlq := s.queuePair("Requests"+camel(slug), p.NamePrefix+"requests-"+slug, requestVisibility, retention)
		s.Models[m.Name] = &Model{Props: m, Slug: slug, Queue: q, DLQ: dlq,
			asgName: awscdk.Fn_Join(jsii.String(""), &[]*string{awscdk.Aws_STACK_NAME(), jsii.String("-gpu-" + slug)})}
	}
	s.Events, s.EventsDLQ = s.queuePair("Events", p.NamePrefix+"events", 6*lambdaTimeouts["webhooks"], 4*24*time.Hour)
	s.Batch, s.BatchDLQ = s.queuePair("Batch", p.NamePrefix+"batch", 6*lambdaTimeouts["batch"], 4*24*time.Hour)
}

// camel turns a slug into a construct ID fragment: "qwen-7b" → "Qwen7b".
func camel(slug string) string {
	var b strings.Builder
	for _, part := range strings.Split(slug, "-") {
		if part != "" {
			b.WriteString(strings.ToUpper(part[:1]) + part[1:])
		}
	}
	return b.String()
}

func (s *Service) alarmTopic() {
	s.AlarmTopic = awssns.NewTopic(s.scope, jsii.String("Alarms"), &awssns.TopicProps{
		DisplayName: jsii.String("lull alarms"), EnforceSSL: jsii.Bool(true)})
	// EnforceSSL's policy replaces the topic's default one, which let
	// CloudWatch publish: without this statement every alarm fires into
	// nothing. Only this account's alarms in this region may publish.
	stack := awscdk.Stack_Of(s.scope)
	s.AlarmTopic.AddToResourcePolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Sid:        jsii.String("CloudWatchAlarmsPublish"),
		Principals: &[]awsiam.IPrincipal{awsiam.NewServicePrincipal(jsii.String("cloudwatch.amazonaws.com"), nil)},
		Actions:    jsii.Strings("sns:Publish"),
		Resources:  &[]*string{s.AlarmTopic.TopicArn()},
		Conditions: &map[string]interface{}{
			"StringEquals": map[string]interface{}{"aws:SourceAccount": stack.Account()},
			"ArnLike": map[string]interface{}{"aws:SourceArn": stack.FormatArn(&awscdk.ArnComponents{
				Service: jsii.String("cloudwatch"), Resource: jsii.String("alarm"), ResourceName: jsii.String("*"),
				ArnFormat: awscdk.ArnFormat_COLON_RESOURCE_NAME})},
		},
	}))
	if s.props.AlarmEmail != "" {
		s.AlarmTopic.AddSubscription(awssnssubscriptions.NewEmailSubscription(jsii.String(s.props.AlarmEmail), nil))
	}
}

// modelQueuesJSON is LULL_MODEL_QUEUES: a JSON object model → queue URL.
func (s *Service) modelQueuesJSON() *string {
	m := map[string]interface{}{}
	for name, model := range s.Models {
		m[name] = model.Queue.QueueUrl()
	}
	return awscdk.Stack_Of(s.scope).ToJsonString(m, nil)
}

// withModelTasks adds LULL_MODEL_TASKS (model → "embed") to env when a
// model embeds; models it does not name generate.
func (s *Service) withModelTasks(env map[string]*string) map[string]*string {
	m := map[string]interface{}{}
	for name, model := range s.Models {
		if model.Props.Task == "embed" {
			m[name] = "embed"
		}
	}
	if len(m) > 0 {
		env["LULL_MODEL_TASKS"] = awscdk.Stack_Of(s.scope).ToJsonString(m, nil)
	}
	return env
}

// asgNamesJSON is LULL_ASG_NAMES: a JSON object model → group name.
func (s *Service) asgNamesJSON() *string {
	m := map[string]interface{}{}
	for name, model := range s.Models {
		m[name] = model.asgName
	}
	return awscdk.Stack_Of(s.scope).ToJsonString(m, nil)
}

// fmtDuration writes d the way time.ParseDuration reads it, briefly.
func fmtDuration(d time.Duration) string {
	if d%time.Hour == 0 {
		return fmt.Sprintf("%dh", d/time.Hour)
	}
	return d.String()
}

// environments returns the environment of each Lambda: for each, only
// variables its settings struct declares (see lull_test.go).
func (s *Service) environments(publicURL *string) map[string]map[string]*string {
	p := s.props
	storage := map[string]*string{"LULL_TABLE": s.Table.TableName(), "LULL_BUCKET": s.Bucket.BucketName(),
		"LULL_RETENTION": jsii.String(fmtDuration(p.Retention)), "LULL_FILE_RETENTION": jsii.String(fmtDuration(p.FileRetention))}
	with := func(extras ...map[string]*string) map[string]*string {
		out := map[string]*string{}
		for k, v := range storage {
			out[k] = v
		}
		for _, extra := range extras {
			for k, v := range extra {
				out[k] = v
			}
		}
		return out
	}
	queues, events, batch := s.modelQueuesJSON(), s.Events.QueueUrl(), s.Batch.QueueUrl()
	return map[string]map[string]*string{
		"api": with(s.withModelTasks(map[string]*string{
			"LULL_MODEL_QUEUES": queues, "LULL_EVENTS_QUEUE_URL": events, "LULL_BATCH_QUEUE_URL": batch,
			"LULL_DEFAULT_COMPLETION_WINDOW": jsii.String(fmtDuration(p.DefaultCompletionWindow)),
			"LULL_MAX_COMPLETION_WINDOW":     jsii.String(fmtDuration(p.MaxCompletionWindow)),
		}), limitsEnv(p.Limits)),
		"webhooks": with(map[string]*string{
			"LULL_EVENTS_QUEUE_URL": events, "LULL_BATCH_QUEUE_URL": batch,
			"LULL_WEBHOOK_TIMEOUT": jsii.String("10s"),
			"LULL_PUBLIC_URL":      publicURL,
		}),
		"batch": with(s.withModelTasks(map[string]*string{
			"LULL_MODEL_QUEUES": queues, "LULL_EVENTS_QUEUE_URL": events, "LULL_BATCH_QUEUE_URL": batch,
		}), limitsEnv(p.Limits)),
		"scaler": with(map[string]*string{
			"LULL_MODEL_QUEUES": queues, "LULL_EVENTS_QUEUE_URL": events, "LULL_BATCH_QUEUE_URL": batch,
			"LULL_METRIC_NAMESPACE": jsii.String(p.MetricNamespace), "LULL_ASG_NAMES": s.asgNamesJSON(),
		}),
		"dlq": with(map[string]*string{"LULL_EVENTS_QUEUE_URL": events, "LULL_MODEL_QUEUES": queues}),
	}
}

// limitsEnv is the request limits' environment (request.Limits), the same
// for the API, the batch Lambda and every worker.
func limitsEnv(l request.Limits) map[string]*string {
	env := map[string]*string{
		"LULL_MAX_SEQUENCES": jsii.String(fmt.Sprint(l.MaxSequences)),
		"LULL_MAX_TOKENS":    jsii.String(fmt.Sprint(l.MaxTokens)),
	}
	if l.ExtraFields != "" {
		env["LULL_REQUEST_EXTRA_FIELDS"] = jsii.String(l.ExtraFields)
	}
	if l.AllowRemoteMedia {
		env["LULL_ALLOW_REMOTE_MEDIA"] = jsii.String("true")
	}
	return env
}

// publicURL is the API's base URL: the custom domain when there is one.
func (s *Service) publicURL() *string {
	if s.props.Domain != nil {
		return jsii.String("https://" + s.props.Domain.Name)
	}
	return awscdk.Fn_Join(jsii.String(""), &[]*string{jsii.String("https://"), s.apiDomain()})
}

// apiDomain is the execute-api host name, built from the API ID so that the
// webhooks Lambda does not depend on the API's stage.
func (s *Service) apiDomain() *string {
	return awscdk.Fn_Join(jsii.String(""), &[]*string{s.apiID, jsii.String(".execute-api."), awscdk.Aws_REGION(),
		jsii.String("."), awscdk.Aws_URL_SUFFIX()})
}

func (s *Service) lambdas() {
	// The API must exist (for its ID) before the webhooks Lambda's
	// environment names its URL; the integration comes later.
	s.API = awsapigatewayv2.NewHttpApi(s.scope, jsii.String("HttpApi"), &awsapigatewayv2.HttpApiProps{
		Description:        jsii.String("lull: OpenAI-compatible asynchronous inference"),
		CreateDefaultStage: jsii.Bool(false),
	})
	s.apiID = s.API.ApiId()
	s.functionEnv = s.environments(s.publicURL())
	for _, name := range LambdaNames {
		s.Functions[name] = s.function(name, s.functionEnv[name])
	}
	s.secretsKey()
	s.grants()

	// Every SQS event source has a maximum concurrency: a backlog (slow
	// webhook receivers, a burst of batches) grows the queue, not the
	// account's concurrency, which the API keeps a reserve of.
	src := func(q awssqs.Queue, batch int, window time.Duration, maxConcurrency int) awslambda.IEventSource {
		return awslambdaeventsources.NewSqsEventSource(q, &awslambdaeventsources.SqsEventSourceProps{
			BatchSize: jsii.Number(batch), ReportBatchItemFailures: jsii.Bool(true),
			MaxBatchingWindow: awscdk.Duration_Seconds(jsii.Number(window.Seconds())),
			MaxConcurrency:    jsii.Number(float64(maxConcurrency)),
		})
	}
	p := s.props
	s.Functions["webhooks"].AddEventSource(src(s.Events, 10, time.Second, p.WebhooksMaxConcurrency))
	s.Functions["batch"].AddEventSource(src(s.Batch, 1, 0, p.BatchMaxConcurrency))
	for _, name := range s.modelNames() {
		s.Functions["dlq"].AddEventSource(src(s.Models[name].DLQ, 10, 0, p.DLQMaxConcurrency))
	}
	// A batch job that exhausted its receives fails its batch; an event
	// that exhausted its receives is sent back to the events queue.
	s.Functions["dlq"].AddEventSource(src(s.BatchDLQ, 10, 0, p.DLQMaxConcurrency))
	s.Functions["dlq"].AddEventSource(src(s.EventsDLQ, 10, 0, p.DLQMaxConcurrency))
	rule := awsevents.NewRule(s.scope, jsii.String("ScalerSchedule"), &awsevents.RuleProps{
		Description: jsii.String("lull scaler: backlog metric, expiry sweep, re-enqueue"),
		Schedule:    awsevents.Schedule_Rate(awscdk.Duration_Minutes(jsii.Number(1))),
	})
	rule.AddTarget(awseventstargets.NewLambdaFunction(s.Functions["scaler"], &awseventstargets.LambdaFunctionProps{
		RetryAttempts: jsii.Number(0), // the next run is a minute away
	}))
}

func (s *Service) modelNames() []string {
	names := make([]string, 0, len(s.Models))
	for n := range s.Models {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// function creates one Lambda with its own role and log group; the role
// may write only to that log group.
func (s *Service) function(name string, env map[string]*string) awslambda.Function {
	id := camel(name)
	logs := awslogs.NewLogGroup(s.scope, jsii.String(id+"Logs"), &awslogs.LogGroupProps{
		Retention: s.props.LogRetention, RemovalPolicy: awscdk.RemovalPolicy_DESTROY})
	role := awsiam.NewRole(s.scope, jsii.String(id+"Role"), &awsiam.RoleProps{
		AssumedBy:   awsiam.NewServicePrincipal(jsii.String("lambda.amazonaws.com"), nil),
		Description: jsii.String("lull " + name + " Lambda"),
	})
	role.AddToPolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Actions:   jsii.Strings("logs:CreateLogStream", "logs:PutLogEvents"),
		Resources: &[]*string{logs.LogGroupArn()},
	}))
	memory := 256.0
	if name == "api" || name == "batch" {
		memory = 1024 // CPU scales with memory: JSON and JSONL work
	}
	// api assembles uploads and batch writes output files through a spool
	// file in /tmp (up to OpenAI's 200 MB input, and outputs can be larger).
	storage := 512.0
	switch name {
	case "api":
		storage = 1024
	case "batch":
		storage = 4096
	}
	// Lambda retries a failed asynchronous invocation twice by default: the
	// scheduled scaler would then run up to three times a minute. Its next
	// run is a minute away anyway.
	var retries *float64
	if name == "scaler" {
		retries = jsii.Number(0)
	}
	var reserved *float64
	if name == "api" && s.props.APIReservedConcurrency > 0 {
		// The API keeps capacity whatever the other Lambdas of the account do.
		reserved = jsii.Number(float64(s.props.APIReservedConcurrency))
	}
	return awslambda.NewFunction(s.scope, jsii.String(id+"Function"), &awslambda.FunctionProps{
		RetryAttempts:                retries,
		ReservedConcurrentExecutions: reserved,
		EphemeralStorageSize:         awscdk.Size_Mebibytes(jsii.Number(storage)),
		Description:                  jsii.String("lull " + name),
		Runtime:                      awslambda.Runtime_PROVIDED_AL2023(),
		Architecture:                 awslambda.Architecture_ARM_64(),
		Handler:                      jsii.String("bootstrap"),
		Code:                         awslambda.Code_FromAsset(jsii.String(filepath.Join(s.props.BuildDir, "lambda", name)), nil),
		MemorySize:                   jsii.Number(memory),
		Timeout:                      awscdk.Duration_Seconds(jsii.Number(lambdaTimeouts[name].Seconds())),
		Environment:                  &env,
		Role:                         role,
		LogGroup:                     logs,
		LoggingFormat:                awslambda.LoggingFormat_JSON,
	})
}

// statement is a shorthand for an Allow statement.
func statement(actions []string, resources ...*string) awsiam.PolicyStatement {
	return awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Actions: jsii.Strings(actions...), Resources: &resources})
}

// tableResources is the table ARN and the ARNs of the named indexes.
func (s *Service) tableResources(indexes ...string) []*string {
	out := []*string{s.Table.TableArn()}
	for _, ix := range indexes {
		out = append(out, jsii.String(*s.Table.TableArn()+"/index/"+ix))
	}
	return out
}

// objects is the ARN pattern of the objects under prefix.
func (s *Service) objects(prefix string) *string {
	return s.Bucket.ArnForObjects(jsii.String(prefix + "*"))
}

func (s *Service) requestQueueArns() []*string {
	var out []*string
	for _, n := range s.modelNames() {
		out = append(out, s.Models[n].Queue.QueueArn())
	}
	return out
}

// items is the DynamoDB condition that limits a statement to the items
// whose partition key starts with one of prefixes ("GEN#", "WH#"…; the
// layout is shared/dynamodb's). Applied to every table action of every
// role but the API's, so that, say, the webhook dispatcher cannot read an
// API key item (KEY#) and a GPU worker cannot touch anything but
// generations.
func items(prefixes ...string) map[string]any {
	pats := make([]string, len(prefixes))
	for i, p := range prefixes {
		pats[i] = p + "*"
	}
	return map[string]any{"ForAllValues:StringLike": map[string]any{"dynamodb:LeadingKeys": pats}}
}

// tableStatement allows actions on the table's items under prefixes.
func (s *Service) tableStatement(actions []string, prefixes ...string) awsiam.PolicyStatement {
	cond := items(prefixes...)
	return awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Actions: jsii.Strings(actions...), Resources: &[]*string{s.Table.TableArn()},
		Conditions: &cond,
	})
}

// secretsKey creates the KMS key that seals webhook secrets (LULL_SECRETS_KEY,
// shared/kms). Its policy lets the account administer the key but use it
// for nothing: only the API's role may encrypt and decrypt, and only the
// webhook dispatcher's decrypt, each with lull's encryption context.
func (s *Service) secretsKey() {
	api, hooks := s.Functions["api"].Role(), s.Functions["webhooks"].Role()
	purpose := map[string]any{"StringEquals": map[string]any{"kms:EncryptionContext:lull:purpose": lull.SealPurpose}}
	policy := awsiam.NewPolicyDocument(&awsiam.PolicyDocumentProps{Statements: &[]awsiam.PolicyStatement{
		awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
			Sid:        jsii.String("AccountAdministersTheKeyOnly"),
			Principals: &[]awsiam.IPrincipal{awsiam.NewAccountRootPrincipal()},
			Actions: jsii.Strings("kms:Create*", "kms:Describe*", "kms:Enable*", "kms:List*", "kms:Put*", "kms:Update*",
				"kms:Revoke*", "kms:Disable*", "kms:Get*", "kms:Delete*", "kms:TagResource", "kms:UntagResource",
				"kms:ScheduleKeyDeletion", "kms:CancelKeyDeletion", "kms:RotateKeyOnDemand"),
			Resources: jsii.Strings("*"),
		}),
		awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
			Sid:        jsii.String("ApiSealsAndOpensWebhookSecrets"),
			Principals: &[]awsiam.IPrincipal{api},
			Actions:    jsii.Strings("kms:Encrypt", "kms:Decrypt"),
			Resources:  jsii.Strings("*"),
			Conditions: &purpose,
		}),
		awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
			Sid:        jsii.String("WebhooksOpensWebhookSecrets"),
			Principals: &[]awsiam.IPrincipal{hooks},
			Actions:    jsii.Strings("kms:Decrypt"),
			Resources:  jsii.Strings("*"),
			Conditions: &purpose,
		}),
	}})
	s.SecretsKey = awskms.NewKey(s.scope, jsii.String("SecretsKey"), &awskms.KeyProps{
		Description:       jsii.String("lull: seals webhook signing secrets (API and webhook dispatcher only)"),
		EnableKeyRotation: jsii.Bool(true),
		Policy:            policy,
		RemovalPolicy:     s.removal(),
	})
	for name, actions := range map[string][]string{"api": {"kms:Encrypt", "kms:Decrypt"}, "webhooks": {"kms:Decrypt"}} {
		s.Functions[name].AddToRolePolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
			Actions: jsii.Strings(actions...), Resources: &[]*string{s.SecretsKey.KeyArn()}, Conditions: &purpose,
		}))
		s.Functions[name].AddEnvironment(jsii.String("LULL_SECRETS_KEY"), s.SecretsKey.KeyArn(), nil)
		s.functionEnv[name]["LULL_SECRETS_KEY"] = s.SecretsKey.KeyArn()
	}
}

// grants gives each Lambda what its code calls, per table index, queue and
// bucket prefix. Event sources add the consume permissions of their queue.
// Table actions of every role but the API's are limited to the item kinds
// its code touches (dynamodb:LeadingKeys); only the API reaches API keys,
// idempotency records and uploads.
func (s *Service) grants() {
	f := s.Functions
	add := func(name string, st awsiam.PolicyStatement) { f[name].AddToRolePolicy(st) }
	send := []string{"sqs:SendMessage"}
	rw := []string{"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:ConditionCheckItem"}
	query := []string{"dynamodb:Query"}

	// api: every API call over every item kind (API keys included);
	// deletes webhook endpoints; lists by gsi1.
	add("api", statement(append(rw, "dynamodb:DeleteItem", "dynamodb:Query"), s.tableResources("gsi1")...))
	add("api", statement(send, append(s.requestQueueArns(), s.Events.QueueArn(), s.Batch.QueueArn())...))
	add("api", statement([]string{"s3:PutObject", "s3:GetObject"}, s.objects(prefixInputs), s.objects(prefixFiles)))
	add("api", statement([]string{"s3:PutObject", "s3:GetObject", "s3:DeleteObject"}, s.objects(prefixUploads)))
	// outputs/: results, and the copy of a generation too large for a
	// Lambda response (GET /v1/generation/{id} redirects to it).
	add("api", statement([]string{"s3:GetObject", "s3:PutObject"}, s.objects(prefixOutputs)))
	add("api", statement([]string{"s3:DeleteObject"}, s.objects(prefixFiles), s.objects(prefixOutputs)))

	// webhooks: endpoints and their deliveries (WH#), the generations and
	// batches it describes and counts (GEN#, BATCH#); lists a tenant's
	// endpoints by gsi1; reschedules on events.
	add("webhooks", s.tableStatement(append(rw, "dynamodb:Query"), "WH#", "GEN#", "BATCH#"))
	add("webhooks", statement(query, s.tableResources("gsi1")[1:]...))
	add("webhooks", statement(send, s.Events.QueueArn(), s.Batch.QueueArn()))
	add("webhooks", statement([]string{"s3:GetObject"}, s.objects("outputs/")))

	// batch: splits input files into generations, writes output files.
	add("batch", s.tableStatement(append(rw, "dynamodb:Query", "dynamodb:BatchWriteItem"), "BATCH#", "FILE#", "GEN#"))
	add("batch", statement(query, s.tableResources("gsi1")[1:]...))
	add("batch", statement(send, append(s.requestQueueArns(), s.Events.QueueArn(), s.Batch.QueueArn())...))
	add("batch", statement([]string{"s3:GetObject", "s3:PutObject"}, s.objects("files/")))
	add("batch", statement([]string{"s3:PutObject"}, s.objects("inputs/")))
	add("batch", statement([]string{"s3:GetObject", "s3:PutObject", "s3:DeleteObject"}, s.objects("outputs/")))

	// scaler: queue depths and group capacities, the sweeps of generations
	// (GEN#: re-enqueue, expire, re-announce), of open batches (BATCH#:
	// their lines counted, their jobs sent again) and of parked webhook
	// deliveries (WH#). Its metrics are Embedded Metric Format lines in its
	// own log group (lambdas/scaler/emf), so it needs no
	// cloudwatch:PutMetricData.
	add("scaler", s.tableStatement(append(rw, "dynamodb:Query"), "GEN#", "WH#", "BATCH#"))
	add("scaler", statement(query, s.tableResources("gsi1", "gsi2", "gsi3")[1:]...))
	add("scaler", statement([]string{"sqs:SendMessage", "sqs:GetQueueAttributes"}, s.requestQueueArns()...))
	add("scaler", statement(send, s.Events.QueueArn(), s.Batch.QueueArn()))
	// Describe* calls of Auto Scaling support no resource-level permissions.
	add("scaler", statement([]string{"autoscaling:DescribeAutoScalingGroups"}, jsii.String("*")))

	// dlq: fails the generation (GEN#) or batch (BATCH#) of each dead
	// letter and announces it, or queues the job again when a worker holds
	// the generation; sends dead events back to the events queue.
	add("dlq", s.tableStatement([]string{"dynamodb:GetItem", "dynamodb:UpdateItem"}, "GEN#", "BATCH#"))
	add("dlq", statement(send, append(s.requestQueueArns(), s.Events.QueueArn())...))
}

func (s *Service) httpAPI() {
	integration := awsapigatewayv2integrations.NewHttpLambdaIntegration(jsii.String("ApiIntegration"), s.Functions["api"],
		&awsapigatewayv2integrations.HttpLambdaIntegrationProps{
			PayloadFormatVersion: awsapigatewayv2.PayloadFormatVersion_VERSION_2_0()})
	// One catch-all route: the API Lambda routes, authenticates (Bearer API
	// keys) and answers OpenAI-style errors itself.
	s.route = awsapigatewayv2.NewHttpRoute(s.scope, jsii.String("DefaultRoute"), &awsapigatewayv2.HttpRouteProps{
		HttpApi: s.API, RouteKey: awsapigatewayv2.HttpRouteKey_DEFAULT(), Integration: integration,
	})
	accessLogs := awslogs.NewLogGroup(s.scope, jsii.String("ApiAccessLogs"), &awslogs.LogGroupProps{
		Retention: s.props.LogRetention, RemovalPolicy: awscdk.RemovalPolicy_DESTROY})
	stage := awsapigatewayv2.NewHttpStage(s.scope, jsii.String("DefaultStage"), &awsapigatewayv2.HttpStageProps{
		HttpApi: s.API, StageName: jsii.String("$default"), AutoDeploy: jsii.Bool(true),
		Throttle: &awsapigatewayv2.ThrottleSettings{
			RateLimit: jsii.Number(s.props.ThrottleRate), BurstLimit: jsii.Number(float64(s.props.ThrottleBurst))},
	})
	cfnStage := stage.Node().DefaultChild().(awsapigatewayv2.CfnStage)
	cfnStage.SetAccessLogSettings(&awsapigatewayv2.CfnStage_AccessLogSettingsProperty{
		DestinationArn: accessLogs.LogGroupArn(),
		Format: jsii.String(`{"requestId":"$context.requestId","ip":"$context.identity.sourceIp","time":"$context.requestTime",` +
			`"method":"$context.httpMethod","path":"$context.path","status":"$context.status","len":"$context.responseLength",` +
			`"latency":"$context.responseLatency","integrationError":"$context.integrationErrorMessage"}`),
	})
	url := awscdk.Fn_Join(jsii.String(""), &[]*string{jsii.String("https://"), s.apiDomain(), jsii.String("/")})
	if d := s.props.Domain; d != nil {
		domain := awsapigatewayv2.NewDomainName(s.scope, jsii.String("Domain"), &awsapigatewayv2.DomainNameProps{
			DomainName:  jsii.String(d.Name),
			Certificate: awscertificatemanager.Certificate_FromCertificateArn(s.scope, jsii.String("Certificate"), jsii.String(d.CertificateArn)),
		})
		awsapigatewayv2.NewApiMapping(s.scope, jsii.String("DomainMapping"), &awsapigatewayv2.ApiMappingProps{
			Api: s.API, DomainName: domain, Stage: stage})
		awscdk.NewCfnOutput(s.scope, jsii.String("RegionalDomainName"), &awscdk.CfnOutputProps{
			Value: domain.RegionalDomainName(), Description: jsii.String("point " + d.Name + " here (CNAME or alias)")})
		url = jsii.String("https://" + d.Name + "/")
	}
	awscdk.NewCfnOutput(s.scope, jsii.String("ApiUrl"), &awscdk.CfnOutputProps{
		Value: url, Description: jsii.String("OpenAI base_url is this plus v1/slow (e.g. /v1/slow/chat/completions)")})
	awscdk.NewCfnOutput(s.scope, jsii.String("TableName"), &awscdk.CfnOutputProps{Value: s.Table.TableName()})
	awscdk.NewCfnOutput(s.scope, jsii.String("BucketName"), &awscdk.CfnOutputProps{Value: s.Bucket.BucketName()})
	awscdk.NewCfnOutput(s.scope, jsii.String("AlarmTopicArn"), &awscdk.CfnOutputProps{Value: s.AlarmTopic.TopicArn()})
}
