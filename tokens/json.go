package tokens

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"unicode/utf8"
)

// Errors of the strict JSON reader; they never quote the input.
var (
	errNotObject   = errors.New("not a JSON object")
	errDuplicate   = errors.New("duplicate member name")
	errTrailing    = errors.New("data after the JSON object")
	errInvalidUTF8 = errors.New("invalid UTF-8")
	errTooDeep     = errors.New("JSON nested too deeply")
)

// maxDepth bounds nesting in token headers and claims.
const maxDepth = 16

// decodeObject reads one JSON object and returns its members, refusing what
// lenient decoders let through and what lets two parsers disagree: invalid
// UTF-8, duplicate member names (at any depth), deep nesting and anything
// after the closing brace.
func decodeObject(data []byte) (map[string]json.RawMessage, error) {
	if !utf8.Valid(data) {
		return nil, errInvalidUTF8
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return nil, errNotObject
	}
	members := make(map[string]json.RawMessage, 12)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, errNotObject
		}
		name, ok := tok.(string)
		if !ok {
			return nil, errNotObject
		}
		if _, dup := members[name]; dup {
			return nil, errDuplicate
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, errNotObject
		}
		if err := checkNested(raw, 1); err != nil {
			return nil, err
		}
		members[name] = raw
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, errNotObject
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errTrailing
	}
	return members, nil
}

// checkNested refuses duplicate names and deep nesting inside a member's
// value. Scalars need no walk.
func checkNested(raw json.RawMessage, depth int) error {
	if len(raw) == 0 || (raw[0] != '{' && raw[0] != '[') {
		return nil
	}
	if depth > maxDepth {
		return errTooDeep
	}
	if raw[0] == '[' {
		var elems []json.RawMessage
		if err := json.Unmarshal(raw, &elems); err != nil {
			return errNotObject
		}
		for _, e := range elems {
			if err := checkNested(e, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if _, err := dec.Token(); err != nil {
		return errNotObject
	}
	seen := make(map[string]struct{})
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return errNotObject
		}
		name, _ := tok.(string)
		if _, dup := seen[name]; dup {
			return errDuplicate
		}
		seen[name] = struct{}{}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return errNotObject
		}
		if err := checkNested(v, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// jsonString decodes a member that must be a JSON string.
func jsonString(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 || raw[0] != '"' {
		return "", false
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}

// jsonStrings decodes a member that must be a JSON array of strings.
func jsonStrings(raw json.RawMessage) ([]string, bool) {
	if len(raw) == 0 || raw[0] != '[' {
		return nil, false
	}
	var elems []json.RawMessage
	if err := json.Unmarshal(raw, &elems); err != nil {
		return nil, false
	}
	out := make([]string, 0, len(elems))
	for _, e := range elems {
		s, ok := jsonString(e)
		if !ok {
			return nil, false
		}
		out = append(out, s)
	}
	return out, true
}

// maxNumericDate is 9999-12-31T23:59:59Z: a later date is no date a token
// could honestly carry.
const maxNumericDate = 253402300799

// jsonNumericDate decodes a NumericDate member that must be a plain JSON
// integer in [0, maxNumericDate]: no string, fraction, exponent or sign.
func jsonNumericDate(raw json.RawMessage) (int64, bool) {
	if len(raw) == 0 || len(raw) > 12 {
		return 0, false
	}
	for _, c := range raw {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	if len(raw) > 1 && raw[0] == '0' {
		return 0, false
	}
	v, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil || v > maxNumericDate {
		return 0, false
	}
	return v, true
}
