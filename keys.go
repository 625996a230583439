package webhook

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// Keys of a record's objects are compared as encoding/json reads them:
// unescaped, with bytes that are not UTF-8, and \u escapes of lone
// surrogates, read as U+FFFD. "a" and "\u0061" are the same key, and so
// are "\xff" and "\xfe". A record in which an object has a key twice is
// refused (see Dispatcher.Dispatch): readers disagree on which of the two
// counts (gjson, and so the filters, read the first; encoding/json and
// most receivers the last), and refusing is the one rule that filters,
// on-field-change, load-only and every receiver agree with.

// keyMul is the multiplier of keyHash: odd, with its bits well spread.
const keyMul = 0x9e3779b97f4a7c15

// keyHash hashes b[start:end] eight bytes at a time, two or more of
// them, the last padded with zeros; ascii says that none of the bytes is
// above 0x7f. Its top bits are the ones mixed best. checkJSON computes it
// in place for keys of up to 16 bytes: the two must agree.
func keyHash(b []byte, start, end int) (h uint64, ascii bool) {
	h = uint64(end - start)
	var all uint64 // every byte or'ed in, for ascii
	for i := start; i < end || i < start+16; i += 8 {
		var w uint64
		switch {
		case i >= end:
		case end-i >= 8 || len(b)-i >= 8:
			w = binary.LittleEndian.Uint64(b[i:i+8:i+8]) & keyMasks[min(end-i, 8)][0]
		default: // within eight bytes of b's end
			for j, c := range b[i:end] {
				w |= uint64(c) << (8 * j)
			}
		}
		h, all = (h^w)*keyMul, all|w
	}
	return h, all&0x8080808080808080 == 0
}

// keyMasks[n] keeps the first n bytes of two words read little-endian.
var keyMasks = func() (t [17][2]uint64) {
	for n := range t {
		for j := range n {
			t[n][j/8] |= 0xff << (8 * (j % 8))
		}
	}
	return t
}()

// keyTag is the hash of the key b[start:end] (between its quotes) as a
// decoder reads it, in 32 bits. escaped says the key may hold an escape.
func keyTag(b []byte, start, end int, escaped bool) uint32 {
	h, ascii := keyHash(b, start, end)
	if !escaped && (ascii || utf8.Valid(b[start:end])) {
		return uint32(h >> 32) // the key is as it is written
	}
	return decodedTag(b[start-1 : end+1])
}

// decodedTag is keyTag of a key that is not as it is written, once decoded:
// the rare case, which allocates.
func decodedTag(quoted []byte) uint32 {
	k := decodeKey(bytesView(quoted))
	h, _ := keyHash([]byte(k), 0, len(k))
	return uint32(h >> 32)
}

// decodeKey returns the quoted key k, valid JSON, as encoding/json decodes
// it.
func decodeKey(k string) string {
	if body := k[1 : len(k)-1]; strings.IndexByte(body, '\\') < 0 && utf8.ValidString(body) {
		return body
	}
	var s string
	json.Unmarshal([]byte(k), &s) // k is valid: no error
	return s
}

// sameKey reports whether the keys whose text starts at b[a] and b[c],
// after their quotes, are the same key once decoded.
func sameKey(b []byte, a, c int) bool {
	s := bytesView(b)
	x, y := s[a-1:skipString(s, a)], s[c-1:skipString(s, c)]
	if x == y {
		return true
	}
	if asWritten(x) && asWritten(y) {
		return false
	}
	return decodeKey(x) == decodeKey(y)
}

// asWritten says whether the quoted key k is read as it is written: no
// escape, and no byte above 0x7f, which may not be UTF-8.
func asWritten(k string) bool {
	for i := 0; i < len(k); i++ {
		if k[i] == '\\' || k[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// duplicateKey finds the first object in b, a valid JSON value nesting at
// most maxDepth levels, that has a key twice, and returns where it is (a
// path from b: "", ".owner", ".contacts[2]") and the key. It is the slow
// and exact check, which allocates: to name what checkJSON found, and for
// the records checkJSON cannot check itself (see keyStack).
func duplicateKey(b []byte) (at, key string, found bool) {
	s := bytesView(b)
	s = s[validSpace(s, 0):]
	var path []string
	key, found = duplicateIn(s[:skipValue(s, 0)], &path)
	slices.Reverse(path)
	return strings.Join(path, ""), key, found
}

// duplicateIn is duplicateKey of the valid value v. When it finds one, it
// appends the path to it to *path, innermost first.
func duplicateIn(v string, path *[]string) (string, bool) {
	if v[0] != '{' && v[0] != '[' {
		return "", false
	}
	var seen map[string]struct{}
	if v[0] == '{' {
		seen = map[string]struct{}{}
	}
	c := newCursor(v)
	for n := 0; ; n++ {
		k, val, ok := c.next()
		if !ok {
			return "", false
		}
		var name string
		if seen != nil {
			name = decodeKey(k)
			if _, ok := seen[name]; ok {
				return name, true
			}
			seen[name] = struct{}{}
		}
		if key, ok := duplicateIn(val, path); ok {
			*path = append(*path, pathStep(seen != nil, name, n))
			return key, true
		}
	}
}

// pathStep is the step of a path to the member name of an object, or to
// the element n of an array.
func pathStep(object bool, name string, n int) string {
	switch {
	case !object:
		return fmt.Sprintf("[%d]", n)
	case plainKey(name):
		return "." + name
	}
	return fmt.Sprintf("[%q]", name)
}

// recordError is the error of field, a record that checkJSON refused, for
// fault.
func recordError(field string, b []byte, fault jsonFault) *FieldError {
	switch fault {
	case jsonTooDeep:
		return invalid(field, "nests arrays and objects more than %d levels deep", maxDepth)
	case jsonDuplicate:
		at, key, _ := duplicateKey(b)
		return invalid(field+at, "has the key %q twice", shorten([]byte(key)))
	}
	return invalid(field, "not JSON")
}
