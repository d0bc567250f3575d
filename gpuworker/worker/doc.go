// Package worker pulls generations from a model's SQS queue, runs them on a
// local vLLM engine and records the results in S3 and DynamoDB.
package worker
