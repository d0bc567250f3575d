package sweep_test

import (
	"strings"
	"testing"

	"github.com/lull-ai/lull/lambdas/scaler/sweep"
)

// TestNewNamesMissingDependencies: a sweeper without its store or logger
// fails at start-up, naming each missing field.
func TestNewNamesMissingDependencies(t *testing.T) {
	t.Parallel()
	_, err := sweep.New(sweep.Config{Limit: -1})
	for _, want := range []string{"Generations", "Logger", "Limit"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("New(empty) = %v; want an error naming %s", err, want)
		}
	}
}
