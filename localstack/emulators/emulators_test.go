package emulators

import (
	"fmt"
	"testing"
)

func TestRemovedAttrs(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		expr  string
		names map[string]string
		want  []string
	}{
		{"SET a = :a", nil, nil},
		{"REMOVE a, b", nil, []string{"a", "b"}},
		{"SET #st = :to, x = :x REMOVE gsi2pk, #l SET y = :y", map[string]string{"#l": "lease"}, []string{"gsi2pk", "lease"}},
		{"remove a.b, c[0], d", nil, []string{"d"}},
	} {
		if got := removedAttrs(tc.expr, tc.names); fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("removedAttrs(%q) = %v, want %v", tc.expr, got, tc.want)
		}
	}
}
