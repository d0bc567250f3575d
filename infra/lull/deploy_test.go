package lull_test

// Checks for what only a real deploy would otherwise show (issue 14):
// alarms that reach people, the scaler's retries, the VPC's zones, the root
// volume, per-deployment metrics, service limits, the boot script and the
// stuck-fleet alarm.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/jsii-runtime-go"

	"github.com/lull-ai/lull/gpuworker/worker"
	"github.com/lull-ai/lull/infra/lull"
	"github.com/lull-ai/lull/shared/envconfig"
)

// TestAlarmTopicAllowsCloudWatch: the topic policy (which enforceSSL
// creates, replacing SNS's default) lets CloudWatch publish, scoped to this
// account's alarms, and still refuses plain HTTP. Without the Allow every
// alarm fires into nothing.
func TestAlarmTopicAllowsCloudWatch(t *testing.T) {
	topics := resources("AWS::SNS::Topic")
	if len(topics) != 1 {
		t.Fatalf("%d topics, want 1", len(topics))
	}
	topic := "${" + topics[0].ID + "}"
	var allow, deny bool
	for _, p := range resources("AWS::SNS::TopicPolicy") {
		if ts := asList(p.Props["Topics"]); len(ts) != 1 || render(ts[0]) != topic {
			continue
		}
		for _, st := range asList(get(p.Props, "PolicyDocument", "Statement")) {
			st := st.(map[string]any)
			switch st["Effect"] {
			case "Deny":
				deny = deny || render(get(st, "Condition", "Bool", "aws:SecureTransport")) == "false"
			case "Allow":
				if render(get(st, "Principal", "Service")) != "cloudwatch.amazonaws.com" ||
					!slices.Contains(asList(st["Action"]), any("sns:Publish")) {
					t.Errorf("unexpected Allow %v", st)
					continue
				}
				if res := asList(st["Resource"]); len(res) != 1 || render(res[0]) != topic {
					t.Errorf("Allow on %v, want only the topic %s", st["Resource"], topic)
				}
				account := render(get(st, "Condition", "StringEquals", "aws:SourceAccount"))
				source := render(get(st, "Condition", "ArnLike", "aws:SourceArn"))
				if account != testAccount || !regexp.MustCompile(`^arn:\$\{AWS::Partition\}:cloudwatch:`+testRegion+`:`+testAccount+`:alarm:\*$`).MatchString(source) {
					t.Errorf("Allow scoped to account %q, source %q; want this account's alarms in this region", account, source)
				}
				allow = true
			}
		}
	}
	if !allow || !deny {
		t.Fatalf("topic policy: CloudWatch may publish %v, plain HTTP denied %v; want both", allow, deny)
	}
	// Every alarm but the scale-from-zero ones (whose action is a scaling
	// policy) notifies that topic.
	for _, a := range resources("AWS::CloudWatch::Alarm") {
		acts := asList(a.Props["AlarmActions"])
		policy := slices.ContainsFunc(acts, func(v any) bool { return strings.Contains(render(v), "Policy") })
		if !policy && !slices.ContainsFunc(acts, func(v any) bool { return render(v) == topic }) {
			t.Errorf("alarm %s does not notify the alarm topic: %v", a.ID, acts)
		}
	}
}

// TestScalerNoAsyncRetries: Lambda's own retries of a failed asynchronous
// invocation are off for the scheduled scaler (EventBridge's are too).
func TestScalerNoAsyncRetries(t *testing.T) {
	scaler := functionByName(t, "scaler")
	found := false
	for _, c := range resources("AWS::Lambda::EventInvokeConfig") {
		if render(c.Props["FunctionName"]) != "${"+scaler.ID+"}" {
			continue
		}
		found = true
		if c.Props["MaximumRetryAttempts"] != 0.0 {
			t.Errorf("scaler MaximumRetryAttempts = %v, want 0", c.Props["MaximumRetryAttempts"])
		}
	}
	if !found {
		t.Fatal("no EventInvokeConfig for the scaler: Lambda retries a failed run twice")
	}
	for _, r := range resources("AWS::Events::Rule") {
		for _, target := range asList(r.Props["Targets"]) {
			if got := get(target.(map[string]any), "RetryPolicy", "MaximumRetryAttempts"); got != 0.0 {
				t.Errorf("rule %s retries %v times", r.ID, got)
			}
		}
	}
}

