package faultproxy_test

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	s3sdk "github.com/aws/aws-sdk-go-v2/service/s3"
	sqssdk "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go"

	"github.com/lull-ai/lull/localstack/emulators"
	"github.com/lull-ai/lull/localstack/faultproxy"
	"github.com/lull-ai/lull/shared/awsclients"
	"github.com/lull-ai/lull/shared/lull"
)

func start(t *testing.T, cfg faultproxy.Config) *faultproxy.Proxy {
	t.Helper()
	p, err := faultproxy.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// noRetry makes one SDK call one HTTP call, so each fault reaches the caller.
func noRetry[O interface {
	*ddb.Options | *sqssdk.Options | *s3sdk.Options
}](o O) {
	switch o := any(o).(type) {
	case *ddb.Options:
		o.RetryMaxAttempts = 1
	case *sqssdk.Options:
		o.RetryMaxAttempts = 1
	case *s3sdk.Options:
		o.RetryMaxAttempts = 1
	}
}

func apiCode(err error) string {
	var api smithy.APIError
	if errors.As(err, &api) {
		return api.ErrorCode()
	}
	return ""
}

// TestFaultsAgainstEmulators drives the real SDK clients through the proxy
// to the in-process emulators: a "before" fault is a service error in the
// SDK's terms and the call has no effect; "after" and "cut" faults fail the
// call although it took effect.
func TestFaultsAgainstEmulators(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	emu, err := emulators.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emu.Close() })
	direct, err := awsclients.New(ctx, emu.Endpoints)
	if err != nil {
		t.Fatal(err)
	}
	table, bucket := "fp-"+lull.NewID("t")[2:12], "fp-"+lull.NewID("b")[2:12]
	if _, err := direct.DynamoDB.CreateTable(ctx, &ddb.CreateTableInput{
		TableName: &table, BillingMode: types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("pk"), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: types.KeyTypeHash}},
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := direct.S3.CreateBucket(ctx, &s3sdk.CreateBucketInput{Bucket: &bucket}); err != nil {
		t.Fatal(err)
	}
	q, err := direct.SQS.CreateQueue(ctx, &sqssdk.CreateQueueInput{QueueName: aws.String("fp-" + lull.NewID("q")[2:12])})
	if err != nil {
		t.Fatal(err)
	}

	codes := map[faultproxy.Service][]string{
		faultproxy.DynamoDB: {"InternalServerError", "ServiceUnavailable", "ThrottlingException", "ProvisionedThroughputExceededException"},
		faultproxy.SQS:      {"InternalError", "ServiceUnavailable", "ThrottlingException"},
		faultproxy.S3:       {"InternalError", "ServiceUnavailable", "SlowDown"},
	}
	// Each case does one call through the proxy and reports whether it
	// took effect, read directly from the emulator.
	type call func(t *testing.T, c *awsclients.Clients, key string) (error, bool)
	calls := map[faultproxy.Service]call{
		faultproxy.DynamoDB: func(t *testing.T, c *awsclients.Clients, key string) (error, bool) {
			_, err := c.DynamoDB.PutItem(ctx, &ddb.PutItemInput{TableName: &table,
				Item: map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: key}}}, noRetry)
			out, gerr := direct.DynamoDB.GetItem(ctx, &ddb.GetItemInput{TableName: &table, ConsistentRead: aws.Bool(true),
				Key: map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: key}}})
			if gerr != nil {
				t.Fatal(gerr)
			}
			return err, out.Item != nil
		},
		faultproxy.SQS: func(t *testing.T, c *awsclients.Clients, key string) (error, bool) {
			_, err := c.SQS.SendMessage(ctx, &sqssdk.SendMessageInput{QueueUrl: q.QueueUrl, MessageBody: &key}, noRetry)
			out, rerr := direct.SQS.ReceiveMessage(ctx, &sqssdk.ReceiveMessageInput{QueueUrl: q.QueueUrl, MaxNumberOfMessages: 10})
			if rerr != nil {
				t.Fatal(rerr)
			}
			found := false
			for _, m := range out.Messages {
				found = found || aws.ToString(m.Body) == key
				// Cleanup only: what is checked is whether the send took
				// effect. goaws has been seen to refuse a fresh receipt
				// under load; a message left behind is received (and
				// matched by its unique body) on a later call.
				if _, err := direct.SQS.DeleteMessage(ctx, &sqssdk.DeleteMessageInput{QueueUrl: q.QueueUrl, ReceiptHandle: m.ReceiptHandle}); err != nil {
					t.Logf("cleanup: delete: %v", err)
				}
			}
			return err, found
		},
		faultproxy.S3: func(t *testing.T, c *awsclients.Clients, key string) (error, bool) {
			_, err := c.S3.PutObject(ctx, &s3sdk.PutObjectInput{Bucket: &bucket, Key: &key, Body: bytes.NewReader([]byte("x"))}, noRetry)
			_, herr := direct.S3.HeadObject(ctx, &s3sdk.HeadObjectInput{Bucket: &bucket, Key: &key})
			return err, herr == nil
		},
	}
	targets := map[faultproxy.Service]string{faultproxy.DynamoDB: emu.Endpoints.DynamoDB, faultproxy.SQS: emu.Endpoints.SQS, faultproxy.S3: emu.Endpoints.S3}
	for _, svc := range []faultproxy.Service{faultproxy.DynamoDB, faultproxy.SQS, faultproxy.S3} {
		for _, tc := range []struct {
			kind   faultproxy.Kind
			rule   faultproxy.Rule
			effect bool
		}{
			{faultproxy.Pass, faultproxy.Rule{}, true},
			{faultproxy.Before, faultproxy.Rule{Before: 1}, false},
			{faultproxy.After, faultproxy.Rule{After: 1}, true},
			{faultproxy.Cut, faultproxy.Rule{Cut: 1}, true},
			{faultproxy.Slow, faultproxy.Rule{Slow: 1, SlowFor: 20 * time.Millisecond}, true},
		} {
			t.Run(string(svc)+"/"+string(tc.kind), func(t *testing.T) {
				p := start(t, faultproxy.Config{Target: targets[svc], Rules: map[faultproxy.Service]faultproxy.Rule{svc: tc.rule}, Seed: 1})
				ep := emu.Endpoints
				switch svc {
				case faultproxy.DynamoDB:
					ep.DynamoDB = p.URL
				case faultproxy.SQS:
					ep.SQS = p.URL
				case faultproxy.S3:
					ep.S3 = p.URL
				}
				c, err := awsclients.New(ctx, ep)
				if err != nil {
					t.Fatal(err)
				}
				for i := range 3 {
					err, took := calls[svc](t, c, lull.NewID("k"))
					if took != tc.effect {
						t.Fatalf("call %d took effect = %v, want %v (err %v)", i, took, tc.effect, err)
					}
					switch tc.kind {
					case faultproxy.Pass, faultproxy.Slow:
						if err != nil {
							t.Fatalf("call %d failed: %v", i, err)
						}
					case faultproxy.Before, faultproxy.After:
						if code := apiCode(err); !slices.Contains(codes[svc], code) {
							t.Fatalf("call %d: error %v (code %q), want one of %v", i, err, code, codes[svc])
						}
					case faultproxy.Cut:
						if err == nil || apiCode(err) != "" {
							t.Fatalf("call %d: error %v, want a transport error", i, err)
						}
					}
				}
				if got := p.N(svc, tc.kind); got != 3 {
					t.Fatalf("counted %d %s faults, want 3 (%v)", got, tc.kind, p.Counts())
				}
			})
		}
	}
}

