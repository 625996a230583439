package webhook

import (
	"encoding/binary"
	"math"
	"math/bits"
	"strings"
	"sync"
	"unsafe"

	"github.com/tidwall/gjson"
)

// maxDepth is how deeply a record may nest arrays and objects. The request
// built from a record nests two levels more (the array of items and the
// item), and 64 levels is the lowest limit among the JSON parsers receivers
// use by default: .NET's System.Text.Json and Json.NET (Ruby's allows 100,
// serde_json 128, PHP 512, Jackson 1,000, encoding/json 10,000). A deeper
// record would be refused at the receiver and retried until dead; no CRM
// record comes near it. It also keeps the validator's stack of open
// containers in one word.
const maxDepth = 62

// A jsonFault is why checkJSON refuses a record, or jsonOK.
type jsonFault uint8

const (
	jsonOK        jsonFault = iota
	jsonSyntax              // not JSON, as encoding/json's Valid says
	jsonTooDeep             // nests more than maxDepth levels
	jsonDuplicate           // an object has a key twice (see duplicateKey)
)

// Classes of bytes for validJSON.
const (
	jsonSpace = 1 << iota // white space between tokens
	jsonPlain             // a byte a string holds as it is
	jsonDigit
	jsonHex
)

// jsonClass holds the classes of every byte. A string's bytes need not be
// UTF-8: encoding/json takes every byte from 0x20 up but '"' and '\\'.
var jsonClass = func() (t [256]uint8) {
	for c := 0x20; c < len(t); c++ {
		t[c] = jsonPlain
	}
	t['"'], t['\\'] = 0, 0
	for _, c := range " \t\n\r" {
		t[c] |= jsonSpace
	}
	for _, c := range "0123456789" {
		t[c] |= jsonDigit | jsonHex
	}
	for _, c := range "abcdefABCDEF" {
		t[c] |= jsonHex
	}
	return t
}()

// validJSON reports whether b is a record the package accepts: one JSON
// value that encoding/json's Valid accepts, nesting at most maxDepth
// levels, in which no object has a key twice. Like Valid it accepts
// strings holding bytes that are not UTF-8 and \u escapes of lone
// surrogates. When m is not nil and b is an object, it notes in m where
// b's members are, so that reading one costs no second scan.
func validJSON(b []byte, m *members) bool { return checkJSON(b, m, "", nil) == jsonOK }

// checkJSON is validJSON, saying what is wrong, for a b that may repeat
// much of like, a valid object whose members validJSON noted in lm: the
// record before an update and the record after it. A member of b, key and
// value, whose text is that of like's member in the same place is valid as
// it stands there, and is noted without being scanned again; m must not be
// nil for it.
//
// A duplicate key is found without allocating: each object has a bloom
// filter of its keys' hashes (512 bits for the outermost, where most keys
// are, one word for the others), and a key whose bit is set already is
// compared with the object's earlier keys, kept in a keyStack.
func checkJSON(b []byte, m *members, like string, lm *members) jsonFault {
	var keys keyStack
	keys.saved, keys.inBuf = len(keys.buf), len(keys.buf)
	fault := scanJSON(b, m, like, lm, &keys)
	keys.release()
	return fault
}

// keyStack is what checkJSON knows of the keys of the objects open around
// where it is. Its slots hold, from their start, tag<<32 | offset of each
// key of each open object, the outermost first; and from their end, for
// each open container within another, the bloom filter of the one around
// it and where that one's keys start. The slots are buf until it is full,
// then more, a larger buffer of keyPool, so that wide records do not
// allocate either; past maxKept, the answer is duplicateKey's. Its state
// lives in memory rather than in scanJSON's variables, which then keeps
// the scan's own in registers.
type keyStack struct {
	objects uint64   // a bit for each level of nesting, set for an object
	top     bloom512 // the outermost object's filter
	bloom   uint64   // the innermost object's, below the outermost
	base    int      // where the innermost object's keys start
	n       int      // how many keys there are
	saved   int      // where the saved filters start
	inBuf   int      // saved while the slots are buf, else 0: below it, a key goes into buf
	dup     bool     // a key is repeated
	unsure  bool     // keys were lost: duplicateKey decides
	more    []uint64 // the slots, once buf is full: *pooled
	pooled  *[]uint64
	buf     [128]uint64
}

// maxKept bounds the buffers a keyStack borrows: 512 KiB.
const maxKept = 1 << 16

