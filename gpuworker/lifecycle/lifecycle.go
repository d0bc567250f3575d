// Package lifecycle completes the Auto Scaling termination lifecycle hook
// once the worker has drained, so the instance terminates without waiting
// for the hook's timeout.
package lifecycle

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
)

type client interface {
	CompleteLifecycleAction(context.Context, *autoscaling.CompleteLifecycleActionInput, ...func(*autoscaling.Options)) (*autoscaling.CompleteLifecycleActionOutput, error)
}

// Hook is one instance's termination lifecycle hook.
type Hook struct {
	c          client
	group      string
	hook       string
	instanceID string
}

// New returns the hook named hook of Auto Scaling group group for instanceID.
func New(c *autoscaling.Client, group, hook, instanceID string) *Hook {
	return &Hook{c: c, group: group, hook: hook, instanceID: instanceID}
}

// Complete tells Auto Scaling to go on with termination.
func (h *Hook) Complete(ctx context.Context) error {
	_, err := h.c.CompleteLifecycleAction(ctx, &autoscaling.CompleteLifecycleActionInput{
		AutoScalingGroupName: aws.String(h.group), LifecycleHookName: aws.String(h.hook),
		InstanceId: aws.String(h.instanceID), LifecycleActionResult: aws.String("CONTINUE"),
	})
	if err != nil {
		return fmt.Errorf("lifecycle: complete %s for %s: %w", h.hook, h.instanceID, err)
	}
	return nil
}
