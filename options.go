package webhook

import (
	"bytes"
	"encoding/json"
	"sort"
	"strconv"
	"unicode/utf8"
	"unsafe"

	"github.com/tidwall/gjson"
)

// The options object, described once: optionsFormat and entityFormat list
// every key with its JSON name(s), its kind, its limit and how it is
// compiled. Decoding a client's JSON (Options.UnmarshalJSON), reading the
// JSON a Registry stored (viewOptions), checking limits and compiling all
// follow from them, so that they cannot disagree. encodeOptions is
// json.Marshal, whose names are the struct tags of Options and
// EntityOptions; TestOptionsFormatNamesAreTheStructTags holds the two
// together.

// optionKind is the JSON shape of an option, which says how it is decoded
// and how its limit counts.
type optionKind uint8

const (
	entitiesKind  optionKind = iota + 1 // an object of entity options by entity name
	entityKind                          // one entity's options, or null
	namesKind                           // a list of names
	pathsKind                           // a list of dot paths
	numberKind                          // a whole number
	filterKind                          // an object of a value, or a list of values, by dot path
	operatorsKind                       // an object of an operator name by dot path
)

// option is one key of an options object whose Go form is T.
type option[T any] struct {
	name  string // as JSON writes it
	alias string // another spelling that decoding accepts
	kind  optionKind
	unit  string            // what it counts, in its limit's error: "paths"
	limit func(*Limits) int // its most entries (for a number, its largest value); nil for none
	// Where the option is in T: the accessor of its kind.
	list     func(*T) *[]string // namesKind, pathsKind
	number   func(*T) *int
	filter   func(*T) *map[string]json.RawMessage
	ops      func(*T) *map[string]string
	entities func(*T) *map[string]EntityOptions
	entity   func(*T) **EntityOptions
	// compile checks the option's value in T, within its limit, and builds
	// it into what c is compiling; field names the option.
	compile func(c *compiler, field string, x *T)
}

// optionsFormat describes the options object. It is read only.
var optionsFormat = [...]option[Options]{
	{name: "entity", kind: entitiesKind, unit: "entities",
		limit:    func(l *Limits) int { return l.Entities },
		entities: func(o *Options) *map[string]EntityOptions { return &o.Entity },
		compile:  (*compiler).entities},
	{name: "related_entity", kind: entityKind,
		entity:  func(o *Options) **EntityOptions { return &o.RelatedEntity },
		compile: (*compiler).relatedEntity},
	{name: "skip_keys", kind: namesKind, unit: "keys",
		limit:   func(l *Limits) int { return l.SkipKeys },
		list:    func(o *Options) *[]string { return &o.SkipKeys },
		compile: func(c *compiler, f string, o *Options) { c.reg.skipKeys = c.names(f, o.SkipKeys) }},
	{name: "chunk_size", kind: numberKind,
		number:  func(o *Options) *int { return &o.ChunkSize },
		compile: (*compiler).chunkSize},
	{name: "chunk_delay", kind: numberKind, unit: "seconds",
		limit:   func(l *Limits) int { return l.ChunkDelay },
		number:  func(o *Options) *int { return &o.ChunkDelay },
		compile: (*compiler).chunkDelay},
	{name: "custom_entity_api_name", kind: namesKind, unit: "names",
		limit:   func(l *Limits) int { return l.CustomEntities },
		list:    func(o *Options) *[]string { return &o.CustomEntityAPIName },
		compile: func(c *compiler, f string, o *Options) { c.reg.custom = c.names(f, o.CustomEntityAPIName) }},
}

// entityFormat describes the options of one entity. It is read only.
var entityFormat = [...]option[EntityOptions]{
	{name: "expand", kind: pathsKind, unit: "paths",
		limit:   func(l *Limits) int { return l.Expand },
		list:    func(e *EntityOptions) *[]string { return &e.Expand },
		compile: (*compiler).expand},
	{name: "load-only", alias: "load_only", kind: pathsKind, unit: "paths",
		limit:   func(l *Limits) int { return l.LoadOnly },
		list:    func(e *EntityOptions) *[]string { return &e.LoadOnly },
		compile: (*compiler).loadOnly},
	{name: "filter", kind: filterKind, unit: "fields",
		limit:   func(l *Limits) int { return l.FilterFields },
		filter:  func(e *EntityOptions) *map[string]json.RawMessage { return &e.Filter },
		compile: (*compiler).filter},
	{name: "filter-op", kind: operatorsKind, unit: "fields",
		limit:   func(l *Limits) int { return l.FilterFields },
		ops:     func(e *EntityOptions) *map[string]string { return &e.FilterOp },
		compile: (*compiler).filterOps},
	{name: "on-field-change", kind: pathsKind, unit: "paths",
		limit:   func(l *Limits) int { return l.OnFieldChange },
		list:    func(e *EntityOptions) *[]string { return &e.OnFieldChange },
		compile: (*compiler).onFieldChange},
}

