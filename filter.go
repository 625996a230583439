package webhook

import (
	"encoding/json"
	"math"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
	"unsafe"

	"github.com/tidwall/gjson"
)

// entityRules are the compiled options of one entity.
type entityRules struct {
	entity   string      // its name, or the API name of a custom entity
	filter   []condition // all must hold
	onChange []fieldRef  // on Update, one must have changed
	proj     projection
}

// op is a filter operator of Pipeliner's REST API.
type op uint8

const (
	opEq op = iota
	opIEq
	opNotEq
	opNotIEq
	opContains
	opStarts
	opEnds
	opIContains
	opIStarts
	opIEnds
	opNull
	opNotNull
	opEmpty
	opNotEmpty
	opGt
	opGte
	opLt
	opLte
	opBetween
)

var opNames = [...]string{
	opEq: "eq", opIEq: "ieq", opNotEq: "not-eq", opNotIEq: "not-ieq",
	opContains: "contains", opStarts: "starts", opEnds: "ends",
	opIContains: "icontains", opIStarts: "istarts", opIEnds: "iends",
	opNull: "null", opNotNull: "not-null", opEmpty: "empty", opNotEmpty: "not-empty",
	opGt: "gt", opGte: "gte", opLt: "lt", opLte: "lte", opBetween: "between",
}

func parseOp(s string) (op, bool) {
	for i, name := range opNames {
		if name == s {
			return op(i), true
		}
	}
	return 0, false
}

// path is a dot path split into gjson-escaped keys.
type path []string

// splitPath splits a dot path that checkPath accepted.
func splitPath(s string) path {
	keys := strings.Split(s, ".")
	for i, k := range keys {
		keys[i] = gjson.Escape(k)
	}
	return keys
}

// fieldRef is a field that a filter or on-field-change reads: its path,
// and the dot path as the options wrote it, which names it in a fields
// cache.
type fieldRef struct {
	path path
	key  string
}

// condition is one field of a filter.
type condition struct {
	fieldRef
	op op
	// indexable says that the index may file a registration under the
	// condition's values: it is "eq" to strings that are not numbers, and
	// booleans (see index.indexedBy).
	indexable bool
	// values are the filter's value or list of values, any of which may
	// hold, each once; none for the operators that ignore them.
	values []value
}

// value is a filter value, parsed once. A large registry holds many: it
// is kept small.
type value struct {
	// text is the string, or the JSON text of a number or boolean;
	// case-folded for icontains, istarts and iends, which compare folds.
	text  string
	num   uint64     // the number text holds when isNum: an int64 when isInt, else a float64's bits
	typ   gjson.Type // Null, False, True, Number or String
	isNum bool       // a number, or a string that holds one
	isInt bool
}

// number returns the number x holds; x.isNum must be true.
func (x *value) number() number {
	if x.isInt {
		i := int64(x.num)
		return number{text: x.text, f: float64(i), i: i, isInt: true}
	}
	return number{text: x.text, f: math.Float64frombits(x.num)}
}

// pack moves the filter's values, and the paths of the filter and of
// on-field-change, into one allocation each.
func (rules *entityRules) pack() {
	values := make([]*[]value, len(rules.filter))
	paths := make([]*path, 0, len(rules.filter)+len(rules.onChange))
	for i := range rules.filter {
		values[i] = &rules.filter[i].values
		paths = append(paths, &rules.filter[i].path)
	}
	for i := range rules.onChange {
		paths = append(paths, &rules.onChange[i].path)
	}
	pack(values)
	pack(paths)
}

// pack moves the lists into one allocation: a large registry holds many
// small lists, and fewer objects make the host's collections faster.
func pack[S ~[]E, E any](lists []*S) {
	n := 0
	for _, l := range lists {
		n += len(*l)
	}
	all := make(S, 0, n)
	for _, l := range lists {
		start := len(all)
		all = append(all, *l...)
		*l = all[start:len(all):len(all)]
	}
}

