package extemu

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// fakeTB records what Require asks of a test instead of stopping it.
type fakeTB struct {
	testing.TB
	fatal, skip string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Fatalf(format string, args ...any) {
	if f.fatal == "" {
		f.fatal = fmt.Sprintf(format, args...)
	}
}
func (f *fakeTB) Skipf(format string, args ...any) {
	if f.skip == "" {
		f.skip = fmt.Sprintf(format, args...)
	}
}

func setAll(t *testing.T, ddb, sqs, s3, require string) {
	t.Setenv(EnvDynamoDB, ddb)
	t.Setenv(EnvSQS, sqs)
	t.Setenv(EnvS3, s3)
	t.Setenv(EnvRequire, require)
}

func TestFromEnv(t *testing.T) {
	setAll(t, "http://127.0.0.1:8000/", "http://127.0.0.1:4566", " http://127.0.0.1:4566 ", "")
	ep, ok := FromEnv()
	want := Endpoints{DynamoDB: "http://127.0.0.1:8000", SQS: "http://127.0.0.1:4566", S3: "http://127.0.0.1:4566"}
	if !ok || ep != want {
		t.Fatalf("FromEnv() = %+v, %v; want %+v, true", ep, ok, want)
	}

	setAll(t, "http://127.0.0.1:8000", "", "http://127.0.0.1:4566", "")
	if ep, ok := FromEnv(); ok || ep != (Endpoints{}) {
		t.Fatalf("FromEnv() with SQS unset = %+v, %v; want zero, false", ep, ok)
	}

	setAll(t, "127.0.0.1:8000", "http://127.0.0.1:4566", "http://127.0.0.1:4566", "")
	if _, ok := FromEnv(); ok {
		t.Fatal("FromEnv() accepted a URL without a scheme")
	}
}

func TestRequirePolicy(t *testing.T) {
	cases := []struct {
		name            string
		ddb, sqs, s3    string
		require         string
		fatal, skip, ok bool
	}{
		{name: "all set", ddb: "http://127.0.0.1:1", sqs: "http://127.0.0.1:2", s3: "http://127.0.0.1:2", ok: true},
		{name: "all set, required", ddb: "http://127.0.0.1:1", sqs: "http://127.0.0.1:2", s3: "http://127.0.0.1:2", require: "1", ok: true},
		{name: "none set", skip: true},
		{name: "none set, required", require: "1", fatal: true},
		{name: "one missing", ddb: "http://127.0.0.1:1", sqs: "http://127.0.0.1:2", skip: true},
		{name: "one missing, required", ddb: "http://127.0.0.1:1", sqs: "http://127.0.0.1:2", require: "1", fatal: true},
		{name: "required only with 1", require: "true", skip: true},
		{name: "malformed, not required", ddb: "ftp://x", sqs: "http://127.0.0.1:2", s3: "http://127.0.0.1:2", fatal: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			setAll(t, c.ddb, c.sqs, c.s3, c.require)
			f := &fakeTB{}
			ep := Require(f)
			if (f.fatal != "") != c.fatal || (f.skip != "") != c.skip {
				t.Fatalf("fatal=%q skip=%q; want fatal=%v skip=%v", f.fatal, f.skip, c.fatal, c.skip)
			}
			if c.ok && ep.DynamoDB != c.ddb {
				t.Fatalf("Require() = %+v", ep)
			}
			if c.fatal && c.require == "1" && !strings.Contains(f.fatal, EnvSQS) && !strings.Contains(f.fatal, EnvS3) {
				t.Fatalf("failure message names no missing variable: %q", f.fatal)
			}
		})
	}
}

// TestEndpointsAnswer checks, when the emulators are configured (make test),
// that the variables point at live servers: DynamoDB Local answers
// ListTables and fauxqs answers its health check on both URLs.
func TestEndpointsAnswer(t *testing.T) {
	ep := Require(t)
	client := &http.Client{Timeout: 10 * time.Second}
	req, err := http.NewRequest(http.MethodPost, ep.DynamoDB+"/", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-amz-json-1.0")
	req.Header.Set("X-Amz-Target", "DynamoDB_20120810.ListTables")
	// DynamoDB Local wants a SigV4-shaped header; it does not check the signature.
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=test/20200101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("DynamoDB Local at %s: %v", ep.DynamoDB, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "TableNames") {
		t.Fatalf("DynamoDB Local ListTables: %d %s", resp.StatusCode, body)
	}
	for _, u := range []string{ep.SQS, ep.S3} {
		resp, err := client.Get(u + "/health")
		if err != nil {
			t.Fatalf("fauxqs at %s: %v", u, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("fauxqs %s/health: %d", u, resp.StatusCode)
		}
	}
}
