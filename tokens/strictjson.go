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
)

// maxDepth bounds nesting in token headers, claims and JWKS documents: the
// top-level object is depth 0 and a container at a depth beyond maxDepth is
// refused.
const maxDepth = 16

// strictObject reads data as exactly one JSON object, optionally surrounded
// by whitespace, and returns its top-level members by name, each value as
// written. On top of what encoding/json checks, it refuses what lets two
// JSON decoders disagree about a token: invalid UTF-8 (which encoding/json
// replaces), duplicate member names at any depth (compared after decoding
// escapes; encoding/json keeps the last), nesting deeper than maxDepth and
// anything after the object.
func strictObject(data []byte) (map[string]json.RawMessage, error) {
	if !utf8.Valid(data) {
		return nil, errInvalidUTF8
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber() // numbers are only checked, never converted
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, errNotObject
	}
	if err := checkContainer(dec, '{', 0); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errTrailing
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(data, &members); err != nil {
		return nil, errNotObject
	}
	return members, nil
}

// checkContainer reads the rest of the object or array at depth whose
// opening delimiter dec has just returned, through its closing delimiter,
// refusing duplicate member names and containers nested beyond maxDepth.
func checkContainer(dec *json.Decoder, open json.Delim, depth int) error {
	names := map[string]bool{}
	for dec.More() {
		if open == '{' {
			tok, err := dec.Token()
			name, ok := tok.(string)
			if err != nil || !ok {
				return errNotObject
			}
			if names[name] {
				return errDuplicate
			}
			names[name] = true
		}
		tok, err := dec.Token()
		if err != nil {
			return errNotObject
		}
		if d, ok := tok.(json.Delim); ok { // an opening one: Token refuses a misplaced closing one
			if depth >= maxDepth {
				return errTooDeep
			}
			if err := checkContainer(dec, d, depth+1); err != nil {
				return err
			}
		}
	}
	if _, err := dec.Token(); err != nil { // the closing delimiter
		return errNotObject
	}
	return nil
}

// jsonString decodes a member value that must be a JSON string.
func jsonString(raw json.RawMessage) (string, bool) {
	var s string
	if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// jsonStrings decodes a member value that must be a JSON array of strings.
func jsonStrings(raw json.RawMessage) ([]string, bool) {
	var elems []json.RawMessage
	if len(raw) == 0 || raw[0] != '[' || json.Unmarshal(raw, &elems) != nil {
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
// integer in [0, maxNumericDate]: no string, fraction, exponent, sign or
// leading zero.
func jsonNumericDate(raw json.RawMessage) (int64, bool) {
	v, err := strconv.ParseUint(string(raw), 10, 64) // digits only: no sign, fraction or exponent
	if err != nil || (len(raw) > 1 && raw[0] == '0') || v > maxNumericDate {
		return 0, false
	}
	return int64(v), true
}
