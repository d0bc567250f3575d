// Package envconfig fills configuration structs from environment variables.
//
// Fields opt in with struct tags:
//
//	Model string        `env:"LULL_MODEL" required:"true" doc:"model served"`
//	Concurrency int     `env:"LULL_CONCURRENCY" default:"8"`
//	Poll time.Duration  `env:"LULL_POLL" default:"1s"`
//
// Supported field kinds are string, bool, int, float64, time.Duration and
// map[string]string (JSON object). Embedded structs must be exported types. Names lists the variables a struct reads,
// so deployment code can check that it sets exactly what a binary reads.
// Defaults fills a struct from its default tags alone (the dev stack starts
// from them), and Environ turns a filled struct back into the environment
// that loads it (for a child process).
package envconfig

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"time"
)

// Var describes one environment variable read by a configuration struct.
type Var struct {
	Name     string // environment variable name
	Default  string // value used when unset ("" when none)
	Required bool   // Load fails when unset and no default
	Doc      string // one-line description
}

// Vars lists the variables that Load reads into cfg, which must be a pointer
// to a struct (or a struct). Nested structs without an env tag are walked.
func Vars(cfg any) []Var {
	var out []Var
	walk(reflect.Indirect(reflect.ValueOf(cfg)), func(f reflect.StructField, _ reflect.Value) error {
		out = append(out, Var{
			Name:     f.Tag.Get("env"),
			Default:  f.Tag.Get("default"),
			Required: f.Tag.Get("required") == "true",
			Doc:      f.Tag.Get("doc"),
		})
		return nil
	})
	return out
}

// Names lists only the variable names of Vars(cfg).
func Names(cfg any) []string {
	vars := Vars(cfg)
	names := make([]string, len(vars))
	for i, v := range vars {
		names[i] = v.Name
	}
	return names
}

// Load sets each tagged field of the struct cfg points to from lookup (use
// os.LookupEnv), falling back to the default tag. It returns an error naming
// every missing required variable and every value that does not parse.
func Load(cfg any, lookup func(string) (string, bool)) error {
	return load(cfg, lookup, true)
}

// Defaults sets each tagged field of the struct cfg points to from its
// default tag, as Load does with an empty environment, but without
// requiring the required ones: the caller sets those itself (the dev stack
// names the resources it creates). Fields without a default are left as
// they are. It returns an error only for a default that does not parse.
func Defaults(cfg any) error {
	return load(cfg, func(string) (string, bool) { return "", false }, false)
}

func load(cfg any, lookup func(string) (string, bool), checkRequired bool) error {
	rv := reflect.ValueOf(cfg)
	if rv.Kind() != reflect.Pointer || rv.Elem().Kind() != reflect.Struct {
		return errors.New("envconfig: Load needs a pointer to a struct")
	}
	var errs []error
	walk(rv.Elem(), func(f reflect.StructField, v reflect.Value) error {
		name := f.Tag.Get("env")
		raw, ok := lookup(name)
		if !ok || raw == "" {
			raw, ok = f.Tag.Get("default"), f.Tag.Get("default") != ""
		}
		if !ok {
			if checkRequired && f.Tag.Get("required") == "true" {
				errs = append(errs, fmt.Errorf("%s is required", name))
			}
			return nil
		}
		if err := set(v, raw); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: %w", name, raw, err))
		}
		return nil
	})
	if len(errs) > 0 {
		return fmt.Errorf("envconfig: %w", errors.Join(errs...))
	}
	return nil
}

// Environ returns the environment ("NAME=value" entries, in field order)
// that Load reads back into a struct equal to cfg (a struct or a pointer to
// one): every tagged field, formatted as Load parses it. Empty strings and
// nil maps are left out; Load treats them as unset, so such a field loads
// as its default.
func Environ(cfg any) []string {
	var out []string
	walk(reflect.Indirect(reflect.ValueOf(cfg)), func(f reflect.StructField, v reflect.Value) error {
		raw, ok := format(v)
		if ok {
			out = append(out, f.Tag.Get("env")+"="+raw)
		}
		return nil
	})
	return out
}

// format is the inverse of set; false when the value is unset (an empty
// string or map) or of a kind set does not support.
func format(v reflect.Value) (string, bool) {
	switch {
	case v.Type() == reflect.TypeFor[time.Duration]():
		return time.Duration(v.Int()).String(), true
	case v.Kind() == reflect.String:
		return v.String(), v.Len() > 0
	case v.Kind() == reflect.Bool:
		return strconv.FormatBool(v.Bool()), true
	case v.Kind() == reflect.Int:
		return strconv.FormatInt(v.Int(), 10), true
	case v.Kind() == reflect.Float64:
		return strconv.FormatFloat(v.Float(), 'g', -1, 64), true
	case v.Kind() == reflect.Map && v.Type().Key().Kind() == reflect.String && v.Type().Elem().Kind() == reflect.String:
		if v.Len() == 0 {
			return "", false
		}
		b, err := json.Marshal(v.Interface())
		return string(b), err == nil
	}
	return "", false
}

func walk(v reflect.Value, fn func(reflect.StructField, reflect.Value) error) {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		if f.Tag.Get("env") == "" {
			if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeFor[time.Time]() {
				walk(v.Field(i), fn)
			}
			continue
		}
		_ = fn(f, v.Field(i))
	}
}

func set(v reflect.Value, raw string) error {
	switch {
	case v.Type() == reflect.TypeFor[time.Duration]():
		d, err := time.ParseDuration(raw)
		if err != nil {
			return err
		}
		v.SetInt(int64(d))
	case v.Kind() == reflect.String:
		v.SetString(raw)
	case v.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return err
		}
		v.SetBool(b)
	case v.Kind() == reflect.Int:
		n, err := strconv.Atoi(raw)
		if err != nil {
			return err
		}
		v.SetInt(int64(n))
	case v.Kind() == reflect.Float64:
		f, err := strconv.ParseFloat(raw, 64)
		if err != nil {
			return err
		}
		v.SetFloat(f)
	case v.Kind() == reflect.Map && v.Type().Key().Kind() == reflect.String && v.Type().Elem().Kind() == reflect.String:
		m := map[string]string{}
		if err := json.Unmarshal([]byte(raw), &m); err != nil {
			return fmt.Errorf("want a JSON object of strings: %w", err)
		}
		v.Set(reflect.ValueOf(m))
	default:
		return fmt.Errorf("unsupported field type %s", v.Type())
	}
	return nil
}
