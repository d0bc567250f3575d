package linecount_test

import (
	"strings"
	"testing"

	"github.com/lull-ai/lull/shared/linecount"
)

// TestNewNamesMissingDependencies: a counter without its stores, queue or
// logger fails at start-up, naming each missing field.
func TestNewNamesMissingDependencies(t *testing.T) {
	t.Parallel()
	_, err := linecount.New(linecount.Config{})
	for _, want := range []string{"Lines", "Generations", "BatchQueue", "Logger"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("New(empty) = %v; want an error naming %s", err, want)
		}
	}
}