// condition compiles the filter of one field: p is its dot path, raw its
// value or list of values, opName its operator; field names it.
func (c *compiler) condition(field, p string, raw json.RawMessage, opName string) (condition, bool) {
	cond := condition{fieldRef: fieldRef{key: p}}
	var ok bool
	if cond.path, ok = c.path(field, -1, p); !ok {
		return cond, false
	}
	if opName == "" {
		opName = "eq" // Pipeliner's default
	}
	if cond.op, ok = parseOp(opName); !ok {
		c.errs.add(invalid(c.entity+".filter-op."+p, "unknown operator %q; want one of %s", clip(opName), strings.Join(opNames[:], ", ")))
		return cond, false
	}
	if fault := checkJSON(raw, nil, "", nil); fault != jsonOK {
		c.errs.add(recordError(field, raw, fault)) // not JSON, too deep, a key twice
		return cond, false
	}
	// Read in place: for a registration, raw is part of the options JSON it
	// keeps, which nothing modifies (see viewOptions), so the values' text
	// may point into it rather than into a copy of every filter's JSON.
	v := gjson.Parse(bytesView(raw))
	if fe := c.values(field, &cond, v); fe != nil {
		c.errs.add(fe)
		return cond, false
	}
	return cond, true
}

// values reads the values of a condition from v, a value or a list.
func (c *compiler) values(field string, cond *condition, v gjson.Result) *FieldError {
	list := v.IsArray()
	n := 1
	if list {
		n = countElements(v)
	}
	switch {
	case v.IsObject():
		return invalid(field, "want a value or a list of values, got an object")
	case list && n == 0:
		return invalid(field, "empty list; give at least one value")
	case cond.op == opBetween && (!list || n != 2):
		return invalid(field, "between needs a list of two values, [low, high]")
	case c.lim != nil:
		if fe := tooMany(field, n, "values", c.lim.FilterValues); fe != nil {
			return fe
		}
	}
	cond.values = make([]value, 0, n)
	var fe *FieldError
	v.ForEach(func(_, elem gjson.Result) bool {
		switch {
		case elem.IsObject() || elem.IsArray():
			fe = invalid(field, "want a value or a list of values, got %s", shorten([]byte(elem.Raw)))
		case c.lim != nil && len(elem.Raw) > c.lim.FilterValueBytes:
			fe = tooLong(field, "a value of", len(elem.Raw), c.lim.FilterValueBytes)
		default:
			cond.values = append(cond.values, cond.op.value(elem))
		}
		return fe == nil
	})
	if fe != nil {
		return fe
	}
	switch cond.op {
	case opNull, opNotNull, opEmpty, opNotEmpty:
		cond.values = nil // checked, and ignored
	case opBetween: // low and high, in their places
	default:
		cond.values = distinct(cond.values)
	}
	cond.indexable = cond.op == opEq
	for _, x := range cond.values {
		if !(x.typ == gjson.String && !x.isNum || x.typ == gjson.True || x.typ == gjson.False) {
			cond.indexable = false
		}
	}
	return nil
}

// value compiles one filter value of the operator o.
func (o op) value(r gjson.Result) value {
	x := newValue(r)
	switch o {
	case opIContains, opIStarts, opIEnds:
		x.text = string(appendFold(nil, x.text))
	case opEq, opIEq, opNotEq, opNotIEq:
		// A boolean equals what its text does (see equal): as a string it
		// is the same value, which distinct and the index then see once.
		if x.typ == gjson.True || x.typ == gjson.False {
			x.typ = gjson.String
		}
	}
	return x
}

// distinct returns values without repeats, in their order: a value given
// twice would be compared twice per event, and filed twice in the index.
func distinct(values []value) []value {
	type key struct {
		typ  gjson.Type
		text string
	}
	var seen map[key]struct{}
	if len(values) > 8 {
		seen = make(map[key]struct{}, len(values))
	}
	out := values[:0]
	for _, x := range values {
		if seen != nil {
			k := key{x.typ, x.text}
			if _, dup := seen[k]; dup {
				continue
			}
			seen[k] = struct{}{}
		} else if slices.ContainsFunc(out, func(y value) bool { return y.typ == x.typ && y.text == x.text }) {
			continue
		}
		out = append(out, x)
	}
	return out
}

