// Package autoscaling reads Amazon EC2 Auto Scaling groups with
// aws-sdk-go-v2: the capacity the scaler divides a model's backlog by.
package autoscaling

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	assdk "github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/smithy-go"

	"github.com/lull-ai/lull/shared/lull"
)

// client lists the Auto Scaling calls Groups makes.
type client interface {
	DescribeAutoScalingGroups(context.Context, *assdk.DescribeAutoScalingGroupsInput, ...func(*assdk.Options)) (*assdk.DescribeAutoScalingGroupsOutput, error)
}

// Groups reads Auto Scaling groups by name.
type Groups struct {
	c client
}

// New returns Groups over c.
func New(c *assdk.Client) *Groups { return &Groups{c: c} }

// counted are the lifecycle states Capacity counts as serving: instances in service and
// those launching into service (Pending, and Pending:Wait/Proceed while a
// launch lifecycle hook runs). Terminating instances (the worker drains
// them: they take no new messages), standby, detaching and warm-pool
// instances serve nothing new and are left out.
var counted = map[types.LifecycleState]bool{
	types.LifecycleStatePending:        true,
	types.LifecycleStatePendingWait:    true,
	types.LifecycleStatePendingProceed: true,
	types.LifecycleStateInService:      true,
}

// Capacity returns the group's desired capacity, and how many of its
// instances are InService or Pending (serving): the instances that serve
// the group's queue now or will once booted. Desired capacity also counts
// instances Auto Scaling has decided on but not launched yet (a scale-out
// one minute old, or spot capacity that is short), so it is what tells an
// empty group from one on its way up.
//
// A group that does not exist is a *lull.Error with code ENOTFOUND;
// throttling and service faults are EUNAVAILABLE; any other failure is
// returned wrapped with the group's name.
func (g *Groups) Capacity(ctx context.Context, group string) (desired, serving int, err error) {
	out, err := g.c.DescribeAutoScalingGroups(ctx, &assdk.DescribeAutoScalingGroupsInput{
		AutoScalingGroupNames: []string{group},
		IncludeInstances:      aws.Bool(true),
	})
	if err != nil {
		return 0, 0, wrap(err, "describe group %s", group)
	}
	for _, asg := range out.AutoScalingGroups {
		if aws.ToString(asg.AutoScalingGroupName) != group {
			continue
		}
		n := 0
		for _, in := range asg.Instances {
			if counted[in.LifecycleState] {
				n++
			}
		}
		return int(aws.ToInt32(asg.DesiredCapacity)), n, nil
	}
	return 0, 0, &lull.Error{Code: lull.ENOTFOUND, Message: "no such Auto Scaling group",
		Err: fmt.Errorf("autoscaling: describe group %s: not found", group)}
}

func wrap(err error, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	var api smithy.APIError
	if errors.As(err, &api) {
		switch api.ErrorCode() {
		case "Throttling", "ThrottlingException", "RequestLimitExceeded", "ResourceContention", "ServiceUnavailable", "InternalFailure":
			return &lull.Error{Code: lull.EUNAVAILABLE, Message: "Auto Scaling is busy; retry later.", Err: fmt.Errorf("autoscaling: %s: %w", msg, err)}
		}
	}
	return fmt.Errorf("autoscaling: %s: %w", msg, err)
}
