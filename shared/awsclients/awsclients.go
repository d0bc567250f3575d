// Package awsclients builds the aws-sdk-go-v2 clients lull uses, once per
// process. Without endpoints it uses the SDK's default chain (which also
// honours AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_<SERVICE>); with endpoints it
// targets local emulators with static test credentials.
package awsclients

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
)

// Endpoints overrides service endpoints, e.g. for emulators. Empty fields use
// the SDK's defaults.
type Endpoints struct {
	DynamoDB string
	SQS      string
	S3       string
}

// Clients holds one client per service.
type Clients struct {
	DynamoDB *dynamodb.Client
	SQS      *sqs.Client
	S3       *s3.Client
	// AutoScaling reads the GPU fleets' groups (the scaler). No emulator
	// here serves it; it follows the SDK's default endpoint chain
	// (AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_AUTO_SCALING) even when the other
	// endpoints are overridden.
	AutoScaling *autoscaling.Client
	// KMS seals webhook secrets (the API and the webhook dispatcher). No
	// emulator here serves it either: the dev stack seals with a local key.
	KMS *kms.Client
}

// New loads the default AWS configuration and builds the clients. When any
// endpoint is set, credentials default to static test values (unless the
// environment provides some) and S3 uses path-style addressing.
func New(ctx context.Context, ep Endpoints) (*Clients, error) {
	opts := []func(*config.LoadOptions) error{
		config.WithHTTPClient(awshttp.NewBuildableClient().WithTransportOptions(func(t *http.Transport) {
			t.MaxIdleConns = 256
			t.MaxIdleConnsPerHost = 128
			t.IdleConnTimeout = 90 * time.Second
		})),
	}
	local := ep != (Endpoints{})
	if local {
		opts = append(opts, config.WithRegion("us-east-1"),
			config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider("test", "test", "")))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("awsclients: load config: %w", err)
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	return &Clients{
		DynamoDB: dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) {
			if ep.DynamoDB != "" {
				o.BaseEndpoint = aws.String(ep.DynamoDB)
				// minidyn sends no x-amz-crc32; don't warn on every response.
				o.DisableValidateResponseChecksum = true
			}
		}),
		SQS: sqs.NewFromConfig(cfg, func(o *sqs.Options) {
			if ep.SQS != "" {
				o.BaseEndpoint = aws.String(ep.SQS)
			}
		}),
		S3: s3.NewFromConfig(cfg, func(o *s3.Options) {
			if ep.S3 != "" {
				o.BaseEndpoint = aws.String(ep.S3)
				o.UsePathStyle = true
				// Emulators answer without the checksums newer SDKs ask for.
				o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
				o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
			}
		}),
		AutoScaling: autoscaling.NewFromConfig(cfg),
		KMS:         kms.NewFromConfig(cfg),
	}, nil
}
