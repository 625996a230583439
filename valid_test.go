package webhook

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"
)

// validCases are the edges where a validator most easily parts from
// encoding/json.
var validCases = []string{
	// Empty input, white space and garbage around the value.
	"", " ", "\t\n\r ", " 1 ", "\t1\n", "\r\n[]\r\n", "\v1", "\f1", "1\v", "\u00a01",
	"\xef\xbb\xbf{}", "{}\xef\xbb\xbf", "\x00", "1\x00", "\x001", "1 2", "{}{}", "[]]", "{}}",
	"[],", "1,", "[1] x", "\"a\"\"b\"",
	// Numbers.
	"0", "-0", "1", "-1", "10", "0123", "00", "-00", "-01", "+1", "-", "--1", ".5", "-.5",
	"1.", "1.5", "1.5.5", "0.0", "-0.0", "01.5", "1e5", "1E5", "1e+5", "1e-5", "1e", "1e+",
	"1e-", "1e+-5", "1ee5", "1.e5", "1.5e5", "1.5E-05", "0e0", "-0e-0", "1e5.5", "0x10", "1_000",
	"Infinity", "-Infinity", "NaN", "123456789012345678901234567890", "1.0000000000000000000001",
	"1e999999", "[-]", "[1.]", "[01]", "[-0]", "{\"a\":-}", "{\"a\":1.}", "{\"a\":1e}", "[0,]",
	// Literals.
	"true", "false", "null", "tru", "fals", "nul", "True", "FALSE", "Null", "truee", "nulll",
	"true1", "[true,false,null]", "[truefalse]", "t", "f", "n", "undefined",
	// Strings.
	`""`, `"a"`, `"`, `"a`, `"\"`, `"\\"`, `"\\\"`, `"\/"`, `"\b\f\n\r\t"`, `"\a"`, `"\x41"`,
	`"\'"`, `"\0"`, `"\u0041"`, `"\u00e9"`, `"\u00E9"`, `"\u004"`, `"\u004g"`, `"\uXXXX"`, `"\U0041"`,
	`"\u"`, `"\u12"`, `"\ud800"`, `"\udc00"`, `"\ud800\udc00"`, `"\udc00\ud800"`, `"\ud800\u"`,
	"\"\x00\"", "\"\x01\"", "\"\x1f\"", "\"\x7f\"", "\"\t\"", "\"\n\"", "\"a\x00b\"",
	"\"\xff\"", "\"\xc0\xaf\"", "\"\xed\xa0\x80\"", "\"\xf4\x90\x80\x80\"", "\"\x80\"", "\"\xe9\"",
	"\"é\"", "\"\xef\xbb\xbf\"", "'a'", `"a"b"`, `"12345678"`, `"1234567\"`, `"12345678\u0041"`,
	"\"1234567\x1f1234567\"", "\"12345678123456781234567\\", `"1234567812345678\`,
	`"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"aaaaaaaaaaaaaaaaaaaaaaaaa"`, `"\\\\\\\\\\\\\\\\\\\\\\\\"`,
	"\"aaaaaaa\xff\x1f\"", "\"aaaaaaa\x7f\x20\x1f\"", "\"\xa2aaaaaaaaaaaaa\"",
	// Arrays and objects.
	"[]", "{}", "[ ]", "{ }", "[", "{", "]", "}", "[}", "{]", "[1,2]", "[1 2]", "[,1]", "[1,,2]",
	"[1,]", `{"a":1}`, `{"a" : 1 , "b" : [ ] }`, `{"a":1,}`, `{,"a":1}`, `{"a"}`, `{"a":}`,
	`{"a" 1}`, `{"a"::1}`, `{1:1}`, `{a:1}`, `{'a':1}`, `{"a":1 "b":2}`, `{"a":1,"a":2}`,
	`{"a":{"b":[{"c":[]}]}}`, `[{"a":[{}]}]`, `{"a":[}`, `[{]`, `[[]`, `[]]`, `{"a":{}`,
	`{"a":1}}`, `[[[[]]]]`, `{"":""}`, "{\"\x01\":1}", `{"\u0000":1}`, `[[[[[[[[[[A`,
}

// nestedJSON returns inner inside depth levels of open and close.
func nestedJSON(open, inner, close string, depth int) string {
	return strings.Repeat(open, depth) + inner + strings.Repeat(close, depth)
}

