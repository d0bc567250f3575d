package cli

import (
	"bytes"
	"flag"
	"io"
	"slices"
	"strings"
	"testing"
)

func TestWriteOrdered(t *testing.T) {
	t.Parallel()
	order := []string{"z", "a", "m", "q"}
	// The API's files hold no particular order; "x" is not in the input.
	output := "{\"custom_id\":\"m\",\"r\":1}\n{\"custom_id\":\"z\",\"r\":2}\n\n{\"custom_id\":\"x\",\"r\":9}"
	errs := "{\"custom_id\":\"a\",\"error\":{}}\n"
	tests := []struct {
		name           string
		split          bool
		wantOut, wantE string
		want           resultCounts
	}{
		{"OneFile", false,
			"{\"custom_id\":\"z\",\"r\":2}\n{\"custom_id\":\"a\",\"error\":{}}\n{\"custom_id\":\"m\",\"r\":1}\n{\"custom_id\":\"x\",\"r\":9}\n", "",
			resultCounts{Succeeded: 3, Failed: 1, Missing: 1}},
		{"ErrorsApart", true,
			"{\"custom_id\":\"z\",\"r\":2}\n{\"custom_id\":\"m\",\"r\":1}\n{\"custom_id\":\"x\",\"r\":9}\n", "{\"custom_id\":\"a\",\"error\":{}}\n",
			resultCounts{Succeeded: 3, Failed: 1, Missing: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var out, e bytes.Buffer
			var errOut io.Writer
			if tt.split {
				errOut = &e
			}
			n, err := writeOrdered(order, strings.NewReader(output), strings.NewReader(errs), &out, errOut, t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			if n != tt.want {
				t.Errorf("counts %+v, want %+v", n, tt.want)
			}
			if out.String() != tt.wantOut || e.String() != tt.wantE {
				t.Errorf("out:\n%s\nerrors:\n%s\nwant out:\n%s\nerrors:\n%s", out.String(), e.String(), tt.wantOut, tt.wantE)
			}
		})
	}
	t.Run("NoFiles", func(t *testing.T) {
		t.Parallel()
		var out bytes.Buffer
		n, err := writeOrdered(order, nil, nil, &out, nil, t.TempDir())
		if err != nil || n.Missing != 4 || out.Len() != 0 {
			t.Errorf("n %+v err %v out %q", n, err, out.String())
		}
	})
}

func TestCustomIDs(t *testing.T) {
	t.Parallel()
	in := "{\"custom_id\":\"b\"}\n\n  {\"custom_id\":\"a\",\"body\":{}}\nnot json\n{\"custom_id\":\"c\"}"
	ids, err := customIDs(strings.NewReader(in))
	if err != nil || !slices.Equal(ids, []string{"b", "a", "c"}) {
		t.Errorf("ids %v err %v", ids, err)
	}
}

func TestParseInterspersed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args     []string
		wantPos  []string
		wantOut  string
		wantFail bool
	}{
		{[]string{"FILE", "--out", "o"}, []string{"FILE"}, "o", false},
		{[]string{"--out=o", "A", "B"}, []string{"A", "B"}, "o", false},
		{[]string{"A", "--out", "o", "B"}, []string{"A", "B"}, "o", false},
		{[]string{"A", "--", "--out", "x"}, []string{"A", "--out", "x"}, "", false},
		{[]string{"A", "--nope"}, nil, "", true},
		{[]string{"A", "--out"}, nil, "", true},
	}
	for _, tt := range tests {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		out := fs.String("out", "", "")
		pos, err := parseInterspersed(fs, tt.args)
		if (err != nil) != tt.wantFail {
			t.Errorf("%q: err %v", tt.args, err)
			continue
		}
		if !tt.wantFail && (!slices.Equal(pos, tt.wantPos) || *out != tt.wantOut) {
			t.Errorf("%q: positional %q out %q, want %q %q", tt.args, pos, *out, tt.wantPos, tt.wantOut)
		}
	}
}