var keyPool = sync.Pool{New: func() any { return new([]uint64) }}

// slots returns the slots in use.
func (s *keyStack) slots() []uint64 {
	if s.more != nil {
		return s.more
	}
	return s.buf[:]
}

// keep keeps the key of tag at offset.
func (s *keyStack) keep(tag uint32, offset int) {
	if s.n == s.saved && !s.grow() {
		s.unsure = true
		return
	}
	s.slots()[s.n] = uint64(tag)<<32 | uint64(offset)
	s.n++
}

// save keeps the innermost object's filter and base while a container
// inside it is open. The saved state takes precedence over keys: if the
// slots cannot grow, keys are lost, and the answer is duplicateKey's.
func (s *keyStack) save() {
	if s.saved-2 < s.n && !s.grow() {
		s.unsure, s.n = true, 0
	}
	s.saved -= 2
	slots := s.slots()
	slots[s.saved], slots[s.saved+1] = s.bloom, uint64(s.base)
	if s.more == nil {
		s.inBuf = s.saved
	}
}

// restore is the converse of save, when the container is closed.
func (s *keyStack) restore() {
	slots := s.slots()
	s.bloom, s.base = slots[s.saved], int(slots[s.saved+1])
	s.saved += 2
	if s.more == nil {
		s.inBuf = s.saved
	}
}

// grow moves the slots into a buffer eight times larger, keys at its start
// and saved filters at its end, unless that would pass maxKept.
func (s *keyStack) grow() bool {
	slots := s.slots()
	size := 8 * len(slots)
	if size > maxKept {
		return false
	}
	p := keyPool.Get().(*[]uint64)
	if cap(*p) < size {
		*p = make([]uint64, size)
	}
	larger := (*p)[:size]
	copy(larger, slots[:s.n])
	saves := copy(larger[size-(len(slots)-s.saved):], slots[s.saved:])
	s.release()
	s.more, s.pooled, s.saved, s.inBuf = larger, p, size-saves, 0
	return true
}

// release gives back the buffer the slots borrowed, if any.
func (s *keyStack) release() {
	if s.pooled != nil {
		keyPool.Put(s.pooled)
		s.more, s.pooled = nil, nil
	}
}

// repeated reports whether the key whose text starts at b[start], after
// its quote, and whose tag is tag is one of the innermost object's earlier
// keys. Once keys were lost, it leaves the answer to duplicateKey.
func (s *keyStack) repeated(b []byte, tag uint32, start int) bool {
	if s.unsure {
		return false
	}
	for _, k := range s.slots()[s.base:s.n] {
		if uint32(k>>32) == tag && sameKey(b, int(uint32(k)), start) {
			return true
		}
	}
	return false
}

