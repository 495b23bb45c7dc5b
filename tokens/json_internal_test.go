package tokens

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"unicode/utf8"
)

// referenceDecodeObject is the strict object reader built on
// encoding/json's Decoder that scanObject replaced (it allocated about 200
// times per token). It stays here as the oracle of FuzzScanObject: both must
// accept the same inputs and see the same members.
func referenceDecodeObject(data []byte) (map[string]json.RawMessage, error) {
	if !utf8.Valid(data) {
		return nil, errInvalidUTF8
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return nil, errNotObject
	}
	members := make(map[string]json.RawMessage)
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
		if err := referenceCheckNested(raw, 1); err != nil {
			return nil, err
		}
		members[name] = raw
	}
	if _, err := dec.Token(); err != nil {
		return nil, errNotObject
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errTrailing
	}
	return members, nil
}

func referenceCheckNested(raw json.RawMessage, depth int) error {
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
			if err := referenceCheckNested(e, depth+1); err != nil {
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
		if err := referenceCheckNested(v, depth+1); err != nil {
			return err
		}
	}
	return nil
}

var scanCases = []string{
	`{}`, ` {} `, "\t{\n}\r\n", `{"a":1}`, `{"a":1,"a":2}`, `{"a":1,"\u0061":2}`, `{"a":{"b":1,"b":2}}`,
	`{"a":[{"b":1},{"b":1,"c":[{"d":1,"d":2}]}]}`, `{"a":{"b":1},"c":{"b":1}}`, `{"a":1}x`, `{"a":1}{}`,
	`{"a":1,}`, `{,}`, `{"a"}`, `{"a":}`, `{"a" 1}`, `{a:1}`, `{'a':1}`, `[]`, `"x"`, `1`, `null`, ``, `{`,
	`{"a":-0}`, `{"a":-}`, `{"a":01}`, `{"a":1.}`, `{"a":.5}`, `{"a":1e}`, `{"a":1e+5}`, `{"a":1.5E-3}`,
	`{"a":+1}`, `{"a":0x10}`, `{"a":NaN}`, `{"a":true,"b":false,"c":null}`, `{"a":tru}`, `{"a":nul}`,
	`{"a":"\u00e9\n\t\"\\\/\b\f\r"}`, `{"a":"\x"}`, `{"a":"\u12"}`, `{"a":"\u12g4"}`, "{\"a\":\"\x01\"}",
	"{\"a\":\"\xff\"}", `{"a":"\ud800"}`, `{"\ud800":1,"\ufffd":2}`, `{"a":[1,]}`, `{"a":[,1]}`, `{"a":[1 2]}`,
	`{"a":[]}`, `{"a":[ ]}`, `{"a":{ }}`, `{"a":"x"` + strings.Repeat(",", 1) + `}`,
	`{"x":` + strings.Repeat("[", 16) + strings.Repeat("]", 16) + `}`,
	`{"x":` + strings.Repeat("[", 17) + strings.Repeat("]", 17) + `}`,
	`{"x":` + strings.Repeat(`{"a":`, 16) + "1" + strings.Repeat("}", 16) + `}`,
	`{"x":` + strings.Repeat(`{"a":`, 17) + "1" + strings.Repeat("}", 17) + `}`,
	manyMembers(40, false), manyMembers(40, true),
	`{"iss":"https://latch.test","sub":"u","aud":["a","b"],"exp":1800000000,"iat":1799999000,"jti":"j","sid":"s","roles":["r"]}`,
}

func manyMembers(n int, dup bool) string {
	var b strings.Builder
	b.WriteString("{")
	for i := range n {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`"m` + strings.Repeat("x", i) + `":1`)
	}
	if dup {
		b.WriteString(`,"m` + strings.Repeat("x", n/2) + `":2`)
	}
	b.WriteString("}")
	return b.String()
}

// compareWithReference fails if scanObject and the reference reader
// disagree on data: one accepts and the other refuses, or they see
// different members.
func compareWithReference(t *testing.T, data string) {
	t.Helper()
	members, span, err := scanObject(data, nil)
	ref, refErr := referenceDecodeObject([]byte(data))
	if (err == nil) != (refErr == nil) {
		t.Fatalf("scanObject(%q): err %v, reference err %v", data, err, refErr)
	}
	if err != nil {
		return
	}
	if len(members) != len(ref) {
		t.Fatalf("scanObject(%q): %d members, reference %d", data, len(members), len(ref))
	}
	for _, m := range members {
		if string(ref[m.name]) != m.value {
			t.Fatalf("scanObject(%q): member %q = %q, reference %q", data, m.name, m.value, ref[m.name])
		}
	}
	if strings.TrimSpace(span) != span || !json.Valid([]byte(span)) || !strings.Contains(data, span) {
		t.Fatalf("scanObject(%q): span %q is not the object's text", data, span)
	}
}

func TestScanObjectMatchesReference(t *testing.T) {
	for _, c := range scanCases {
		compareWithReference(t, c)
	}
}

// FuzzScanObject is the differential fuzz test of the hand-written scanner
// against the encoding/json-based reader it replaced.
func FuzzScanObject(f *testing.F) {
	for _, c := range scanCases {
		f.Add(c)
	}
	f.Fuzz(func(t *testing.T, data string) { compareWithReference(t, data) })
}

func TestScanObjectErrors(t *testing.T) {
	for _, c := range []struct {
		in   string
		want error
	}{
		{`{"a":1,"a":2}`, errDuplicate},
		{`{"x":{"a":1,"a":2}}`, errDuplicate},
		{manyMembers(40, true), errDuplicate},
		{"{\"a\":\"\xff\"}", errInvalidUTF8},
		{`{"x":` + strings.Repeat("[", 17) + strings.Repeat("]", 17) + `}`, errTooDeep},
		{`{} {}`, errTrailing},
		{`[1]`, errNotObject},
	} {
		if _, _, err := scanObject(c.in, nil); !errors.Is(err, c.want) {
			t.Errorf("scanObject(%.40q) = %v, want %v", c.in, err, c.want)
		}
	}
}

// TestScanObjectAllocatesNothing pins the point of the scanner: a token's
// claims scan without a single allocation.
func TestScanObjectAllocatesNothing(t *testing.T) {
	data := scanCases[len(scanCases)-1]
	var buf [maxClaimsMembers]member
	allocs := testing.AllocsPerRun(100, func() {
		if _, _, err := scanObject(data, buf[:0]); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("scanObject allocated %v times per run, want 0", allocs)
	}
}

func TestJSONStrings(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
		ok   bool
	}{
		{`[]`, []string{}, true},
		{`[ "a" , "b\u0063" ]`, []string{"a", "bc"}, true},
		{`["a",1]`, nil, false},
		{`["a",]`, nil, false},
		{`["a"] `, nil, false},
		{`[]x`, nil, false},
		{`"a"`, nil, false},
		{`[`, nil, false},
		{`["a"`, nil, false},
		{`["a\x"]`, nil, false},
	} {
		if isStringArray(c.in) != c.ok {
			t.Errorf("isStringArray(%q) = %v; want %v", c.in, !c.ok, c.ok)
		}
		got, ok := jsonStrings(c.in)
		if ok != c.ok || strings.Join(got, "|") != strings.Join(c.want, "|") {
			t.Errorf("jsonStrings(%q) = %q, %v; want %q, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}
