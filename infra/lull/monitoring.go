package lull

import (
	"fmt"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatch"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatchactions"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssqs"
	"github.com/aws/aws-cdk-go/awscdk/v2/interfaces/interfacesawscloudwatch"
	"github.com/aws/jsii-runtime-go"

	"github.com/lull-ai/lull/lambdas/scaler/backlog"
)

// AgeAlarmFraction is the share of the default completion window a request
// may wait in its queue before the oldest-message alarm fires: past it,
// requests risk expiring unserved.
const AgeAlarmFraction = 0.5

func fiveMinutes() awscdk.Duration { return awscdk.Duration_Minutes(jsii.Number(5)) }

func (s *Service) alarm(id, description string, metric awscloudwatch.IMetric, threshold float64, op awscloudwatch.ComparisonOperator) awscloudwatch.Alarm {
	return s.alarmMissing(id, description, metric, threshold, op, awscloudwatch.TreatMissingData_NOT_BREACHING)
}

// alarmMissing is alarm with its own treatment of missing data.
func (s *Service) alarmMissing(id, description string, metric awscloudwatch.IMetric, threshold float64, op awscloudwatch.ComparisonOperator,
	missing awscloudwatch.TreatMissingData) awscloudwatch.Alarm {
	a := awscloudwatch.NewAlarm(s.scope, jsii.String(id), &awscloudwatch.AlarmProps{
		Metric: metric, Threshold: jsii.Number(threshold), ComparisonOperator: op,
		EvaluationPeriods: jsii.Number(1), AlarmDescription: jsii.String(description),
		TreatMissingData: missing,
	})
	action := awscloudwatchactions.NewSnsAction(s.AlarmTopic)
	a.AddAlarmAction(action)
	a.AddOkAction(action)
	return a
}

func (s *Service) dlqAlarm(id, what string, q awssqs.Queue) awscloudwatch.Alarm {
	return s.alarm(id+"DepthAlarm", what+" has messages that exhausted "+fmt.Sprint(MaxReceiveCount)+" receives",
		q.MetricApproximateNumberOfMessagesVisible(&awscloudwatch.MetricOptions{Statistic: jsii.String("Maximum"), Period: fiveMinutes()}),
		1, awscloudwatch.ComparisonOperator_GREATER_THAN_OR_EQUAL_TO_THRESHOLD)
}