func newValue(r gjson.Result) value {
	v := value{typ: r.Type, text: r.Str}
	switch r.Type {
	case gjson.Number, gjson.True, gjson.False:
		v.text = r.Raw
	}
	if r.Type == gjson.Number || r.Type == gjson.String {
		var n number
		if n, v.isNum = parseNumber(v.text); n.isInt {
			v.num, v.isInt = uint64(n.i), true
		} else {
			v.num = math.Float64bits(n.f)
		}
	}
	return v
}

// holds reports whether a record passes the filter and, for an update, the
// on-field-change rule. prev does not exist when the host gave no "before"
// record: that counts as changed, since a lost notification is worse than
// a needless one.
func (rules *entityRules) holds(data, prev *fields, update bool) bool {
	for i := range rules.filter {
		if !rules.filter[i].holds(data) {
			return false
		}
	}
	if !update || len(rules.onChange) == 0 || !prev.data.Exists() {
		return true
	}
	for _, f := range rules.onChange {
		if changed(prev, data, f) {
			return true
		}
	}
	return false
}

// fields reads the values that filters ask of one record, each field once:
// the registrations an event fires often filter on the same few fields,
// and reading one is a scan of the record.
type fields struct {
	data  gjson.Result
	n     int
	cache [8]cachedField
	m     members // where data's members are, when validJSON noted them
	// folded is what fold made of foldedFrom, the text of a field.
	folded     []byte
	foldedFrom string
	// vals holds what lookup returns, but a cached value, until its next
	// call: no caller zeroes a buffer of its own for each field it reads.
	vals [8]gjson.Result
}

type cachedField struct {
	key   string
	state uint8 // fieldMissing, fieldOne, or fieldMany (not kept: read again)
	// changed is, in the record after an update, whether the field
	// differs from the record before: unknown (0), changedNo or changedYes.
	changed uint8
	v       [1]gjson.Result // the value, when state is fieldOne
}

const (
	changedNo = iota + 1
	changedYes
)

const (
	fieldMissing = iota
	fieldOne
	fieldMany
	fieldUnread // not read yet: only changed may be known
)

// lookup is the package's lookup of p in f.data, from the cache when it
// holds the field named key. The values it returns are valid until its
// next call, and a caller may append to them but not change them.
func (f *fields) lookup(p path, key string) ([]gjson.Result, bool) {
	c := f.entry(key)
	if c != nil {
		switch c.state {
		case fieldMissing:
			return f.vals[:0], false
		case fieldOne:
			return c.v[:], false
		case fieldMany:
			return f.read(p, f.vals[:0])
		}
	}
	vals, many := f.read(p, f.vals[:0])
	if c != nil {
		c.state = fieldMany
		switch {
		case !many && len(vals) == 0:
			c.state = fieldMissing
		case !many:
			c.state, c.v[0] = fieldOne, vals[0]
			return c.v[:], false
		}
	}
	return vals, many
}

// read is lookup of p in f.data, from the member its first key names when
// validJSON noted where it is.
func (f *fields) read(p path, dst []gjson.Result) ([]gjson.Result, bool) {
	if raw, ok := f.m.get(f.data.Raw, p[0]); ok {
		return lookup(valueOf(raw), p[1:], dst)
	}
	return lookup(f.data, p, dst)
}