// scanJSON is checkJSON, with its keyStack.
func scanJSON(b []byte, m *members, like string, lm *members, keys *keyStack) jsonFault {
	var depth uint
	object := false
	i, keyStart, escaped := 0, 0, false
	if m != nil {
		m.n, m.some, m.escaped, m.open, m.noted = 0, false, false, false, false
		if len(b) > math.MaxInt32 {
			m = nil // beyond the offsets: nothing noted
		}
	}
	if len(b) > math.MaxInt32 {
		keys.unsure = true // beyond the offsets kept: duplicateKey decides
	}
	if lm != nil && (!lm.noted || lm.escaped) {
		lm = nil // like's keys may be escaped, and b's would then be too
	}

	// Each step has its own code, jumped to, rather than one loop that
	// switches on a state: a branch that always sees the same context is
	// one the processor predicts.
value:
	i = validSpace(b, i)
	if i >= len(b) {
		return jsonSyntax
	}
	if m != nil && depth == 1 && object {
		m.value(i)
	}
	switch b[i] {
	case '"':
		if i = validPlain(b, i+1); i < len(b) && b[i] == '"' {
			i++
		} else if i = validString(b, i); i < 0 {
			return jsonSyntax
		}
	case '{':
		if depth == maxDepth {
			return jsonTooDeep
		}
		if m != nil && depth == 0 {
			m.noted = true // b is an object, if it is valid
		}
		i = validSpace(b, i+1)
		if i < len(b) && b[i] == '}' {
			i++
			break
		}
		if depth > 0 {
			keys.save()
		}
		keys.objects |= 1 << (depth & 63) // depth < maxDepth
		depth++
		object = true
		keys.bloom, keys.base = 0, keys.n
		goto key
	case '[':
		if depth == maxDepth {
			return jsonTooDeep
		}
		i = validSpace(b, i+1)
		if i < len(b) && b[i] == ']' {
			i++
			break
		}
		if depth > 0 {
			keys.save()
		}
		keys.objects &^= 1 << (depth & 63)
		depth++
		object = false
		goto value
	case 't':
		if len(b)-i < 4 || string(b[i:i+4]) != "true" {
			return jsonSyntax
		}
		i += 4
	case 'f':
		if len(b)-i < 5 || string(b[i+1:i+5]) != "alse" {
			return jsonSyntax
		}
		i += 5
	case 'n':
		if len(b)-i < 4 || string(b[i:i+4]) != "null" {
			return jsonSyntax
		}
		i += 4
	default:
		if i = validNumber(b, i); i < 0 {
			return jsonSyntax
		}
	}

	// A value ends at b[i].
next:
	if m != nil && depth == 1 && object {
		m.end(i)
	}
	i = validSpace(b, i)
	if depth == 0 {
		switch {
		case i != len(b):
			return jsonSyntax
		case keys.dup:
			return jsonDuplicate
		case keys.unsure:
			if _, _, ok := duplicateKey(b); ok {
				return jsonDuplicate
			}
		}
		return jsonOK
	}
	if i >= len(b) {
		return jsonSyntax
	}
	if !object {
		switch b[i] {
		case ',':
			i++
			goto value
		case ']':
			goto pop
		}
		return jsonSyntax
	}
	switch b[i] {
	case ',':
		i = validSpace(b, i+1)
	case '}':
		goto pop
	default:
		return jsonSyntax
	}

	// An object's key starts at b[i].
key:
	if i >= len(b) || b[i] != '"' {
		return jsonSyntax
	}
	if depth == 1 && lm != nil && m != nil && m.n < lm.n {
		// A member's validity does not depend on what is around it, once
		// it is a member of the outermost object: the members of b that
		// repeat like's, in the same places, are valid as they stand. The
		// last of those from this one on is found by comparing runs of
		// members, which costs less than scanning them.
		k, at := m.n, int(lm.span[m.n].key)-1
		shift := i - at
		repeats := func(last int) bool {
			// With the byte after the value, which like, an object, has:
			// b's number would otherwise go on where like's ends.
			end := int(lm.span[last].end) + 1
			return end+shift <= len(b) && string(b[i:end+shift]) == like[at:end]
		}
		if repeats(k) {
			lo, hi := k, lm.n-1
			if repeats(hi) {
				lo = hi // most often, every member left
			}
			for lo < hi {
				if mid := (lo + hi + 1) / 2; repeats(mid) {
					lo = mid
				} else {
					hi = mid - 1
				}
			}
			// Their keys differ from each other, as like's do, but one of
			// them may be one of b's that was scanned.
			for j, s := range lm.span[k : lo+1] {
				d, tag := int32(shift), lm.tags[k+j]
				s.key, s.keyEnd, s.val, s.end = s.key+d, s.keyEnd+d, s.val+d, s.end+d
				m.span[m.n], m.tags[m.n] = s, tag
				m.n++
				if keys.top.has(tag) && !keys.dup {
					keys.dup = keys.repeated(b, tag, int(s.key))
				}
				keys.top.add(tag)
				if keys.n < keys.inBuf {
					keys.buf[keys.n] = uint64(tag)<<32 | uint64(s.key)
					keys.n++
				} else {
					keys.keep(tag, int(s.key))
				}
			}
			m.open = false
			i = int(lm.span[lo].end) + shift
			goto next
		}
	}
	keyStart, escaped = i+1, false
	{
		var tag uint32
		if i = validPlain(b, i+1); i < len(b) && b[i] == '"' {
			i++
			// keyTag, written out for the keys most are: up to 16 bytes,
			// without escapes, ASCII, and with 16 bytes to read from b.
			if n := uint(i - 1 - keyStart); n <= 16 && keyStart+16 <= len(b) {
				mask := &keyMasks[n]
				w0 := binary.LittleEndian.Uint64(b[keyStart:keyStart+8:keyStart+8]) & mask[0]
				w1 := binary.LittleEndian.Uint64(b[keyStart+8:keyStart+16:keyStart+16]) & mask[1]
				tag = uint32(((uint64(n)^w0)*keyMul ^ w1) * keyMul >> 32)
				if (w0|w1)&0x8080808080808080 != 0 {
					tag = keyTag(b, keyStart, i-1, false)
				}
			} else {
				tag = keyTag(b, keyStart, i-1, false)
			}
		} else if i = validString(b, i); i < 0 {
			return jsonSyntax
		} else {
			escaped = true // perhaps: only a decoder can tell
			tag = keyTag(b, keyStart, i-1, true)
		}
		if m != nil && depth == 1 {
			m.add(keyStart, i-1, escaped, tag)
		}
		var seen bool
		if depth == 1 {
			seen = keys.top.has(tag)
			keys.top.add(tag)
		} else {
			bit := uint64(1) << (tag >> 26)
			seen = keys.bloom&bit != 0
			keys.bloom |= bit
		}
		if seen && !keys.dup {
			keys.dup = keys.repeated(b, tag, keyStart)
		}
		if keys.n < keys.inBuf {
			keys.buf[keys.n] = uint64(tag)<<32 | uint64(keyStart)
			keys.n++
		} else {
			keys.keep(tag, keyStart)
		}
	}
	if i >= len(b) || b[i] != ':' { // most often it is, with no space
		i = validSpace(b, i)
		if i >= len(b) || b[i] != ':' {
			return jsonSyntax
		}
	}
	i++
	goto value

	// A container ends at b[i].
pop:
	i++
	if object {
		keys.n = min(keys.n, keys.base) // below it after save lost keys
	}
	depth--
	object = depth > 0 && keys.objects&(1<<((depth-1)&63)) != 0
	if depth > 0 {
		keys.restore()
	}
	goto next
}