// monitoring creates the alarms and the dashboard.
func (s *Service) monitoring() {
	gte := awscloudwatch.ComparisonOperator_GREATER_THAN_OR_EQUAL_TO_THRESHOLD
	maxAge := s.props.DefaultCompletionWindow.Seconds() * AgeAlarmFraction
	var alarms []interfacesawscloudwatch.IAlarmRef
	var queueWidgets []awscloudwatch.IWidget
	for _, name := range s.modelNames() {
		m := s.Models[name]
		id := "Requests" + camel(m.Slug)
		alarms = append(alarms,
			s.dlqAlarm(id+"Dlq", "request DLQ of "+name, m.DLQ),
			s.alarm(id+"AgeAlarm", fmt.Sprintf("oldest request for %s waited over %.0f%% of the default completion window", name, AgeAlarmFraction*100),
				m.Queue.MetricApproximateAgeOfOldestMessage(&awscloudwatch.MetricOptions{Statistic: jsii.String("Maximum"), Period: fiveMinutes()}),
				maxAge, awscloudwatch.ComparisonOperator_GREATER_THAN_THRESHOLD),
			// The scaler publishes every model every minute, zeros included;
			// without the metric neither policy can act, so silence alarms.
			s.alarmMissing(id+"ScalingMetricMissingAlarm",
				fmt.Sprintf("no %s for %s in 5 minutes: the scaler is not publishing it and the fleet cannot scale", backlog.MetricBacklogPerInstance, name),
				s.scalerMetric(backlog.MetricBacklogPerInstance, name, "SampleCount").With(&awscloudwatch.MetricOptions{Period: fiveMinutes()}),
				1, awscloudwatch.ComparisonOperator_LESS_THAN_THRESHOLD, awscloudwatch.TreatMissingData_BREACHING),
			s.noCompletionsAlarm(m),
		)
		queueWidgets = append(queueWidgets,
			awscloudwatch.NewGraphWidget(&awscloudwatch.GraphWidgetProps{
				Title: jsii.String(name + ": queue"), Width: jsii.Number(8),
				Left: &[]awscloudwatch.IMetric{
					m.Queue.MetricApproximateNumberOfMessagesVisible(nil),
					m.Queue.MetricApproximateNumberOfMessagesNotVisible(nil),
					m.DLQ.MetricApproximateNumberOfMessagesVisible(&awscloudwatch.MetricOptions{Label: jsii.String("DLQ")}),
				},
				Right: &[]awscloudwatch.IMetric{m.Queue.MetricApproximateAgeOfOldestMessage(nil)},
			}),
			awscloudwatch.NewGraphWidget(&awscloudwatch.GraphWidgetProps{
				Title: jsii.String(name + ": scaling"), Width: jsii.Number(8),
				Left: &[]awscloudwatch.IMetric{
					s.scalerMetric(backlog.MetricBacklogPerInstance, name, "Average"),
					s.scalerMetric(backlog.MetricUnservedBacklog, name, "Maximum"),
				},
				LeftAnnotations: &[]*awscloudwatch.HorizontalAnnotation{{
					Value: jsii.Number(m.Props.TargetBacklogPerInstance), Label: jsii.String("target")}},
			}),
			awscloudwatch.NewGraphWidget(&awscloudwatch.GraphWidgetProps{
				Title: jsii.String(name + ": instances"), Width: jsii.Number(8),
				Left: &[]awscloudwatch.IMetric{
					s.groupMetric(m, "GroupDesiredCapacity"), s.groupMetric(m, "GroupInServiceInstances"),
					s.groupMetric(m, "GroupPendingInstances"),
				},
			}),
		)
	}
	alarms = append(alarms,
		s.dlqAlarm("EventsDlq", "events DLQ (webhook deliveries)", s.EventsDLQ),
		s.dlqAlarm("BatchDlq", "batch DLQ", s.BatchDLQ),
		s.alarm("WebhookFailuresAlarm", "the webhooks Lambda failed (deliveries are retried, then dead-lettered)",
			s.Functions["webhooks"].MetricErrors(&awscloudwatch.MetricOptions{Statistic: jsii.String("Sum"), Period: fiveMinutes()}), 1, gte),
		s.alarm("WebhookBacklogAlarm", "webhook events waited over 30 minutes for delivery",
			s.Events.MetricApproximateAgeOfOldestMessage(&awscloudwatch.MetricOptions{Statistic: jsii.String("Maximum"), Period: fiveMinutes()}),
			1800, awscloudwatch.ComparisonOperator_GREATER_THAN_THRESHOLD),
		s.alarm("ApiErrorsAlarm", "the API Lambda failed (clients saw 5xx)",
			s.Functions["api"].MetricErrors(&awscloudwatch.MetricOptions{Statistic: jsii.String("Sum"), Period: fiveMinutes()}), 5, gte),
		s.alarm("ScalerErrorsAlarm", "the scaler failed: no scaling metric, sweeps or re-enqueues while it does",
			s.Functions["scaler"].MetricErrors(&awscloudwatch.MetricOptions{Statistic: jsii.String("Sum"), Period: fiveMinutes()}), 3, gte),
	)

	var fnMetrics, fnErrors []awscloudwatch.IMetric
	for _, name := range LambdaNames {
		fnMetrics = append(fnMetrics, s.Functions[name].MetricInvocations(&awscloudwatch.MetricOptions{Label: jsii.String(name)}))
		fnErrors = append(fnErrors, s.Functions[name].MetricErrors(&awscloudwatch.MetricOptions{Label: jsii.String(name)}))
	}
	apiMetric := func(name, stat string) awscloudwatch.IMetric {
		return awscloudwatch.NewMetric(&awscloudwatch.MetricProps{Namespace: jsii.String("AWS/ApiGateway"), MetricName: jsii.String(name),
			DimensionsMap: &map[string]*string{"ApiId": s.API.ApiId()}, Statistic: jsii.String(stat)})
	}
	rows := [][]awscloudwatch.IWidget{
		{awscloudwatch.NewAlarmStatusWidget(&awscloudwatch.AlarmStatusWidgetProps{
			Title: jsii.String("lull alarms"), Alarms: &alarms, Width: jsii.Number(24)})},
		{
			awscloudwatch.NewGraphWidget(&awscloudwatch.GraphWidgetProps{Title: jsii.String("API requests and errors"), Width: jsii.Number(8),
				Left: &[]awscloudwatch.IMetric{apiMetric("Count", "Sum"), apiMetric("4xx", "Sum"), apiMetric("5xx", "Sum")}}),
			awscloudwatch.NewGraphWidget(&awscloudwatch.GraphWidgetProps{Title: jsii.String("Lambda invocations"), Width: jsii.Number(8), Left: &fnMetrics}),
			awscloudwatch.NewGraphWidget(&awscloudwatch.GraphWidgetProps{Title: jsii.String("Lambda errors"), Width: jsii.Number(8), Left: &fnErrors}),
		},
		{
			awscloudwatch.NewGraphWidget(&awscloudwatch.GraphWidgetProps{Title: jsii.String("webhook events"), Width: jsii.Number(12),
				Left: &[]awscloudwatch.IMetric{
					s.Events.MetricApproximateNumberOfMessagesVisible(nil),
					s.EventsDLQ.MetricApproximateNumberOfMessagesVisible(&awscloudwatch.MetricOptions{Label: jsii.String("DLQ")})},
				Right: &[]awscloudwatch.IMetric{s.Events.MetricApproximateAgeOfOldestMessage(nil)}}),
			awscloudwatch.NewGraphWidget(&awscloudwatch.GraphWidgetProps{Title: jsii.String("batch jobs"), Width: jsii.Number(12),
				Left: &[]awscloudwatch.IMetric{
					s.Batch.MetricApproximateNumberOfMessagesVisible(nil),
					s.BatchDLQ.MetricApproximateNumberOfMessagesVisible(&awscloudwatch.MetricOptions{Label: jsii.String("DLQ")})}}),
		},
	}
	for i := 0; i < len(queueWidgets); i += 3 {
		rows = append(rows, queueWidgets[i:i+3])
	}
	widgets := make([]*[]awscloudwatch.IWidget, len(rows))
	for i := range rows {
		widgets[i] = &rows[i]
	}
	awscloudwatch.NewDashboard(s.scope, jsii.String("Dashboard"), &awscloudwatch.DashboardProps{
		DashboardName: awscdk.Aws_STACK_NAME(),
		Widgets:       &widgets, DefaultInterval: awscdk.Duration_Hours(jsii.Number(3))})
}