// checkJSONWant is what checkJSON must say of b, found with encoding/json
// alone: Valid for the syntax, and a Decoder's tokens for the depth and
// for the keys of each object, compared as it decodes them.
func checkJSONWant(b []byte) jsonFault {
	if !json.Valid(b) {
		return jsonSyntax
	}
	type open struct {
		keys    map[string]bool // nil for an array
		wantKey bool
	}
	var stack []*open
	dup := false
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			panic(fmt.Sprintf("Valid accepts %q, the Decoder says %v", b, err))
		}
		if tok == json.Delim('}') || tok == json.Delim(']') {
			stack = stack[:len(stack)-1]
			continue
		}
		var in *open
		if len(stack) > 0 {
			in = stack[len(stack)-1]
		}
		if in != nil && in.keys != nil {
			if in.wantKey {
				k := tok.(string)
				dup = dup || in.keys[k]
				in.keys[k], in.wantKey = true, false
				continue
			}
			in.wantKey = true // after this value
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			if len(stack) == maxDepth {
				return jsonTooDeep // before any later duplicate
			}
			o := &open{}
			if tok == json.Delim('{') {
				o.keys, o.wantKey = map[string]bool{}, true
			}
			stack = append(stack, o)
		}
	}
	if dup {
		return jsonDuplicate
	}
	return jsonOK
}

// requireCheckJSON requires checkJSON's answer of b, got, to be
// checkJSONWant's. Of what Valid refuses it requires only a refusal: a
// validator that stops at the first problem may find nesting too deep
// before the syntax error.
func requireCheckJSON(t *testing.T, b []byte, got jsonFault) {
	t.Helper()
	want := checkJSONWant(b)
	if want == jsonSyntax && got != jsonOK || want == got {
		return
	}
	t.Fatalf("checkJSON(%.200q) = %v, encoding/json says %v", b, got, want)
}

func (f jsonFault) String() string {
	return [...]string{"ok", "syntax", "too deep", "duplicate"}[f]
}

// duplicateCases are objects that have a key twice, as encoding/json reads
// keys, or nearly.
var duplicateCases = []string{
	`{"a":1,"a":2}`, `{"a":1,"a":1}`, `{"":1,"":2}`, `{"a":0,"a":1}`, `{"a":1,"b":2}`,
	`{"a":1,"\u0061":2}`, `{"\u0061":1,"a":2}`, `{"\u0061":1,"\u0041":2}`, `{"a\"":1,"a\u0022":2}`,
	`{"\/":1,"/":2}`, `{"\ud800":1,"\udc00":2}`, `{"\ud800\udc00":1,"\ud800\udc01":2}`,
	"{\"\xff\":1,\"\xfe\":2}", "{\"\xff\":1,\"\\ufffd\":2}", "{\"\xef\xbf\xbd\":1,\"\xff\":2}",
	"{\"\xff\":1,\"\\ud800\":2}", `{"é":1,"\u00e9":2}`, `{"e\u0301":1,"é":2}`, `{"A":1,"a":2}`,
	`{"a":{"b":1,"b":2}}`, `{"a":{"b":1},"b":{"b":1}}`, `[{"a":1},{"a":1}]`, `{"a":{"a":1}}`,
	`{"a":1,"b":{"a":1},"a":3}`, `{"x":{"a":1,"b":{"c":1},"a":2}}`, `{"x":{"a":1,"b":[{"a":1}],"c":2}}`,
	`{"a":[{"b":1,"b":2}]}`, `[[{"a":1,"b":2,"a":3}]]`, `{"a" :1, "a" :2}`,
	`{"aaaaaaaaXaaaaaaaa":1,"aaaaaaaaYaaaaaaaa":2}`, `{"aaaaaaaaaaaaaaaaa":1,"aaaaaaaaaaaaaaaaa":2}`,
	`{"12345678":1,"12345678":2}`, `{"123456789":1,"123456789":2}`, `{"123456789":1,"12345678":2}`,
	`{"a":1,"b":2,"c":3}` + `x`, `{"a":1,"a":2`, `{"a":1,"a":2}}`,
}

// wideObject returns an object of n keys k0, k1, ... and then extra.
func wideObject(n int, extra string) string {
	var b strings.Builder
	b.WriteString("{")
	for i := range n {
		fmt.Fprintf(&b, `"k%d":%d,`, i, i)
	}
	b.WriteString(extra)
	return strings.TrimSuffix(b.String(), ",") + "}"
}