// TestClassify tells services apart by X-Amz-Target, the form Action and
// the default, and puts a form body back whole for the target.
func TestClassify(t *testing.T) {
	t.Parallel()
	var got atomic.Value
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got.Store(string(b))
	}))
	t.Cleanup(target.Close)
	for _, tc := range []struct {
		name    string
		def     faultproxy.Service
		method  string
		path    string
		header  map[string]string
		body    string
		service faultproxy.Service
	}{
		{"dynamodb", "", "POST", "/", map[string]string{"X-Amz-Target": "DynamoDB_20120810.PutItem"}, "{}", faultproxy.DynamoDB},
		{"sqs json", "", "POST", "/", map[string]string{"X-Amz-Target": "AmazonSQS.SendMessage"}, "{}", faultproxy.SQS},
		{"sqs query", "", "POST", "/", map[string]string{"Content-Type": "application/x-www-form-urlencoded"},
			"Action=SendMessage&MessageBody=" + strings.Repeat("a", 1000), faultproxy.SQS},
		{"s3 object", "", "PUT", "/bucket/key", nil, "data", faultproxy.S3},
		{"s3 bucket", "", "GET", "/bucket", nil, "", faultproxy.S3},
		{"engine", faultproxy.Engine, "POST", "/v1/chat/completions", map[string]string{"Content-Type": "application/json"}, "{}", faultproxy.Engine},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rules := map[faultproxy.Service]faultproxy.Rule{tc.service: {Slow: 1, SlowFor: time.Millisecond}}
			p := start(t, faultproxy.Config{Target: target.URL, Default: tc.def, Rules: rules})
			req, _ := http.NewRequest(tc.method, p.URL+tc.path, strings.NewReader(tc.body))
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if p.N(tc.service, faultproxy.Slow) != 1 {
				t.Fatalf("not counted as %s: %v", tc.service, p.Counts())
			}
			if got.Load() != tc.body {
				t.Fatalf("target got body %q, want %q", got.Load(), tc.body)
			}
		})
	}
}

