package envconfig_test

import (
	"strings"
	"testing"
	"time"

	"github.com/lull-ai/lull/shared/envconfig"
)

type Inner struct {
	Table string `env:"T_TABLE" required:"true"`
}

type cfg struct {
	Inner
	Name  string            `env:"T_NAME" default:"x"`
	N     int               `env:"T_N" default:"3"`
	F     float64           `env:"T_F"`
	On    bool              `env:"T_ON"`
	Wait  time.Duration     `env:"T_WAIT" default:"2s"`
	Map   map[string]string `env:"T_MAP"`
	plain string
}

func lookup(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestLoad(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		env     map[string]string
		wantErr string
		check   func(cfg) bool
	}{
		{"Defaults", map[string]string{"T_TABLE": "t"}, "", func(c cfg) bool {
			return c.Table == "t" && c.Name == "x" && c.N == 3 && c.Wait == 2*time.Second && !c.On && c.Map == nil
		}},
		{"Values", map[string]string{"T_TABLE": "t", "T_N": "7", "T_F": "0.5", "T_ON": "true", "T_WAIT": "1m", "T_MAP": `{"a":"b"}`}, "", func(c cfg) bool {
			return c.N == 7 && c.F == 0.5 && c.On && c.Wait == time.Minute && c.Map["a"] == "b"
		}},
		{"MissingRequired", map[string]string{}, "T_TABLE is required", nil},
		{"BadValues", map[string]string{"T_TABLE": "t", "T_N": "many", "T_WAIT": "soon", "T_MAP": "[]"}, "T_N=", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var c cfg
			err := envconfig.Load(&c, lookup(tc.env))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !tc.check(c) {
				t.Fatalf("Load = %+v, %v", c, err)
			}
		})
	}
}

func TestNames(t *testing.T) {
	t.Parallel()
	got := strings.Join(envconfig.Names(&cfg{}), ",")
	if got != "T_TABLE,T_NAME,T_N,T_F,T_ON,T_WAIT,T_MAP" {
		t.Fatalf("Names = %s", got)
	}
}
