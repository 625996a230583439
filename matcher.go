package webhook

import (
	"encoding/json"
	"fmt"
	"iter"
	"slices"
	"strings"
	"sync"
	"unsafe"

	"github.com/tidwall/gjson"
)

// Matcher finds the registrations an event fires: those of the event's
// space that listen to its name (exactly, as "Entity.*" or as "*"), that
// the event's custom entity and skip key do not exclude, and whose filter
// and on-field-change options hold.
//
// A Matcher reads its Registry's index as it is at each call, so it sees
// every change as soon as the Registry method returns. A Matcher is safe
// for simultaneous use by multiple goroutines.
type Matcher struct {
	r *Registry
	// records keeps the *records of Match's and Dispatch's calls, which
	// the stack would otherwise zero, several KB, at each one.
	records sync.Pool
}

// takeRecords returns records for one call; the caller puts them back.
func (m *Matcher) takeRecords() *records {
	if rs, ok := m.records.Get().(*records); ok {
		return rs
	}
	return new(records)
}

// records are the fields of an event's record and of the one before it.
type records struct{ data, prev fields }

// NewMatcher returns a Matcher over r.
func NewMatcher(r *Registry) *Matcher { return &Matcher{r: r} }

// Match returns the registrations e fires, in the order they were created.
// They are the Registry's own copies, shared and read-only: a caller must
// not modify them. An event that is malformed (see Dispatcher.Dispatch) is
// an error that wraps ErrInvalid.
func (m *Matcher) Match(e Event) ([]*Webhook, error) {
	// Match does not keep the record, so it reads the caller's bytes in
	// place instead of copying them.
	var ev event
	rs := m.takeRecords()
	defer m.records.Put(rs)
	if err := m.r.parseEvent(&ev, 0, e, &rs.data.m, &rs.prev.m); err != nil {
		return nil, err
	}
	var buf [32]*registration // the candidates, without an allocation in the common case
	regs := m.match(&ev, &rs.data, &rs.prev, buf[:0])
	if len(regs) == 0 {
		return nil, nil
	}
	out := make([]*Webhook, len(regs))
	for i, reg := range regs {
		out[i] = reg.public()
	}
	return out, nil
}

// match appends the registrations ev fires to dst. It holds the index's
// read lock while it collects the candidates, reading the fields that
// equality filters index, and applies the filters after. data and prev
// read ev's records: they hold the members parseEvent noted, and their
// callers take them from the Matcher's pool.
func (m *Matcher) match(ev *event, data, prevData *fields, dst []*registration) []*registration {
	data.reset(ev.data)
	prevData.reset(ev.previous)
	start := len(dst)
	m.r.mu.RLock()
	ix := &m.r.index
	if sp := ix.spaces[ev.Space]; sp != nil {
		dst = ix.appendBucket(dst, sp, ev.Name, data)
		dst = ix.appendBucket(dst, sp, ev.wildcard, data)
		dst = ix.appendBucket(dst, sp, "*", data)
	}
	m.r.mu.RUnlock()
	found := dst[start:]
	slices.SortFunc(found, bySeq)
	n := start
	var prev *registration
	for _, reg := range found {
		// A record whose field is a list may find a registration under two
		// of its values.
		if reg == prev {
			continue
		}
		prev = reg
		if reg.fires(ev, data, prevData) {
			dst[n] = reg
			n++
		}
	}
	clear(dst[n:])
	return dst[:n]
}

// fires applies a registration's per-event conditions, cheapest first;
// data and prev read ev's records.
func (reg *registration) fires(ev *event, data, prev *fields) bool {
	if reg.hook.Disabled != nil {
		return false
	}
	if ev.SkipKey != "" && slices.Contains(reg.skipKeys, ev.SkipKey) {
		return false
	}
	if ev.entity == customEntity && len(reg.custom) > 0 && !slices.Contains(reg.custom, ev.CustomEntity) {
		return false
	}
	rules := reg.rulesOf(ev.optionsKey)
	if rules == nil {
		return true
	}
	return rules.holds(data, prev, ev.action == "Update")
}

const customEntity = "CustomEntity"

// event is an Event checked and parsed for matching and delivery.
type event struct {
	Event
	index          int
	entity, action string // "Account", "Update"
	optionsKey     string // the key of options.entity: the entity, or the custom entity's API name
	wildcard       string // "Account.*"
	data           gjson.Result
	previous       gjson.Result // does not exist when the host gave none
	related        gjson.Result
	// spans are where data's members are, once a Dispatch keeps them for
	// the event's items (see members.spans), or nil.
	spans []memberSpan
}