// TestVPCSpansAllZones: with an explicit environment the VPC has a public
// subnet in each of the region's six zones, and every group may launch in
// all of them (one spot pool per zone and type).
func TestVPCSpansAllZones(t *testing.T) {
	subnets := map[string]string{} // logical ID → zone
	for _, s := range resources("AWS::EC2::Subnet") {
		subnets["${"+s.ID+"}"] = render(s.Props["AvailabilityZone"])
	}
	var zones []string
	for _, z := range subnets {
		zones = append(zones, z)
	}
	slices.Sort(zones)
	want := make([]string, len(testZones))
	for i, z := range testZones {
		want[i] = z.(string)
	}
	if !slices.Equal(zones, want) {
		t.Fatalf("subnets in %v, want one in each of %v", zones, want)
	}
	for _, g := range resources("AWS::AutoScaling::AutoScalingGroup") {
		if ids := asList(g.Props["VPCZoneIdentifier"]); len(ids) != len(want) {
			t.Errorf("group %s launches in %d subnets, want %d", g.ID, len(ids), len(want))
		}
	}
}

// TestRootVolumeSizedForBoot: the gp3 root volume gets throughput and IOPS
// above the baseline (125 MiB/s, 3000), which would make the boot's GBs of
// packages and weights throughput-bound.
func TestRootVolumeSizedForBoot(t *testing.T) {
	for _, lt := range resources("AWS::EC2::LaunchTemplate") {
		for _, bd := range asList(get(lt.Props, "LaunchTemplateData", "BlockDeviceMappings")) {
			ebs := get(bd.(map[string]any), "Ebs").(map[string]any)
			if ebs["VolumeType"] != "gp3" || ebs["Throughput"] != float64(lull.DefaultRootVolumeThroughput) || ebs["Iops"] != float64(lull.DefaultRootVolumeIOPS) {
				t.Errorf("%s: root volume %v, want gp3 at %d MiB/s and %d IOPS", lt.ID, ebs, lull.DefaultRootVolumeThroughput, lull.DefaultRootVolumeIOPS)
			}
		}
	}
	if lull.DefaultRootVolumeThroughput < 500 || lull.DefaultRootVolumeIOPS < 6000 {
		t.Errorf("defaults %d MiB/s, %d IOPS: too little for a boot", lull.DefaultRootVolumeThroughput, lull.DefaultRootVolumeIOPS)
	}
}

// TestMetricsPerDeployment: the scaler publishes, and the policies and
// alarms read, a namespace named after the stack, so two deployments in one
// region never scale on each other's metrics.
func TestMetricsPerDeployment(t *testing.T) {
	ns := scalerNamespace(t)
	if ns != "Lull/LullTest" {
		t.Fatalf("namespace %q, want Lull/<stack name>", ns)
	}
	seen := 0
	for _, a := range resources("AWS::CloudWatch::Alarm") {
		if n, ok := a.Props["Namespace"].(string); ok && strings.HasPrefix(n, "Lull") {
			seen++
			if n != ns {
				t.Errorf("alarm %s reads namespace %q, scaler publishes in %q", a.ID, n, ns)
			}
		}
	}
	if seen == 0 {
		t.Fatal("no alarm reads the scaler's metrics")
	}
}

// TestLifecycleHookOutlastsWorker: the worker's heartbeat (default
// LULL_LIFECYCLE_HEARTBEAT) comes well within the hook's heartbeat timeout,
// and the longest scale-in drain (default LULL_SCALE_IN_DRAIN_MAX) ends
// before the hook's global timeout (100 heartbeat timeouts, at most 48h).
func TestLifecycleHookOutlastsWorker(t *testing.T) {
	defaults := map[string]time.Duration{}
	for _, v := range envconfig.Vars(&worker.Config{}) {
		if d, err := time.ParseDuration(v.Default); err == nil {
			defaults[v.Name] = d
		}
	}
	beat, drain := defaults["LULL_LIFECYCLE_HEARTBEAT"], defaults["LULL_SCALE_IN_DRAIN_MAX"]
	if beat == 0 || drain == 0 {
		t.Fatalf("worker defaults: heartbeat %s, scale-in drain %s", beat, drain)
	}
	hooks := resources("AWS::AutoScaling::LifecycleHook")
	if len(hooks) == 0 {
		t.Fatal("no lifecycle hook")
	}
	for _, h := range hooks {
		timeout := time.Duration(h.Props["HeartbeatTimeout"].(float64)) * time.Second
		if h.Props["DefaultResult"] != "CONTINUE" || timeout < 2*beat {
			t.Errorf("hook %s: timeout %s, default %v; want CONTINUE and at least two worker heartbeats (%s)", h.ID, timeout, h.Props["DefaultResult"], beat)
		}
		if global := min(100*timeout, 48*time.Hour); drain >= global {
			t.Errorf("hook %s: global timeout %s, worker drains up to %s", h.ID, global, drain)
		}
	}
}

