package lull

import (
	"cmp"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsautoscaling"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatch"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsec2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslogs"
	"github.com/aws/aws-cdk-go/awscdk/v2/awss3assets"
	"github.com/aws/jsii-runtime-go"

	"github.com/lull-ai/lull/lambdas/scaler/backlog"
)

// Paths on the GPU instances.
const (
	// WorkerEnvFile is the systemd EnvironmentFile of the worker: the only
	// place the user data sets worker variables.
	WorkerEnvFile = "/etc/lull/worker.env"
	workerBin     = "/opt/lull/bin/gpuworker"
	vllmVenv      = "/opt/vllm"
	vllmPort      = 8000
	// pythonVersion is the CPython uv installs for vLLM.
	pythonVersion = "3.12"
	// bootLog keeps the user data's output on the instance.
	bootLog = "/var/log/lull-boot.log"
	// failedBootShutdownMinutes is how long a failed boot keeps the
	// instance up, so its console output can be read.
	failedBootShutdownMinutes = 3
	// envFileEnd ends the heredoc that writes WorkerEnvFile.
	envFileEnd = "LULL_ENV"
)

// Fleet is one model's GPU Auto Scaling group and what it needs.
type Fleet struct {
	Group          awsautoscaling.AutoScalingGroup
	LaunchTemplate awsec2.LaunchTemplate
	Role           awsiam.Role
	// Env is the worker environment written to WorkerEnvFile, by name.
	Env map[string]*string
}

// vllmLockFile and uvLockFile name the hash-pinned requirements in
// Props.VLLMLockDir (`make vllm-lock` writes them; infra/vllm/README.md).
func vllmLockFile(version, arch string) string {
	return "requirements-vllm-" + version + "-" + arch + ".txt"
}

func uvLockFile() string { return "requirements-uv-" + UVVersion + ".txt" }

// amiParameter is the public SSM parameter of the AWS Deep Learning Base
// OSS Nvidia Driver GPU AMI (Amazon Linux 2023): NVIDIA driver and CUDA,
// resolved at deploy time, so a redeploy picks up the latest image.
func amiParameter(arch string) string {
	cpu := map[string]string{"amd64": "x86_64", "arm64": "arm64"}[arch]
	return "/aws/service/deeplearning/ami/" + cpu + "/base-oss-nvidia-driver-gpu-amazon-linux-2023/latest/ami-id"
}

// network creates the VPC unless one was given.
func (s *Service) network() {
	if s.props.VPC != nil {
		s.VPC = s.props.VPC
		return
	}
	props := &awsec2.VpcProps{
		NatGateways: jsii.Number(0),
		SubnetConfiguration: &[]*awsec2.SubnetConfiguration{{
			Name: jsii.String("public"), SubnetType: awsec2.SubnetType_PUBLIC, CidrMask: jsii.Number(20)}},
		GatewayEndpoints: &map[string]*awsec2.GatewayVpcEndpointOptions{
			"S3":       {Service: awsec2.GatewayVpcEndpointAwsService_S3()},
			"DynamoDB": {Service: awsec2.GatewayVpcEndpointAwsService_DYNAMODB()},
		},
	}
	// Every zone is one more spot pool per instance type. CDK knows the
	// region's zones only in an environment-specific stack; an agnostic
	// one gets 2 whatever MaxAzs says.
	if azs := s.props.AvailabilityZones; len(azs) > 0 {
		props.AvailabilityZones = jsii.Strings(azs...)
	} else {
		props.MaxAzs = jsii.Number(float64(cmp.Or(s.props.MaxAZs, maxAZs)))
	}
	vpc := awsec2.NewVpc(s.scope, jsii.String("Vpc"), props)
	flowLogs := awslogs.NewLogGroup(s.scope, jsii.String("VpcFlowLogs"), &awslogs.LogGroupProps{
		Retention: s.props.LogRetention, RemovalPolicy: awscdk.RemovalPolicy_DESTROY})
	vpc.AddFlowLog(jsii.String("Rejected"), &awsec2.FlowLogOptions{
		Destination: awsec2.FlowLogDestination_ToCloudWatchLogs(flowLogs, nil),
		TrafficType: awsec2.FlowLogTrafficType_REJECT,
	})
	s.VPC = vpc
}