// lookup appends the values at p to dst. A path through an array collects
// every element's value, and an array at the end gives its elements: many
// then says the values are an array's elements, to be judged one by one,
// rather than a single value (or none, when the field is missing).
func lookup(v gjson.Result, p path, dst []gjson.Result) (vals []gjson.Result, many bool) {
	for i, key := range p {
		if v.IsArray() {
			c := newCursor(v.Raw)
			for _, elem, ok := c.next(); ok; _, elem, ok = c.next() {
				dst, _ = lookup(valueOf(elem), p[i:], dst)
			}
			return dst, true
		}
		if !v.IsObject() {
			return dst, false
		}
		if !plainKey(key) {
			v = v.Get(key)
		} else if raw, ok := member(v.Raw, key); ok {
			v = valueOf(raw)
		} else {
			return dst, false
		}
	}
	switch {
	case v.IsArray():
		c := newCursor(v.Raw)
		for _, elem, ok := c.next(); ok; _, elem, ok = c.next() {
			dst = append(dst, valueOf(elem))
		}
		return dst, true
	case v.Exists():
		return append(dst, v), false
	}
	return dst, false
}

var null = gjson.Result{Type: gjson.Null, Raw: "null"}

func (c *condition) holds(f *fields) bool {
	vals, many := f.lookup(c.path, c.key)
	switch c.op {
	case opNull, opNotNull:
		isNull := !many && (len(vals) == 0 || vals[0].Type == gjson.Null)
		return isNull == (c.op == opNull)
	case opEmpty, opNotEmpty:
		return isEmpty(vals, many) == (c.op == opEmpty)
	}
	if !many && len(vals) == 0 {
		vals = append(vals, null) // a missing field counts as null
	}
	if c.op == opNotEq || c.op == opNotIEq {
		fold := c.op == opNotIEq
		for _, v := range vals {
			for i := range c.values {
				if equal(v, &c.values[i], fold) {
					return false
				}
			}
		}
		return true
	}
	for _, v := range vals {
		if c.test(v, f) {
			return true
		}
	}
	return false
}

// test applies c to one value of the record; f holds the record.
func (c *condition) test(v gjson.Result, f *fields) bool {
	switch c.op {
	case opBetween:
		lo, okLo := compare(v, &c.values[0])
		hi, okHi := compare(v, &c.values[1])
		return okLo && okHi && lo >= 0 && hi <= 0
	case opEq, opIEq:
		for i := range c.values {
			if equal(v, &c.values[i], c.op == opIEq) {
				return true
			}
		}
		return false
	case opGt, opGte, opLt, opLte:
		for i := range c.values {
			n, ok := compare(v, &c.values[i])
			if ok && (c.op == opGt && n > 0 || c.op == opGte && n >= 0 || c.op == opLt && n < 0 || c.op == opLte && n <= 0) {
				return true
			}
		}
		return false
	}
	s, ok := text(v)
	if !ok {
		return false
	}
	switch c.op {
	case opIContains, opIStarts, opIEnds:
		// The i* operators compare folded text: the filter values were
		// folded once when compiled, the field is folded here once for all
		// of them, which keeps the cost of a value that of a comparison.
		s = f.fold(s)
	}
	for i := range c.values {
		if x := &c.values[i]; x.typ != gjson.Null && matchText(c.op, s, x.text) {
			return true
		}
	}
	return false
}

// matchText applies a string operator to s, folded for the i* operators,
// and a filter value's text t.
func matchText(o op, s, t string) bool {
	switch o {
	case opContains, opIContains:
		return strings.Contains(s, t)
	case opStarts, opIStarts:
		return strings.HasPrefix(s, t)
	case opEnds, opIEnds:
		return strings.HasSuffix(s, t)
	}
	return false
}

// fold returns s folded (see appendFold), in a buffer of f's that it
// reuses, valid until the next call: folding never lengthens a string, so
// a field costs one allocation at most. The registrations an event fires
// often fold the same field: the text of the record that s is, the same
// bytes as the last call's, is folded once.
func (f *fields) fold(s string) string {
	if len(s) != len(f.foldedFrom) || unsafe.StringData(s) != unsafe.StringData(f.foldedFrom) {
		if cap(f.folded) < len(s) {
			f.folded = make([]byte, 0, len(s))
		}
		f.folded, f.foldedFrom = appendFold(f.folded[:0], s), s
	}
	return bytesView(f.folded)
}

