package request

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// MaxDepth is the deepest nesting of arrays and objects a request body may
// have.
const MaxDepth = 32

// object is a JSON object as parsed strictly: its keys in order and their
// values.
type object struct {
	keys []string
	vals map[string]any
}

func (o *object) get(k string) (any, bool) { v, ok := o.vals[k]; return v, ok }

// MarshalJSON writes the object with its keys in their original order.
func (o *object) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range o.keys {
		if i > 0 {
			b.WriteByte(',')
		}
		if err := encodeTo(&b, k); err != nil {
			return nil, err
		}
		b.WriteByte(':')
		if err := encodeTo(&b, o.vals[k]); err != nil {
			return nil, err
		}
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// encodeTo appends v as JSON without HTML escaping.
func encodeTo(b *bytes.Buffer, v any) error {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	b.Truncate(b.Len() - 1) // Encode's newline
	return nil
}

// encode returns v as JSON without HTML escaping.
func encode(v any) (json.RawMessage, error) {
	var b bytes.Buffer
	if err := encodeTo(&b, v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// strictError is a body that does not parse under the strict rules; param
// names where, when known.
type strictError struct {
	param string
	msg   string
}

func (e *strictError) Error() string { return e.msg }

// parseStrict parses one JSON value. Unlike encoding/json it refuses what
// different JSON readers interpret differently, so that lull validates
// exactly what the engine (a Python JSON reader, which keeps the last of
// duplicate keys and matches case) will read:
//   - a key repeated in one object;
//   - two keys of one object that differ only in case ("n" and "N");
//   - invalid UTF-8, nesting deeper than MaxDepth, and anything after the value.
//
// Objects come back as *object, numbers as json.Number.
func parseStrict(data []byte) (any, error) {
	if !utf8.Valid(data) {
		return nil, &strictError{msg: "The request body is not valid UTF-8."}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := parseValue(dec, "", 0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, &strictError{msg: "The request body must hold exactly one JSON value."}
	}
	return v, nil
}

func parseValue(dec *json.Decoder, path string, depth int) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, syntaxError(err)
	}
	return parseFrom(dec, tok, path, depth)
}

func syntaxError(err error) error {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return &strictError{msg: fmt.Sprintf("We could not parse the JSON body of your request: %s.", strings.TrimPrefix(err.Error(), "json: "))}
}

func parseFrom(dec *json.Decoder, tok json.Token, path string, depth int) (any, error) {
	d, ok := tok.(json.Delim)
	if !ok {
		return tok, nil // string, json.Number, bool or nil
	}
	if depth >= MaxDepth {
		return nil, &strictError{msg: fmt.Sprintf("The request body is nested deeper than %d levels.", MaxDepth)}
	}
	switch d {
	case '[':
		arr := []any{}
		for dec.More() {
			v, err := parseValue(dec, fmt.Sprintf("%s[%d]", path, len(arr)), depth+1)
			if err != nil {
				return nil, err
			}
			arr = append(arr, v)
		}
		if _, err := dec.Token(); err != nil {
			return nil, syntaxError(err)
		}
		return arr, nil
	case '{':
		o := &object{vals: map[string]any{}}
		folded := map[string]string{}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return nil, syntaxError(err)
			}
			k, _ := kt.(string)
			p := k
			if path != "" {
				p = path + "." + k
			}
			if _, dup := o.vals[k]; dup {
				return nil, &strictError{param: p, msg: fmt.Sprintf("Duplicate key '%s' in the request body.", p)}
			}
			if prev, dup := folded[strings.ToLower(k)]; dup {
				return nil, &strictError{param: p, msg: fmt.Sprintf("Keys '%s' and '%s' differ only in case; send each parameter once, in lower case.", prev, k)}
			}
			folded[strings.ToLower(k)] = k
			v, err := parseValue(dec, p, depth+1)
			if err != nil {
				return nil, err
			}
			o.keys = append(o.keys, k)
			o.vals[k] = v
		}
		if _, err := dec.Token(); err != nil {
			return nil, syntaxError(err)
		}
		return o, nil
	}
	return nil, &strictError{path, "We could not parse the JSON body of your request."}
}
