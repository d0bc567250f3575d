package lull

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/aws/aws-cdk-go/awscdk/v2/awslogs"

	"github.com/lull-ai/lull/shared/request"
)

// Config is the JSON file the CDK app reads (infra/lull.config.json; see
// infra/lull.config.example.json). Durations use Go's syntax ("24h").
// Unknown fields are an error, so a typo never silently takes a default.
type Config struct {
	StackName string `json:"stackName"`
	// Account and Region make the stack environment-specific (else
	// CDK_DEFAULT_ACCOUNT and CDK_DEFAULT_REGION, which the CDK CLI sets
	// from the credentials): only then can the VPC span every zone.
	Account                   string        `json:"account"`
	Region                    string        `json:"region"`
	MaxAZs                    int           `json:"maxAzs"`
	AvailabilityZones         []string      `json:"availabilityZones"`
	BuildDir                  string        `json:"buildDir"`
	DefaultCompletionWindow   string        `json:"defaultCompletionWindow"`
	MaxCompletionWindow       string        `json:"maxCompletionWindow"`
	Retention                 string        `json:"retention"`
	FileRetention             string        `json:"fileRetention"`
	LogRetentionDays          int           `json:"logRetentionDays"`
	MetricNamespace           string        `json:"metricNamespace"`
	NamePrefix                string        `json:"namePrefix"`
	ThrottleRate              float64       `json:"throttleRate"`
	ThrottleBurst             int           `json:"throttleBurst"`
	Domain                    *DomainProps  `json:"domain"`
	AlarmEmail                string        `json:"alarmEmail"`
	HuggingFaceTokenParameter string        `json:"huggingFaceTokenParameter"`
	DestroyOnRemoval          bool          `json:"destroyOnRemoval"`
	Models                    []ModelConfig `json:"models"`
	// Request limits (request.Limits) and concurrency caps; see Props.
	MaxSequences           int    `json:"maxSequences"`
	MaxTokens              int    `json:"maxTokens"`
	RequestExtraFields     string `json:"requestExtraFields"`
	AllowRemoteMedia       bool   `json:"allowRemoteMedia"`
	APIReservedConcurrency int    `json:"apiReservedConcurrency"`
	WebhooksMaxConcurrency int    `json:"webhooksMaxConcurrency"`
	BatchMaxConcurrency    int    `json:"batchMaxConcurrency"`
	DLQMaxConcurrency      int    `json:"dlqMaxConcurrency"`
	VLLMLockDir            string `json:"vllmLockDir"`
}

// ModelConfig is one entry of Config.Models; see ModelProps.
type ModelConfig struct {
	ModelID                  string            `json:"modelId"`
	Name                     string            `json:"name"`
	Task                     string            `json:"task"`
	VLLMArgs                 []string          `json:"vllmArgs"`
	VLLMVersion              string            `json:"vllmVersion"`
	InstanceTypes            []string          `json:"instanceTypes"`
	MinInstances             int               `json:"minInstances"`
	MaxInstances             int               `json:"maxInstances"`
	TargetBacklogPerInstance float64           `json:"targetBacklogPerInstance"`
	RootVolumeGiB            int               `json:"rootVolumeGiB"`
	RootVolumeThroughput     int               `json:"rootVolumeThroughput"`
	RootVolumeIOPS           int               `json:"rootVolumeIops"`
	WorkerEnv                map[string]string `json:"workerEnv"`
	UnpinnedVLLM             bool              `json:"unpinnedVllm"`
}

var retentionDays = map[int]awslogs.RetentionDays{
	1: awslogs.RetentionDays_ONE_DAY, 3: awslogs.RetentionDays_THREE_DAYS, 5: awslogs.RetentionDays_FIVE_DAYS,
	7: awslogs.RetentionDays_ONE_WEEK, 14: awslogs.RetentionDays_TWO_WEEKS, 30: awslogs.RetentionDays_ONE_MONTH,
	60: awslogs.RetentionDays_TWO_MONTHS, 90: awslogs.RetentionDays_THREE_MONTHS, 120: awslogs.RetentionDays_FOUR_MONTHS,
	150: awslogs.RetentionDays_FIVE_MONTHS, 180: awslogs.RetentionDays_SIX_MONTHS, 365: awslogs.RetentionDays_ONE_YEAR,
	400: awslogs.RetentionDays_THIRTEEN_MONTHS, 545: awslogs.RetentionDays_EIGHTEEN_MONTHS, 731: awslogs.RetentionDays_TWO_YEARS,
}

// ReadConfig parses the config file at path.
func ReadConfig(path string) (Config, error) {
	var c Config
	data, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("lull config: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return c, fmt.Errorf("lull config %s: %w", path, err)
	}
	return c, nil
}

// Props converts c into construct props; BuildDir defaults to buildDir.
func (c Config) Props(buildDir string) (Props, error) {
	var errs []error
	dur := func(field, s string) time.Duration {
		if s == "" {
			return 0
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", field, err))
		}
		return d
	}
	p := Props{
		BuildDir:                  buildDir,
		DefaultCompletionWindow:   dur("defaultCompletionWindow", c.DefaultCompletionWindow),
		MaxCompletionWindow:       dur("maxCompletionWindow", c.MaxCompletionWindow),
		Retention:                 dur("retention", c.Retention),
		FileRetention:             dur("fileRetention", c.FileRetention),
		MetricNamespace:           c.MetricNamespace,
		NamePrefix:                c.NamePrefix,
		ThrottleRate:              c.ThrottleRate,
		ThrottleBurst:             c.ThrottleBurst,
		Domain:                    c.Domain,
		AlarmEmail:                c.AlarmEmail,
		HuggingFaceTokenParameter: c.HuggingFaceTokenParameter,
		DestroyOnRemoval:          c.DestroyOnRemoval,
		MaxAZs:                    c.MaxAZs,
		AvailabilityZones:         c.AvailabilityZones,
		Limits: request.Limits{MaxSequences: c.MaxSequences, MaxTokens: c.MaxTokens,
			ExtraFields: c.RequestExtraFields, AllowRemoteMedia: c.AllowRemoteMedia},
		APIReservedConcurrency: c.APIReservedConcurrency,
		WebhooksMaxConcurrency: c.WebhooksMaxConcurrency,
		BatchMaxConcurrency:    c.BatchMaxConcurrency,
		DLQMaxConcurrency:      c.DLQMaxConcurrency,
		VLLMLockDir:            c.VLLMLockDir,
	}
	if c.BuildDir != "" {
		p.BuildDir = c.BuildDir
	}
	if c.LogRetentionDays != 0 {
		r, ok := retentionDays[c.LogRetentionDays]
		if !ok {
			errs = append(errs, fmt.Errorf("logRetentionDays %d: use 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545 or 731", c.LogRetentionDays))
		}
		p.LogRetention = r
	}
	for _, m := range c.Models {
		p.Models = append(p.Models, ModelProps(m))
	}
	if err := errors.Join(errs...); err != nil {
		return p, fmt.Errorf("lull config: %w", err)
	}
	return p, p.Validate()
}