// TestNoCompletionsAlarm: per model, an alarm fires when the group has
// instances in service and its queue holds work but no message was deleted
// (no generation finished) for half an hour: broken instances counted as
// capacity.
func TestNoCompletionsAlarm(t *testing.T) {
	topic := "${" + resources("AWS::SNS::Topic")[0].ID + "}"
	for _, m := range fixture.Models {
		name := cmpOr(m.Name, m.ModelID)
		t.Run(lull.Slug(name), func(t *testing.T) {
			q := queueByName(t, "requests-"+lull.Slug(name))
			group := groupOfModel(t)[name]
			found := 0
			for _, a := range resources("AWS::CloudWatch::Alarm") {
				metrics, _ := a.Props["Metrics"].([]any)
				var expr string
				used := map[string]string{} // metric name → its dimension value
				for _, md := range metrics {
					md := md.(map[string]any)
					if e, ok := md["Expression"].(string); ok {
						expr = e
						continue
					}
					dims := asList(get(md, "MetricStat", "Metric", "Dimensions"))
					if len(dims) == 1 {
						used[render(get(md, "MetricStat", "Metric", "MetricName"))] = render(get(dims[0].(map[string]any), "Value"))
					}
				}
				if used["NumberOfMessagesDeleted"] != "${"+q.ID+".QueueName}" {
					continue
				}
				found++
				if used["GroupInServiceInstances"] != group || !strings.Contains(expr, "IF(") {
					t.Errorf("alarm %s: metrics %v, expression %q; want the group %s's InService count", a.ID, used, expr, group)
				}
				if a.Props["EvaluationPeriods"] != float64(lull.NoCompletionsPeriods) || a.Props["DatapointsToAlarm"] != float64(lull.NoCompletionsPeriods) ||
					lull.NoCompletionsPeriods*5 < 30 {
					t.Errorf("alarm %s: %v of %v periods, want %d of %d", a.ID, a.Props["DatapointsToAlarm"], a.Props["EvaluationPeriods"],
						lull.NoCompletionsPeriods, lull.NoCompletionsPeriods)
				}
				if acts := asList(a.Props["AlarmActions"]); len(acts) != 1 || render(acts[0]) != topic {
					t.Errorf("alarm %s actions %v", a.ID, acts)
				}
			}
			if found != 1 {
				t.Fatalf("%d no-completions alarms, want 1", found)
			}
		})
	}
}

// TestServiceLimits: queue names over SQS's 80 characters and Lambda
// environments over 4 KB are refused before anything is created, with
// errors naming the field or the Lambda and the models.
func TestServiceLimits(t *testing.T) {
	good := fixture
	good.BuildDir = buildDir
	good.Models = slices.Clone(fixture.Models)
	for _, tc := range []struct {
		name   string
		change func(*lull.Props)
		want   []string
	}{
		{"QueueName", func(p *lull.Props) {
			p.NamePrefix = "a-rather-long-deployment-prefix-"
			p.Models[0].Name = strings.Repeat("model", 9)
		}, []string{"Models[0].Name", "SQS allows 80"}},
		{"NamePrefixChars", func(p *lull.Props) { p.NamePrefix = "prod." }, []string{"NamePrefix", "letters, digits"}},
		{"RootVolumeRatio", func(p *lull.Props) { p.Models[0].RootVolumeThroughput = 2000 }, []string{"Models[0]", "RootVolumeThroughput"}},
		{"Zones", func(p *lull.Props) { p.MaxAZs = 20 }, []string{"MaxAZs"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := good
			p.Models = slices.Clone(good.Models)
			tc.change(&p)
			err := p.Validate()
			for _, w := range tc.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Fatalf("Validate = %v, want %q", err, w)
				}
			}
		})
	}
	t.Run("LambdaEnvironment", func(t *testing.T) {
		many := good
		many.Models = nil
		for i := range 40 {
			many.Models = append(many.Models, lull.ModelProps{ModelID: fmt.Sprintf("example-org/some-instruct-model-%02d", i), InstanceTypes: []string{"g6.xlarge"}})
		}
		if err := many.Validate(); err != nil {
			t.Fatalf("Validate: %v (each model alone is fine)", err)
		}
		stack := awscdk.NewStack(awscdk.NewApp(nil), jsii.String("lull-production"), &awscdk.StackProps{
			Env: &awscdk.Environment{Account: jsii.String(testAccount), Region: jsii.String(testRegion)}})
		_, err := lull.NewService(stack, "Lull", many)
		if err == nil || !strings.Contains(err.Error(), "scaler") || !strings.Contains(err.Error(), "4096") ||
			!strings.Contains(err.Error(), "example-org/some-instruct-model-") {
			t.Fatalf("NewService with 40 models = %v, want the scaler's 4 KB environment limit, naming models", err)
		}
		if n := len(*stack.Node().Children()); n != 0 {
			t.Fatalf("NewService failed but added %d constructs", n)
		}
	})
}