func TestCheckJSONAgreesWithEncodingJSON(t *testing.T) {
	cases := append(slices.Clone(validCases), duplicateCases...)
	// Depths about the limit, which counts arrays and objects together,
	// and about encoding/json's.
	for _, d := range []int{maxDepth - 1, maxDepth, maxDepth + 1, 3 * maxDepth, 10000, 10001} {
		cases = append(cases,
			nestedJSON("[", "", "]", d),
			nestedJSON("[", "[]", "]", d-1),
			nestedJSON(`{"a":`, "1", "}", d),
			nestedJSON(`{"a":`, "{}", "}", d-1),
			nestedJSON(`{"a":`, "[]", "}", d-1),
			nestedJSON("[", "{}", "]", d-1),
			nestedJSON(`[{"a":`, "1", "}]", d/2),
			nestedJSON(`{"a":[`, "1", "]}", d/2),
			"["+nestedJSON(`{"a":[`, "1", "]}", d/2)+"]",
			nestedJSON(`[1,{"a":0,"b":`, `""`, "}]", d/2),
			nestedJSON(`{"a":1,"b":`, `{"a":1,"a":2}`, "}", d-1),
			strings.Repeat("[", d), // never closed
			strings.Repeat("[", d)+strings.Repeat("]", d-1),
			nestedJSON("[", "", "]", d)+"]",
			" "+nestedJSON("[", "", "]", d)+" ",
		)
	}
	// Objects wider than a bloom filter's word, and than a keyStack holds.
	for _, n := range []int{30, 100, 126, 127, 128, 129, 2000} {
		cases = append(cases, wideObject(n, ""), wideObject(n, `"k0":0`), wideObject(n, fmt.Sprintf(`"k%d":0`, n-1)),
			`{"x":`+wideObject(n, "")+`}`, `{"x":`+wideObject(n, `"k1":0`)+`}`, `[`+wideObject(n, fmt.Sprintf(`"k%d":0`, n/2))+`]`)
	}
	// A keyStack full when a container opens gives up its keys.
	for _, n := range []int{120, 124, 125, 126, 127} {
		cases = append(cases, `{"a":`+wideObject(n, `"y":[1],"k0":0`)+`}`, `{"a":`+wideObject(n, `"y":{"k0":[{"k1":1}]},"k1":0`)+`}`,
			wideObject(n, `"y":[[[{"a":1,"a":2}]]]`))
	}
	record, err := os.ReadFile("testdata/opportunity-1.5k.json")
	require.NoError(t, err)
	cases = append(cases, string(record), string(record[:len(record)-2]), string(record)+"x",
		strings.Replace(string(record), `"cf_renewal"`, `"cf_region"`, 1),
		strings.Replace(string(record), `"currency"`, `"amount"`, 1))
	for _, s := range cases {
		var m members
		got := checkJSON([]byte(s), &m, "", nil)
		requireCheckJSON(t, []byte(s), got)
		require.Equal(t, got == jsonOK, validJSON([]byte(s), nil), "validJSON(%.80q)", s)
		if got == jsonDuplicate {
			_, _, found := duplicateKey([]byte(s))
			require.True(t, found, "duplicateKey(%.80q) finds none", s)
		}
	}
	// What encoding/json does where it may surprise, pinned so that a
	// change to it shows here too.
	for s, want := range map[string]bool{
		"\"\xff\"": true, "\"\xed\xa0\x80\"": true, `"\ud800"`: true, `"\udc00\ud800"`: true,
		"\"\x7f\"": true, "\xef\xbb\xbf{}": false, "\v1": false, "\u00a01": false, "1\x00": false,
		`"\'"`: false, "-0": true, "1E+2": true, "1e999999": true,
		`{"a":1,"\u0061":2}`: false, "{\"\xff\":1,\"\xfe\":2}": false, `{"e\u0301":1,"é":2}`: true,
	} {
		require.Equal(t, want, validJSON([]byte(s), nil), "validJSON(%q)", s)
	}
	require.True(t, validJSON(record, nil))
	require.True(t, validJSON([]byte(nestedJSON("[", "", "]", maxDepth)), nil))
	require.Equal(t, jsonTooDeep, checkJSON([]byte(nestedJSON("[", "", "]", maxDepth+1)), nil, "", nil))
	require.True(t, validJSON([]byte(nestedJSON(`{"a":`, "{}", "}", maxDepth-1)), nil))
	require.Equal(t, jsonTooDeep, checkJSON([]byte(nestedJSON(`{"a":`, "{}", "}", maxDepth)), nil, "", nil))
}