// parseEvent checks e and parses it into ev, noting the members of its
// records in data and prev. It reads the records in place: ev is valid
// only as long as the caller's buffers are unchanged, which both callers,
// Match and Dispatch, need only until they return.
func (r *Registry) parseEvent(ev *event, i int, e Event, data, prev *members) error {
	*ev = event{Event: e, index: i}
	ev.entity, ev.action, _ = strings.Cut(e.Name, ".")
	if ev.wildcard = r.events[e.Name]; ev.wildcard == "" || strings.Contains(e.Name, "*") {
		return ev.invalid("name", "not an event of the catalogue")
	}
	ev.optionsKey = ev.entity
	if ev.entity == customEntity {
		if e.CustomEntity == "" {
			return ev.invalid("custom_entity", "a CustomEntity event needs the API name of its custom entity")
		}
		ev.optionsKey = e.CustomEntity
	}
	var err error
	if ev.data, err = ev.parse("data", e.Data, false, data, "", nil); err != nil {
		return err
	}
	if ev.previous, err = ev.parse("previous", e.Previous, true, prev, ev.data.Raw, data); err != nil {
		return err
	}
	if ev.related, err = ev.parse("related", e.Related, true, nil, "", nil); err != nil {
		return err
	}
	// Parsed above; the caller's buffers are not kept.
	ev.Data, ev.Previous, ev.Related = nil, nil, nil
	return nil
}

// parse checks that b is a JSON object (or, when optional, nothing or
// null), noting its members in m unless m is nil. like, when not nil, is
// a record already parsed, whose members are in lm, that b may repeat
// much of: the record before an update repeats the record after it, and
// what it repeats is not scanned again.
func (ev *event) parse(field string, b json.RawMessage, optional bool, m *members, like string, lm *members) (gjson.Result, error) {
	if m != nil {
		m.noted = false
	}
	if optional && (len(b) == 0 || isNull(b)) {
		return gjson.Result{}, nil
	}
	// From the first byte that is not space, where gjson's Raw starts, so
	// that the members' offsets are Raw's.
	b = b[validSpace(b, 0):]
	// Our validator agrees with encoding/json's (FuzzValidJSON checks it)
	// at a tenth of its cost; validating was half of Match's. It also
	// refuses what would make the request invalid for a receiver, or read
	// differently by the filters and by the receiver: nesting beyond
	// maxDepth, and a key twice in an object.
	if fault := checkJSON(b, m, like, lm); fault != jsonOK {
		return gjson.Result{}, ev.refuse(recordError(field, b, fault))
	}
	res := valueOf(bytesView(b)) // what gjson.Parse gives an object
	if !res.IsObject() {
		return gjson.Result{}, ev.invalid(field, "not a JSON object")
	}
	return res, nil
}

func (ev *event) invalid(field, reason string) error {
	return ev.refuse(invalid(field, "%s", reason))
}

// refuse returns fe as the error of ev.
func (ev *event) refuse(fe *FieldError) error {
	id := ""
	if ev.ID != "" {
		id = " " + ev.ID
	}
	return fmt.Errorf("webhook: event %d%s (%q): %w", ev.index, id, ev.Name, fe)
}