// userDataScript returns model's user data as bash can run it: CloudFormation
// references (${Logical.Attr}, ${AWS::Region}) become placeholder words.
func userDataScript(t *testing.T, model string) string {
	t.Helper()
	ud, ok := launchTemplates(t)[model]
	if !ok {
		t.Fatalf("no launch template for %s", model)
	}
	return regexp.MustCompile(`\$\{[A-Za-z0-9]+(::[A-Za-z]+)?(\.[A-Za-z0-9.]+)?\}`).ReplaceAllString(ud, "CFN-VALUE")
}

// stubs are the programs the boot script calls that must not touch this
// machine; each logs its arguments to $CALLS. PIP_MISSING, VENV_FAILS and
// NO_HEADERS select failures.
var stubs = map[string]string{
	"id":        `exit 1`,
	"useradd":   `:`,
	"chgrp":     `:`,
	"systemctl": `:`,
	"dnf":       `:`,
	"shutdown":  `:`,
	"logger":    `while IFS= read -r line; do printf 'lull-boot: %s\n' "$line" >&2; done`,
	"aws":       `if [ "$1 $2" = "s3 cp" ]; then printf 'worker' > "$4"; else echo hf_token_value; fi`,
	"install": `dir=0; args=()
while [ $# -gt 0 ]; do case $1 in -d) dir=1;; -m|-o|-g) shift;; *) args+=("$1");; esac; shift; done
if [ $dir = 1 ]; then mkdir -p "${args[@]}"; else cp "${args[0]}" "${args[1]}"; fi`,
	"python3": `if [ "$*" = "-m pip --version" ]; then exit "${PIP_MISSING:-0}"; fi`,
	"uv": `case "$1" in
venv) [ -z "${VENV_FAILS:-}" ] || exit 1
  dir="${@: -1}"; mkdir -p "$dir/bin"
  printf '#!/bin/bash\necho "$*" >> "$CALLS.venv-python"\necho "%s/include"\n' "$dir" > "$dir/bin/python"; chmod +x "$dir/bin/python"
  [ -n "${NO_HEADERS:-}" ] || { mkdir -p "$dir/include"; touch "$dir/include/Python.h"; } ;;
esac`,
}

