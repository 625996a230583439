package webhook

import (
	"bytes"
	"encoding/json"
	"sort"
	"strconv"
	"strings"
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
	d := decoder{errs: &problems{}, copy: true}
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
	d := decoder{errs: &problems{}, copy: true}
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

// raw returns a filter value: a client's compacted, the stored one in
// place or, for a caller that may write to it, copied.
func (d *decoder) raw(s string) json.RawMessage {
	switch {
	case d.errs != nil:
		var buf bytes.Buffer
		if json.Compact(&buf, []byte(s)) == nil {
			return buf.Bytes()
		}
		return []byte(s)
	case d.copy:
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

// Compiling: checking every option against the format and the limits, and
// building the rules that Match and the Dispatcher apply.

// compiler compiles the options of one registration, collecting every
// problem.
type compiler struct {
	lim  *Limits // nil for a trusted registration, whose limits are not checked
	errs *problems
	reg  *registration
	// rules and entity are the entity being compiled and its field.
	rules  *entityRules
	entity string
	// raw holds the JSON of each entity's options, when the options are
	// read from the JSON a Registry stores: entities whose JSON is the
	// same share their compiled rules.
	raw map[string]string
}

// compileObject checks each option of x within its limit and compiles it.
// An option over its limit is one error, and is not looked into further.
func compileObject[T any](c *compiler, field string, format []option[T], x *T) {
	for i := range format {
		opt := &format[i]
		f := field + "." + opt.name
		if c.lim != nil && opt.limit != nil {
			if fe := tooMany(f, opt.size(x), opt.unit, opt.limit(c.lim)); fe != nil {
				c.errs.add(fe)
				continue
			}
		}
		opt.compile(c, f, x)
	}
}

// options compiles o into c.reg.
func (c *compiler) options(o *Options) {
	compileObject(c, "options", optionsFormat[:], o)
}

func (c *compiler) chunkSize(field string, o *Options) {
	switch n := o.ChunkSize; {
	case n < 0 || n > maxChunkSize:
		c.errs.add(invalid(field, "%d is not between 1 and %d (0 means %[2]d)", n, maxChunkSize))
	case n == 0:
		c.reg.chunkSize = maxChunkSize
	default:
		c.reg.chunkSize = n
	}
}

const maxChunkSize = 100

func (c *compiler) chunkDelay(field string, o *Options) {
	if o.ChunkDelay < 0 {
		c.errs.add(invalid(field, "%d is negative", o.ChunkDelay))
	}
	c.reg.chunkDelay = chunkDelay(o.ChunkDelay)
}

// names checks a list of names and returns it.
func (c *compiler) names(field string, list []string) []string {
	for i, s := range list {
		switch {
		case s == "":
			c.errs.add(invalid(indexed(field, i), "empty"))
		case !utf8.ValidString(s):
			c.errs.add(notUTF8(indexed(field, i), s))
		case c.lim != nil && len(s) > c.lim.NameBytes:
			c.errs.add(tooLong(indexed(field, i), "", len(s), c.lim.NameBytes))
		}
	}
	return list
}

// entities compiles options.entity into c.reg.rules, sorted by entity name.
func (c *compiler) entities(field string, o *Options) {
	names := sortedKeys(o.Entity)
	if len(names) == 0 {
		return
	}
	rules := make([]entityRules, len(names))
	// Entities with the same options share their compiled rules, which
	// never change: a registration often filters all its entities alike.
	var same map[string]int
	if c.raw != nil && len(names) > 1 {
		same = make(map[string]int, len(names))
	}
	for i, name := range names {
		switch {
		case !utf8.ValidString(name):
			c.errs.add(notUTF8(field, name))
		case c.lim != nil && len(name) > c.lim.NameBytes:
			c.errs.add(tooLong(field, strconv.Quote(clip(name))+" has", len(name), c.lim.NameBytes))
		}
		raw, known := c.raw[name]
		if j, ok := same[raw]; ok && known {
			rules[i] = rules[j]
		} else {
			rules[i] = *c.entityRules(field+"."+name, o.Entity[name])
			if same != nil && known {
				same[raw] = i
			}
		}
		rules[i].entity = name
	}
	c.reg.rules = rules
	for i := range rules {
		if r := &rules[i]; len(r.proj.expand) > 0 || r.proj.only != nil {
			if c.reg.entities == nil {
				c.reg.entities = map[string]*entityRules{}
			}
			c.reg.entities[r.entity] = r
		}
	}
}

// relatedEntity compiles options.related_entity, which shapes the
// secondary record only: filters and on-field-change apply to the event's
// own entity.
func (c *compiler) relatedEntity(field string, o *Options) {
	re := o.RelatedEntity
	if re == nil {
		return
	}
	if len(re.Filter) > 0 {
		c.errs.add(invalid(field+".filter", "not supported: filters apply to the event's own entity"))
	}
	if len(re.FilterOp) > 0 {
		c.errs.add(invalid(field+".filter-op", "not supported: filters apply to the event's own entity"))
	}
	if len(re.OnFieldChange) > 0 {
		c.errs.add(invalid(field+".on-field-change", "not supported: it applies to the event's own entity"))
	}
	c.reg.related = c.entityRules(field, EntityOptions{Expand: re.Expand, LoadOnly: re.LoadOnly}).proj
}

// entityRules compiles one entity's options.
func (c *compiler) entityRules(field string, o EntityOptions) *entityRules {
	outer, outerField := c.rules, c.entity
	rules := &entityRules{}
	c.rules, c.entity = rules, field
	compileObject(c, field, entityFormat[:], &o)
	c.rules, c.entity = outer, outerField
	rules.pack()
	return rules
}

// compileEntity compiles one entity's options without limits, for tests
// and benchmarks of the rules.
func compileEntity(field string, o EntityOptions) (*entityRules, error) {
	c := compiler{errs: &problems{}}
	rules := c.entityRules(field, o)
	return rules, c.errs.err()
}

// compileProjection compiles the expand and load-only of o, without
// limits.
func compileProjection(field string, o EntityOptions) (projection, error) {
	rules, err := compileEntity(field, EntityOptions{Expand: o.Expand, LoadOnly: o.LoadOnly})
	return rules.proj, err
}

// path checks one dot path and splits it; field names it, or field[i]
// when i is not negative.
func (c *compiler) path(field string, i int, s string) (path, bool) {
	if !c.checkPath(field, i, s) {
		return nil, false
	}
	return splitPath(s), true
}

// checkPath checks one dot path, as path does, without splitting it: UTF-8,
// no empty name, and within the limits. It builds the field's name only
// for an error.
func (c *compiler) checkPath(field string, i int, s string) bool {
	var fe *FieldError
	switch {
	case !utf8.ValidString(s):
		fe = notUTF8(field, s)
	case s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, ".."):
		fe = invalid(field, "%q is not a dot path: empty name", clip(s))
	case c.lim == nil:
	case len(s) > c.lim.PathBytes:
		fe = tooLong(field, "", len(s), c.lim.PathBytes)
	case strings.Count(s, ".")+1 > c.lim.PathDepth:
		fe = tooMany(field, strings.Count(s, ".")+1, "names deep", c.lim.PathDepth)
	}
	if fe == nil {
		return true
	}
	if i >= 0 {
		fe.Field = indexed(field, i)
	}
	c.errs.add(fe)
	return false
}

// paths checks a list of dot paths.
func (c *compiler) paths(field string, list []string) bool {
	ok := true
	for i, s := range list {
		ok = c.checkPath(field, i, s) && ok
	}
	return ok
}

func (c *compiler) expand(field string, e *EntityOptions) {
	c.paths(field, e.Expand)
	c.rules.proj.expand = e.Expand
}

func (c *compiler) loadOnly(field string, e *EntityOptions) {
	if len(e.LoadOnly) > 0 && c.paths(field, e.LoadOnly) {
		c.rules.proj.only = loadOnlyTree(e.LoadOnly)
	}
}

func (c *compiler) onFieldChange(field string, e *EntityOptions) {
	list := e.OnFieldChange
	if len(list) == 0 {
		return
	}
	refs := make([]fieldRef, 0, len(list))
	seen := newStringSet(len(list))
	for i, s := range list {
		p, ok := c.path(field, i, s)
		// A path given twice is compared once: an event's cost is bounded
		// by the paths that differ.
		if ok && seen.add(s) {
			refs = append(refs, fieldRef{path: p, key: s})
		}
	}
	c.rules.onChange = refs
}

func (c *compiler) filterOps(field string, e *EntityOptions) {
	for _, p := range sortedKeys(e.FilterOp) {
		if _, ok := e.Filter[p]; !ok {
			c.errs.add(invalid(field+"."+p, "no filter for %q", clip(p)))
		}
	}
}

func (c *compiler) filter(field string, e *EntityOptions) {
	if len(e.Filter) == 0 {
		return
	}
	paths := sortedKeys(e.Filter)
	conds := make([]condition, 0, len(paths))
	for _, p := range paths {
		if cond, ok := c.condition(field+"."+p, p, e.Filter[p], e.FilterOp[p]); ok {
			conds = append(conds, cond)
		}
	}
	// The first condition that the index can file the registration under
	// goes first, where the index looks for it.
	for i := range conds {
		if conds[i].indexable {
			cond := conds[i]
			copy(conds[1:i+1], conds[:i])
			conds[0] = cond
			break
		}
	}
	c.rules.filter = conds
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