// bloom512 is the bloom filter of the keys of a record's outermost object,
// by their tags.
type bloom512 [8]uint64

func (f *bloom512) has(tag uint32) bool { return f[tag>>29]&(1<<(tag>>23&63)) != 0 }
func (f *bloom512) add(tag uint32)      { f[tag>>29] |= 1 << (tag >> 23 & 63) }

// validSpace returns the index of the first byte of b from i on that is not
// white space.
func validSpace[T ~string | ~[]byte](b T, i int) int {
	for i < len(b) && jsonClass[b[i]]&jsonSpace != 0 {
		i++
	}
	return i
}

// validPlain returns the index of the first byte of b from i on that a
// string cannot hold as it is ('"', '\\' or a control byte), or of one of
// the last 7 bytes before which there is none. It is small enough to be
// inlined, so that each string it scans in validJSON has its own branches,
// whose outcomes the processor learns apart.
func validPlain(b []byte, i int) int {
	// Eight bytes at a time. A byte's high bit in m flags a byte below 0x21
	// once xored with 0x02 (the bytes below 0x20, and '"') or zero once
	// xored with '\\', unless the byte has its own high bit set. The
	// lowest flag marks the first such byte; higher ones may be false, from
	// borrows. The steps from a string's start to its end are what the
	// whole scan waits on, hence so few.
	const ones, lows = 0x0101010101010101, 0x7f7f7f7f7f7f7f7f
	for ; len(b)-i >= 8; i += 8 {
		x := binary.LittleEndian.Uint64(b[i : i+8 : i+8])
		quoteOrControl := (x ^ ones*0x02) - ones*0x21
		backslash := (x ^ ones*'\\') - ones
		if m := (quoteOrControl | backslash) &^ (x | lows); m != 0 {
			return i + bits.TrailingZeros64(m)/8
		}
	}
	return i
}

// validString returns the index after the string whose body goes on at
// b[i], or -1 if the string is not valid.
func validString(b []byte, i int) int {
	for {
		i = validPlain(b, i)
		for i < len(b) && jsonClass[b[i]]&jsonPlain != 0 {
			i++
		}
		if i >= len(b) {
			return -1
		}
		if b[i] == '"' {
			return i + 1
		}
		if i = validEscape(b, i); i < 0 {
			return -1
		}
	}
}

// validEscape returns the index after the escape sequence at b[i], or -1
// if there is none.
func validEscape(b []byte, i int) int {
	if len(b)-i < 2 || b[i] != '\\' {
		return -1
	}
	switch b[i+1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		return i + 2
	case 'u':
		if len(b)-i < 6 || jsonClass[b[i+2]]&jsonClass[b[i+3]]&jsonClass[b[i+4]]&jsonClass[b[i+5]]&jsonHex == 0 {
			return -1
		}
		return i + 6
	}
	return -1
}

