package tokens

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
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

// member is one top-level member of a scanned JSON object.
type member struct {
	name  string // decoded (escapes resolved)
	value string // the value's JSON text, exactly as written
}

// scanObject reads data as exactly one JSON object, optionally surrounded by
// whitespace, and appends its top-level members to dst. It refuses what
// lenient decoders let through and what lets two parsers disagree: invalid
// UTF-8, duplicate member names at any depth (compared after decoding
// escapes), nesting deeper than maxDepth and anything after the closing
// brace. span is the object's text without the surrounding whitespace.
//
// It is a hand-written scanner of RFC 8259 rather than encoding/json's
// Decoder because it runs on every token verification: it allocates nothing
// unless a member name holds an escape or an object has more than
// smallNames members.
func scanObject(data string, dst []member) (members []member, span string, err error) {
	if !utf8.ValidString(data) {
		return dst, "", errInvalidUTF8
	}
	sc := scanner{s: data}
	sc.skipSpace()
	start := sc.i
	if sc.i >= len(sc.s) || sc.s[sc.i] != '{' {
		return dst, "", errNotObject
	}
	members, err = sc.object(0, dst)
	if err != nil {
		return dst, "", err
	}
	span = sc.s[start:sc.i]
	sc.skipSpace()
	if sc.i != len(sc.s) {
		return dst, "", errTrailing
	}
	return members, span, nil
}

// checkObject reports whether data is one strict JSON object as scanObject
// defines it.
func checkObject(data []byte) error {
	_, _, err := scanObject(string(data), nil)
	return err
}

// scanner walks JSON text; i is the next byte to read.
type scanner struct {
	s string
	i int
}

func (sc *scanner) skipSpace() {
	for sc.i < len(sc.s) {
		switch sc.s[sc.i] {
		case ' ', '\t', '\n', '\r':
			sc.i++
		default:
			return
		}
	}
}

// value skips one JSON value at nesting depth d.
func (sc *scanner) value(d int) error {
	if sc.i >= len(sc.s) {
		return errNotObject
	}
	switch c := sc.s[sc.i]; {
	case c == '{':
		if d > maxDepth {
			return errTooDeep
		}
		_, err := sc.object(d, nil)
		return err
	case c == '[':
		if d > maxDepth {
			return errTooDeep
		}
		return sc.array(d)
	case c == '"':
		_, err := sc.str()
		return err
	case c == '-' || '0' <= c && c <= '9':
		return sc.number()
	case c == 't':
		return sc.literal("true")
	case c == 'f':
		return sc.literal("false")
	case c == 'n':
		return sc.literal("null")
	}
	return errNotObject
}

// object reads the object at sc.i (which is '{') at depth d; the members of
// the top-level object (d == 0) are appended to dst.
func (sc *scanner) object(d int, dst []member) ([]member, error) {
	top := d == 0
	sc.i++ // '{'
	var names nameSet
	sc.skipSpace()
	if sc.i < len(sc.s) && sc.s[sc.i] == '}' {
		sc.i++
		return dst, nil
	}
	for {
		sc.skipSpace()
		if sc.i >= len(sc.s) || sc.s[sc.i] != '"' {
			return dst, errNotObject
		}
		raw, err := sc.str()
		if err != nil {
			return dst, err
		}
		name, err := unquote(raw)
		if err != nil {
			return dst, err
		}
		if !names.add(name) {
			return dst, errDuplicate
		}
		sc.skipSpace()
		if sc.i >= len(sc.s) || sc.s[sc.i] != ':' {
			return dst, errNotObject
		}
		sc.i++
		sc.skipSpace()
		start := sc.i
		if err := sc.value(d + 1); err != nil {
			return dst, err
		}
		if top {
			dst = append(dst, member{name: name, value: sc.s[start:sc.i]})
		}
		sc.skipSpace()
		if sc.i >= len(sc.s) {
			return dst, errNotObject
		}
		switch sc.s[sc.i] {
		case ',':
			sc.i++
		case '}':
			sc.i++
			return dst, nil
		default:
			return dst, errNotObject
		}
	}
}

// array skips the array at sc.i (which is '[') at depth d.
func (sc *scanner) array(d int) error {
	sc.i++ // '['
	sc.skipSpace()
	if sc.i < len(sc.s) && sc.s[sc.i] == ']' {
		sc.i++
		return nil
	}
	for {
		sc.skipSpace()
		if err := sc.value(d + 1); err != nil {
			return err
		}
		sc.skipSpace()
		if sc.i >= len(sc.s) {
			return errNotObject
		}
		switch sc.s[sc.i] {
		case ',':
			sc.i++
		case ']':
			sc.i++
			return nil
		default:
			return errNotObject
		}
	}
}

// str reads the string at sc.i (which is '"') and returns its text with the
// quotes, escapes not decoded. The input is already known to be valid UTF-8.
func (sc *scanner) str() (string, error) {
	start := sc.i
	sc.i++
	for sc.i < len(sc.s) {
		c := sc.s[sc.i]
		switch {
		case c == '"':
			sc.i++
			return sc.s[start:sc.i], nil
		case c < 0x20:
			return "", errNotObject
		case c == '\\':
			if sc.i+1 >= len(sc.s) {
				return "", errNotObject
			}
			switch sc.s[sc.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				sc.i += 2
			case 'u':
				if sc.i+6 > len(sc.s) || !isHex4(sc.s[sc.i+2:sc.i+6]) {
					return "", errNotObject
				}
				sc.i += 6
			default:
				return "", errNotObject
			}
		default:
			sc.i++
		}
	}
	return "", errNotObject
}