// workerEnv is the worker's environment: worker.Config variables only
// (Props.Validate has checked WorkerEnv), plus the AWS SDK's region and the
// Hugging Face cache for the vLLM child process.
func (s *Service) workerEnv(m *Model) map[string]*string {
	p := m.Props
	vllm := []string{vllmVenv + "/bin/vllm", "serve", p.ModelID, "--host", "127.0.0.1", "--port", fmt.Sprint(vllmPort)}
	if p.Task == "embed" {
		vllm = append(vllm, "--runner", "pooling")
	}
	vllm = append(vllm, p.VLLMArgs...)
	env := map[string]*string{
		"LULL_MODEL":            jsii.String(p.Name),
		"LULL_QUEUE_URL":        m.Queue.QueueUrl(),
		"LULL_EVENTS_QUEUE_URL": s.Events.QueueUrl(),
		"LULL_TABLE":            s.Table.TableName(),
		"LULL_BUCKET":           s.Bucket.BucketName(),
		"VLLM_URL":              jsii.String(fmt.Sprintf("http://127.0.0.1:%d", vllmPort)),
		"LULL_VLLM_COMMAND":     jsii.String(strings.Join(vllm, " ")),
		"LULL_GATE":             jsii.String("metrics"),
		"LULL_IMDS_URL":         jsii.String("http://169.254.169.254"),
		"LULL_ASG_NAME":         m.asgName,
		"LULL_LIFECYCLE_HOOK":   jsii.String(LifecycleHookName),
		"AWS_REGION":            awscdk.Aws_REGION(),
		"HF_HOME":               jsii.String("/var/lib/lull/huggingface"),
		"LULL_RETENTION":        jsii.String(fmtDuration(s.props.Retention)),
	}
	for k, v := range limitsEnv(s.props.Limits) {
		env[k] = v
	}
	if p.ModelID != p.Name {
		env["LULL_ENGINE_MODEL"] = jsii.String(p.ModelID)
	}
	for k, v := range p.WorkerEnv {
		env[k] = jsii.String(v)
	}
	return env
}