// validNumber returns the index after the number that starts at b[i], or
// -1 if there is none.
func validNumber(b []byte, i int) int {
	if b[i] == '-' {
		i++
		if i >= len(b) {
			return -1
		}
	}
	switch {
	case b[i] == '0':
		i++
	case jsonClass[b[i]]&jsonDigit != 0:
		i++
		for i < len(b) && jsonClass[b[i]]&jsonDigit != 0 {
			i++
		}
	default:
		return -1
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || jsonClass[b[i]]&jsonDigit == 0 {
			return -1
		}
		for i < len(b) && jsonClass[b[i]]&jsonDigit != 0 {
			i++
		}
	}
	if i < len(b) && b[i]|0x20 == 'e' {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || jsonClass[b[i]]&jsonDigit == 0 {
			return -1
		}
		for i < len(b) && jsonClass[b[i]]&jsonDigit != 0 {
			i++
		}
	}
	return i
}

// members are where the first members of a JSON object are, as validJSON
// found them: a record's fields are read by name, and finding one by its
// key's length and bytes is much cheaper than scanning the record again.
type members struct {
	n    int
	span [64]memberSpan
	tags [64]uint32 // of the keys, as keyTag gives them
	// some says that not every member is in span: there were more, or the
	// record is too large for the offsets.
	some bool
	// escaped says that a key holds an escape, which only a decoder can
	// compare: get then always scans.
	escaped bool
	open    bool // the member added last waits for its value's end
	noted   bool // m holds the members of a valid object
}

// A memberSpan is where a member is in its object: the key between its
// quotes, b[key:keyEnd], and the value, b[val:end].
type memberSpan struct{ key, keyEnd, val, end int32 }

// spans returns the spans of every member, or nil when m does not hold
// them all.
func (m *members) spans() []memberSpan {
	if !m.noted || m.some {
		return nil
	}
	return m.span[:m.n:m.n]
}

// add notes the key b[start:end] of a member whose value comes next, and
// its tag; escaped says the key may hold an escape.
func (m *members) add(start, end int, escaped bool, tag uint32) {
	if m.n == len(m.span) {
		m.some = true
		return
	}
	m.escaped = m.escaped || escaped
	m.span[m.n].key, m.span[m.n].keyEnd = int32(start), int32(end)
	m.tags[m.n] = tag
	m.n++
	m.open = true
}

// value notes that the value of the member added last starts at b[i].
func (m *members) value(i int) {
	if m.open {
		m.span[m.n-1].val = int32(i)
	}
}

// end notes that the value of the member added last ends at b[i].
func (m *members) end(i int) {
	if m.open {
		m.span[m.n-1].end = int32(i)
		m.open = false
	}
}

// get returns the text of b's member named key, the one gjson's Get(key)
// finds, or "" when there is none. It returns false when only a scan can
// tell: for a key with characters that gjson's paths give a meaning, an
// escaped key, or a member not noted. b must be the object validJSON noted
// m for. valueOf reads the text as gjson would, but for Num: the package
// compares numbers by their text (see parseNumber), and parsing a float
// for each field read was a tenth of Match.
func (m *members) get(b string, key string) (string, bool) {
	if !m.noted || m.escaped || !plainKey(key) {
		return "", false
	}
	for _, s := range m.span[:m.n] {
		if int(s.keyEnd-s.key) == len(key) && b[s.key:s.keyEnd] == key {
			return b[s.val:s.end], true
		}
	}
	return "", !m.some
}

// valueOf is gjson.Parse of raw, one valid JSON value or "" for none, but
// for Num.
func valueOf(raw string) gjson.Result {
	if raw == "" {
		return gjson.Result{}
	}
	switch raw[0] {
	case '"':
		if strings.IndexByte(raw, '\\') >= 0 {
			return gjson.Parse(raw) // gjson unescapes
		}
		return gjson.Result{Type: gjson.String, Raw: raw, Str: raw[1 : len(raw)-1]}
	case '{', '[':
		return gjson.Result{Type: gjson.JSON, Raw: raw}
	case 't':
		return gjson.Result{Type: gjson.True, Raw: raw}
	case 'f':
		return gjson.Result{Type: gjson.False, Raw: raw}
	case 'n':
		return gjson.Result{Type: gjson.Null, Raw: raw}
	}
	return gjson.Result{Type: gjson.Number, Raw: raw}
}

