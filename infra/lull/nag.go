package lull

import (
	"github.com/aws/jsii-runtime-go"
	"github.com/cdklabs/cdk-nag-go/cdknag/v2"
)

// Regexes (in cdk-nag's /…/g form) for the wildcard resources this
// construct grants on purpose.
const (
	// Objects under one of the bucket's prefixes: object keys carry the
	// tenant and generation IDs, unknown when the policy is written.
	prefixObjects = `/^Resource::<.*Bucket[0-9A-F]{8}\.Arn>\/(inputs|outputs|files|uploads)\/\*$/g`
	// A named Auto Scaling group: its ARN embeds a UUID that exists only
	// after creation, so IAM policies name the group and wildcard the UUID.
	namedGroup = `/^Resource::arn:<AWS::Partition>:autoscaling:<AWS::Region>:<AWS::AccountId>:autoScalingGroup:\*:autoScalingGroupName\/<AWS::StackName>-gpu-[a-z0-9-]+$/g`
)

func suppress(scope any, id, reason string, appliesTo ...any) {
	s := &cdknag.NagPackSuppression{Id: jsii.String(id), Reason: jsii.String(reason)}
	if len(appliesTo) > 0 {
		s.AppliesTo = &appliesTo
	}
	cdknag.NagSuppressions_AddResourceSuppressions(scope, &[]*cdknag.NagPackSuppression{s}, jsii.Bool(true))
}

func regex(r string) any { return &cdknag.RegexAppliesTo{Regex: jsii.String(r)} }

// suppressions records every cdk-nag AwsSolutions finding this construct
// accepts, each with its reason. The tests fail on any other finding.
func (s *Service) suppressions() {
	suppress(s.Bucket, "AwsSolutions-S1",
		"Only this stack's roles can reach the bucket (no public access, TLS only, bucket-owner-enforced); "+
			"server access logs would duplicate every worker write for little audit value. Enable CloudTrail S3 data events where an object-level audit is required.")
	suppress(s.route, "AwsSolutions-APIG4",
		"The API Lambda authenticates every request itself: OpenAI SDKs send `Authorization: Bearer <api key>`, "+
			"which the handler hashes and looks up per tenant; a Lambda authorizer would add a second invocation and latency for the same check.")
	for _, name := range []string{"api", "webhooks", "batch"} {
		suppress(s.Functions[name].Role(), "AwsSolutions-IAM5",
			"Object keys under inputs/, outputs/, files/ and uploads/ are per tenant, generation, file or upload part, created at run time; grants are limited to the prefixes and actions each Lambda uses.",
			regex(prefixObjects))
	}
	suppress(s.Functions["scaler"].Role(), "AwsSolutions-IAM5",
		"autoscaling:DescribeAutoScalingGroups supports no resource-level permissions (IAM accepts only \"*\" for Describe* actions); "+
			"it is read-only and the statement grants nothing else. The scaler publishes its metrics as Embedded Metric Format "+
			"log lines, so it holds no cloudwatch:PutMetricData.",
		"Resource::*")
	for _, m := range s.Models {
		suppress(m.Fleet.Role, "AwsSolutions-IAM5",
			"The worker reads its generation's input under inputs/ and writes its output under outputs/ (keys created at run time), "+
				"and completes the termination lifecycle hook of its own group, named exactly; only the group's creation UUID is a wildcard.",
			regex(prefixObjects), regex(namedGroup))
		suppress(m.Fleet.Group, "AwsSolutions-AS3",
			"Spot launches and reclaims are routine for this fleet; e-mailing each would bury real alarms. "+
				"Capacity is on the dashboard and the queue-age alarm fires when the fleet cannot keep up.")
		suppress(m.Fleet.Group, "CdkNagValidationFailure",
			"AwsSolutions-EC26 cannot read a launch template inside a MixedInstancesPolicy; "+
				"the launch template encrypts its only EBS volume (asserted by the infra tests).",
			"AwsSolutions-EC26")
	}
}
