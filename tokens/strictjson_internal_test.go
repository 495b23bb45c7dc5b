package tokens

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

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

func nest(open, close string, n int) string {
	return `{"x":` + strings.Repeat(open, n) + "1" + strings.Repeat(close, n) + `}`
}

// TestStrictObject checks what strictObject accepts and why it refuses,
// on RFC 8259's grammar and on what lets two decoders disagree.
func TestStrictObject(t *testing.T) {
	for _, c := range []struct {
		in   string
		want error // nil: accepted
	}{
		{`{}`, nil},
		{" \t{\n}\r\n", nil},
		{`{"a":1}`, nil},
		{`{"a":{"b":1},"c":{"b":1}}`, nil}, // one name in two objects
		{`{"a":-0,"b":1e+5,"c":1.5E-3,"d":1e400}`, nil},
		{`{"a":true,"b":false,"c":null}`, nil},
		{`{"a":"\u00e9\n\t\"\\\/\b\f\r"}`, nil},
		{`{"a":"\ud800"}`, nil},
		{`{"a":[],"b":[ ],"c":{ }}`, nil},
		{`{"a":[[["x"]],{"b":[1]}]}`, nil},
		{`{"x":` + strings.Repeat("[", 16) + strings.Repeat("]", 16) + `}`, nil},
		{nest(`{"a":`, "}", 16), nil},
		{nest("[", "]", 16), nil},
		{manyMembers(40, false), nil},
		{`{"iss":"https://latch.test","sub":"u","aud":["a","b"],"exp":1800000000,"iat":1799999000,"jti":"j","sid":"s","roles":["r"]}`, nil},

		{`{"a":1,"a":2}`, errDuplicate},
		{`{"a":1,"\u0061":2}`, errDuplicate},
		{`{"\ud800":1,"\ufffd":2}`, errDuplicate}, // both decode to U+FFFD
		{`{"a":{"b":1,"b":2}}`, errDuplicate},
		{`{"a":[{"b":1},{"b":1,"c":[{"d":1,"d":2}]}]}`, errDuplicate},
		{`{"a":[1,"x",{"b":1,"b":2}]}`, errDuplicate},
		{manyMembers(40, true), errDuplicate},

		{"{\"a\":\"\xff\"}", errInvalidUTF8},
		{"{\"\xc3\":1}", errInvalidUTF8},

		{`{"x":` + strings.Repeat("[", 17) + strings.Repeat("]", 17) + `}`, errTooDeep},
		{nest(`{"a":`, "}", 17), errTooDeep},
		{nest("[", "]", 17), errTooDeep},
		{nest("[", "]", 20000), errNotObject}, // past encoding/json's own limit

		{`{"a":1}x`, errTrailing},
		{`{"a":1}{}`, errTrailing},
		{`{} {}`, errTrailing},

		{``, errNotObject},
		{`{`, errNotObject},
		{`[]`, errNotObject},
		{`[{"a":1}]`, errNotObject},
		{`"x"`, errNotObject},
		{`1`, errNotObject},
		{`null`, errNotObject},
		{`{"a":1,}`, errNotObject},
		{`{,}`, errNotObject},
		{`{"a"}`, errNotObject},
		{`{"a":}`, errNotObject},
		{`{"a" 1}`, errNotObject},
		{`{"a":1 "b":2}`, errNotObject},
		{`{a:1}`, errNotObject},
		{`{'a':1}`, errNotObject},
		{`{"a":-}`, errNotObject},
		{`{"a":01}`, errNotObject},
		{`{"a":1.}`, errNotObject},
		{`{"a":.5}`, errNotObject},
		{`{"a":1e}`, errNotObject},
		{`{"a":+1}`, errNotObject},
		{`{"a":0x10}`, errNotObject},
		{`{"a":NaN}`, errNotObject},
		{`{"a":tru}`, errNotObject},
		{`{"a":truex}`, errNotObject},
		{`{"a":"x""y"}`, errNotObject},
		{`{"a":"\x"}`, errNotObject},
		{`{"a":"\u12"}`, errNotObject},
		{`{"a":"\u12g4"}`, errNotObject},
		{"{\"a\":\"\x01\"}", errNotObject},
		{`{"a":[1,]}`, errNotObject},
		{`{"a":[,1]}`, errNotObject},
		{`{"a":[1 2]}`, errNotObject},
		{`{"a":{"b":1,}}`, errNotObject},
	} {
		_, err := strictObject([]byte(c.in), nil)
		if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
			t.Errorf("strictObject(%.60q) = %v, want %v", c.in, err, c.want)
		}
	}
}

// TestStrictObjectMembers: the members are the top-level ones, in order,
// names decoded and values exactly as written.
func TestStrictObjectMembers(t *testing.T) {
	m, err := strictObject([]byte(` { "a" : 1 , "\u0062":{"c" : [ 2 ]},"d":"e\u0066" } `), nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, mem := range m {
		got = append(got, mem.name+"="+string(mem.value))
	}
	if want := `a=1|b={"c" : [ 2 ]}|d="e\u0066"`; strings.Join(got, "|") != want {
		t.Fatalf("members %q, want %q", strings.Join(got, "|"), want)
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
		{`["a",null]`, nil, false},
		{`["a",["b"]]`, nil, false},
		{`["a",]`, nil, false},
		{`[]x`, nil, false},
		{`"a"`, nil, false},
		{`null`, nil, false},
		{`[`, nil, false},
		{`["a\x"]`, nil, false},
	} {
		ok := isStringArray(json.RawMessage(c.in))
		if ok != c.ok {
			t.Errorf("isStringArray(%q) = %v; want %v", c.in, ok, c.ok)
			continue
		}
		if !ok {
			continue
		}
		got, ok := jsonStrings(json.RawMessage(c.in))
		if !ok || strings.Join(got, "|") != strings.Join(c.want, "|") {
			t.Errorf("jsonStrings(%q) = %q, %v; want %q", c.in, got, ok, c.want)
		}
	}
}

func TestJSONNumericDate(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{`0`, 0, true},
		{`1800000000`, 1800000000, true},
		{`253402300799`, 253402300799, true},
		{`253402300800`, 0, false},
		{`01`, 0, false},
		{`-1`, 0, false},
		{`1.5`, 0, false},
		{`1e9`, 0, false},
		{`"1"`, 0, false},
		{`null`, 0, false},
		{``, 0, false},
		{`100000000000000000000`, 0, false},
	} {
		if got, ok := jsonNumericDate(json.RawMessage(c.in)); got != c.want || ok != c.ok {
			t.Errorf("jsonNumericDate(%q) = %d, %v; want %d, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}
