package tokens

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"unicode/utf8"
)

// Errors of the strict JSON check; they never quote the input.
var (
	errNotObject   = errors.New("not a JSON object")
	errDuplicate   = errors.New("duplicate member name")
	errTrailing    = errors.New("data after the JSON object")
	errInvalidUTF8 = errors.New("invalid UTF-8")
	errTooDeep     = errors.New("JSON nested too deeply")
	errNotString   = errors.New("not a JSON string")
)

// maxDepth bounds nesting in token headers, claims and JWKS documents: the
// top-level object is depth 0 and a container at a depth beyond maxDepth is
// refused.
const maxDepth = 16

// member is one top-level member of a JSON object.
type member struct {
	name  string          // decoded (escapes resolved)
	value json.RawMessage // the value's JSON text, exactly as written
}

// strictObject reads data as exactly one JSON object, optionally surrounded
// by whitespace, and appends its top-level members to dst. On top of what
// encoding/json checks, it refuses what lets two JSON decoders disagree
// about a token: invalid UTF-8 (which encoding/json replaces), duplicate
// member names at any depth (compared after decoding escapes; encoding/json
// keeps the last), nesting deeper than maxDepth and anything after the
// object.
func strictObject(data []byte, dst []member) ([]member, error) {
	if !utf8.Valid(data) {
		return dst, errInvalidUTF8
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return dst, errNotObject
	}
	names := make(map[string]struct{})
	inner := &nestedValue{depth: 1}
	for dec.More() {
		name, err := memberName(dec, names)
		if err != nil {
			return dst, err
		}
		// The value is what follows the name, past the colon and
		// whitespace, up to where the decoder stopped.
		start := dec.InputOffset()
		if err := dec.Decode(inner); err != nil {
			return dst, checkError(err)
		}
		raw := bytes.TrimLeft(data[start:dec.InputOffset()], " \t\r\n:")
		dst = append(dst, member{name: name, value: raw})
	}
	if _, err := dec.Token(); err != nil { // '}'
		return dst, errNotObject
	}
	if _, err := dec.Token(); err != io.EOF {
		return dst, errTrailing
	}
	return dst, nil
}

// memberName reads the next member name of an object and records it in
// names, refusing one already there.
func memberName(dec *json.Decoder, names map[string]struct{}) (string, error) {
	tok, err := dec.Token()
	if err != nil {
		return "", errNotObject
	}
	name, ok := tok.(string)
	if !ok {
		return "", errNotObject
	}
	if _, dup := names[name]; dup {
		return "", errDuplicate
	}
	names[name] = struct{}{}
	return name, nil
}

// nestedValue checks a JSON value below the top-level object when
// encoding/json decodes into it: containers are walked for duplicate member
// names and depth, scalars (already validated by encoding/json) are left
// alone.
type nestedValue struct {
	depth int
}

// UnmarshalJSON implements json.Unmarshaler.
func (v *nestedValue) UnmarshalJSON(data []byte) error {
	switch {
	case len(data) == 0 || (data[0] != '{' && data[0] != '['):
		return nil
	case v.depth > maxDepth:
		return errTooDeep
	case data[0] == '[':
		return checkArray(data, v.depth)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if _, err := dec.Token(); err != nil { // '{'
		return errNotObject
	}
	names := make(map[string]struct{})
	inner := &nestedValue{depth: v.depth + 1}
	for dec.More() {
		if _, err := memberName(dec, names); err != nil {
			return err
		}
		if err := dec.Decode(inner); err != nil {
			return checkError(err)
		}
	}
	return nil
}

// checkArray checks the elements of an array at depth. An array of
// scalars, the usual case (aud, roles), is checked in one pass that
// allocates nothing per element, so that a long array of strings costs
// what its bytes cost; only an array holding containers is walked element
// by element.
func checkArray(data []byte, depth int) error {
	var scalars []scalarShape
	if json.Unmarshal(data, &scalars) == nil {
		return nil
	}
	var elems []json.RawMessage
	if err := json.Unmarshal(data, &elems); err != nil {
		return errNotObject
	}
	inner := &nestedValue{depth: depth + 1}
	for _, e := range elems {
		if err := inner.UnmarshalJSON(e); err != nil {
			return err
		}
	}
	return nil
}

// checkError keeps the strict check's own errors and reports any other
// (a syntax error, whose text quotes the input) as errNotObject.
func checkError(err error) error {
	if errors.Is(err, errDuplicate) || errors.Is(err, errTooDeep) {
		return err
	}
	return errNotObject
}

// scalarShape is any JSON scalar, decoded to nothing: decoding an array
// into a slice of them checks that it holds no object or array, without
// allocating for any element (the element type has no size).
type scalarShape struct{}

// UnmarshalJSON implements json.Unmarshaler.
func (*scalarShape) UnmarshalJSON(data []byte) error {
	if len(data) > 0 && (data[0] == '{' || data[0] == '[') {
		return errNotObject
	}
	return nil
}

// lookup returns the value of the member called name, nil when absent.
func lookup(ms []member, name string) json.RawMessage {
	for _, m := range ms {
		if m.name == name {
			return m.value
		}
	}
	return nil
}

// jsonString decodes a member value that must be a JSON string. The value
// comes from strictObject, so it is valid JSON and UTF-8: without an
// escape, its text between the quotes is the string.
func jsonString(raw json.RawMessage) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' {
		return "", false
	}
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw[1 : len(raw)-1]), true
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}

// stringShape is any JSON string, decoded to nothing: decoding an array into
// a slice of them checks that it holds only strings without allocating for
// any of them (the element type has no size).
type stringShape struct{}

// UnmarshalJSON implements json.Unmarshaler.
func (*stringShape) UnmarshalJSON(data []byte) error {
	if len(data) == 0 || data[0] != '"' {
		return errNotString
	}
	return nil
}

// isStringArray reports whether a member value is a JSON array of strings,
// without decoding any of them: the check that runs before a token's
// signature is verified.
func isStringArray(raw json.RawMessage) bool {
	if len(raw) == 0 || raw[0] != '[' {
		return false
	}
	var shape []stringShape
	return json.Unmarshal(raw, &shape) == nil
}

// jsonStrings decodes a member value that isStringArray has accepted.
func jsonStrings(raw json.RawMessage) ([]string, bool) {
	out := []string{}
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, false
	}
	return out, true
}

// maxNumericDate is 9999-12-31T23:59:59Z: a later date is no date a token
// could honestly carry.
const maxNumericDate = 253402300799

// jsonNumericDate decodes a NumericDate member that must be a plain JSON
// integer in [0, maxNumericDate]: no string, fraction, exponent, sign or
// leading zero.
func jsonNumericDate(raw json.RawMessage) (int64, bool) {
	if len(raw) == 0 || len(raw) > 12 || (len(raw) > 1 && raw[0] == '0') {
		return 0, false
	}
	for _, c := range raw {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	v, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil || v > maxNumericDate {
		return 0, false
	}
	return v, true
}
