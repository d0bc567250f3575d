package localseal_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/lull-ai/lull/shared/localseal"
)

func TestSealer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, err := localseal.New(localseal.NewKey())
	if err != nil {
		t.Fatal(err)
	}
	other, _ := localseal.New(localseal.NewKey())
	sealed, err := s.Seal(ctx, []byte("whsec_x"), "wh_1")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.Open(ctx, sealed, "wh_1"); err != nil || !bytes.Equal(got, []byte("whsec_x")) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	for name, open := range map[string]func() ([]byte, error){
		"OtherObject": func() ([]byte, error) { return s.Open(ctx, sealed, "wh_2") },
		"OtherKey":    func() ([]byte, error) { return other.Open(ctx, sealed, "wh_1") },
		"NotSealed":   func() ([]byte, error) { return s.Open(ctx, "whsec_x", "wh_1") },
		"Damaged":     func() ([]byte, error) { return s.Open(ctx, sealed[:len(sealed)-2], "wh_1") },
	} {
		if _, err := open(); err == nil {
			t.Errorf("%s: opened", name)
		}
	}
	if _, err := localseal.New([]byte("short")); err == nil {
		t.Error("a short key was accepted")
	}
}
