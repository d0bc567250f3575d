package lull

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// checkEnvironmentSize estimates the environment of the Lambdas whose
// variables grow with the models (api, batch and scaler: LULL_MODEL_QUEUES,
// and the scaler's LULL_ASG_NAMES, name every model) and fails, naming the
// Lambda and the longest model names, when one would exceed Lambda's 4 KB
// limit: CloudFormation would otherwise fail the deploy half-way. Values
// only known at deploy time are estimated from their formats (queue URLs,
// generated table and bucket names), on the long side; region is "" when
// the stack is environment-agnostic.
func checkEnvironmentSize(p Props, id, stackName, region string) error {
	regionLen := len(region)
	if region == "" {
		regionLen = len("ap-southeast-2") + len(".cn")
	}
	queueURL := func(name string) int { // https://sqs.<region>.amazonaws.com/<account>/<name>
		return len("https://sqs.") + regionLen + len(".amazonaws.com/") + 12 + 1 + len(name)
	}
	jsonMap := func(value func(ModelProps) int) int {
		n := 2 + max(len(p.Models)-1, 0) // {} and commas
		for _, m := range p.Models {
			name, _ := json.Marshal(m.Name)
			n += len(name) + 1 + 2 + value(m) // "name":"value"
		}
		return n
	}
	modelQueues := jsonMap(func(m ModelProps) int { return queueURL(p.NamePrefix + "requests-" + Slug(m.Name)) })
	asgNames := jsonMap(func(m ModelProps) int { return len(stackName) + len("-gpu-") + len(Slug(m.Name)) })
	// CloudFormation names the table <stack>-<logical ID>-<suffix>; bucket names stop at 63.
	storage := len("LULL_TABLE") + min(len(stackName)+1+len(id)+len("Table")+8+1+13, 255) + len("LULL_BUCKET") + 63
	events, batch := queueURL(p.NamePrefix+"events"), queueURL(p.NamePrefix+"batch")
	const scalars = 128 // completion windows, retention and their names
	sizes := map[string]int{
		"api": storage + len("LULL_MODEL_QUEUES") + modelQueues + len("LULL_EVENTS_QUEUE_URL") + events +
			len("LULL_BATCH_QUEUE_URL") + batch + scalars,
		"batch": storage + len("LULL_MODEL_QUEUES") + modelQueues + len("LULL_EVENTS_QUEUE_URL") + events +
			len("LULL_BATCH_QUEUE_URL") + batch,
		"scaler": storage + len("LULL_MODEL_QUEUES") + modelQueues + len("LULL_EVENTS_QUEUE_URL") + events +
			len("LULL_METRIC_NAMESPACE") + len(p.MetricNamespace) + len("LULL_ASG_NAMES") + asgNames,
	}
	var over []string
	for _, fn := range []string{"api", "batch", "scaler"} {
		if sizes[fn] > MaxLambdaEnvironmentBytes {
			over = append(over, fmt.Sprintf("%s (about %d bytes)", fn, sizes[fn]))
		}
	}
	if len(over) == 0 {
		return nil
	}
	names := make([]string, len(p.Models))
	for i, m := range p.Models {
		names[i] = m.Name
	}
	slices.SortStableFunc(names, func(a, b string) int { return len(b) - len(a) })
	return fmt.Errorf("Models: the environment of the %s Lambda would exceed Lambda's %d-byte limit: "+
		"LULL_MODEL_QUEUES and LULL_ASG_NAMES name all %d models (longest names: %s); "+
		"serve fewer models per stack, or shorten the model names, NamePrefix or the stack name",
		strings.Join(over, " and "), MaxLambdaEnvironmentBytes, len(p.Models), strings.Join(names[:min(3, len(names))], ", "))
}
