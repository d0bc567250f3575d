package envconfig_test

import (
	"fmt"
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
			c := cfg{plain: "kept"}
			err := envconfig.Load(&c, lookup(tc.env))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !tc.check(c) || c.plain != "kept" {
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

func TestDefaults(t *testing.T) {
	t.Parallel()
	c := cfg{Map: map[string]string{"set": "by caller"}}
	if err := envconfig.Defaults(&c); err != nil {
		t.Fatalf("Defaults: %v (a required variable without a default must not fail it)", err)
	}
	if c.Table != "" || c.Name != "x" || c.N != 3 || c.Wait != 2*time.Second || c.Map["set"] != "by caller" {
		t.Fatalf("Defaults = %+v", c)
	}
	type bad struct {
		N int `env:"T_N" default:"many"`
	}
	if err := envconfig.Defaults(&bad{}); err == nil || !strings.Contains(err.Error(), "T_N") {
		t.Fatalf("bad default: %v", err)
	}
}

// TestEnvironRoundTrip: Load reads Environ's output back into the same
// struct, for set and zero values alike.
func TestEnvironRoundTrip(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		in   cfg
		want []string
	}{
		{"Values", cfg{Inner: Inner{Table: "t"}, Name: "n", N: 7, F: 0.9, On: true, Wait: 90 * time.Second, Map: map[string]string{"a": "b"}},
			[]string{"T_TABLE=t", "T_NAME=n", "T_N=7", "T_F=0.9", "T_ON=true", "T_WAIT=1m30s", `T_MAP={"a":"b"}`}},
		{"Zeros", cfg{Inner: Inner{Table: "t"}, Name: "x"},
			[]string{"T_TABLE=t", "T_NAME=x", "T_N=0", "T_F=0", "T_ON=false", "T_WAIT=0s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := envconfig.Environ(&tc.in)
			if strings.Join(env, " ") != strings.Join(tc.want, " ") {
				t.Fatalf("Environ = %q, want %q", env, tc.want)
			}
			m := map[string]string{}
			for _, kv := range env {
				k, v, _ := strings.Cut(kv, "=")
				m[k] = v
			}
			var got cfg
			if err := envconfig.Load(&got, lookup(m)); err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.in) {
				t.Fatalf("loaded %+v, want %+v", got, tc.in)
			}
		})
	}
}