func TestDuplicateKeySaysWhere(t *testing.T) {
	for _, tt := range []struct{ record, at, key string }{
		{`{"a":1,"a":2}`, "", "a"},
		{`{"a":1,"\u0061":2}`, "", "a"},
		{` {"owner":{"id":1,"email":"x","email":"y"}} `, ".owner", "email"},
		{`{"contacts":[{"id":1},{"id":2,"id":3}]}`, ".contacts[1]", "id"},
		{`{"a b":{"c":[[{"d":1,"d":1}]]}}`, `["a b"].c[0][0]`, "d"},
		{`[{"a":1},{"a":1,"a":1}]`, "[1]", "a"},
	} {
		at, key, found := duplicateKey([]byte(tt.record))
		require.True(t, found, tt.record)
		require.Equal(t, tt.at, at, tt.record)
		require.Equal(t, tt.key, key, tt.record)
	}
	_, _, found := duplicateKey([]byte(`{"a":{"a":[{"a":1},{"a":1}]}}`))
	require.False(t, found)
}

// TestValidJSONEveryPrefix checks every truncation and every one-byte
// change of the workload record, which is where a validator that looks
// ahead would read past the end.
func TestValidJSONEveryPrefix(t *testing.T) {
	record, err := os.ReadFile("testdata/opportunity-1.5k.json")
	require.NoError(t, err)
	for n := range len(record) {
		require.Equal(t, json.Valid(record[:n]), validJSON(record[:n], nil), "prefix of %d bytes", n)
	}
	b := make([]byte, len(record))
	for i := range record {
		for _, c := range []byte{0, '\\', '"', '{', '[', ']', ',', '0', 'e', 0x1f, 0xff} {
			copy(b, record)
			b[i] = c
			require.Equal(t, json.Valid(b), validJSON(b, nil), "byte %d set to %q", i, c)
		}
	}
}

// TestValidJSONEveryByteInStrings puts every byte, and pairs of the bytes
// near the ones a string cannot hold, at every offset of strings long
// enough to be read eight bytes at a time, where a scan of whole words
// would go wrong.
func TestValidJSONEveryByteInStrings(t *testing.T) {
	check := func(body []byte) {
		t.Helper()
		for _, s := range []string{`"` + string(body) + `"`, `["` + string(body) + `"]`,
			`{"` + string(body) + `": 1}`, `"` + string(body)} {
			if want, got := json.Valid([]byte(s)), validJSON([]byte(s), nil); want != got {
				t.Fatalf("encoding/json says %v, validJSON says %v, of %q", want, got, s)
			}
		}
	}
	for n := range 20 {
		body := []byte(strings.Repeat("a", n))
		for p := range n {
			for c := range 256 {
				body[p] = byte(c)
				check(body)
			}
			body[p] = 'a'
		}
	}
	near := []byte{0x00, 0x01, 0x1f, 0x20, 0x21, 0x22, 0x23, '/', 'u', 0x5b, 0x5c, 0x5d, 0x7f, 0x80, 0xa2, 0xdc, 0xff}
	body := []byte(strings.Repeat("a", 11))
	for p := range len(body) - 1 {
		for _, c := range near {
			for _, d := range near {
				body[p], body[p+1] = c, d
				check(body)
			}
		}
		body[p], body[p+1] = 'a', 'a'
	}
}

func TestValidJSONDoesNotAllocate(t *testing.T) {
	record, err := os.ReadFile("testdata/opportunity-1.5k.json")
	require.NoError(t, err)
	deep := []byte(nestedJSON(`[{"a":1,"b":`, "1", "}]", maxDepth/2))
	wide := []byte(wideObject(100, ""))
	require.Zero(t, testing.AllocsPerRun(10, func() { validJSON(record, nil) }))
	// A deep or wide record borrows its key stack from a pool, which -race
	// makes drop some of what it keeps.
	if !raceEnabled {
		require.Zero(t, testing.AllocsPerRun(10, func() {
			validJSON(deep, nil)
			validJSON(wide, nil)
		}))
	}
}