// reset makes f read rec, with the members parseEvent noted in f.m.
func (f *fields) reset(rec gjson.Result) {
	f.data, f.n, f.folded, f.foldedFrom = rec, 0, f.folded[:0], ""
}

func isEmpty(vals []gjson.Result, many bool) bool {
	if many || len(vals) == 0 {
		return len(vals) == 0
	}
	v := vals[0]
	switch v.Type {
	case gjson.Null:
		return true
	case gjson.String:
		return v.Str == ""
	case gjson.JSON:
		empty := true
		v.ForEach(func(_, _ gjson.Result) bool {
			empty = false
			return false
		})
		return empty
	}
	return false
}

// text is the string form of a scalar for the string operators: REST
// filters arrive as text, so a number or a boolean matches its JSON text.
func text(v gjson.Result) (string, bool) {
	switch v.Type {
	case gjson.String:
		return v.Str, true
	case gjson.Number, gjson.True, gjson.False:
		return v.Raw, true
	}
	return "", false
}

// equal compares a record value with a filter value as JSON values, where
// a number equals a string that holds it and a boolean its text.
func equal(v gjson.Result, x *value, fold bool) bool {
	switch v.Type {
	case gjson.Null:
		return x.typ == gjson.Null
	case gjson.Number:
		n, _ := parseNumber(v.Raw)
		return x.isNum && n.cmp(x.number()) == 0
	case gjson.True, gjson.False:
		return (x.typ == v.Type || x.typ == gjson.String) && equalText(v.Raw, x.text, fold)
	case gjson.String:
		switch x.typ {
		case gjson.String, gjson.True, gjson.False:
			return equalText(v.Str, x.text, fold)
		case gjson.Number:
			n, ok := parseNumber(v.Str)
			return ok && n.cmp(x.number()) == 0
		}
	}
	return false
}

func equalText(a, b string, fold bool) bool {
	if fold {
		return strings.EqualFold(a, b)
	}
	return a == b
}

// compare orders a record value against a filter value: numbers (and
// numeric strings against numbers) as numbers, strings as strings, so that
// dates like 2026-12-31 order as text. ok is false when they do not order.
func compare(v gjson.Result, x *value) (int, bool) {
	switch {
	case v.Type == gjson.Number && x.isNum:
		n, _ := parseNumber(v.Raw)
		return n.cmp(x.number()), true
	case v.Type == gjson.String && x.typ == gjson.Number:
		n, ok := parseNumber(v.Str)
		return n.cmp(x.number()), ok
	case v.Type == gjson.String && x.typ == gjson.String:
		return strings.Compare(v.Str, x.text), true
	}
	return 0, false
}

// appendFold appends s with every rune replaced by the smallest rune of
// its simple-folding orbit, so that two strings are equal under
// strings.EqualFold exactly when their folds are equal.
func appendFold(dst []byte, s string) []byte {
	for _, r := range s {
		switch {
		case r < utf8.RuneSelf:
			if 'a' <= r && r <= 'z' {
				r -= 'a' - 'A'
			}
		default:
			least := r
			for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
				least = min(least, f)
			}
			r = least
		}
		dst = utf8.AppendRune(dst, r)
	}
	return dst
}

// changed reports whether the value at p differs between two records as
// JSON: key order, spacing and 1 versus 1.0 do not count, appearing or
// disappearing does, and so does any change inside an object.
func changed(before, after *fields, f fieldRef) bool {
	// Registrations that fire on a change of the same field compare it
	// once an event: comparing is a walk of both values.
	c := after.entry(f.key)
	if c != nil && c.changed != 0 {
		return c.changed == changedYes
	}
	yes := differ(before, after, f)
	if c != nil {
		c.changed = changedNo
		if yes {
			c.changed = changedYes
		}
	}
	return yes
}