// bytesView returns b as a string without copying; the string is valid
// only as long as b is neither modified nor kept.
func bytesView(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// index finds registrations by space and event name, and within those by
// an equality filter, so that the cost of an event does not grow with the
// registrations that filter it out. Writers change only the entries of one
// registration, each in O(1), so that the write lock is held for a time
// linear in the registration's size. The maps are shared by all buckets
// rather than kept per bucket: most buckets hold a registration or two,
// and a map apiece would cost more than the registrations. It requires
// Registry.mu.
type index struct {
	spaces map[string]*spaceIndex
	// eq holds the indexed registrations of a bucket by field and value:
	// the first filed under a value, and eqMore the others. Most values
	// file one registration, which then costs no slice.
	eq     map[eqKey]*registration
	eqMore map[eqKey][]*registration
	// eqPos is where a registration is in a list of eqMore longer than
	// eqScan, so that removing it does not scan the list: registrations of
	// a bucket that filter on the same value are few, but nothing bounds
	// how many.
	eqPos map[eqPosKey]int
	pos   map[posKey]int // where a registration is in its bucket's plain or indexed slice
}

// eqScan is the longest list of index.eqMore that is scanned rather than
// indexed by index.eqPos.
const eqScan = 16

// maxIndexEntries bounds the entries one registration makes in index.eq
// and index.eqMore, one for each value of its indexed filter in each of
// its buckets: a registration with more (many events, many values) is
// tried for every event of its buckets, at a cost its limits bound,
// rather than making the index grow with the product of its lists.
const maxIndexEntries = 4096

type spaceIndex struct {
	buckets map[string]*bucket // by event name, "Entity.*" or "*"
}

// bucket holds the registrations of one space and event key: those that
// require a field to equal one of some strings, found through index.eq,
// and the plain rest, which are tried one by one.
type bucket struct {
	plain   []*registration
	indexed []*registration // all of those in index.eq, for List and removal
	fields  []*eqField      // the fields they are filed by; few
}

// eqField is a field that registrations of a bucket are filed by in
// index.eq: how many are, and under how many of its values index.eqMore
// has registrations, so that a lookup there is skipped when none has.
type eqField struct {
	fieldRef
	n, nMore int
}

type eqKey struct {
	field *eqField // which is of one bucket
	value string
}

type eqPosKey struct {
	eqKey
	reg *registration
}

type posKey struct {
	b   *bucket
	reg *registration
}

// indexKeys yields the keys that file a registration with these events in
// the index: "*" stands for everything and "Entity.*" for the rest of its
// entity, so that no event reaches the registration through two keys.
// They are worked out when needed rather than kept: a registration is
// filed and removed once each, and the work is linear in the events.
func indexKeys(events []string) iter.Seq[string] {
	return func(yield func(string) bool) {
		yielded := make(map[string]bool, len(events)) // every name listed: whether it was yielded
		for _, name := range events {
			yielded[name] = false
		}
		if _, all := yielded["*"]; all {
			yield("*")
			return
		}
		for _, name := range events {
			if yielded[name] {
				continue
			}
			if entity, action, _ := strings.Cut(name, "."); action != "*" {
				if _, listed := yielded[entity+".*"]; listed {
					continue
				}
			}
			yielded[name] = true
			if !yield(name) {
				return
			}
		}
	}
}

// indexedBy returns the condition that files reg under the bucket key, or
// nil when reg goes with the plain ones. Only "eq" to strings that are not
// numbers, or to booleans, qualifies (condition.indexable): then a
// record's value matches exactly when its text is one of the values (see
// equal), so the lookup never misses a registration that fires. Such a
// condition comes first in its filter, where compiling put it.
func (reg *registration) indexedBy(key string) *condition {
	entity, _, _ := strings.Cut(key, ".")
	if entity == "*" || entity == customEntity {
		return nil // the entity, or its options key, varies by event
	}
	rules := reg.searchRules(entity)
	if rules == nil || len(rules.filter) == 0 || !rules.filter[0].indexable {
		return nil
	}
	c := &rules.filter[0]
	if len(reg.hook.Events)*len(c.values) > maxIndexEntries {
		return nil
	}
	return c
}

func (ix *index) add(reg *registration) {
	if ix.spaces == nil {
		ix.spaces, ix.pos = map[string]*spaceIndex{}, map[posKey]int{}
		ix.eq, ix.eqMore = map[eqKey]*registration{}, map[eqKey][]*registration{}
		ix.eqPos = map[eqPosKey]int{}
	}
	sp := ix.spaces[reg.hook.Space]
	if sp == nil {
		sp = &spaceIndex{buckets: map[string]*bucket{}}
		ix.spaces[reg.hook.Space] = sp
	}
	for key := range indexKeys(reg.hook.Events) {
		b := sp.buckets[key]
		if b == nil {
			b = &bucket{}
			sp.buckets[key] = b
		}
		c := reg.indexedBy(key)
		if c == nil {
			ix.pos[posKey{b, reg}] = len(b.plain)
			b.plain = append(b.plain, reg)
			continue
		}
		ix.pos[posKey{b, reg}] = len(b.indexed)
		b.indexed = append(b.indexed, reg)
		f := b.field(c.key)
		if f == nil {
			f = &eqField{fieldRef: c.fieldRef}
			b.fields = append(b.fields, f)
		}
		f.n++
		// The values are distinct (see distinct): each files reg once.
		for i := range c.values {
			ix.file(eqKey{f, c.values[i].text}, reg)
		}
	}
}

// file files reg under k.
func (ix *index) file(k eqKey, reg *registration) {
	if ix.eq[k] == nil {
		ix.eq[k] = reg
		return
	}
	more := append(ix.eqMore[k], reg)
	ix.eqMore[k] = more
	switch n := len(more); {
	case n == 1:
		k.field.nMore++
	case n == eqScan+1:
		for i, r := range more {
			ix.eqPos[eqPosKey{k, r}] = i
		}
	case n > eqScan+1:
		ix.eqPos[eqPosKey{k, reg}] = n - 1
	}
}

// unfile removes reg from under k.
func (ix *index) unfile(k eqKey, reg *registration) {
	more := ix.eqMore[k]
	if len(more) == 0 {
		delete(ix.eq, k)
		return
	}
	long, last := len(more) > eqScan, len(more)-1
	var i int
	switch {
	case ix.eq[k] == reg:
		// The last of the others takes its place, and leaves the list.
		ix.eq[k], reg, i = more[last], more[last], last
	case long:
		i = ix.eqPos[eqPosKey{k, reg}]
	default:
		i = slices.Index(more, reg)
	}
	more[i] = more[last]
	if long {
		delete(ix.eqPos, eqPosKey{k, reg})
		if i != last {
			ix.eqPos[eqPosKey{k, more[i]}] = i
		}
	}
	more[last] = nil
	more = more[:last]
	switch {
	case len(more) == 0:
		delete(ix.eqMore, k)
		k.field.nMore--
	case long && len(more) == eqScan:
		for _, r := range more {
			delete(ix.eqPos, eqPosKey{k, r})
		}
		fallthrough
	default:
		ix.eqMore[k] = more
	}
}

func (ix *index) remove(reg *registration) {
	sp := ix.spaces[reg.hook.Space]
	for key := range indexKeys(reg.hook.Events) {
		b := sp.buckets[key]
		list := &b.plain
		if c := reg.indexedBy(key); c != nil {
			list = &b.indexed
			f := b.field(c.key)
			for i := range c.values {
				ix.unfile(eqKey{f, c.values[i].text}, reg)
			}
			if f.n--; f.n == 0 {
				b.fields = slices.DeleteFunc(b.fields, func(g *eqField) bool { return g == f })
			}
		}
		i, last := ix.pos[posKey{b, reg}], len(*list)-1
		moved := (*list)[last]
		(*list)[i] = moved
		ix.pos[posKey{b, moved}] = i
		(*list)[last] = nil
		*list = (*list)[:last]
		delete(ix.pos, posKey{b, reg})
		if len(b.plain) == 0 && len(b.indexed) == 0 {
			delete(sp.buckets, key)
		}
	}
	if len(sp.buckets) == 0 {
		delete(ix.spaces, reg.hook.Space)
	}
}

// field returns the field of b named key, or nil.
func (b *bucket) field(key string) *eqField {
	for _, f := range b.fields {
		if f.key == key {
			return f
		}
	}
	return nil
}

// appendBucket appends the registrations of a bucket that an event may
// fire: every plain one, and of the others those filed under the values
// of its record.
func (ix *index) appendBucket(dst []*registration, sp *spaceIndex, key string, data *fields) []*registration {
	b := sp.buckets[key]
	if b == nil {
		return dst
	}
	dst = append(dst, b.plain...)
	for _, f := range b.fields {
		vals, _ := data.lookup(f.path, f.key)
		for _, v := range vals {
			var text string
			switch v.Type {
			case gjson.String:
				text = v.Str
			case gjson.True, gjson.False:
				text = v.Raw
			default:
				continue // no string or boolean equals it
			}
			k := eqKey{f, text}
			if reg := ix.eq[k]; reg != nil {
				dst = append(dst, reg)
				if f.nMore > 0 {
					dst = append(dst, ix.eqMore[k]...)
				}
			}
		}
	}
	return dst
}

// all returns every registration of a space, once each.
func (ix *index) all(space string) []*registration {
	sp := ix.spaces[space]
	if sp == nil {
		return nil
	}
	var out []*registration
	for _, b := range sp.buckets {
		out = append(out, b.plain...)
		out = append(out, b.indexed...)
	}
	slices.SortFunc(out, bySeq)
	return slices.CompactFunc(out, func(a, b *registration) bool { return a == b })
}