// NoCompletionsPeriods is how many 5-minute periods in a row a fleet may
// have instances in service and work queued while finishing nothing before
// its alarm fires: longer than a boot (the group's 15-minute warmup) and
// a long generation.
const NoCompletionsPeriods = 6

// noCompletionsAlarm fires when m's group has instances InService and its
// queue holds work, yet no request finished (no message was deleted: the
// worker deletes a message only once its generation is terminal) for
// NoCompletionsPeriods periods: every instance is broken, e.g. its engine
// never starts, while Auto Scaling counts it as capacity. (A worker whose
// engine fails to start repeatedly marks its instance unhealthy itself;
// this catches the rest.)
func (s *Service) noCompletionsAlarm(m *Model) awscloudwatch.Alarm {
	stat := func(st string) *awscloudwatch.MetricOptions {
		return &awscloudwatch.MetricOptions{Statistic: jsii.String(st), Period: fiveMinutes()}
	}
	inService := s.groupMetric(m, "GroupInServiceInstances").With(stat("Minimum"))
	expr := awscloudwatch.NewMathExpression(&awscloudwatch.MathExpressionProps{
		Expression: jsii.String("IF(inservice >= 1 AND FILL(waiting, 0) + FILL(running, 0) >= 1 AND FILL(finished, 0) == 0, 1, 0)"),
		UsingMetrics: &map[string]awscloudwatch.IMetric{
			"inservice": inService,
			"waiting":   m.Queue.MetricApproximateNumberOfMessagesVisible(stat("Maximum")),
			"running":   m.Queue.MetricApproximateNumberOfMessagesNotVisible(stat("Maximum")),
			"finished":  m.Queue.MetricNumberOfMessagesDeleted(stat("Sum")),
		},
		Label:  jsii.String("stuck (instances in service, work queued, nothing finished)"),
		Period: fiveMinutes(),
	})
	a := awscloudwatch.NewAlarm(s.scope, jsii.String("Requests"+camel(m.Slug)+"NoCompletionsAlarm"), &awscloudwatch.AlarmProps{
		Metric: expr, Threshold: jsii.Number(1), ComparisonOperator: awscloudwatch.ComparisonOperator_GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
		EvaluationPeriods: jsii.Number(NoCompletionsPeriods), DatapointsToAlarm: jsii.Number(NoCompletionsPeriods),
		TreatMissingData: awscloudwatch.TreatMissingData_NOT_BREACHING,
		AlarmDescription: jsii.String(fmt.Sprintf("%s: instances in service and requests queued, but none finished for %d minutes: "+
			"the engine may not start (see `aws ec2 get-console-output` and `journalctl -u lull-worker` on an instance)",
			m.Props.Name, NoCompletionsPeriods*5)),
	})
	action := awscloudwatchactions.NewSnsAction(s.AlarmTopic)
	a.AddAlarmAction(action)
	a.AddOkAction(action)
	return a
}

// groupMetric is an Auto Scaling group metric of m's fleet (collected:
// GroupMetrics are enabled on every group, at no charge).
func (s *Service) groupMetric(m *Model, name string) awscloudwatch.Metric {
	return awscloudwatch.NewMetric(&awscloudwatch.MetricProps{Namespace: jsii.String("AWS/AutoScaling"), MetricName: jsii.String(name),
		DimensionsMap: &map[string]*string{"AutoScalingGroupName": m.asgName}, Statistic: jsii.String("Maximum"),
		Period: awscdk.Duration_Minutes(jsii.Number(1))})
}