// userData installs vLLM and the worker and starts the worker as a systemd
// service. The worker runs `vllm serve` itself (LULL_VLLM_COMMAND): it
// gates receiving on the engine's health, restarts it with backoff and
// stops it only after draining; KillMode=mixed lets systemd's SIGTERM reach
// the worker alone so the engine outlives the drain.
func (s *Service) userData(m *Model, env map[string]*string, worker awss3assets.Asset, locks []awss3assets.Asset) awsec2.UserData {
	ud := awsec2.UserData_ForLinux(&awsec2.LinuxUserDataOptions{Shebang: jsii.String("#!/bin/bash")})
	add := func(lines ...string) { ud.AddCommands(*jsii.Strings(lines...)...) }
	add(
		"set -euo pipefail",
		"# Everything below goes to "+bootLog+", the journal (lull-boot) and the",
		"# serial console, so `aws ec2 get-console-output` shows why a boot failed.",
		"exec > >(tee -a "+bootLog+" | logger -t lull-boot -s 2>/dev/console) 2>&1",
		"# A half-installed instance would count as capacity and serve nothing:",
		"# stop it (after "+fmt.Sprint(failedBootShutdownMinutes)+" minutes, to read its console), and Auto Scaling replaces it.",
		"trap 'echo \"lull: boot failed at line $LINENO; shutting down in "+fmt.Sprint(failedBootShutdownMinutes)+" minutes\"; shutdown -h +"+fmt.Sprint(failedBootShutdownMinutes)+"' ERR",
		"echo 'lull: boot started: "+m.Props.ModelID+" on vLLM "+m.Props.VLLMVersion+"'", // both validated: no quotes or spaces
		"id lull >/dev/null 2>&1 || useradd --system --create-home --home-dir /var/lib/lull --shell /sbin/nologin lull",
		"install -d -m 0755 /opt/lull/bin",
	)
	local := ud.AddS3DownloadCommand(&awsec2.S3DownloadOptions{
		Bucket: worker.Bucket(), BucketKey: worker.S3ObjectKey(), LocalFile: jsii.String("/tmp/lull/gpuworker"),
		Region: awscdk.Aws_REGION()})
	add(
		"install -m 0755 "+*local+" "+workerBin,
		"# vLLM in its own virtual environment, on a CPython that uv manages:",
		"# it ships its headers (Python.h), which Triton compiles kernels",
		"# against when the engine first starts; the AMI's python3 may lack them.",
		"python3 -m pip --version >/dev/null 2>&1 || dnf install -y python3-pip",
		"command -v gcc >/dev/null || dnf install -y gcc",
	)
	// Every package, vLLM's dependencies included, pinned by hash (`make
	// vllm-lock`): a changed or substituted file fails the boot. Without
	// locks (ModelProps.UnpinnedVLLM), whatever PyPI serves under these names.
	if locks == nil {
		add("python3 -m pip install --quiet 'uv==" + UVVersion + "'")
	} else {
		uvLock := ud.AddS3DownloadCommand(&awsec2.S3DownloadOptions{Bucket: locks[0].Bucket(), BucketKey: locks[0].S3ObjectKey(),
			LocalFile: jsii.String("/tmp/lull/uv-requirements.txt"), Region: awscdk.Aws_REGION()})
		add("python3 -m pip install --quiet --no-deps --require-hashes -r " + *uvLock)
	}
	add(
		"export UV_PYTHON_INSTALL_DIR=/opt/uv/python",
		"echo 'lull: installing Python "+pythonVersion+" and vLLM'",
		"uv python install "+pythonVersion,
		"uv venv --python "+pythonVersion+" --python-preference only-managed "+vllmVenv,
		"test -f \"$("+vllmVenv+"/bin/python -c 'import sysconfig; print(sysconfig.get_paths()[\"include\"])')/Python.h\"",
	)
	if locks == nil {
		add("uv pip install --python " + vllmVenv + "/bin/python 'vllm==" + m.Props.VLLMVersion + "'")
	} else {
		vllmLock := ud.AddS3DownloadCommand(&awsec2.S3DownloadOptions{Bucket: locks[1].Bucket(), BucketKey: locks[1].S3ObjectKey(),
			LocalFile: jsii.String("/tmp/lull/vllm-requirements.txt"), Region: awscdk.Aws_REGION()})
		add("uv pip install --python " + vllmVenv + "/bin/python --require-hashes -r " + *vllmLock)
	}
	add(
		"install -d -m 0750 -o root -g lull /etc/lull",
		"umask 027",
	)
	lines := []string{"cat > " + WorkerEnvFile + " <<'" + envFileEnd + "'"}
	names := make([]string, 0, len(env))
	for k := range env {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		lines = append(lines, k+`="`+*env[k]+`"`)
	}
	lines = append(lines, envFileEnd)
	add(strings.Join(lines, "\n"))
	if param := s.props.HuggingFaceTokenParameter; param != "" {
		add("hf_token=$(aws ssm get-parameter --region "+*awscdk.Aws_REGION()+" --name '"+param+
			"' --with-decryption --query Parameter.Value --output text)",
			"printf 'HF_TOKEN=\"%s\"\\n' \"$hf_token\" >> "+WorkerEnvFile)
	}
	add(
		"chgrp lull "+WorkerEnvFile+" && chmod 0640 "+WorkerEnvFile,
		"cat > /etc/systemd/system/lull-worker.service <<'LULL_UNIT'",
		"[Unit]",
		"Description=lull GPU worker (runs and supervises vLLM)",
		"Wants=network-online.target",
		"After=network-online.target",
		"[Service]",
		"User=lull",
		"EnvironmentFile="+WorkerEnvFile,
		"ExecStart="+workerBin,
		"Restart=always",
		"RestartSec=5",
		"KillMode=mixed",
		// LULL_DRAIN_TIMEOUT (90s) plus the engine's own stop.
		"TimeoutStopSec=150",
		"[Install]",
		"WantedBy=multi-user.target",
		"LULL_UNIT",
		"systemctl daemon-reload",
		"systemctl enable --now lull-worker.service",
		"echo 'lull: boot done; the worker starts the engine (journalctl -u lull-worker)'",
	)
	return ud
}