// boot runs script with the stubs first on PATH and the machine's own
// paths moved under a temporary root; it returns the root, the stubs'
// calls, what reached the console, and bash's error.
func boot(t *testing.T, script string, env ...string) (root, calls, console string, err error) {
	t.Helper()
	root = t.TempDir()
	for _, p := range []string{"/etc/lull", "/etc/systemd", "/opt/", "/var/log/", "/tmp/lull", "/var/lib/lull", "/dev/console"} {
		script = strings.ReplaceAll(script, p, root+p)
	}
	for _, d := range []string{"stubs", "sys", "var/log", "dev", "etc/systemd/system"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	log := filepath.Join(root, "calls")
	for name, body := range stubs {
		text := "#!/bin/bash\necho \"" + name + " $*\" >> \"$CALLS\"\n" + body + "\n"
		if err := os.WriteFile(filepath.Join(root, "stubs", name), []byte(text), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// Only these real programs: no gcc, pip or uv of this machine's.
	for _, tool := range []string{"bash", "tee", "mkdir", "dirname", "cat", "chmod", "cp", "touch", "printf"} {
		path, err := exec.LookPath(tool)
		if err != nil {
			t.Fatalf("%s: %v", tool, err)
		}
		if err := os.Symlink(path, filepath.Join(root, "sys", tool)); err != nil {
			t.Fatal(err)
		}
	}
	file := filepath.Join(root, "user-data.sh")
	if err := os.WriteFile(file, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(root, "sys", "bash"), file)
	cmd.Dir = root
	cmd.Env = append([]string{"PATH=" + filepath.Join(root, "stubs") + ":" + filepath.Join(root, "sys"), "CALLS=" + log, "HOME=" + root}, env...)
	err = cmd.Run()
	// tee and logger may still be writing after bash exits.
	consoleFile := filepath.Join(root, "dev", "console")
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(consoleFile)
		console = string(b)
		if strings.Contains(console, "lull-boot:") && (err == nil || strings.Contains(console, "boot failed")) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	b, _ := os.ReadFile(log)
	return root, string(b), console, err
}

// TestUserDataBoots runs the launch template's boot script against a fake
// Amazon Linux layout: the engine's environment is built on a uv-managed
// Python with its headers, pip is checked as `python3 -m pip`, a compiler
// is installed when missing, the worker is installed and started, and a
// failure reaches the serial console and stops the instance.
func TestUserDataBoots(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	script := userDataScript(t, "qwen-7b")
	t.Run("OK", func(t *testing.T) {
		root, calls, console, err := boot(t, script)
		if err != nil {
			t.Fatalf("boot failed: %v\ncalls:\n%s\nconsole:\n%s", err, calls, console)
		}
		for _, want := range []string{
			"python3 -m pip --version",
			"dnf install -y gcc", // no compiler on PATH
			"python3 -m pip install --quiet --no-deps --require-hashes -r " + root + "/tmp/lull/uv-requirements.txt",
			"uv python install 3.12",
			"uv venv --python 3.12 --python-preference only-managed " + root + "/opt/vllm",
			"uv pip install --python " + root + "/opt/vllm/bin/python --require-hashes -r " + root + "/tmp/lull/vllm-requirements.txt",
			"systemctl enable --now lull-worker.service",
			"useradd --system",
		} {
			if !strings.Contains(calls, want) {
				t.Errorf("no %q in the calls:\n%s", want, calls)
			}
		}
		if strings.Contains(calls, "pip3") || strings.Contains(calls, "dnf install -y python3-pip") || strings.Contains(calls, "shutdown") {
			t.Errorf("pip3, a pip install or a shutdown on a good boot:\n%s", calls)
		}
		env, err := os.ReadFile(filepath.Join(root, "etc/lull/worker.env"))
		if err != nil || !strings.Contains(string(env), `LULL_MODEL="qwen-7b"`) || !strings.Contains(string(env), `HF_TOKEN="hf_token_value"`) {
			t.Errorf("worker.env: %v\n%s", err, env)
		}
		unit, err := os.ReadFile(filepath.Join(root, "etc/systemd/system/lull-worker.service"))
		if err != nil || !strings.Contains(string(unit), "KillMode=mixed") {
			t.Errorf("unit: %v\n%s", err, unit)
		}
		if b, err := os.ReadFile(filepath.Join(root, "opt/lull/bin/gpuworker")); err != nil || string(b) != "worker" {
			t.Errorf("worker binary: %q, %v", b, err)
		}
		if bootLog, _ := os.ReadFile(filepath.Join(root, "var/log/lull-boot.log")); len(bootLog) == 0 || !strings.Contains(console, "lull-boot:") {
			t.Errorf("boot output: log %q, console %q; want both", bootLog, console)
		}
	})
	t.Run("PipMissing", func(t *testing.T) {
		_, calls, _, err := boot(t, script, "PIP_MISSING=1")
		if err != nil || !strings.Contains(calls, "dnf install -y python3-pip") {
			t.Fatalf("err %v; calls:\n%s", err, calls)
		}
	})
	for name, env := range map[string]string{"VenvFails": "VENV_FAILS=1", "NoHeaders": "NO_HEADERS=1"} {
		t.Run(name, func(t *testing.T) {
			_, calls, console, err := boot(t, script, env)
			if err == nil {
				t.Fatalf("boot succeeded; calls:\n%s", calls)
			}
			if !strings.Contains(calls, "shutdown -h +3") || strings.Contains(calls, "systemctl enable") || strings.Contains(calls, "vllm==") {
				t.Errorf("a failed boot must stop the instance before installing vLLM or starting the worker; calls:\n%s", calls)
			}
			if !strings.Contains(console, "boot failed at line") {
				t.Errorf("the failure did not reach the console:\n%s", console)
			}
		})
	}
}