func isHex4(s string) bool {
	for i := 0; i < 4; i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// number reads an RFC 8259 number.
func (sc *scanner) number() error {
	if sc.s[sc.i] == '-' {
		sc.i++
	}
	switch {
	case sc.i < len(sc.s) && sc.s[sc.i] == '0':
		sc.i++
	case sc.i < len(sc.s) && '1' <= sc.s[sc.i] && sc.s[sc.i] <= '9':
		sc.digits()
	default:
		return errNotObject
	}
	if sc.i < len(sc.s) && sc.s[sc.i] == '.' {
		sc.i++
		if sc.digits() == 0 {
			return errNotObject
		}
	}
	if sc.i < len(sc.s) && (sc.s[sc.i] == 'e' || sc.s[sc.i] == 'E') {
		sc.i++
		if sc.i < len(sc.s) && (sc.s[sc.i] == '+' || sc.s[sc.i] == '-') {
			sc.i++
		}
		if sc.digits() == 0 {
			return errNotObject
		}
	}
	return nil
}

func (sc *scanner) digits() int {
	n := 0
	for sc.i < len(sc.s) && '0' <= sc.s[sc.i] && sc.s[sc.i] <= '9' {
		sc.i++
		n++
	}
	return n
}

func (sc *scanner) literal(word string) error {
	if !strings.HasPrefix(sc.s[sc.i:], word) {
		return errNotObject
	}
	sc.i += len(word)
	return nil
}

// unquote decodes a JSON string literal (with its quotes) that str has
// validated. Without escapes it is a substring of the input; with escapes
// encoding/json decodes it, so that names and values mean exactly what they
// mean to every other decoder.
func unquote(raw string) (string, error) {
	body := raw[1 : len(raw)-1]
	if strings.IndexByte(body, '\\') < 0 {
		return body, nil
	}
	var s string
	if err := json.Unmarshal([]byte(raw), &s); err != nil {
		return "", errNotObject
	}
	return s, nil
}

// smallNames is how many member names an object holds before nameSet
// switches from a linear scan to a map (bounding the work of an object with
// thousands of members).
const smallNames = 16

// nameSet detects duplicate member names.
type nameSet struct {
	small [smallNames]string
	n     int
	big   map[string]struct{}
}

// add records name and reports false if it was already present.
func (ns *nameSet) add(name string) bool {
	if ns.big != nil {
		if _, dup := ns.big[name]; dup {
			return false
		}
		ns.big[name] = struct{}{}
		return true
	}
	for _, seen := range ns.small[:ns.n] {
		if seen == name {
			return false
		}
	}
	if ns.n < smallNames {
		ns.small[ns.n] = name
		ns.n++
		return true
	}
	ns.big = make(map[string]struct{}, 2*smallNames)
	for _, seen := range ns.small {
		ns.big[seen] = struct{}{}
	}
	ns.big[name] = struct{}{}
	return true
}

// lookup returns the value of the member called name.
func lookup(ms []member, name string) (string, bool) {
	for _, m := range ms {
		if m.name == name {
			return m.value, true
		}
	}
	return "", false
}

// jsonString decodes a member value that must be a JSON string.
func jsonString(raw string) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' {
		return "", false
	}
	s, err := unquote(raw)
	return s, err == nil
}

// isStringArray reports whether a member value is a JSON array of string
// literals, without unquoting (or allocating for) any of them: the check
// that can run before a token's signature is verified.
func isStringArray(raw string) bool { return stringArray(raw, nil) }

// jsonStrings decodes a member value that must be a JSON array of strings.
func jsonStrings(raw string) ([]string, bool) {
	if len(raw) == 0 || raw[0] != '[' {
		return nil, false
	}
	out := make([]string, 0, strings.Count(raw, ",")+1)
	if !stringArray(raw, &out) {
		return nil, false
	}
	return out, true
}

// stringArray reports whether raw is a JSON array of string literals and
// nothing after it. When out is not nil, each string is unquoted and
// appended to *out; when it is nil, nothing is unquoted or allocated.
func stringArray(raw string, out *[]string) bool {
	if len(raw) == 0 || raw[0] != '[' {
		return false
	}
	sc := scanner{s: raw, i: 1}
	sc.skipSpace()
	if sc.i < len(sc.s) && sc.s[sc.i] == ']' {
		return sc.i == len(sc.s)-1
	}
	for {
		sc.skipSpace()
		if sc.i >= len(sc.s) || sc.s[sc.i] != '"' {
			return false
		}
		lit, err := sc.str()
		if err != nil {
			return false
		}
		if out != nil {
			s, err := unquote(lit)
			if err != nil {
				return false
			}
			*out = append(*out, s)
		}
		sc.skipSpace()
		if sc.i >= len(sc.s) {
			return false
		}
		switch sc.s[sc.i] {
		case ',':
			sc.i++
		case ']':
			return sc.i == len(sc.s)-1
		default:
			return false
		}
	}
}

// maxNumericDate is 9999-12-31T23:59:59Z: a later date is no date a token
// could honestly carry.
const maxNumericDate = 253402300799

// jsonNumericDate decodes a NumericDate member that must be a plain JSON
// integer in [0, maxNumericDate]: no string, fraction, exponent or sign.
func jsonNumericDate(raw string) (int64, bool) {
	if len(raw) == 0 || len(raw) > 12 {
		return 0, false
	}
	for i := 0; i < len(raw); i++ {
		if c := raw[i]; c < '0' || c > '9' {
			return 0, false
		}
	}
	if len(raw) > 1 && raw[0] == '0' {
		return 0, false
	}
	v, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || v > maxNumericDate {
		return 0, false
	}
	return v, true
}
