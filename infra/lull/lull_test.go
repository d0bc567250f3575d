package lull_test

// One synthesis serves every test in this binary (TestMain): jsii runs a
// Node process per binary, cannot run tests in parallel, and a synthesis of
// this stack takes seconds. Tests read the template as plain JSON (with a
// small resolver for intrinsic functions) and, for the resource shapes,
// through assertions.Template.

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/assertions"
	"github.com/aws/aws-cdk-go/awscdk/v2/cxapi"
	"github.com/aws/jsii-runtime-go"
	"github.com/cdklabs/cdk-nag-go/cdknag/v2"

	"github.com/lull-ai/lull/gpuworker/worker"
	"github.com/lull-ai/lull/infra/lull"
	"github.com/lull-ai/lull/lambdas/scaler/backlog"
	"github.com/lull-ai/lull/shared/envconfig"
	"github.com/lull-ai/lull/shared/settings"
)

// The fixture: two models, one on x86 GPUs with a client name that differs
// from the engine's and its own target, one on Graviton GPUs with defaults.
var fixture = lull.Props{
	Models: []lull.ModelProps{
		{
			ModelID: "Qwen/Qwen2.5-7B-Instruct", Name: "qwen-7b",
			VLLMArgs:      []string{"--max-model-len", "8192"},
			InstanceTypes: []string{"g6.xlarge", "g5.xlarge", "g6e.xlarge"},
			MaxInstances:  3, TargetBacklogPerInstance: 64,
			WorkerEnv: map[string]string{"LULL_GATE_TARGET_RUNNING": "48"},
		},
		{
			ModelID:       "meta-llama/Llama-3.2-1B-Instruct",
			InstanceTypes: []string{"g5g.xlarge", "g5g.2xlarge"},
		},
		{
			ModelID: "BAAI/bge-base-en-v1.5", Name: "bge-base", Task: "embed",
			InstanceTypes: []string{"g6.xlarge", "g5.xlarge"},
		},
	},
	HuggingFaceTokenParameter: "/lull/hf-token",
	AlarmEmail:                "ops@example.com",
	Domain:                    &lull.DomainProps{Name: "api.example.com", CertificateArn: "arn:aws:acm:us-east-1:123456789012:certificate/abc"},
}

// The test stack's environment and its region's zones.
const testAccount, testRegion = "123456789012", "us-east-1"

var testZones = []any{"us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d", "us-east-1e", "us-east-1f"}

var (
	buildDir string                    // placeholder artifacts, for NewService calls in tests
	tmpl     map[string]any            // the synthesized template
	template assertions.Template       // the same, for assertions
	messages []*cxapi.SynthesisMessage // annotations, cdk-nag's included
	service  *lull.Service
)

func TestMain(m *testing.M) {
	// JSII_DEPRECATED=quiet and JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=20
	// quiet Node's notices; the jsii kernel starts before TestMain, so they
	// must come from the environment (make test-infra sets them).
	code := func() int {
		dir, err := os.MkdirTemp("", "lull-infra-test")
		if err != nil {
			panic(err)
		}
		defer os.RemoveAll(dir)
		if err := placeholders(dir); err != nil {
			panic(err)
		}
		buildDir = dir
		if err := synth(dir); err != nil {
			fmt.Fprintln(os.Stderr, "synth:", err)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

// placeholders writes stand-ins for the prebuilt artifacts, so the tests
// need no cross-compilation.
func placeholders(dir string) error {
	var paths []string
	for _, n := range lull.LambdaNames {
		paths = append(paths, filepath.Join(dir, "lambda", n, "bootstrap"))
	}
	for _, a := range []string{"amd64", "arm64"} {
		paths = append(paths, filepath.Join(dir, "gpuworker", "linux-"+a, "gpuworker"),
			filepath.Join(dir, "vllm", "requirements-vllm-"+lull.DefaultVLLMVersion+"-"+a+".txt"))
	}
	paths = append(paths, filepath.Join(dir, "vllm", "requirements-uv-"+lull.UVVersion+".txt"))
	for _, p := range paths {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
			return err
		}
	}
	return nil
}

func synth(buildDir string) error {
	outdir, err := os.MkdirTemp("", "lull-infra-cdkout")
	if err != nil {
		return err
	}
	defer os.RemoveAll(outdir)
	// An environment-specific stack, as infra/main.go makes it, with the
	// region's zones in the context (as cdk.context.json caches them after
	// the first lookup): the VPC spans all six.
	app := awscdk.NewApp(&awscdk.AppProps{Outdir: jsii.String(outdir), Context: &map[string]any{
		"availability-zones:account=" + testAccount + ":region=" + testRegion: testZones,
	}})
	stack := awscdk.NewStack(app, jsii.String("LullTest"), &awscdk.StackProps{
		Env: &awscdk.Environment{Account: jsii.String(testAccount), Region: jsii.String(testRegion)}})
	props := fixture
	props.BuildDir = buildDir
	service, err = lull.NewService(stack, "Lull", props)
	if err != nil {
		return err
	}
	awscdk.Aspects_Of(app).Add(cdknag.NewAwsSolutionsChecks(&cdknag.NagPackProps{Verbose: jsii.Bool(true)}), nil)
	artifact := app.Synth(nil).GetStackArtifact(stack.ArtifactId())
	raw, err := json.Marshal(artifact.Template())
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, &tmpl); err != nil {
		return err
	}
	if out := os.Getenv("LULL_TEMPLATE_OUT"); out != "" { // for debugging: the synthesized template
		if err := os.WriteFile(out, raw, 0o644); err != nil {
			return err
		}
	}
	template = assertions.Template_FromJSON(&tmpl, nil)
	messages = *artifact.Messages()
	return nil
}

// check runs an assertions.Template call, turning its panic into a failure.
func check(t *testing.T, what string, fn func()) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Errorf("%s: %v", what, r)
		}
	}()
	fn()
}

type resource struct {
	ID    string
	Type  string
	Props map[string]any
}

