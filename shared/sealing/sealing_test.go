package sealing_test

import (
	"context"
	"testing"

	awskms "github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/lull-ai/lull/shared/kms"
	"github.com/lull-ai/lull/shared/localseal"
	"github.com/lull-ai/lull/shared/sealing"
)

func TestFromSetting(t *testing.T) {
	t.Parallel()
	if s, err := sealing.FromSetting("", nil); s != nil || err != nil {
		t.Errorf(`"": %v, %v; want none`, s, err)
	}
	s, err := sealing.FromSetting(sealing.LocalSetting(), nil)
	if _, ok := s.(*localseal.Sealer); !ok || err != nil {
		t.Fatalf("local: %T, %v", s, err)
	}
	if sealed, err := s.Seal(context.Background(), []byte("x"), "wh_1"); err != nil || sealed == "x" {
		t.Fatalf("Seal = %q, %v", sealed, err)
	}
	for _, bad := range []string{"local:***", "local:AAAA"} {
		if _, err := sealing.FromSetting(bad, nil); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, err := sealing.FromSetting("alias/lull-secrets", nil); err == nil {
		t.Error("a KMS key without a client was accepted")
	}
	if s, err := sealing.FromSetting("alias/lull-secrets", awskms.New(awskms.Options{Region: "us-east-1"})); err != nil {
		t.Fatal(err)
	} else if _, ok := s.(*kms.Sealer); !ok {
		t.Fatalf("KMS key gave %T", s)
	}
}