// FuzzValidJSON checks checkJSON against encoding/json: its Valid, its
// Decoder's depth and the keys it decodes (checkJSONWant). It takes the
// same argument as FuzzValid, whose corpus testdata/fuzz/FuzzValidJSON
// began as a copy of.
func FuzzValidJSON(f *testing.F) {
	for _, s := range validCases {
		f.Add([]byte(s))
	}
	for _, s := range duplicateCases {
		f.Add([]byte(s))
	}
	f.Add([]byte(nestedJSON("[", "", "]", maxDepth)))
	f.Add([]byte(nestedJSON("[", "", "]", maxDepth+1)))
	f.Add([]byte(nestedJSON(`{"a":`, "{}", "}", maxDepth)))
	f.Add([]byte(wideObject(100, `"k7":0`)))
	if record, err := os.ReadFile("testdata/opportunity-1.5k.json"); err == nil {
		f.Add(record)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var m members
		got := checkJSON(b, &m, "", nil)
		requireCheckJSON(t, b, got)
		if got == jsonDuplicate {
			if _, _, found := duplicateKey(b); !found {
				t.Fatalf("duplicateKey(%q) finds none", b)
			}
		}
	})
}

func BenchmarkValidJSON(b *testing.B) {
	record, err := os.ReadFile("testdata/opportunity-1.5k.json")
	require.NoError(b, err)
	for _, v := range []struct {
		name  string
		valid func([]byte) bool
	}{
		{"validJSON", func(b []byte) bool { return validJSON(b, nil) }},
		{"validJSON with members", func(b []byte) bool { var m members; return validJSON(b, &m) }},
		{"gjson.ValidBytes", gjson.ValidBytes},
	} {
		b.Run(v.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(record)))
			for b.Loop() {
				if !v.valid(record) {
					b.Fatal("the record is valid JSON")
				}
			}
		})
	}
}

// BenchmarkValidJSONKeys measures what the duplicate-key rule costs by the
// shape of a record: keys a keyStack holds, more than it holds (then
// duplicateKey decides, and allocates), and escaped keys, which are
// decoded. json.Valid is the baseline: it checks neither depth nor keys.
func BenchmarkValidJSONKeys(b *testing.B) {
	escaped := strings.NewReplacer(`"k1`, `"\u006b1`).Replace(wideObject(50, ""))
	for _, c := range []struct{ name, record string }{
		{"100 keys", wideObject(100, "")},
		{"200 keys", wideObject(200, "")},
		{"50 keys, 11 escaped", escaped},
	} {
		for _, v := range []struct {
			name  string
			valid func([]byte) bool
		}{
			{"validJSON", func(b []byte) bool { return validJSON(b, nil) }},
			{"json.Valid", json.Valid},
		} {
			record := []byte(c.record)
			b.Run(c.name+"/"+v.name, func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(len(record)))
				for b.Loop() {
					if !v.valid(record) {
						b.Fatal("the record is valid JSON")
					}
				}
			})
		}
	}
}

// FuzzMembers checks that reading a member through the spans validJSON
// noted gives what gjson's Get gives (but for Num), for every top-level
// key of the input and for key.
func FuzzMembers(f *testing.F) {
	record, err := os.ReadFile("testdata/opportunity-1.5k.json")
	require.NoError(f, err)
	f.Add(record, "owner_id")
	f.Add(record, "missing")
	f.Add([]byte(`{"a":1,"a":2,"b" : [1,{"a":3}] ,"c":"x\"y","d":{}}`), "a")
	f.Add([]byte(`{"a\u0041":1,"aA":2}`), "aA")
	f.Add([]byte(`{"a.b":1,"a":{"b":2}}`), "a.b")
	f.Add([]byte(` { "a" : true , "b":null}`), "b")
	f.Fuzz(func(t *testing.T, b []byte, key string) {
		var m members
		if !validJSON(b, &m) || !gjson.ParseBytes(b).IsObject() {
			return
		}
		keys := []string{key}
		gjson.ParseBytes(b).ForEach(func(k, _ gjson.Result) bool {
			keys = append(keys, k.Str)
			return true
		})
		for _, k := range keys {
			raw, ok := m.get(string(b), k)
			if !ok {
				continue
			}
			got := valueOf(raw)
			want := gjson.GetBytes(b, k)
			// All but Num, which valueOf leaves 0 (the package reads numbers from Raw).
			if got.Type != want.Type || got.Raw != want.Raw || got.Str != want.Str || got.Exists() != want.Exists() || got.Num != 0 {
				t.Fatalf("member %q of %q: got %+v, gjson gives %+v", k, b, got, want)
			}
		}
	})
}