func resources(typ string) []resource {
	var out []resource
	for id, r := range tmpl["Resources"].(map[string]any) {
		r := r.(map[string]any)
		if r["Type"] == typ {
			props, _ := r["Properties"].(map[string]any)
			out = append(out, resource{ID: id, Type: typ, Props: props})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// render resolves intrinsic functions to a string: Ref and GetAtt become
// ${LogicalId} and ${LogicalId.Attr}, Join joins, Base64 is the identity.
func render(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case float64:
		return fmt.Sprint(x)
	case bool:
		return fmt.Sprint(x)
	case map[string]any:
		if r, ok := x["Ref"]; ok {
			return "${" + r.(string) + "}"
		}
		if g, ok := x["Fn::GetAtt"]; ok {
			parts := g.([]any)
			return "${" + render(parts[0]) + "." + render(parts[1]) + "}"
		}
		if j, ok := x["Fn::Join"]; ok {
			args := j.([]any)
			var parts []string
			for _, p := range args[1].([]any) {
				parts = append(parts, render(p))
			}
			return strings.Join(parts, args[0].(string))
		}
		if b, ok := x["Fn::Base64"]; ok {
			return render(b)
		}
		if s, ok := x["Fn::Sub"]; ok {
			if list, ok := s.([]any); ok {
				return render(list[0])
			}
			return render(s)
		}
		if s, ok := x["Fn::Select"]; ok {
			args := s.([]any)
			return fmt.Sprintf("${Select[%v]}", args[0])
		}
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func get(m map[string]any, path ...string) any {
	var v any = m
	for _, p := range path {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[p]
	}
	return v
}

// functionByName finds the Lambda whose description is "lull <name>".
func functionByName(t *testing.T, name string) resource {
	t.Helper()
	for _, r := range resources("AWS::Lambda::Function") {
		if r.Props["Description"] == "lull "+name {
			return r
		}
	}
	t.Fatalf("no Lambda %q", name)
	return resource{}
}

func queueByName(t *testing.T, name string) resource {
	t.Helper()
	for _, r := range resources("AWS::SQS::Queue") {
		if r.Props["QueueName"] == name {
			return r
		}
	}
	t.Fatalf("no queue %q", name)
	return resource{}
}

func lookup(env map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := env[k]; return v, ok }
}

// TestLambdaEnvironmentMatchesSettings fails when a Lambda's environment and
// the settings struct its binary loads drift apart: every variable set must
// be one the struct declares, every required one must be set, and every
// value must load.
func TestLambdaEnvironmentMatchesSettings(t *testing.T) {
	structs := map[string]func() any{
		"api": func() any { return &settings.API{} }, "webhooks": func() any { return &settings.Webhooks{} },
		"batch": func() any { return &settings.Batch{} }, "scaler": func() any { return &settings.Scaler{} },
		"dlq": func() any { return &settings.DLQ{} },
	}
	if got := slices.Sorted(func(yield func(string) bool) {
		for k := range structs {
			if !yield(k) {
				return
			}
		}
	}); !slices.Equal(got, slices.Sorted(slices.Values(lull.LambdaNames))) {
		t.Fatalf("Lambdas %v, settings structs %v", lull.LambdaNames, got)
	}
	for _, name := range lull.LambdaNames {
		t.Run(name, func(t *testing.T) {
			fn := functionByName(t, name)
			env := map[string]string{}
			for k, v := range get(fn.Props, "Environment", "Variables").(map[string]any) {
				env[k] = render(v)
			}
			cfg := structs[name]()
			known := map[string]bool{}
			for _, v := range envconfig.Vars(cfg) {
				known[v.Name] = true
				if _, ok := env[v.Name]; v.Required && !ok {
					t.Errorf("%s: required %s is not set", name, v.Name)
				}
			}
			for k := range env {
				if !known[k] {
					t.Errorf("%s: sets %s, which %T does not read", name, k, cfg)
				}
			}
			if err := envconfig.Load(cfg, lookup(env)); err != nil {
				t.Errorf("%s: environment does not load: %v", name, err)
			}
		})
	}
}

// TestModelMaps checks LULL_MODEL_QUEUES and LULL_ASG_NAMES against the
// queues and groups the stack creates.
// TestModelTasks: the API and the batch Lambda learn which models embed
// (LULL_MODEL_TASKS), and the value loads as settings.Queues.Tasks.
func TestModelTasks(t *testing.T) {
	for _, fn := range []string{"api", "batch"} {
		env := map[string]string{}
		for k, v := range get(functionByName(t, fn).Props, "Environment", "Variables").(map[string]any) {
			env[k] = render(v)
		}
		var cfg settings.Batch
		if err := envconfig.Load(&cfg, lookup(env)); err != nil {
			t.Fatalf("%s: %v", fn, err)
		}
		tasks, err := cfg.Tasks()
		if err != nil || len(tasks) != 1 || tasks["bge-base"] != "embed" {
			t.Fatalf("%s: LULL_MODEL_TASKS = %q → %v, %v; want bge-base embedding", fn, env["LULL_MODEL_TASKS"], tasks, err)
		}
	}
}

func TestModelMaps(t *testing.T) {
	var cfg settings.Scaler
	env := map[string]string{}
	for k, v := range get(functionByName(t, "scaler").Props, "Environment", "Variables").(map[string]any) {
		env[k] = render(v)
	}
	if err := envconfig.Load(&cfg, lookup(env)); err != nil {
		t.Fatal(err)
	}
	groups := map[string]bool{}
	for _, g := range resources("AWS::AutoScaling::AutoScalingGroup") {
		groups[render(g.Props["AutoScalingGroupName"])] = true
	}
	for _, m := range fixture.Models {
		name := m.Name
		if name == "" {
			name = m.ModelID
		}
		q := queueByName(t, "requests-"+lull.Slug(name))
		if got := cfg.ModelQueues[name]; got != "${"+q.ID+"}" {
			t.Errorf("LULL_MODEL_QUEUES[%s] = %q, want the URL of %s", name, got, q.ID)
		}
		if !groups[cfg.ASGNames[name]] {
			t.Errorf("LULL_ASG_NAMES[%s] = %q, not a group name (%v)", name, cfg.ASGNames[name], groups)
		}
		// The scaler reads, and the worker completes the lifecycle hook of,
		// the group whose instances serve this model.
		own, ok := groupOfModel(t)[name]
		if !ok {
			t.Errorf("no group launches workers for %s", name)
		}
		if cfg.ASGNames[name] != own {
			t.Errorf("LULL_ASG_NAMES[%s] = %q, but %s's workers run in %q", name, cfg.ASGNames[name], name, own)
		}
		if ud := launchTemplates(t)[name]; !strings.Contains(ud, "\nLULL_ASG_NAME=\""+own+"\"\n") {
			t.Errorf("%s's worker env sets no LULL_ASG_NAME=%q", name, own)
		}
	}
	if len(cfg.ModelQueues) != len(fixture.Models) || len(cfg.ASGNames) != len(fixture.Models) {
		t.Errorf("maps have %d and %d models, want %d", len(cfg.ModelQueues), len(cfg.ASGNames), len(fixture.Models))
	}
	if cfg.MetricNamespace != "Lull/LullTest" {
		t.Errorf("LULL_METRIC_NAMESPACE = %q, want Lull/<stack name>", cfg.MetricNamespace)
	}
}

// groupOfModel maps each model to the name of the group that launches its
// workers: group → launch template (MixedInstancesPolicy) → LULL_MODEL in
// the user data.
func groupOfModel(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	modelRe := regexp.MustCompile(`(?m)^LULL_MODEL="([^"]*)"$`)
	for _, g := range resources("AWS::AutoScaling::AutoScalingGroup") {
		ltID := strings.Trim(render(get(g.Props, "MixedInstancesPolicy", "LaunchTemplate", "LaunchTemplateSpecification", "LaunchTemplateId")), "${}")
		for _, lt := range resources("AWS::EC2::LaunchTemplate") {
			if lt.ID != ltID {
				continue
			}
			if m := modelRe.FindStringSubmatch(render(get(lt.Props, "LaunchTemplateData", "UserData"))); m != nil {
				out[m[1]] = render(g.Props["AutoScalingGroupName"])
			}
		}
	}
	return out
}

var (
	envFileRe = regexp.MustCompile(`(?s)cat > ` + regexp.QuoteMeta(lull.WorkerEnvFile) + ` <<'LULL_ENV'\n(.*?)\nLULL_ENV\n`)
	assignRe  = regexp.MustCompile(`\b((?:LULL|VLLM)_[A-Z0-9_]+)=`)
)

// launchTemplates maps the model name each launch template serves to its
// rendered user data.
func launchTemplates(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, lt := range resources("AWS::EC2::LaunchTemplate") {
		ud := render(get(lt.Props, "LaunchTemplateData", "UserData"))
		m := regexp.MustCompile(`(?m)^LULL_MODEL="([^"]*)"$`).FindStringSubmatch(ud)
		if m == nil {
			t.Fatalf("%s: user data sets no LULL_MODEL:\n%s", lt.ID, ud)
		}
		out[m[1]] = ud
	}
	return out
}

// TestWorkerEnvironmentMatchesConfig fails when the user data and
// worker.Config drift apart: the env file sets only variables the worker
// reads (plus AWS_REGION and HF_HOME for the SDK and vLLM), every required
// one, values that load, and no LULL_ variable is set anywhere else.
func TestWorkerEnvironmentMatchesConfig(t *testing.T) {
	vars := envconfig.Vars(&worker.Config{})
	known := map[string]bool{}
	for _, v := range vars {
		known[v.Name] = true
	}
	extra := map[string]bool{"AWS_REGION": true, "HF_HOME": true}
	uds := launchTemplates(t)
	if len(uds) != len(fixture.Models) {
		t.Fatalf("%d launch templates, want %d", len(uds), len(fixture.Models))
	}
	for _, m := range fixture.Models {
		name := cmpOr(m.Name, m.ModelID)
		t.Run(lull.Slug(name), func(t *testing.T) {
			ud := uds[name]
			block := envFileRe.FindStringSubmatch(ud)
			if block == nil {
				t.Fatalf("no env file heredoc in user data:\n%s", ud)
			}
			env := map[string]string{}
			for _, line := range strings.Split(block[1], "\n") {
				k, v, ok := strings.Cut(line, "=")
				if !ok || len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
					t.Fatalf("env file line %q is not NAME=\"value\"", line)
				}
				if _, dup := env[k]; dup {
					t.Errorf("%s set twice", k)
				}
				env[k] = v[1 : len(v)-1]
			}
			for k := range env {
				if !known[k] && !extra[k] {
					t.Errorf("env file sets %s, which worker.Config does not read", k)
				}
			}
			for _, v := range vars {
				if _, ok := env[v.Name]; v.Required && !ok {
					t.Errorf("required %s is not set", v.Name)
				}
			}
			for _, a := range assignRe.FindAllStringSubmatch(ud, -1) {
				if !known[a[1]] {
					t.Errorf("user data assigns %s, which worker.Config does not read", a[1])
				}
			}
			var cfg worker.Config
			if err := envconfig.Load(&cfg, lookup(env)); err != nil {
				t.Fatalf("env file does not load: %v", err)
			}
			// The values point at this model's resources.
			q := queueByName(t, "requests-"+lull.Slug(name))
			if cfg.Model != name || cfg.QueueURL != "${"+q.ID+"}" {
				t.Errorf("LULL_MODEL=%q LULL_QUEUE_URL=%q, want %q and ${%s}", cfg.Model, cfg.QueueURL, name, q.ID)
			}
			if m.Name != "" && cfg.EngineModel != m.ModelID {
				t.Errorf("LULL_ENGINE_MODEL = %q, want %q", cfg.EngineModel, m.ModelID)
			}
			wantCmd := "vllm serve " + m.ModelID + " --host 127.0.0.1 --port 8000"
			if !strings.Contains(cfg.VLLMCommand, wantCmd) || !strings.HasSuffix(cfg.VLLMCommand, strings.Join(append([]string{""}, m.VLLMArgs...), " ")) {
				t.Errorf("LULL_VLLM_COMMAND = %q, want %q and the model's arguments", cfg.VLLMCommand, wantCmd)
			}
			// An embedding model runs on vLLM's pooling runner; the others do not.
			if pooling := strings.Contains(cfg.VLLMCommand, " --runner pooling"); pooling != (m.Task == "embed") {
				t.Errorf("LULL_VLLM_COMMAND = %q for a %q model", cfg.VLLMCommand, m.Task)
			}
			if cfg.IMDSURL == "" || cfg.LifecycleHook != lull.LifecycleHookName || cfg.Gate != "metrics" {
				t.Errorf("IMDS %q, hook %q, gate %q", cfg.IMDSURL, cfg.LifecycleHook, cfg.Gate)
			}
			hookFound := false
			for _, h := range resources("AWS::AutoScaling::LifecycleHook") {
				if h.Props["LifecycleHookName"] == cfg.LifecycleHook && h.Props["LifecycleTransition"] == "autoscaling:EC2_INSTANCE_TERMINATING" {
					hookFound = true
				}
			}
			if !hookFound {
				t.Error("no termination lifecycle hook named LULL_LIFECYCLE_HOOK")
			}
			for k, v := range m.WorkerEnv {
				if env[k] != v {
					t.Errorf("WorkerEnv %s = %q, env file has %q", k, v, env[k])
				}
			}
			for _, want := range []string{
				"EnvironmentFile=" + lull.WorkerEnvFile, "KillMode=mixed", "ExecStart=/opt/lull/bin/gpuworker",
				"systemctl enable --now lull-worker.service", "uv pip install", "--require-hashes -r /tmp/lull/vllm-requirements.txt",
				"aws s3 cp", "HF_TOKEN=", "--name '/lull/hf-token'", "shutdown -h +3' ERR",
			} {
				if !strings.Contains(ud, want) {
					t.Errorf("user data lacks %q", want)
				}
			}
		})
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// statements returns the policy statements attached to the role with the
// given logical ID, resources rendered.
type stmt struct {
	Actions   []string
	Resources []string
	Condition any
}

func statementsOf(roleID string) []stmt {
	var out []stmt
	for _, p := range resources("AWS::IAM::Policy") {
		attached := false
		for _, r := range p.Props["Roles"].([]any) {
			if render(r) == "${"+roleID+"}" {
				attached = true
			}
		}
		if !attached {
			continue
		}
		for _, s := range get(p.Props, "PolicyDocument", "Statement").([]any) {
			s := s.(map[string]any)
			var st stmt
			for _, a := range asList(s["Action"]) {
				st.Actions = append(st.Actions, a.(string))
			}
			for _, r := range asList(s["Resource"]) {
				st.Resources = append(st.Resources, render(r))
			}
			st.Condition = s["Condition"]
			out = append(out, st)
		}
	}
	return out
}

func asList(v any) []any {
	if l, ok := v.([]any); ok {
		return l
	}
	return []any{v}
}

// allows reports whether some statement grants every action on a resource
// matching re.
func allows(sts []stmt, re string, actions ...string) bool {
	rx := regexp.MustCompile(re)
	for _, s := range sts {
		okRes := slices.ContainsFunc(s.Resources, rx.MatchString)
		if okRes && !slices.ContainsFunc(actions, func(a string) bool { return !slices.Contains(s.Actions, a) }) {
			return true
		}
	}
	return false
}

func TestWorkerRole(t *testing.T) {
	for _, m := range fixture.Models {
		name := cmpOr(m.Name, m.ModelID)
		t.Run(lull.Slug(name), func(t *testing.T) {
			var lt resource
			for _, r := range resources("AWS::EC2::LaunchTemplate") {
				if strings.Contains(render(get(r.Props, "LaunchTemplateData", "UserData")), `LULL_MODEL="`+name+`"`) {
					lt = r
				}
			}
			profile := render(get(lt.Props, "LaunchTemplateData", "IamInstanceProfile", "Arn"))
			profileID := strings.TrimSuffix(strings.TrimPrefix(profile, "${"), ".Arn}")
			var roleID string
			for _, p := range resources("AWS::IAM::InstanceProfile") {
				if p.ID == profileID {
					roleID = strings.Trim(render(p.Props["Roles"].([]any)[0]), "${}")
				}
			}
			if roleID == "" {
				t.Fatalf("no role for launch template %s (profile %s)", lt.ID, profile)
			}
			sts := statementsOf(roleID)
			q := queueByName(t, "requests-"+lull.Slug(name))
			events := queueByName(t, "events")
			for _, want := range []struct {
				re      string
				actions []string
			}{
				{`^\$\{` + q.ID + `\.Arn\}$`, []string{"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"}},
				{`^\$\{` + events.ID + `\.Arn\}$`, []string{"sqs:SendMessage"}},
				{`^\$\{LullTable[0-9A-F]+\.Arn\}$`, []string{"dynamodb:GetItem", "dynamodb:UpdateItem"}},
				{`^\$\{LullBucket[0-9A-F]+\.Arn\}/inputs/\*$`, []string{"s3:GetObject"}},
				{`^\$\{LullBucket[0-9A-F]+\.Arn\}/outputs/\*$`, []string{"s3:PutObject"}},
				{`:autoScalingGroup:\*:autoScalingGroupName/\$\{AWS::StackName\}-gpu-` + lull.Slug(name) + `$`,
					[]string{"autoscaling:CompleteLifecycleAction", "autoscaling:RecordLifecycleActionHeartbeat", "autoscaling:SetInstanceHealth"}},
				{`:parameter/lull/hf-token$`, []string{"ssm:GetParameter"}},
			} {
				if !allows(sts, want.re, want.actions...) {
					t.Errorf("worker role lacks %v on %s; has %+v", want.actions, want.re, sts)
				}
			}
			for _, s := range sts {
				for _, r := range s.Resources {
					if r == "*" || strings.Contains(r, "/files/") {
						t.Errorf("worker role grants %v on %s", s.Actions, r)
					}
				}
				for _, a := range s.Actions {
					if strings.HasSuffix(a, "*") {
						t.Errorf("worker role grants wildcard action %s", a)
					}
				}
			}
			// Another model's queue is out of reach.
			for _, other := range fixture.Models {
				if on := cmpOr(other.Name, other.ModelID); on != name {
					oq := queueByName(t, "requests-"+lull.Slug(on))
					if allows(sts, `^\$\{`+oq.ID+`\.Arn\}$`, "sqs:ReceiveMessage") {
						t.Errorf("worker of %s may receive from %s's queue", name, on)
					}
				}
			}
		})
	}
}

// TestLambdaGrants checks the permissions each Lambda needs, and that no
// Lambda gets a wildcard action, cloudwatch:PutMetricData, or a "*"
// resource beyond the scaler's autoscaling:DescribeAutoScalingGroups (which
// has no resource-level permissions).
func TestLambdaGrants(t *testing.T) {
	roleOf := func(name string) string {
		return strings.TrimSuffix(strings.TrimPrefix(render(functionByName(t, name).Props["Role"]), "${"), ".Arn}")
	}
	table := `^\$\{LullTable[0-9A-F]+\.Arn\}`
	checks := map[string][]struct {
		re      string
		actions []string
	}{
		"api": {
			{table + `$`, []string{"dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:Query"}},
			{table + `/index/gsi1$`, []string{"dynamodb:Query"}},
			{`^\$\{LullRequestsQwen7b[0-9A-F]+\.Arn\}$`, []string{"sqs:SendMessage"}},
			{`/inputs/\*$`, []string{"s3:PutObject"}},
			{`/outputs/\*$`, []string{"s3:GetObject", "s3:PutObject"}}, // PutObject: the redirected copy of a large generation
			{`/outputs/\*$`, []string{"s3:DeleteObject"}},              // DELETE /v1/files of an output file
			{`/files/\*$`, []string{"s3:PutObject", "s3:GetObject"}},
			{`/files/\*$`, []string{"s3:DeleteObject"}},
			{`/uploads/\*$`, []string{"s3:PutObject", "s3:GetObject", "s3:DeleteObject"}},
			{`^\$\{LullBatch[0-9A-F]+\.Arn\}$`, []string{"sqs:SendMessage"}},
		},
		"webhooks": {
			{`^\$\{LullEvents[0-9A-F]+\.Arn\}$`, []string{"sqs:ReceiveMessage", "sqs:DeleteMessage"}},
			{`^\$\{LullEvents[0-9A-F]+\.Arn\}$`, []string{"sqs:SendMessage"}},
			{`^\$\{LullBatch[0-9A-F]+\.Arn\}$`, []string{"sqs:SendMessage"}},   // finalize jobs, after the last line is counted
			{table + `$`, []string{"dynamodb:UpdateItem", "dynamodb:GetItem"}}, // CountLine's transaction
		},
		"batch": {
			{`^\$\{LullBatch[0-9A-F]+\.Arn\}$`, []string{"sqs:ReceiveMessage", "sqs:DeleteMessage"}},
			{`^\$\{LullBatch[0-9A-F]+\.Arn\}$`, []string{"sqs:SendMessage"}},
			{`/files/\*$`, []string{"s3:GetObject"}},
			{`/outputs/\*$`, []string{"s3:GetObject", "s3:PutObject", "s3:DeleteObject"}},
			{`/inputs/\*$`, []string{"s3:PutObject"}},
			{table + `$`, []string{"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:BatchWriteItem", "dynamodb:Query"}},
			{table + `/index/gsi1$`, []string{"dynamodb:Query"}},
			{`^\$\{LullRequestsQwen7b[0-9A-F]+\.Arn\}$`, []string{"sqs:SendMessage"}},
		},
		"scaler": {
			{table + `/index/gsi1$`, []string{"dynamodb:Query"}}, // an open batch's lines
			{table + `$`, []string{"dynamodb:UpdateItem", "dynamodb:GetItem"}},
			{`^\$\{LullBatch[0-9A-F]+\.Arn\}$`, []string{"sqs:SendMessage"}}, // a stalled batch's jobs
			{table + `/index/gsi2$`, []string{"dynamodb:Query"}},
			{table + `/index/gsi3$`, []string{"dynamodb:Query"}},
			{`^\$\{LullRequestsQwen7b[0-9A-F]+\.Arn\}$`, []string{"sqs:GetQueueAttributes", "sqs:SendMessage"}},
			{`^\$\{LullRequestsMetaLlamaLlama321bInstruct[0-9A-F]{8}\.Arn\}$`, []string{"sqs:GetQueueAttributes"}},
			{`^\*$`, []string{"autoscaling:DescribeAutoScalingGroups"}},
		},
		"dlq": {
			{`^\$\{LullRequestsQwen7bDLQ[0-9A-F]+\.Arn\}$`, []string{"sqs:ReceiveMessage", "sqs:DeleteMessage"}},
			{`^\$\{LullBatchDLQ[0-9A-F]+\.Arn\}$`, []string{"sqs:ReceiveMessage", "sqs:DeleteMessage"}},  // fails batches whose jobs died
			{`^\$\{LullEventsDLQ[0-9A-F]+\.Arn\}$`, []string{"sqs:ReceiveMessage", "sqs:DeleteMessage"}}, // sends dead events back
			{`^\$\{LullEvents[0-9A-F]+\.Arn\}$`, []string{"sqs:SendMessage"}},
			{`^\$\{LullRequestsQwen7b[0-9A-F]+\.Arn\}$`, []string{"sqs:SendMessage"}}, // jobs of generations a worker holds
			{table + `$`, []string{"dynamodb:UpdateItem"}},
		},
	}
	for _, name := range lull.LambdaNames {
		t.Run(name, func(t *testing.T) {
			sts := statementsOf(roleOf(name))
			for _, want := range checks[name] {
				if !allows(sts, want.re, want.actions...) {
					t.Errorf("%s lacks %v on %s", name, want.actions, want.re)
				}
			}
			if !allows(sts, `^\$\{Lull`+strings.ToUpper(name[:1])+name[1:]+`Logs[0-9A-F]+\.Arn\}$`, "logs:CreateLogStream", "logs:PutLogEvents") {
				t.Errorf("%s may not write its own log group", name)
			}
			for _, s := range sts {
				for _, a := range s.Actions {
					if strings.HasSuffix(a, "*") {
						t.Errorf("%s: wildcard action %s", name, a)
					}
				}
				// The scaler's metrics are EMF log lines (lambdas/scaler/emf):
				// writing its own log group is all they need.
				if slices.Contains(s.Actions, "cloudwatch:PutMetricData") {
					t.Errorf("%s: cloudwatch:PutMetricData granted; metrics travel as EMF log lines", name)
				}
				// Only the scaler's read of its groups, which IAM cannot
				// scope, may name "*", and with nothing else in the statement.
				if slices.Contains(s.Resources, "*") &&
					(name != "scaler" || !slices.Equal(s.Actions, []string{"autoscaling:DescribeAutoScalingGroups"}) || len(s.Resources) != 1) {
					t.Errorf("%s: %v on %v", name, s.Actions, s.Resources)
				}
			}
		})
	}
}

// scalerNamespace is the CloudWatch namespace the deployed scaler publishes
// in: its LULL_METRIC_NAMESPACE, as settings.Scaler loads it.
func scalerNamespace(t *testing.T) string {
	t.Helper()
	env := map[string]string{}
	for k, v := range get(functionByName(t, "scaler").Props, "Environment", "Variables").(map[string]any) {
		env[k] = render(v)
	}
	var cfg settings.Scaler
	if err := envconfig.Load(&cfg, lookup(env)); err != nil {
		t.Fatal(err)
	}
	return cfg.MetricNamespace
}

// TestScalingMetricMissingAlarm: for every model an alarm fires when the
// scaler has published no BacklogPerInstance for five minutes (missing data
// breaches), since neither scaling policy can act without it.
func TestScalingMetricMissingAlarm(t *testing.T) {
	ns := scalerNamespace(t)
	topic := ""
	for _, r := range resources("AWS::SNS::Topic") {
		topic = "${" + r.ID + "}"
	}
	for _, m := range fixture.Models {
		name := cmpOr(m.Name, m.ModelID)
		t.Run(lull.Slug(name), func(t *testing.T) {
			found := 0
			for _, a := range resources("AWS::CloudWatch::Alarm") {
				dims, _ := a.Props["Dimensions"].([]any)
				if a.Props["MetricName"] != backlog.MetricBacklogPerInstance || len(dims) != 1 ||
					render(get(dims[0].(map[string]any), "Value")) != name {
					continue
				}
				found++
				if a.Props["Namespace"] != ns || a.Props["Statistic"] != "SampleCount" || a.Props["Period"] != 300.0 ||
					a.Props["ComparisonOperator"] != "LessThanThreshold" || a.Props["Threshold"] != 1.0 ||
					a.Props["TreatMissingData"] != "breaching" || render(get(dims[0].(map[string]any), "Name")) != backlog.DimensionModel {
					t.Errorf("alarm %s: %v", a.ID, a.Props)
				}
				if acts := asList(a.Props["AlarmActions"]); len(acts) != 1 || render(acts[0]) != topic {
					t.Errorf("alarm %s actions %v, want the alarm topic %s", a.ID, acts, topic)
				}
			}
			if found != 1 {
				t.Fatalf("%d missing-metric alarms for %s, want 1", found, name)
			}
		})
	}
}

// TestScalingPolicies ties the construct's policies to the backlog package:
// the scaler's published values, fed through the thresholds read from the
// template, must launch the first instance and then hand over to target
// tracking.
func TestScalingPolicies(t *testing.T) {
	// The namespace the scaler publishes in is the one the policies read.
	ns := scalerNamespace(t)
	type group struct {
		target    float64
		threshold float64
		stepAdd   float64
	}
	byModel := map[string]*group{}
	groupModel := map[string]string{}
	for _, g := range resources("AWS::AutoScaling::AutoScalingGroup") {
		name := render(g.Props["AutoScalingGroupName"])
		for _, m := range fixture.Models {
			n := cmpOr(m.Name, m.ModelID)
			if strings.HasSuffix(name, "-gpu-"+lull.Slug(n)) {
				groupModel[g.ID] = n
			}
		}
	}
	stepPolicies := map[string]string{} // policy logical ID → model
	for _, p := range resources("AWS::AutoScaling::ScalingPolicy") {
		model := groupModel[strings.Trim(render(p.Props["AutoScalingGroupName"]), "${}")]
		if model == "" {
			t.Fatalf("policy %s on no known group", p.ID)
		}
		g := byModel[model]
		if g == nil {
			g = &group{}
			byModel[model] = g
		}
		switch p.Props["PolicyType"] {
		case "TargetTrackingScaling":
			spec := get(p.Props, "TargetTrackingConfiguration", "CustomizedMetricSpecification").(map[string]any)
			dims := spec["Dimensions"].([]any)
			if spec["MetricName"] != backlog.MetricBacklogPerInstance || spec["Namespace"] != ns || len(dims) != 1 ||
				render(get(dims[0].(map[string]any), "Name")) != backlog.DimensionModel || render(get(dims[0].(map[string]any), "Value")) != model {
				t.Errorf("%s: target tracking metric %v", model, spec)
			}
			g.target = get(p.Props, "TargetTrackingConfiguration", "TargetValue").(float64)
		case "StepScaling":
			for _, adj := range p.Props["StepAdjustments"].([]any) {
				adj := adj.(map[string]any)
				if adj["MetricIntervalLowerBound"] == 0.0 && adj["MetricIntervalUpperBound"] == nil {
					g.stepAdd = adj["ScalingAdjustment"].(float64)
				}
			}
			if p.Props["AdjustmentType"] != "ChangeInCapacity" {
				t.Errorf("%s: step adjustment type %v", model, p.Props["AdjustmentType"])
			}
			stepPolicies[p.ID] = model
		}
	}
	for _, a := range resources("AWS::CloudWatch::Alarm") {
		for _, act := range asList(a.Props["AlarmActions"]) {
			model, ok := stepPolicies[strings.Trim(render(act), "${}")]
			if !ok {
				continue
			}
			dims := a.Props["Dimensions"].([]any)
			if a.Props["MetricName"] != backlog.MetricUnservedBacklog || a.Props["Namespace"] != ns ||
				render(get(dims[0].(map[string]any), "Value")) != model || a.Props["ComparisonOperator"] != "GreaterThanOrEqualToThreshold" {
				t.Errorf("%s: scale-from-zero alarm %v", model, a.Props)
			}
			byModel[model].threshold = a.Props["Threshold"].(float64)
		}
	}
	for _, m := range fixture.Models {
		name := cmpOr(m.Name, m.ModelID)
		t.Run(lull.Slug(name), func(t *testing.T) {
			g := byModel[name]
			if g == nil {
				t.Fatal("no policies")
			}
			wantTarget := m.TargetBacklogPerInstance
			if wantTarget == 0 {
				wantTarget = backlog.DefaultTargetBacklogPerInstance
			}
			if g.target != wantTarget || g.threshold != backlog.ScaleFromZeroThreshold || g.stepAdd != backlog.ScaleFromZeroInstances {
				t.Fatalf("target %v threshold %v step %v; want %v, %v, %v", g.target, g.threshold, g.stepAdd,
					wantTarget, backlog.ScaleFromZeroThreshold, backlog.ScaleFromZeroInstances)
			}
			fires := func(s backlog.Sample) bool {
				for _, d := range backlog.Decide(s).Data() {
					if d.Name == backlog.MetricUnservedBacklog {
						return d.Value >= g.threshold
					}
				}
				t.Fatal("scaler publishes no UnservedBacklog")
				return false
			}
			perInstance := func(s backlog.Sample) float64 {
				for _, d := range backlog.Decide(s).Data() {
					if d.Name == backlog.MetricBacklogPerInstance {
						return d.Value
					}
				}
				t.Fatal("scaler publishes no BacklogPerInstance")
				return 0
			}
			if !fires(backlog.Sample{Visible: 1}) {
				t.Error("one waiting message and no instance: the scale-from-zero alarm stays quiet")
			}
			if fires(backlog.Sample{}) || fires(backlog.Sample{Visible: 500, Instances: 1}) {
				t.Error("the scale-from-zero alarm fires with an empty queue or with capacity")
			}
			// After the step policy: target tracking sizes the group to
			// ceil(backlog / target) with the template's target.
			capacity := int(g.stepAdd)
			const visible = 1000
			for range 5 {
				v := perInstance(backlog.Sample{Visible: visible, Instances: capacity})
				capacity = int(float64(capacity)*v/g.target + 0.999999)
			}
			if want := backlog.DesiredInstances(visible, g.target, 0, 1<<30); capacity != want {
				t.Errorf("target tracking settles at %d instances for %d messages, want %d", capacity, visible, want)
			}
		})
	}
}

func TestResources(t *testing.T) {
	m := func(v map[string]any) *map[string]any { return &v }
	arr := func(v ...any) *[]any { return &v }
	like := func(v map[string]any) assertions.Matcher { return assertions.Match_ObjectLike(&v) }
	check(t, "table", func() {
		template.ResourceCountIs(jsii.String("AWS::DynamoDB::Table"), jsii.Number(1))
		gsi := func(n string) any {
			return like(map[string]any{"IndexName": n, "KeySchema": []any{
				map[string]any{"AttributeName": n + "pk", "KeyType": "HASH"}, map[string]any{"AttributeName": n + "sk", "KeyType": "RANGE"}}})
		}
		template.HasResourceProperties(jsii.String("AWS::DynamoDB::Table"), m(map[string]any{
			"BillingMode": "PAY_PER_REQUEST",
			"KeySchema":   []any{map[string]any{"AttributeName": "pk", "KeyType": "HASH"}, map[string]any{"AttributeName": "sk", "KeyType": "RANGE"}},
			"AttributeDefinitions": assertions.Match_ArrayWith(arr(
				map[string]any{"AttributeName": "pk", "AttributeType": "S"}, map[string]any{"AttributeName": "sk", "AttributeType": "S"})),
			"GlobalSecondaryIndexes":           assertions.Match_ArrayWith(arr(gsi("gsi1"), gsi("gsi2"), gsi("gsi3"))),
			"TimeToLiveSpecification":          map[string]any{"AttributeName": "ttl", "Enabled": true},
			"PointInTimeRecoverySpecification": map[string]any{"PointInTimeRecoveryEnabled": true},
		}))
	})
	check(t, "queues", func() {
		for _, name := range []string{"requests-qwen-7b", "requests-meta-llama-llama-3-2-1b-instruct", "events", "batch"} {
			template.HasResourceProperties(jsii.String("AWS::SQS::Queue"), m(map[string]any{
				"QueueName": name, "SqsManagedSseEnabled": true,
				"RedrivePolicy": like(map[string]any{"maxReceiveCount": lull.MaxReceiveCount}),
			}))
			template.HasResourceProperties(jsii.String("AWS::SQS::Queue"), m(map[string]any{"QueueName": name + "-dlq"}))
		}
		template.ResourceCountIs(jsii.String("AWS::SQS::Queue"), jsii.Number(2*(len(fixture.Models)+2)))
		// Every queue refuses plain HTTP.
		template.ResourceCountIs(jsii.String("AWS::SQS::QueuePolicy"), jsii.Number(2*(len(fixture.Models)+2)))
	})
	check(t, "event sources", func() {
		template.ResourceCountIs(jsii.String("AWS::Lambda::EventSourceMapping"), jsii.Number(4+len(fixture.Models))) // events, batch, batch DLQ, events DLQ, one DLQ per model
		template.AllResourcesProperties(jsii.String("AWS::Lambda::EventSourceMapping"), m(map[string]any{
			"FunctionResponseTypes": []any{"ReportBatchItemFailures"}}))
	})
	check(t, "bucket", func() {
		rule := func(p string) any {
			return like(map[string]any{"Prefix": p, "Status": "Enabled", "ExpirationInDays": assertions.Match_AnyValue()})
		}
		template.HasResourceProperties(jsii.String("AWS::S3::Bucket"), m(map[string]any{
			"BucketEncryption": like(map[string]any{"ServerSideEncryptionConfiguration": []any{
				map[string]any{"ServerSideEncryptionByDefault": map[string]any{"SSEAlgorithm": "AES256"}}}}),
			"PublicAccessBlockConfiguration": map[string]any{"BlockPublicAcls": true, "BlockPublicPolicy": true, "IgnorePublicAcls": true, "RestrictPublicBuckets": true},
			"LifecycleConfiguration":         map[string]any{"Rules": assertions.Match_ArrayWith(arr(rule("inputs/"), rule("outputs/"), rule("files/"), rule("uploads/")))},
		}))
		template.HasResourceProperties(jsii.String("AWS::S3::BucketPolicy"), m(map[string]any{"PolicyDocument": like(map[string]any{
			"Statement": assertions.Match_ArrayWith(arr(like(map[string]any{"Effect": "Deny", "Condition": map[string]any{"Bool": map[string]any{"aws:SecureTransport": "false"}}})))})}))
	})
	check(t, "http api", func() {
		template.HasResourceProperties(jsii.String("AWS::ApiGatewayV2::Api"), m(map[string]any{"ProtocolType": "HTTP"}))
		template.HasResourceProperties(jsii.String("AWS::ApiGatewayV2::Integration"), m(map[string]any{
			"IntegrationType": "AWS_PROXY", "PayloadFormatVersion": "2.0"}))
		template.HasResourceProperties(jsii.String("AWS::ApiGatewayV2::Route"), m(map[string]any{"RouteKey": "$default"}))
		template.HasResourceProperties(jsii.String("AWS::ApiGatewayV2::Stage"), m(map[string]any{
			"StageName": "$default", "AutoDeploy": true,
			"DefaultRouteSettings": map[string]any{"ThrottlingRateLimit": 100, "ThrottlingBurstLimit": 200},
			"AccessLogSettings":    like(map[string]any{"DestinationArn": assertions.Match_AnyValue()}),
		}))
		template.HasResourceProperties(jsii.String("AWS::ApiGatewayV2::DomainName"), m(map[string]any{"DomainName": "api.example.com"}))
	})
	check(t, "lambdas", func() {
		template.ResourceCountIs(jsii.String("AWS::Lambda::Function"), jsii.Number(len(lull.LambdaNames)))
		template.AllResourcesProperties(jsii.String("AWS::Lambda::Function"), m(map[string]any{
			"Runtime": "provided.al2023", "Architectures": []any{"arm64"}, "Handler": "bootstrap"}))
		// The batch Lambda spools output files in /tmp.
		template.HasResourceProperties(jsii.String("AWS::Lambda::Function"), m(map[string]any{
			"Description": "lull batch", "EphemeralStorage": map[string]any{"Size": 4096}}))
		template.HasResourceProperties(jsii.String("AWS::Events::Rule"), m(map[string]any{
			"ScheduleExpression": "rate(1 minute)", "State": "ENABLED"}))
		template.AllResourcesProperties(jsii.String("AWS::Logs::LogGroup"), m(map[string]any{"RetentionInDays": 30}))
	})
	check(t, "fleet", func() {
		template.ResourceCountIs(jsii.String("AWS::AutoScaling::AutoScalingGroup"), jsii.Number(len(fixture.Models)))
		template.AllResourcesProperties(jsii.String("AWS::AutoScaling::AutoScalingGroup"), m(map[string]any{
			"MinSize": "0", "CapacityRebalance": true,
			"MixedInstancesPolicy": like(map[string]any{"InstancesDistribution": map[string]any{
				"OnDemandBaseCapacity": 0, "OnDemandPercentageAboveBaseCapacity": 0, "SpotAllocationStrategy": "price-capacity-optimized"}}),
		}))
		template.HasResourceProperties(jsii.String("AWS::AutoScaling::AutoScalingGroup"), m(map[string]any{
			"MaxSize": "3",
			"MixedInstancesPolicy": like(map[string]any{"LaunchTemplate": like(map[string]any{"Overrides": []any{
				map[string]any{"InstanceType": "g6.xlarge"}, map[string]any{"InstanceType": "g5.xlarge"}, map[string]any{"InstanceType": "g6e.xlarge"}}})}),
		}))
		template.AllResourcesProperties(jsii.String("AWS::EC2::LaunchTemplate"), m(map[string]any{"LaunchTemplateData": like(map[string]any{
			"MetadataOptions":     like(map[string]any{"HttpTokens": "required"}),
			"BlockDeviceMappings": []any{like(map[string]any{"Ebs": like(map[string]any{"Encrypted": true, "VolumeType": "gp3", "VolumeSize": 200})})},
		})}))
		template.ResourceCountIs(jsii.String("AWS::AutoScaling::LifecycleHook"), jsii.Number(len(fixture.Models)))
		for _, arch := range []string{"x86_64", "arm64"} {
			template.HasParameter(jsii.String("*"), m(map[string]any{
				"Type":    "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>",
				"Default": "/aws/service/deeplearning/ami/" + arch + "/base-oss-nvidia-driver-gpu-amazon-linux-2023/latest/ami-id",
			}))
		}
	})
	check(t, "monitoring", func() {
		template.ResourceCountIs(jsii.String("AWS::CloudWatch::Dashboard"), jsii.Number(1))
		// DLQ depth on every DLQ.
		for _, name := range []string{"requests-qwen-7b-dlq", "events-dlq", "batch-dlq"} {
			template.HasResourceProperties(jsii.String("AWS::CloudWatch::Alarm"), m(map[string]any{
				"MetricName": "ApproximateNumberOfMessagesVisible", "Threshold": 1,
				"Dimensions": []any{map[string]any{"Name": "QueueName", "Value": like(map[string]any{"Fn::GetAtt": arr(
					assertions.Match_StringLikeRegexp(jsii.String(fmt.Sprintf("^Lull(%s)", map[string]string{
						"requests-qwen-7b-dlq": "RequestsQwen7bDLQ", "events-dlq": "EventsDLQ", "batch-dlq": "BatchDLQ"}[name]))), "QueueName")})}},
			}))
		}
		// Oldest request against half the default 24h window.
		template.HasResourceProperties(jsii.String("AWS::CloudWatch::Alarm"), m(map[string]any{
			"MetricName": "ApproximateAgeOfOldestMessage", "Threshold": 12 * 3600, "ComparisonOperator": "GreaterThanThreshold"}))
		template.HasResourceProperties(jsii.String("AWS::CloudWatch::Alarm"), m(map[string]any{
			"MetricName": "Errors", "Namespace": "AWS/Lambda", "AlarmDescription": assertions.Match_StringLikeRegexp(jsii.String("webhooks"))}))
		template.HasResourceProperties(jsii.String("AWS::SNS::Subscription"), m(map[string]any{"Protocol": "email", "Endpoint": "ops@example.com"}))
	})
}

// TestNag fails on any unsuppressed cdk-nag AwsSolutions error.
func TestNag(t *testing.T) {
	var errs, warnings []string
	for _, msg := range messages {
		line := fmt.Sprintf("%s: %v", *msg.Id, msg.Entry.Data)
		switch msg.Level {
		case cxapi.SynthesisMessageLevel_ERROR:
			errs = append(errs, line)
		case cxapi.SynthesisMessageLevel_WARNING:
			warnings = append(warnings, line)
		}
	}
	for _, w := range warnings {
		t.Log("warning:", w)
	}
	if len(errs) > 0 {
		t.Errorf("%d unsuppressed errors:\n%s", len(errs), strings.Join(errs, "\n"))
	}
}

func TestValidate(t *testing.T) {
	good := fixture
	good.BuildDir = "build"
	if err := good.Validate(); err != nil {
		t.Fatalf("fixture: %v", err)
	}
	for _, tc := range []struct {
		name   string
		change func(*lull.Props)
		want   string
	}{
		{"NoModels", func(p *lull.Props) { p.Models = nil }, "at least one model"},
		{"NoBuildDir", func(p *lull.Props) { p.BuildDir = "" }, "BuildDir"},
		{"MixedArch", func(p *lull.Props) { p.Models[0].InstanceTypes = []string{"g5.xlarge", "g5g.xlarge"} }, "mix architectures"},
		{"UnknownWorkerVar", func(p *lull.Props) { p.Models[0].WorkerEnv = map[string]string{"LULL_NOPE": "1"} }, "LULL_NOPE is not read by the worker"},
		{"ManagedWorkerVar", func(p *lull.Props) { p.Models[0].WorkerEnv = map[string]string{"LULL_QUEUE_URL": "x"} }, "set by the construct"},
		{"ShellInArgs", func(p *lull.Props) { p.Models[0].VLLMArgs = []string{"--x", "$(reboot)"} }, "may not contain"},
		{"SameSlug", func(p *lull.Props) { p.Models[1].Name = "Qwen 7B" }, "share the slug"},
		{"Bounds", func(p *lull.Props) { p.Models[0].MinInstances = 5 }, "MinInstances"},
		{"LongWindow", func(p *lull.Props) { p.MaxCompletionWindow = 15 * 24 * 3600e9 }, "MaxCompletionWindow"},
		// Issue 13 c: retention shorter than the longest wait is refused.
		{"RetentionUnderWindow", func(p *lull.Props) { p.Retention, p.MaxCompletionWindow = 48*time.Hour, 72*time.Hour }, "Retention 48h0m0s is shorter than MaxCompletionWindow"},
		{"FileRetentionUnderWindow", func(p *lull.Props) { p.FileRetention = 48 * time.Hour }, "FileRetention 48h0m0s is shorter than MaxCompletionWindow"},
		{"LimitsPriority", func(p *lull.Props) { p.Limits.ExtraFields = "priority" }, "cannot be passed through"},
		{"MaxConcurrency", func(p *lull.Props) { p.WebhooksMaxConcurrency = 1 }, "WebhooksMaxConcurrency 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := good
			p.Models = slices.Clone(good.Models)
			tc.change(&p)
			if err := p.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := lull.NewService(nil, "x", lull.Props{Models: good.Models, BuildDir: t.TempDir()}); err == nil ||
		!strings.Contains(err.Error(), "make lambdas gpuworker-dist vllm-lock") || !strings.Contains(err.Error(), "requirements-vllm-") {
		t.Fatalf("missing artifacts: %v", err)
	}
}

func TestSlugArch(t *testing.T) {
	for in, want := range map[string]string{
		"meta-llama/Llama-3.1-8B-Instruct": "meta-llama-llama-3-1-8b-instruct", "qwen-7b": "qwen-7b", "  A__B  ": "a-b",
		strings.Repeat("x", 60): strings.Repeat("x", 48),
	} {
		if got := lull.Slug(in); got != want {
			t.Errorf("Slug(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{"g5g.xlarge": "arm64", "g5.xlarge": "amd64", "g6e.12xlarge": "amd64", "g4dn.xlarge": "amd64", "p5.48xlarge": "amd64", "gr6.4xlarge": "amd64"} {
		if got := lull.Arch(in); got != want {
			t.Errorf("Arch(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestExampleConfig keeps the shipped example config valid.
func TestExampleConfig(t *testing.T) {
	cfg, err := lull.ReadConfig("../lull.config.example.json")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cfg.Props("../build"); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(t.TempDir(), "bad.json")
	os.WriteFile(bad, []byte(`{"modles": []}`), 0o644)
	if _, err := lull.ReadConfig(bad); err == nil || !strings.Contains(err.Error(), "modles") {
		t.Fatalf("unknown field: %v", err)
	}
}

// tableStatements returns the statements of roleID on the table itself
// (not its indexes) and whether one grants action.
func tableStatements(roleID string) []stmt {
	var out []stmt
	for _, s := range statementsOf(roleID) {
		for _, r := range s.Resources {
			if regexp.MustCompile(`^\$\{LullTable[0-9A-F]+\.Arn\}$`).MatchString(r) {
				out = append(out, s)
				break
			}
		}
	}
	return out
}

// leadingKeys returns the dynamodb:LeadingKeys patterns of a statement's
// ForAllValues:StringLike condition, or nil.
func leadingKeys(s stmt) []string {
	c, _ := s.Condition.(map[string]any)
	like, _ := c["ForAllValues:StringLike"].(map[string]any)
	var out []string
	for _, v := range asList(like["dynamodb:LeadingKeys"]) {
		if p, ok := v.(string); ok {
			out = append(out, p)
		}
	}
	return out
}

func roleOfFunction(t *testing.T, name string) string {
	return strings.TrimSuffix(strings.TrimPrefix(render(functionByName(t, name).Props["Role"]), "${"), ".Arn}")
}

func workerRoleIDs(t *testing.T) []string {
	var ids []string
	for _, r := range resources("AWS::IAM::Role") {
		if strings.HasPrefix(render(r.Props["Description"]), "lull GPU worker for ") {
			ids = append(ids, r.ID)
		}
	}
	if len(ids) != len(fixture.Models) {
		t.Fatalf("%d worker roles, want %d", len(ids), len(fixture.Models))
	}
	return ids
}

// TestLeastPrivilege holds issue 13 f: every role but the API's reaches
// only the kinds of items its code touches (dynamodb:LeadingKeys on every
// table statement), none of them API keys (KEY#); the GPU workers may only
// read and update generations: no PutItem, no other kind of item.
func TestLeastPrivilege(t *testing.T) {
	want := map[string][]string{
		"webhooks": {"WH#*", "GEN#*", "BATCH#*"}, "batch": {"BATCH#*", "FILE#*", "GEN#*"},
		"scaler": {"GEN#*", "WH#*", "BATCH#*"}, "dlq": {"GEN#*", "BATCH#*"},
	}
	roles := map[string]string{}
	for name := range want {
		roles[name] = roleOfFunction(t, name)
	}
	for i, id := range workerRoleIDs(t) {
		name := fmt.Sprintf("worker%d", i)
		roles[name], want[name] = id, []string{"GEN#*"}
	}
	for name, id := range roles {
		t.Run(name, func(t *testing.T) {
			sts := tableStatements(id)
			if len(sts) == 0 {
				t.Fatal("no table statement")
			}
			for _, s := range sts {
				got := leadingKeys(s)
				if !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want[name]))) {
					t.Errorf("%v on the table under LeadingKeys %v, want %v", s.Actions, got, want[name])
				}
				if slices.Contains(got, "KEY#*") || slices.Contains(got, "*") {
					t.Errorf("reaches API keys: %v", got)
				}
				if strings.HasPrefix(name, "worker") {
					for _, a := range s.Actions {
						if a != "dynamodb:GetItem" && a != "dynamodb:UpdateItem" {
							t.Errorf("worker may %s", a)
						}
					}
				}
			}
		})
	}
	// Only the API reads API keys: its table statement is the one without
	// a condition.
	for _, s := range tableStatements(roleOfFunction(t, "api")) {
		if s.Condition != nil || !slices.Contains(s.Actions, "dynamodb:GetItem") {
			t.Errorf("API table statement %+v", s)
		}
	}
}

// TestSecretsKey holds issue 13 f: webhook secrets are sealed with a KMS
// key (rotation on) whose policy lets the account administer it but not use
// it; only the API's role may encrypt and decrypt, only the webhook
// dispatcher's decrypt, both under lull's encryption context; no other role
// has KMS permissions; both Lambdas are told the key.
func TestSecretsKey(t *testing.T) {
	keys := resources("AWS::KMS::Key")
	if len(keys) != 1 {
		t.Fatalf("%d KMS keys, want 1", len(keys))
	}
	key := keys[0]
	if key.Props["EnableKeyRotation"] != true {
		t.Error("key rotation is off")
	}
	api, hooks := roleOfFunction(t, "api"), roleOfFunction(t, "webhooks")
	use := []string{"kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:ReEncryptFrom", "kms:ReEncryptTo", "kms:GenerateDataKey*", "kms:GenerateDataKey", "kms:*"}
	users := map[string][]string{}
	for _, s := range get(key.Props, "KeyPolicy", "Statement").([]any) {
		s := s.(map[string]any)
		principal := render(get(s, "Principal", "AWS"))
		var actions []string
		for _, a := range asList(s["Action"]) {
			actions = append(actions, a.(string))
		}
		for _, a := range actions {
			if !slices.Contains(use, a) {
				continue
			}
			users[principal] = append(users[principal], a)
			if get(s, "Condition", "StringEquals", "kms:EncryptionContext:lull:purpose") != "webhook-secret" {
				t.Errorf("%s may %s without lull's encryption context", principal, a)
			}
		}
	}
	if len(users) != 2 || !slices.Equal(users["${"+api+".Arn}"], []string{"kms:Encrypt", "kms:Decrypt"}) ||
		!slices.Equal(users["${"+hooks+".Arn}"], []string{"kms:Decrypt"}) {
		t.Errorf("the key may be used by %v; want the API (Encrypt, Decrypt) and the webhooks Lambda (Decrypt) only", users)
	}
	for _, r := range resources("AWS::IAM::Role") {
		if r.ID == api || r.ID == hooks {
			continue
		}
		for _, s := range statementsOf(r.ID) {
			for _, a := range s.Actions {
				if strings.HasPrefix(a, "kms:") {
					t.Errorf("role %s may %s", r.ID, a)
				}
			}
		}
	}
	for _, name := range []string{"api", "webhooks"} {
		env := get(functionByName(t, name).Props, "Environment", "Variables").(map[string]any)
		if got := render(env["LULL_SECRETS_KEY"]); got != "${"+key.ID+".Arn}" {
			t.Errorf("%s: LULL_SECRETS_KEY = %q, want the key's ARN", name, got)
		}
	}
}

// TestBlastRadius holds issue 13 e: the API Lambda keeps reserved
// concurrency and every SQS event source has a maximum concurrency, so a
// backlog of slow webhook receivers (or batches) queues up instead of
// taking the account's concurrency from the API.
func TestBlastRadius(t *testing.T) {
	if got := functionByName(t, "api").Props["ReservedConcurrentExecutions"]; got != float64(100) {
		t.Errorf("API reserved concurrency = %v, want 100", got)
	}
	want := map[string]float64{roleOfFunction(t, "webhooks"): 20, roleOfFunction(t, "batch"): 5, roleOfFunction(t, "dlq"): 2}
	fnRole := map[string]string{}
	for _, name := range lull.LambdaNames {
		f := functionByName(t, name)
		fnRole["${"+f.ID+"}"] = roleOfFunction(t, name)
	}
	maps := resources("AWS::Lambda::EventSourceMapping")
	if len(maps) == 0 {
		t.Fatal("no event source mappings")
	}
	for _, m := range maps {
		role := fnRole[render(m.Props["FunctionName"])]
		got := get(m.Props, "ScalingConfig", "MaximumConcurrency")
		if got == nil || got != want[role] {
			t.Errorf("event source %s (role %s): maximum concurrency %v, want %v", m.ID, role, got, want[role])
		}
	}
}

// TestRetentionAgrees holds issue 13 c: every component gets the same
// LULL_RETENTION and LULL_FILE_RETENTION (the DynamoDB TTL of what it
// writes), and the S3 lifecycle keeps each kind of object at least a day
// longer than the item that points to it: inputs the longest window plus
// Retention, outputs Retention, files FileRetention, upload parts two days
// (their item: one).
func TestRetentionAgrees(t *testing.T) {
	const retention, window = 720, 168 // hours: the fixture's defaults
	for _, name := range lull.LambdaNames {
		env := get(functionByName(t, name).Props, "Environment", "Variables").(map[string]any)
		if env["LULL_RETENTION"] != fmt.Sprintf("%dh", retention) || env["LULL_FILE_RETENTION"] != fmt.Sprintf("%dh", retention) {
			t.Errorf("%s: LULL_RETENTION %v, LULL_FILE_RETENTION %v", name, env["LULL_RETENTION"], env["LULL_FILE_RETENTION"])
		}
	}
	for name, ud := range launchTemplates(t) {
		if !strings.Contains(ud, fmt.Sprintf(`LULL_RETENTION="%dh"`, retention)) {
			t.Errorf("worker of %s: no LULL_RETENTION=%dh", name, retention)
		}
	}
	buckets := resources("AWS::S3::Bucket")
	rules := map[string]float64{}
	for _, b := range buckets {
		for _, r := range asList(get(b.Props, "LifecycleConfiguration", "Rules")) {
			r, _ := r.(map[string]any)
			if id, ok := r["Id"].(string); ok {
				rules[id], _ = r["ExpirationInDays"].(float64)
			}
		}
	}
	for id, min := range map[string]float64{"inputs": (window+retention)/24 + 1, "outputs": retention/24 + 1, "files": retention/24 + 1, "uploads": 2} {
		if rules[id] < min {
			t.Errorf("S3 lifecycle %q keeps objects %v days, want at least %v", id, rules[id], min)
		}
	}
}
