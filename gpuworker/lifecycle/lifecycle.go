// Package lifecycle is the worker's side of its Auto Scaling group: while
// the worker drains for a termination it extends the group's termination
// lifecycle hook (heartbeats) and then completes it, so the instance
// terminates as soon as its work is done and never while a generation runs;
// and when the engine cannot start it marks the instance unhealthy, so the
// group replaces it instead of counting it as capacity.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
)

// client lists the Auto Scaling calls Hook makes.
type client interface {
	CompleteLifecycleAction(context.Context, *autoscaling.CompleteLifecycleActionInput, ...func(*autoscaling.Options)) (*autoscaling.CompleteLifecycleActionOutput, error)
	RecordLifecycleActionHeartbeat(context.Context, *autoscaling.RecordLifecycleActionHeartbeatInput, ...func(*autoscaling.Options)) (*autoscaling.RecordLifecycleActionHeartbeatOutput, error)
	SetInstanceHealth(context.Context, *autoscaling.SetInstanceHealthInput, ...func(*autoscaling.Options)) (*autoscaling.SetInstanceHealthOutput, error)
}

// Hook is one instance's termination lifecycle hook in its group.
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

// InstanceID returns the instance the hook acts for.
func (h *Hook) InstanceID() string { return h.instanceID }

// Complete tells Auto Scaling to go on with termination. It fails (with
// Auto Scaling's ValidationError) when no lifecycle action is pending for
// the instance, e.g. when the instance is not terminating.
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

// Heartbeat restarts the pending lifecycle action's heartbeat timeout, so
// the instance stays in Terminating:Wait for another timeout. Auto Scaling
// still ends the wait at the hook's global timeout (100 heartbeat timeouts,
// at most 48 hours).
func (h *Hook) Heartbeat(ctx context.Context) error {
	_, err := h.c.RecordLifecycleActionHeartbeat(ctx, &autoscaling.RecordLifecycleActionHeartbeatInput{
		AutoScalingGroupName: aws.String(h.group), LifecycleHookName: aws.String(h.hook),
		InstanceId: aws.String(h.instanceID),
	})
	if err != nil {
		return fmt.Errorf("lifecycle: heartbeat %s for %s: %w", h.hook, h.instanceID, err)
	}
	return nil
}

// SetUnhealthy marks the instance Unhealthy, ignoring the group's health
// check grace period: Auto Scaling terminates it (through the termination
// hook) and launches a replacement.
func (h *Hook) SetUnhealthy(ctx context.Context) error {
	_, err := h.c.SetInstanceHealth(ctx, &autoscaling.SetInstanceHealthInput{
		InstanceId: aws.String(h.instanceID), HealthStatus: aws.String("Unhealthy"),
		ShouldRespectGracePeriod: aws.Bool(false),
	})
	if err != nil {
		return fmt.Errorf("lifecycle: set %s unhealthy: %w", h.instanceID, err)
	}
	return nil
}

// InstanceIDSource reads this instance's ID (imds.Client).
type InstanceIDSource interface {
	Get(ctx context.Context, path string) (string, bool, error)
}

// ForInstance returns the hook of group for the instance md describes,
// retrying the metadata service for up to wait. It fails when the instance
// ID cannot be read by then, or ctx ends.
func ForInstance(ctx context.Context, md InstanceIDSource, c *autoscaling.Client, group, hook string, wait time.Duration) (*Hook, error) {
	deadline := time.Now().Add(wait)
	for {
		id, ok, err := md.Get(ctx, "instance-id")
		if err == nil && ok && id != "" {
			return New(c, group, hook, id), nil
		}
		if err == nil {
			err = errors.New("no instance-id")
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return nil, fmt.Errorf("lifecycle: instance id: %w", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}
