// Package extemu tells tests where the external AWS emulators run: DynamoDB
// Local (AWS's jar) and fauxqs (SQS and S3 on one port), the higher-fidelity
// second backend that lull's storage adapter suites run against besides the
// in-process emulators.
//
// localstack/scripts/emulators.sh installs and starts them on free 127.0.0.1
// ports and publishes their base URLs in three environment variables:
//
//	LULL_EXT_DYNAMODB_URL  DynamoDB Local, e.g. http://127.0.0.1:41587
//	LULL_EXT_SQS_URL       fauxqs, e.g. http://127.0.0.1:35397
//	LULL_EXT_S3_URL        fauxqs again (the same server; use path-style S3)
//
// `emulators.sh run -- CMD` exports them to CMD (make test runs go test that
// way, with LULL_REQUIRE_EXTERNAL=1); `emulators.sh start` writes them to
// .cache/emulators/env instead, for a shell:
//
//	bash localstack/scripts/emulators.sh start
//	set -a; . .cache/emulators/env; set +a
//	go test ./shared/...
//	bash localstack/scripts/emulators.sh stop
//
// A suite asks for them with Require, which skips the test when they are not
// set, or fails it when LULL_REQUIRE_EXTERNAL=1 says they must be:
//
//	func TestStoreExternal(t *testing.T) {
//		ep := extemu.Require(t)
//		cfg := aws.Config{Region: "us-east-1",
//			Credentials: credentials.NewStaticCredentialsProvider("test", "test", "")}
//		ddb := dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) { o.BaseEndpoint = aws.String(ep.DynamoDB) })
//		q := sqs.NewFromConfig(cfg, func(o *sqs.Options) { o.BaseEndpoint = aws.String(ep.SQS) })
//		s3c := s3.NewFromConfig(cfg, func(o *s3.Options) { o.BaseEndpoint = aws.String(ep.S3); o.UsePathStyle = true })
//		...
//	}
//
// What each emulator gets right and wrong is in localstack/scripts/EMULATORS.md.
// The package uses the standard library only.
package extemu

import (
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
)

// The environment variables this package reads.
const (
	// EnvDynamoDB names DynamoDB Local's base URL.
	EnvDynamoDB = "LULL_EXT_DYNAMODB_URL"
	// EnvSQS names fauxqs' base URL for SQS.
	EnvSQS = "LULL_EXT_SQS_URL"
	// EnvS3 names fauxqs' base URL for S3 (path-style addressing).
	EnvS3 = "LULL_EXT_S3_URL"
	// EnvRequire, when "1", makes Require fail instead of skip when the
	// emulators' variables are missing. make test sets it.
	EnvRequire = "LULL_REQUIRE_EXTERNAL"
)

// Endpoints are the base URLs of the running external emulators, each of the
// form http://127.0.0.1:PORT with no trailing slash, ready for an
// aws-sdk-go-v2 client's BaseEndpoint.
type Endpoints struct {
	DynamoDB string // DynamoDB Local
	SQS      string // fauxqs
	S3       string // fauxqs; clients need UsePathStyle
}

// FromEnv reads the three LULL_EXT_*_URL variables. ok is true only when all
// three are set to absolute http(s) URLs; see Require for the policy that
// tests should follow when it is false.
func FromEnv() (ep Endpoints, ok bool) {
	ep, missing, err := lookup(os.Getenv)
	return ep, len(missing) == 0 && err == nil
}

// Required reports whether LULL_REQUIRE_EXTERNAL=1, i.e. whether missing
// external emulators are an error rather than a reason to skip.
func Required() bool {
	return os.Getenv(EnvRequire) == "1"
}

// Require returns the external emulators' endpoints for a test. When the
// LULL_EXT_*_URL variables are not all set it skips the test, unless
// LULL_REQUIRE_EXTERNAL=1, in which case it fails it (make test sets that
// variable and starts the emulators, so there a missing emulator is a broken
// run, not a reason to test less). A variable that is set but is not an
// absolute http(s) URL fails the test either way.
func Require(t testing.TB) Endpoints {
	t.Helper()
	ep, missing, err := lookup(os.Getenv)
	switch {
	case err != nil:
		t.Fatalf("extemu: %v", err)
	case len(missing) > 0 && Required():
		t.Fatalf("extemu: %s=1 but %s not set; run the tests through "+
			"`bash localstack/scripts/emulators.sh run -- go test ...` (as make test does), "+
			"or `emulators.sh start` and source .cache/emulators/env",
			EnvRequire, strings.Join(missing, ", "))
	case len(missing) > 0:
		t.Skipf("extemu: external emulators not configured (%s unset); "+
			"`make test` or `bash localstack/scripts/emulators.sh run -- go test ...` runs them",
			strings.Join(missing, ", "))
	}
	return ep
}

// lookup reads the variables through getenv. missing lists the unset ones;
// err reports one that is set to something other than an absolute http(s)
// URL with a host.
func lookup(getenv func(string) string) (ep Endpoints, missing []string, err error) {
	for _, v := range []struct {
		name string
		dst  *string
	}{{EnvDynamoDB, &ep.DynamoDB}, {EnvSQS, &ep.SQS}, {EnvS3, &ep.S3}} {
		raw := strings.TrimSpace(getenv(v.name))
		if raw == "" {
			missing = append(missing, v.name)
			continue
		}
		u, perr := url.Parse(raw)
		if perr != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return Endpoints{}, nil, fmt.Errorf("%s=%q is not an absolute http(s) URL", v.name, raw)
		}
		*v.dst = strings.TrimRight(raw, "/")
	}
	if len(missing) > 0 {
		return Endpoints{}, missing, nil
	}
	return ep, nil, nil
}