// fleet creates the launch template, instance role, Auto Scaling group,
// lifecycle hook and scaling policies of one model.
func (s *Service) fleet(m *Model) {
	id := "Gpu" + camel(m.Slug)
	p := m.Props
	arch := Arch(p.InstanceTypes[0])
	worker := awss3assets.NewAsset(s.scope, jsii.String(id+"Worker"+camel(arch)), &awss3assets.AssetProps{
		Path: jsii.String(workerBinary(s.props.BuildDir, arch))})

	role := awsiam.NewRole(s.scope, jsii.String(id+"Role"), &awsiam.RoleProps{
		AssumedBy:   awsiam.NewServicePrincipal(jsii.String("ec2.amazonaws.com"), nil),
		Description: jsii.String("lull GPU worker for " + p.Name),
	})
	groupArn := awscdk.Fn_Join(jsii.String(""), &[]*string{jsii.String("arn:"), awscdk.Aws_PARTITION(), jsii.String(":autoscaling:"),
		awscdk.Aws_REGION(), jsii.String(":"), awscdk.Aws_ACCOUNT_ID(), jsii.String(":autoScalingGroup:*:autoScalingGroupName/"), m.asgName})
	for _, st := range []awsiam.PolicyStatement{
		statement([]string{"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"}, m.Queue.QueueArn()),
		statement([]string{"sqs:SendMessage"}, s.Events.QueueArn()),
		// Generations only (dynamodb:LeadingKeys), and no PutItem: the
		// worker updates the generations it runs, with conditions; it cannot
		// create any item (an API key, say) nor read any other kind.
		s.tableStatement([]string{"dynamodb:GetItem", "dynamodb:UpdateItem"}, "GEN#"),
		statement([]string{"s3:GetObject"}, s.objects(prefixInputs)),
		statement([]string{"s3:PutObject"}, s.objects(prefixOutputs)),
		// Drain: extend and complete the termination hook; a worker whose
		// engine cannot start has its instance replaced.
		statement([]string{"autoscaling:CompleteLifecycleAction", "autoscaling:RecordLifecycleActionHeartbeat", "autoscaling:SetInstanceHealth"}, groupArn),
		statement([]string{"s3:GetObject"}, worker.Bucket().ArnForObjects(worker.S3ObjectKey())),
	} {
		role.AddToPolicy(st)
	}
	if param := s.props.HuggingFaceTokenParameter; param != "" {
		role.AddToPolicy(statement([]string{"ssm:GetParameter"}, awscdk.Stack_Of(s.scope).FormatArn(&awscdk.ArnComponents{
			Service: jsii.String("ssm"), Resource: jsii.String("parameter"),
			ResourceName: jsii.String(strings.TrimPrefix(param, "/"))})))
	}

	env := s.workerEnv(m)
	sg := awsec2.NewSecurityGroup(s.scope, jsii.String(id+"SecurityGroup"), &awsec2.SecurityGroupProps{
		Vpc: s.VPC, Description: jsii.String("lull GPU workers: no inbound, outbound to AWS APIs, PyPI and Hugging Face"),
		AllowAllOutbound: jsii.Bool(true),
	})
	var locks []awss3assets.Asset
	if !p.UnpinnedVLLM {
		for i, f := range []string{uvLockFile(), vllmLockFile(p.VLLMVersion, arch)} {
			lock := awss3assets.NewAsset(s.scope, jsii.String(fmt.Sprintf("%sLock%d", id, i)), &awss3assets.AssetProps{
				Path: jsii.String(filepath.Join(s.props.VLLMLockDir, f))})
			role.AddToPolicy(statement([]string{"s3:GetObject"}, lock.Bucket().ArnForObjects(lock.S3ObjectKey())))
			locks = append(locks, lock)
		}
	} else {
		awscdk.Annotations_Of(s.scope).AddWarningV2(jsii.String("lull:UnpinnedVLLM"), jsii.String(
			"Models["+p.Name+"].UnpinnedVLLM: the GPU instances install vLLM "+p.VLLMVersion+" from PyPI without hashes; run `make vllm-lock` and drop UnpinnedVLLM"))
	}
	ud := s.userData(m, env, worker, locks)
	lt := awsec2.NewLaunchTemplate(s.scope, jsii.String(id+"LaunchTemplate"), &awsec2.LaunchTemplateProps{
		MachineImage: awsec2.MachineImage_FromSsmParameter(jsii.String(amiParameter(arch)), &awsec2.SsmParameterImageOptions{
			Os: awsec2.OperatingSystemType_LINUX}),
		UserData:      ud,
		Role:          role,
		SecurityGroup: sg,
		RequireImdsv2: jsii.Bool(true),
		// Spot instances from Auto Scaling cannot stop; a failed boot
		// (see userData) shuts down, which must end the instance.
		InstanceInitiatedShutdownBehavior: awsec2.InstanceInitiatedShutdownBehavior_TERMINATE,
		HttpPutResponseHopLimit:           jsii.Number(1),
		BlockDevices: &[]*awsec2.BlockDevice{{
			DeviceName: jsii.String("/dev/xvda"),
			Volume: awsec2.BlockDeviceVolume_Ebs(jsii.Number(float64(p.RootVolumeGiB)), &awsec2.EbsDeviceOptions{
				Encrypted: jsii.Bool(true), VolumeType: awsec2.EbsDeviceVolumeType_GP3, DeleteOnTermination: jsii.Bool(true),
				Throughput: jsii.Number(float64(p.RootVolumeThroughput)), Iops: jsii.Number(float64(p.RootVolumeIOPS))}),
		}},
	})
	overrides := make([]*awsautoscaling.LaunchTemplateOverrides, len(p.InstanceTypes))
	for i, it := range p.InstanceTypes {
		overrides[i] = &awsautoscaling.LaunchTemplateOverrides{InstanceType: awsec2.NewInstanceType(jsii.String(it))}
	}
	warmup := awscdk.Duration_Minutes(jsii.Number(15)) // boot, install, weights download, engine load
	group := awsautoscaling.NewAutoScalingGroup(s.scope, jsii.String(id+"Group"), &awsautoscaling.AutoScalingGroupProps{
		Vpc:                  s.VPC,
		VpcSubnets:           &awsec2.SubnetSelection{SubnetType: awsec2.SubnetType_PUBLIC},
		AutoScalingGroupName: m.asgName,
		MinCapacity:          jsii.Number(float64(p.MinInstances)),
		MaxCapacity:          jsii.Number(float64(p.MaxInstances)),
		CapacityRebalance:    jsii.Bool(true),
		MixedInstancesPolicy: &awsautoscaling.MixedInstancesPolicy{
			LaunchTemplate:          lt,
			LaunchTemplateOverrides: &overrides,
			InstancesDistribution: &awsautoscaling.InstancesDistribution{
				OnDemandBaseCapacity:                jsii.Number(0),
				OnDemandPercentageAboveBaseCapacity: jsii.Number(0),
				SpotAllocationStrategy:              awsautoscaling.SpotAllocationStrategy_PRICE_CAPACITY_OPTIMIZED,
			},
		},
		DefaultInstanceWarmup: warmup,
		GroupMetrics:          &[]awsautoscaling.GroupMetrics{awsautoscaling.GroupMetrics_All()},
	})
	group.AddLifecycleHook(jsii.String("Drain"), &awsautoscaling.BasicLifecycleHookProps{
		LifecycleHookName:   jsii.String(LifecycleHookName),
		LifecycleTransition: awsautoscaling.LifecycleTransition_INSTANCE_TERMINATING,
		// The worker extends it every LULL_LIFECYCLE_HEARTBEAT (5m) while a
		// scale-in drain waits for running generations, up to
		// LULL_SCALE_IN_DRAIN_MAX (24h, under the hook's global timeout of
		// 100 heartbeat timeouts); a worker that died stops extending it,
		// and the instance goes after 15 minutes. Spot reclaims end it at
		// the interruption anyway.
		HeartbeatTimeout: awscdk.Duration_Minutes(jsii.Number(LifecycleHeartbeatTimeout.Minutes())),
		DefaultResult:    awsautoscaling.DefaultResult_CONTINUE,
	})

	// Target tracking keeps BacklogPerInstance at the model's target...
	group.ScaleToTrackMetric(jsii.String("BacklogTracking"), &awsautoscaling.MetricTargetTrackingProps{
		Metric:                  s.scalerMetric(backlog.MetricBacklogPerInstance, p.Name, "Average"),
		TargetValue:             jsii.Number(p.TargetBacklogPerInstance),
		EstimatedInstanceWarmup: warmup,
	})
	// ...and, since it cannot leave zero, a step policy launches the first
	// instance when work waits for an empty group.
	group.ScaleOnMetric(jsii.String("ScaleFromZero"), &awsautoscaling.BasicStepScalingPolicyProps{
		Metric: s.scalerMetric(backlog.MetricUnservedBacklog, p.Name, "Maximum"),
		ScalingSteps: &[]*awsautoscaling.ScalingInterval{
			{Upper: jsii.Number(backlog.ScaleFromZeroThreshold), Change: jsii.Number(0)},
			{Lower: jsii.Number(backlog.ScaleFromZeroThreshold), Change: jsii.Number(backlog.ScaleFromZeroInstances)},
		},
		AdjustmentType:          awsautoscaling.AdjustmentType_CHANGE_IN_CAPACITY,
		EvaluationPeriods:       jsii.Number(1),
		EstimatedInstanceWarmup: warmup,
	})
	m.Fleet = &Fleet{Group: group, LaunchTemplate: lt, Role: role, Env: env}
	awscdk.NewCfnOutput(s.scope, jsii.String(id+"QueueUrl"), &awscdk.CfnOutputProps{
		Value: m.Queue.QueueUrl(), Description: jsii.String("request queue of " + p.Name)})
}

// scalerMetric is one of the metrics the scaler publishes for model.
func (s *Service) scalerMetric(name, model, statistic string) awscloudwatch.Metric {
	return awscloudwatch.NewMetric(&awscloudwatch.MetricProps{
		Namespace:     jsii.String(s.props.MetricNamespace),
		MetricName:    jsii.String(name),
		DimensionsMap: &map[string]*string{backlog.DimensionModel: jsii.String(model)},
		Statistic:     jsii.String(statistic),
		Period:        awscdk.Duration_Minutes(jsii.Number(1)),
	})
}