// size is what the option's limit counts in x: its entries, or for a
// number its value.
func (opt *option[T]) size(x *T) int {
	switch opt.kind {
	case namesKind, pathsKind:
		return len(*opt.list(x))
	case numberKind:
		return *opt.number(x)
	case filterKind:
		return len(*opt.filter(x))
	case operatorsKind:
		return len(*opt.ops(x))
	case entitiesKind:
		return len(*opt.entities(x))
	}
	return 0
}

// Decoding and reading: one walk for a client's JSON and for the JSON a
// Registry stored.

// UnmarshalJSON reads the documented options object. Keys it does not know
// are refused rather than ignored: a misspelt "filter" that were ignored
// would send every record to the receiver. It returns FieldErrors with
// every value of the wrong type, which it leaves zero, and decodes the
// rest.
func (o *Options) UnmarshalJSON(b []byte) error {
	d := decoder{errs: &problems{}}
	*o = Options{}
	if v, ok := d.parse("options", b); ok {
		*o = d.options("options", v)
	}
	return d.errs.err()
}

// UnmarshalJSON reads one entity's options, with "load-only" or
// "load_only", as Options.UnmarshalJSON does.
func (e *EntityOptions) UnmarshalJSON(b []byte) error {
	const field = "entity options"
	d := decoder{errs: &problems{}}
	*e = EntityOptions{}
	if v, ok := d.parse(field, b); ok {
		d.entityOptions(field, v, e)
	}
	return d.errs.err()
}

// parse checks that b is JSON and parses a copy of it, which what is
// decoded points into.
func (d *decoder) parse(field string, b []byte) (gjson.Result, bool) {
	if !json.Valid(b) {
		d.fail(field, "not JSON: %s", shorten(b))
		return gjson.Result{}, false
	}
	return gjson.Parse(string(b)), true
}

// viewOptions reads options that encodeOptions wrote, without copying:
// its strings and filter values point into s, so that rules compiled from
// it keep nothing but s. The filter values must only be read.
func viewOptions(s string) Options {
	var d decoder
	return d.options("", gjson.Parse(s))
}

// options reads an options object; null is the zero Options.
func (d *decoder) options(field string, v gjson.Result) Options {
	o, _ := d.optionsObject(field, v)
	return o
}

// optionsObject reads an options object, and reports whether v is one.
func (d *decoder) optionsObject(field string, v gjson.Result) (Options, bool) {
	var o Options
	ok := readObject(d, field, v, optionsFormat[:], &o)
	return o, ok
}

// entityOptions reads one entity's options into e; it reports whether v is
// an object or null.
func (d *decoder) entityOptions(field string, v gjson.Result, e *EntityOptions) bool {
	return readObject(d, field, v, entityFormat[:], e) || v.Type == gjson.Null
}

// readObject reads the options object v into x as format describes it,
// and reports whether v is an object.
func readObject[T any](d *decoder, field string, v gjson.Result, format []option[T], x *T) bool {
	var given [8]string // the spelling each option came in, for name and alias both
	return d.object(field, v, func(key string, v gjson.Result) {
		i := 0
		for i < len(format) && format[i].name != key && (format[i].alias == "" || format[i].alias != key) {
			i++
		}
		f := d.sub(field, key)
		switch {
		case i == len(format):
			d.fail(f, "unknown option")
			return
		case given[i] != "" && given[i] != key:
			d.fail(field, "both %s and %s; give one", format[i].name, format[i].alias)
		}
		given[i] = key
		format[i].read(d, f, v, x)
	})
}

// read decodes the option's value v into x; null, or a value of the
// wrong type, leaves the option zero: of a key given twice, the last
// counts, as in encoding/json.
func (opt *option[T]) read(d *decoder, field string, v gjson.Result, x *T) {
	switch opt.kind {
	case namesKind, pathsKind:
		*opt.list(x), _ = d.strings(field, v)
	case numberKind:
		*opt.number(x), _ = d.number(field, v)
	case filterKind:
		*opt.filter(x) = d.filter(field, v)
	case operatorsKind:
		*opt.ops(x) = d.operators(field, v)
	case entitiesKind:
		*opt.entities(x) = d.entities(field, v)
	case entityKind:
		var e EntityOptions
		*opt.entity(x) = nil
		if v.Type != gjson.Null && d.entityOptions(field, v, &e) {
			*opt.entity(x) = &e
		}
	}
}

// sub is the field of key in field, for errors: stored JSON has none, and
// is read without building names.
func (d *decoder) sub(field, key string) string {
	if d.errs == nil {
		return ""
	}
	return field + "." + key
}