// TestErrorShapes checks the answers SDKs without a test here would parse:
// SQS's query protocol (XML) and the engine's JSON error object.
func TestErrorShapes(t *testing.T) {
	t.Parallel()
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { t.Error("target reached") }))
	t.Cleanup(target.Close)
	p := start(t, faultproxy.Config{Target: target.URL, Rules: map[faultproxy.Service]faultproxy.Rule{faultproxy.SQS: {Before: 1}}})
	resp, err := http.Post(p.URL, "application/x-www-form-urlencoded", strings.NewReader("Action=ReceiveMessage"))
	if err != nil {
		t.Fatal(err)
	}
	var e struct {
		Error struct{ Type, Code, Message string }
	}
	err = xml.NewDecoder(resp.Body).Decode(&e)
	resp.Body.Close()
	if err != nil || resp.StatusCode < 400 || e.Error.Code == "" || e.Error.Type == "" {
		t.Fatalf("query error: %d %+v %v", resp.StatusCode, e, err)
	}

	eng := start(t, faultproxy.Config{Target: target.URL, Default: faultproxy.Engine,
		Rules: map[faultproxy.Service]faultproxy.Rule{faultproxy.Engine: {Before: 1}}})
	resp, err = http.Post(eng.URL+"/v1/completions", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode < 500 || !strings.Contains(string(body), `"object":"error"`) {
		t.Fatalf("engine error: %d %s", resp.StatusCode, body)
	}
}