func TestMembersNoteEveryMemberOfTheRecord(t *testing.T) {
	record, err := os.ReadFile("testdata/opportunity-1.5k.json")
	require.NoError(t, err)
	var m members
	require.True(t, validJSON(record, &m))
	n := 0
	gjson.ParseBytes(record).ForEach(func(k, v gjson.Result) bool {
		got, ok := m.get(string(record), k.Str)
		require.True(t, ok, k.Str)
		require.Equal(t, v.Raw, got, k.Str)
		n++
		return true
	})
	require.Equal(t, n, m.n)
	require.False(t, m.some)
	_, ok := m.get(string(record), "no_such_field")
	require.True(t, ok, "a missing member needs no scan when every member is noted")
	_, ok = m.get(string(record), "value.amount")
	require.False(t, ok, "a path is gjson's to read")
}

// checkLike checks that checkJSON(b, like) gives checkJSON(b)'s answer,
// which is encoding/json's, and notes the same members.
func checkLike(t *testing.T, b, like []byte) {
	t.Helper()
	var lm, want, got members
	if !validJSON(like, &lm) {
		return
	}
	fault := checkJSON(b, &want, "", nil)
	requireCheckJSON(t, b, fault)
	require.Equal(t, fault, checkJSON(b, &got, string(like), &lm), "checkJSON(%.200q, like %.200q)", b, like)
	if fault == jsonOK {
		require.Equal(t, want, got, "members of %.200q, like %.200q", b, like)
	}
}