// plainKey says whether gjson reads k as a key and nothing more: letters,
// digits, '_' and '-', which is how every field of a record is named.
func plainKey(k string) bool {
	for i := 0; i < len(k); i++ {
		if c := k[i]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return k != ""
}

// cursor reads the members of a valid JSON object, or the elements of a
// valid array, one at a time and in place. Filters, on-field-change and
// load-only read with it rather than with gjson's Get and ForEach, which
// parse every number they pass into a float that the package never reads.
type cursor struct {
	s     string
	i     int          // where the next member is, or its index in spans
	spans []memberSpan // the members of s, when validJSON noted them all
}

func newCursor(raw string) cursor { return cursor{s: raw, i: 1} }

// membersCursor is a cursor over rec, a valid JSON object, that reads its
// members from spans, those of all its members (see members.spans), or
// from rec when spans is nil.
func membersCursor(rec string, spans []memberSpan) cursor {
	if spans == nil {
		return newCursor(rec)
	}
	return cursor{s: rec, spans: spans}
}

// next returns the next member's key, as written (quoted; "" for an
// element of an array), and its value.
func (c *cursor) next() (key, val string, ok bool) {
	if c.spans != nil {
		if c.i == len(c.spans) {
			return "", "", false
		}
		sp := &c.spans[c.i]
		c.i++
		return c.s[sp.key-1 : sp.keyEnd+1], c.s[sp.val:sp.end], true
	}
	s := c.s
	i := validSpace(s, c.i)
	if i < len(s) && s[i] == ',' {
		i = validSpace(s, i+1)
	}
	if i >= len(s) || s[i] == '}' || s[i] == ']' {
		c.i = len(s)
		return "", "", false
	}
	if s[0] == '{' {
		j := skipString(s, i+1)
		key = s[i:j]
		if i = validSpace(s, j) + 1; i > len(s) { // past the ':'
			c.i = len(s)
			return "", "", false
		}
		i = validSpace(s, i)
	}
	c.i = skipValue(s, i)
	return key, s[i:c.i], c.i > i
}

// member returns the value of the first member of obj, a valid JSON
// object, whose key is key, a plainKey: what gjson's Get(key) finds.
func member(obj, key string) (string, bool) {
	c := newCursor(obj)
	for k, v, ok := c.next(); ok; k, v, ok = c.next() {
		if keyIs(k, key) {
			return v, true
		}
	}
	return "", false
}

// keyIs says whether the quoted key k, as written, is name once unescaped.
func keyIs(k, name string) bool {
	switch {
	case len(k) == len(name)+2 && k[1:len(k)-1] == name:
		return true
	case len(k) <= len(name)+2:
		return false // an escape is shorter once unescaped
	}
	return strings.IndexByte(k, '\\') >= 0 && gjson.Parse(k).Str == name
}

// unquote returns the quoted key k unescaped.
func unquote(k string) string {
	if len(k) >= 2 && strings.IndexByte(k, '\\') < 0 {
		return k[1 : len(k)-1]
	}
	return gjson.Parse(k).Str
}

// skipString returns the index after the valid string whose body starts
// at s[i].
func skipString(s string, i int) int {
	// Most strings of a record are short, and cost less than starting
	// strings.IndexByte: their first 16 bytes are read eight at a time,
	// as validJSON reads them.
	b := unsafe.Slice(unsafe.StringData(s), len(s)) // read, never written
	end := min(len(b), i+16)
	j := validPlain(b[:end], i)
	for j < end && b[j] != '"' && b[j] != '\\' {
		j++
	}
	if j < end && b[j] == '"' {
		return j + 1
	}
	start := i
	for {
		j := strings.IndexByte(s[i:], '"')
		if j < 0 {
			return len(s)
		}
		i += j + 1
		// The quote is escaped when an odd number of backslashes precede it.
		n := 0
		for k := i - 2; k >= start && s[k] == '\\'; k-- {
			n++
		}
		if n%2 == 0 {
			return i
		}
	}
}

// skipValue returns the index after the valid JSON value that starts at s[i].
func skipValue(s string, i int) int {
	if i >= len(s) {
		return i
	}
	switch s[i] {
	case '"':
		return skipString(s, i+1)
	case '{', '[':
		for depth := 0; i < len(s); i++ {
			switch s[i] {
			case '"':
				i = skipString(s, i+1) - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
		}
		return i
	}
	for i < len(s) && jsonClass[s[i]]&jsonSpace == 0 && s[i] != ',' && s[i] != '}' && s[i] != ']' {
		i++
	}
	return i
}