func (d *decoder) entities(field string, v gjson.Result) map[string]EntityOptions {
	var m map[string]EntityOptions
	d.object(field, v, func(name string, v gjson.Result) {
		var e EntityOptions
		if d.entityOptions(d.sub(field, name), v, &e) {
			if m == nil {
				m = map[string]EntityOptions{}
			}
			m[name] = e
		}
	})
	return m
}

// filter reads a filter: each value is kept as JSON, checked when
// compiled.
func (d *decoder) filter(field string, v gjson.Result) map[string]json.RawMessage {
	var m map[string]json.RawMessage
	d.object(field, v, func(path string, x gjson.Result) {
		if m == nil {
			m = map[string]json.RawMessage{}
		}
		m[path] = d.raw(x.Raw)
	})
	return m
}

// raw returns a filter value: a client's compacted, which copies it, the
// stored one in place.
func (d *decoder) raw(s string) json.RawMessage {
	if d.errs != nil {
		var buf bytes.Buffer
		if json.Compact(&buf, []byte(s)) == nil {
			return buf.Bytes()
		}
		return []byte(s)
	}
	return unsafe.Slice(unsafe.StringData(s), len(s))
}

// operators reads a filter-op: null is "", the default operator.
func (d *decoder) operators(field string, v gjson.Result) map[string]string {
	var m map[string]string
	d.object(field, v, func(path string, x gjson.Result) {
		if x.Type != gjson.String && x.Type != gjson.Null {
			d.fail(d.sub(field, path), "want an operator name, got %s", shorten([]byte(x.Raw)))
			return
		}
		if m == nil {
			m = map[string]string{}
		}
		m[path] = x.Str
	})
	return m
}

// encodeOptions returns o as a Registry keeps it: as json.Marshal writes
// it, so that its filter values are what a round trip through JSON gives
// back (compact, <, >, & and U+2028 escaped), and a stored registration
// marshals and unmarshals to itself.
func encodeOptions(o Options) (string, error) {
	b, err := json.Marshal(o)
	return string(b), err
}

// lossless reports whether encodeOptions keeps o as it is: every string is
// UTF-8, which JSON cannot hold otherwise, and every filter value is JSON.
func lossless(o *Options) bool {
	return losslessObject(optionsFormat[:], o)
}

func losslessObject[T any](format []option[T], x *T) bool {
	for i := range format {
		opt := &format[i]
		switch opt.kind {
		case namesKind, pathsKind:
			for _, s := range *opt.list(x) {
				if !utf8.ValidString(s) {
					return false
				}
			}
		case filterKind:
			for path, raw := range *opt.filter(x) {
				if !utf8.ValidString(path) || !json.Valid(raw) {
					return false
				}
			}
		case operatorsKind:
			for path, name := range *opt.ops(x) {
				if !utf8.ValidString(path) || !utf8.ValidString(name) {
					return false
				}
			}
		case entitiesKind:
			for name, e := range *opt.entities(x) {
				if !utf8.ValidString(name) || !losslessObject(entityFormat[:], &e) {
					return false
				}
			}
		case entityKind:
			if e := *opt.entity(x); e != nil && !losslessObject(entityFormat[:], e) {
				return false
			}
		}
	}
	return true
}

// clip shortens s for a message.
func clip(s string) string {
	if len(s) > 40 {
		s = s[:37] + "..."
	}
	return s
}

// indexed returns field[i].
func indexed(field string, i int) string {
	return field + "[" + strconv.Itoa(i) + "]"
}

// stringSet is a set of strings that scans while it is small.
type stringSet struct {
	few  []string
	many map[string]struct{}
}

func newStringSet(n int) stringSet {
	if n > 8 {
		return stringSet{many: make(map[string]struct{}, n)}
	}
	return stringSet{}
}

// add adds s and reports whether it was new.
func (s *stringSet) add(v string) bool {
	if s.many != nil {
		if _, ok := s.many[v]; ok {
			return false
		}
		s.many[v] = struct{}{}
		return true
	}
	for _, w := range s.few {
		if w == v {
			return false
		}
	}
	s.few = append(s.few, v)
	return true
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func isNull(b []byte) bool { return string(bytes.TrimSpace(b)) == "null" }

// shorten keeps error messages readable when a client sends a large value.
func shorten(b []byte) string {
	b = bytes.TrimSpace(b)
	if len(b) > 40 {
		return string(b[:37]) + "..."
	}
	return string(b)
}

// notUTF8 refuses a string of the options that is not UTF-8: a Registry
// keeps options as JSON, which cannot hold it.
func notUTF8(field, s string) *FieldError {
	return invalid(field, "%q is not UTF-8", clip(s))
}