// TestSeededShares: the same seed gives the same faults in the same call
// order, the shares hold over many calls, and Heal stops every fault.
func TestSeededShares(t *testing.T) {
	t.Parallel()
	var reached atomic.Int64
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached.Add(1) }))
	t.Cleanup(target.Close)
	rule := faultproxy.Rule{Before: 0.1, After: 0.05, Cut: 0.05, Slow: 0.1, SlowFor: time.Microsecond}
	run := func(seed uint64, n int) (*faultproxy.Proxy, []int) {
		p := start(t, faultproxy.Config{Target: target.URL, Rules: map[faultproxy.Service]faultproxy.Rule{faultproxy.DynamoDB: rule}, Seed: seed})
		var statuses []int
		for range n {
			req, _ := http.NewRequest("POST", p.URL, strings.NewReader("{}"))
			req.Header.Set("X-Amz-Target", "DynamoDB_20120810.GetItem")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				statuses = append(statuses, 0) // cut
				continue
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			statuses = append(statuses, resp.StatusCode)
		}
		return p, statuses
	}
	const n = 2000
	p1, a := run(7, n)
	_, b := run(7, n)
	_, c := run(8, n)
	if !slices.Equal(a, b) {
		t.Fatal("the same seed gave different faults")
	}
	if slices.Equal(a, c) {
		t.Fatal("different seeds gave the same faults")
	}
	for kind, share := range map[faultproxy.Kind]float64{faultproxy.Before: 0.1, faultproxy.After: 0.05, faultproxy.Cut: 0.05, faultproxy.Slow: 0.1} {
		got := float64(p1.N(faultproxy.DynamoDB, kind)) / n
		if math.Abs(got-share) > 0.03 {
			t.Errorf("%s share %.3f, want about %.2f", kind, got, share)
		}
	}
	if got := p1.N(faultproxy.DynamoDB, faultproxy.Pass); got < n*6/10 {
		t.Errorf("passed %d of %d", got, n)
	}

	p1.Heal()
	before := p1.Counts()
	for range 50 {
		req, _ := http.NewRequest("POST", p1.URL, strings.NewReader("{}"))
		req.Header.Set("X-Amz-Target", "DynamoDB_20120810.GetItem")
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("after Heal: %v %v", resp, err)
		}
		resp.Body.Close()
	}
	for _, c := range p1.Counts() {
		if c.Kind == faultproxy.Pass {
			continue
		}
		if !slices.Contains(before, c) {
			t.Fatalf("a fault after Heal: %+v", c)
		}
	}
}

// TestStall holds an engine call past the caller's timeout, so it never
// reaches the engine, while calls outside the rule's Only pass.
func TestStall(t *testing.T) {
	t.Parallel()
	var reached atomic.Int64
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
	}))
	t.Cleanup(target.Close)
	p := start(t, faultproxy.Config{Target: target.URL, Default: faultproxy.Engine, Rules: map[faultproxy.Service]faultproxy.Rule{
		faultproxy.Engine: {Stall: 1, StallFor: time.Minute, Only: func(op string) bool { return strings.HasPrefix(op, "POST ") }},
	}})
	client := &http.Client{Timeout: 200 * time.Millisecond}
	start := time.Now()
	_, err := client.Post(p.URL+"/v1/chat/completions", "application/json", strings.NewReader("{}"))
	if err == nil || time.Since(start) > 10*time.Second {
		t.Fatalf("stalled call: err %v after %s", err, time.Since(start))
	}
	resp, err := client.Get(p.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if reached.Load() != 1 || p.N(faultproxy.Engine, faultproxy.Stall) != 1 {
		t.Fatalf("engine reached %d times; counts %v", reached.Load(), p.Counts())
	}
}

func TestNewRejects(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]faultproxy.Config{
		"not loopback":   {Target: "http://10.0.0.1:8000"},
		"public name":    {Target: "http://example.com"},
		"relative":       {Target: "/x"},
		"shares over 1":  {Target: "http://127.0.0.1:1", Rules: map[faultproxy.Service]faultproxy.Rule{faultproxy.S3: {Before: 0.6, After: 0.6}}},
		"negative share": {Target: "http://127.0.0.1:1", Rules: map[faultproxy.Service]faultproxy.Rule{faultproxy.S3: {Cut: -0.1}}},
	} {
		if _, err := faultproxy.New(cfg); err == nil {
			t.Errorf("%s: New accepted %+v", name, cfg)
		}
	}
}