// entry returns the entry of f's cache for the field named key, a new one
// (fieldUnread) if it had none, or nil when the cache is full.
func (f *fields) entry(key string) *cachedField {
	for i := range f.n {
		if f.cache[i].key == key {
			return &f.cache[i]
		}
	}
	if f.n == len(f.cache) {
		return nil
	}
	c := &f.cache[f.n]
	f.n++
	c.key, c.state, c.changed = key, fieldUnread, 0
	return c
}

// differ says whether the field f differs between the two records.
func differ(before, after *fields, f fieldRef) bool {
	var a, b []gjson.Result
	var manyA, manyB bool
	x, okX := before.m.get(before.data.Raw, f.path[0])
	y, okY := after.m.get(after.data.Raw, f.path[0])
	if okX && okY {
		// The member that holds the field in each record, where validJSON
		// noted it: the same text holds no change, and a field that is the
		// member compares as the list of its elements would.
		switch {
		case x == y:
			return false
		case len(f.path) == 1:
			return !jsonEqual(x, y)
		}
		a, manyA = lookup(valueOf(x), f.path[1:], before.vals[:0])
		b, manyB = lookup(valueOf(y), f.path[1:], after.vals[:0])
	} else {
		a, manyA = before.lookup(f.path, f.key)
		b, manyB = after.lookup(f.path, f.key)
	}
	if manyA != manyB || len(a) != len(b) {
		return true
	}
	for i := range a {
		if !jsonEqual(a[i].Raw, b[i].Raw) {
			return true
		}
	}
	return false
}

// jsonEqual compares two JSON values by meaning, not by text: each is
// the text of a valid JSON value, or "" for none. It reads their text
// rather than gjson.Results, ten words each to copy at every step.
func jsonEqual(a, b string) bool {
	switch {
	case a == b:
		return true
	case a == "" || b == "" || jsonKind(a) != jsonKind(b):
		return false
	}
	switch a[0] {
	case '"':
		return valueOf(a).Str == valueOf(b).Str
	case 't', 'f', 'n':
		return true // the same literal
	case '[', '{':
		return containersEqual(a, b)
	}
	if shortest(a) && shortest(b) {
		return false // different texts of the same number are never both shortest
	}
	x, _ := parseNumber(a)
	y, _ := parseNumber(b)
	return x.cmp(y) == 0
}

// jsonKind is the kind of the JSON value raw: its first byte, or '0' for
// a number.
func jsonKind(raw string) byte {
	switch c := raw[0]; c {
	case '"', '{', '[', 't', 'f', 'n':
		return c
	}
	return '0'
}

// containersEqual is jsonEqual of two arrays or two objects.
func containersEqual(a, b string) bool {
	// The elements of arrays are compared in step, and so are the members
	// of objects, as most often b has a's keys in a's order, until a key
	// is written differently. A record's objects have no key twice (see
	// keys.go), so a value that differs under the same key decides.
	x, y := newCursor(a), newCursor(b)
	for {
		k, u, ok := x.next()
		m, v, okY := y.next()
		if !ok || !okY {
			return ok == okY
		}
		if k != m {
			break
		}
		if !jsonEqual(u, v) {
			return false
		}
	}
	// Else each member of a against b's with its key, and as many members.
	// b's first members are kept at hand, so that most objects are read
	// once.
	var kept [8][2]string
	nb, rest := 0, newCursor(b)
	for nb < len(kept) {
		k, v, ok := rest.next()
		if !ok {
			break
		}
		kept[nb] = [2]string{k, v}
		nb++
	}
	x = newCursor(a)
	na := 0
	for k, u, ok := x.next(); ok; k, u, ok = x.next() {
		na++
		name, v, found := unquote(k), "", false
		for _, m := range kept[:nb] {
			if keyIs(m[0], name) {
				v, found = m[1], true
				break
			}
		}
		for c := rest; !found; {
			m, w, ok := c.next()
			if !ok {
				return false
			}
			v, found = w, keyIs(m, name)
		}
		if !jsonEqual(u, v) {
			return false
		}
	}
	for _, _, ok := rest.next(); ok; _, _, ok = rest.next() {
		nb++
	}
	return na == nb
}
