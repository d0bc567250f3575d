package scale_test

import (
	"strings"
	"testing"

	"github.com/lull-ai/lull/lambdas/scaler/scale"
)

// TestNewNamesMissingDependencies: a scaler without its groups, metrics
// sink or logger fails at start-up, naming each missing field.
func TestNewNamesMissingDependencies(t *testing.T) {
	t.Parallel()
	_, err := scale.New(scale.Config{})
	for _, want := range []string{"Groups", "Metrics", "Logger"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("New(empty) = %v; want an error naming %s", err, want)
		}
	}
}