// TestValidJSONLikeEveryChange checks the record before an update against
// the record after it where they differ in every way one byte can make
// them differ, and where members come and go.
func TestValidJSONLikeEveryChange(t *testing.T) {
	record, err := os.ReadFile("testdata/opportunity-1.5k.json")
	require.NoError(t, err)
	checkLike(t, record, record)
	b := make([]byte, len(record))
	for i := range record {
		for _, c := range []byte{0, '\\', '"', '{', '}', '[', ']', ',', ':', ' ', '0', 'e', 0x1f, 0xff} {
			copy(b, record)
			b[i] = c
			checkLike(t, b, record)
			checkLike(t, record, b)
		}
		checkLike(t, record[:i], record)
		checkLike(t, append(slices.Clone(record[:i]), record[i+1:]...), record)
	}
	// Members removed, added, moved and repeated.
	type member struct{ k, v string }
	var all []member
	gjson.ParseBytes(record).ForEach(func(k, v gjson.Result) bool {
		all = append(all, member{k.Raw, v.Raw})
		return true
	})
	object := func(ms ...member) []byte {
		var b strings.Builder
		for i, m := range ms {
			b.WriteString(",")
			if i == 0 {
				b.Reset()
				b.WriteString("{")
			}
			b.WriteString(m.k + ":" + m.v)
		}
		return []byte(b.String() + "}")
	}
	full := object(all...)
	for i, m := range all {
		without := object(slices.Delete(slices.Clone(all), i, i+1)...)
		checkLike(t, without, full)
		checkLike(t, full, without)
		checkLike(t, object(append(slices.Delete(slices.Clone(all), i, i+1), m)...), full)
		twice := object(slices.Insert(slices.Clone(all), i, m)...)
		checkLike(t, twice, full)
		checkLike(t, full, twice)
	}
	for _, c := range []struct{ b, like string }{
		{`{"a":1}`, `{"a":1}`},
		{`{"a":1,"b":2}`, `{"a":1}`},
		{`{"a":1}`, `{"a":1,"b":2}`},
		{`{"a":1} `, `{"a":1}`},
		{`{"a":1`, `{"a":1}`},
		{`{"a":1,}`, `{"a":1,"b":2}`},
		{`{"a":1,"b":2`, `{"a":1,"b":2}`},
		{`{"a":1 ,"b":2}`, `{"a":1,"b":2}`},
		{`[{"a":1}]`, `{"a":1}`},
		{`{"x":{"a":1}}`, `{"a":1}`},
		{`{"a\"":1}`, `{"a\"":1}`},
		{`{"a\u0041":1,"b":2}`, `{"a\u0041":1,"b":2}`},
		{`{"a":"\ud800"}`, `{"a":"\ud800"}`},
		{`{"a":1,"a":1}`, `{"a":1,"a":1}`},
		{`{"a":` + nestedJSON("[", "", "]", maxDepth-1) + `}`, `{"a":` + nestedJSON("[", "", "]", maxDepth-1) + `}`},
		{`{"a":` + nestedJSON("[", "", "]", maxDepth) + `}`, `{"a":` + nestedJSON("[", "", "]", maxDepth-1) + `}`},
		// A key of b twice, once in a member that repeats like's: the
		// members repeated are not scanned, their keys still count.
		{`{"a":1,"b":2,"a":1}`, `{"a":1,"b":2}`},
		{`{"a":1,"b":2,"\u0061":1}`, `{"a":1,"b":2}`},
		{`{"b":2,"a":1,"c":3}`, `{"a":1,"a":1,"c":3}`},
		{`{"c":0,"b":2,"c":3}`, `{"a":1,"b":2,"c":3}`},
		{`{"a":1,"b":2,"c":3,"b":2}`, `{"a":1,"b":2,"c":3}`},
		{`{"x":1,"b":2,"c":3,"x":1}`, `{"a":1,"b":2,"c":3}`},
		{`{"a":1,"b":{"a":1,"a":2},"c":3}`, `{"a":1,"b":{"a":1},"c":3}`},
		{`{"a":1,"b":2,"c":3,"d":4}`, `{"a":1,"b":9,"c":3,"d":4}`},
		{`{"a":1,"b":2,"c":3,"d":4}`, `{"b":2,"a":1,"c":3,"d":4}`},
		{`{"a":1,"b":2,"c":3,"d":4}`, `{}`},
		{`{}`, `{"a":1}`},
	} {
		checkLike(t, []byte(c.b), []byte(c.like))
	}
	// More members than are noted.
	var many strings.Builder
	many.WriteString("{")
	for i := range 100 {
		fmt.Fprintf(&many, `"k%d":%d,`, i, i)
	}
	wide := many.String()[:many.Len()-1] + "}"
	checkLike(t, []byte(wide), []byte(wide))
	checkLike(t, []byte(strings.Replace(wide, `"k70":70`, `"k70":7`, 1)), []byte(wide))
	checkLike(t, []byte(strings.Replace(wide, `"k30":30`, `"k30":3`, 1)), []byte(wide))
}

// FuzzValidJSONLike checks validJSONLike against validJSON for any valid
// object like.
func FuzzValidJSONLike(f *testing.F) {
	record, err := os.ReadFile("testdata/opportunity-1.5k.json")
	require.NoError(f, err)
	f.Add(bytes.Replace(record, []byte(`"amount": 128400.75`), []byte(`"amount": 119000`), 1), record)
	f.Add([]byte(`{"a":1,"b":[1,2],"c":{"d":"e"}}`), []byte(`{"a":1,"b":[1,2],"c":{"d":"f"}}`))
	f.Add([]byte(`{"a":1,"b":2`), []byte(`{"a":1,"b":2}`))
	f.Fuzz(func(t *testing.T, b, like []byte) {
		checkLike(t, b, like)
	})
}

// gjsonEqual and gjsonLookup are jsonEqual and lookup as they were written
// with gjson's Get and ForEach: what the cursor's versions must agree with.
func gjsonEqual(a, b gjson.Result) bool {
	switch {
	case a.Type != b.Type || a.Exists() != b.Exists():
		return false
	case a.Raw == b.Raw:
		return true
	case a.Type == gjson.Number:
		x, _ := parseNumber(a.Raw)
		y, _ := parseNumber(b.Raw)
		return x.cmp(y) == 0
	case a.Type == gjson.String:
		return a.Str == b.Str
	case a.Type != gjson.JSON:
		return true
	case a.IsArray() != b.IsArray():
		return false
	case a.IsArray():
		x, y := a.Array(), b.Array()
		if len(x) != len(y) {
			return false
		}
		for i := range x {
			if !gjsonEqual(x[i], y[i]) {
				return false
			}
		}
		return true
	}
	n, eq := 0, true
	a.ForEach(func(k, v gjson.Result) bool {
		n++
		eq = gjsonEqual(v, b.Get(gjson.Escape(k.Str)))
		return eq
	})
	if !eq {
		return false
	}
	b.ForEach(func(_, _ gjson.Result) bool {
		n--
		return true
	})
	return n == 0
}

