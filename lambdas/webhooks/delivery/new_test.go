package delivery_test

import (
	"strings"
	"testing"

	"github.com/lull-ai/lull/lambdas/webhooks/delivery"
)

// TestNewNamesMissingDependencies: a handler without its stores, queue,
// client or logger fails at start-up, naming each missing field.
func TestNewNamesMissingDependencies(t *testing.T) {
	t.Parallel()
	_, err := delivery.New(delivery.Config{TimeScale: -1})
	for _, want := range []string{"Webhooks", "Generations", "Blobs", "Events", "Client", "Logger", "TimeScale"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("New(empty) = %v; want an error naming %s", err, want)
		}
	}
}