func gjsonLookup(v gjson.Result, p path, dst []gjson.Result) ([]gjson.Result, bool) {
	for i, key := range p {
		if v.IsArray() {
			v.ForEach(func(_, elem gjson.Result) bool {
				dst, _ = gjsonLookup(elem, p[i:], dst)
				return true
			})
			return dst, true
		}
		if !v.IsObject() {
			return dst, false
		}
		v = v.Get(key)
	}
	switch {
	case v.IsArray():
		v.ForEach(func(_, elem gjson.Result) bool {
			dst = append(dst, elem)
			return true
		})
		return dst, true
	case v.Exists():
		return append(dst, v), false
	}
	return dst, false
}

// FuzzCursor checks what the package reads with a cursor (comparing two
// values, looking a path up, walking a container) against gjson.
func FuzzCursor(f *testing.F) {
	record, err := os.ReadFile("testdata/opportunity-1.5k.json")
	require.NoError(f, err)
	f.Add(record, bytes.Replace(record, []byte(`"amount": 128400.75`), []byte(`"amount": 119000`), 1), "value.amount")
	f.Add([]byte(`{"a":1,"a":2}`), []byte(`{"a":1,"a":1}`), "a")
	f.Add([]byte(`{"a":1,"a":1}`), []byte(`{"a":1 ,"a":2}`), "a")
	f.Add([]byte(`{"a\u0041":[1,{"b":"x\"y"}],"c":{}}`), []byte(`{"c":{},"aA":[1.0,{"b":"x\u0022y"}]}`), "aA.b")
	f.Add([]byte(`[{"a":[1,2]},{"a":3},{"b":4}]`), []byte(`[{"a":[1,2]},{"a":3e0},{"b":4}]`), "a")
	f.Add([]byte(`{"a":{"b":{"c":[true,null,"\\"]}}}`), []byte(`{"a":{"b":{"c":[true,null,"\\\\"]}}}`), "a.b.c")
	f.Add([]byte(`{"1":2,"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9}`), []byte(`{"k9":9,"k8":8,"k7":7,"k6":6,"k5":5,"k4":4,"k3":3,"k2":2,"k1":1,"1":2}`), "k9")
	f.Fuzz(func(t *testing.T, a, b []byte, p string) {
		if !validJSON(a, nil) || !validJSON(b, nil) {
			return
		}
		x, y := gjson.ParseBytes(a), gjson.ParseBytes(b)
		if want := gjsonEqual(x, y); jsonEqual(x.Raw, y.Raw) != want {
			t.Fatalf("jsonEqual(%s, %s) = %v, gjson says %v", a, b, !want, want)
		}
		// The members or elements, as gjson's ForEach gives them.
		c := newCursor(x.Raw)
		if x.IsObject() || x.IsArray() {
			x.ForEach(func(k, v gjson.Result) bool {
				key, raw, ok := c.next()
				if !ok || raw != v.Raw || (x.IsObject() && unquote(key) != k.Str) {
					t.Fatalf("cursor of %s: %q %q %v, gjson gives %q %q", a, key, raw, ok, k.Str, v.Raw)
				}
				return true
			})
			if k, v, ok := c.next(); ok {
				t.Fatalf("cursor of %s: %q %q more than gjson gives", a, k, v)
			}
		}
		keys, ok := (&compiler{errs: &problems{}}).path("path", -1, p)
		if !ok {
			return
		}
		got, gotMany := lookup(x, keys, nil)
		want, wantMany := gjsonLookup(x, keys, nil)
		require.Equal(t, wantMany, gotMany, "lookup(%s, %q)", a, p)
		require.Equal(t, len(want), len(got), "lookup(%s, %q)", a, p)
		for i := range want {
			// All but Num, which the package reads from Raw.
			w, g := want[i], got[i]
			if g.Type != w.Type || g.Raw != w.Raw || g.Str != w.Str {
				t.Fatalf("lookup(%s, %q)[%d] = %+v, gjson gives %+v", a, p, i, g, w)
			}
		}
	})
}
