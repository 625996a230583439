package webhook

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
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
}

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
	if err := m.r.parseEvent(&ev, 0, e); err != nil {
		return nil, err
	}
	regs := m.match(&ev, nil)
	if len(regs) == 0 {
		return nil, nil
	}
	out := make([]*Webhook, len(regs))
	for i, reg := range regs {
		out[i] = &reg.hook
	}
	return out, nil
}

// match appends the registrations ev fires to dst. It holds the index lock
// only to copy out the candidates, so that filters never delay a writer.
func (m *Matcher) match(ev *event, dst []*registration) []*registration {
	start := len(dst)
	m.r.mu.RLock()
	if sp := m.r.index.spaces[ev.Space]; sp != nil {
		dst = sp.appendBucket(dst, ev.Name)
		dst = sp.appendBucket(dst, ev.entity+".*")
		dst = sp.appendBucket(dst, "*")
	}
	m.r.mu.RUnlock()
	found := dst[start:]
	slices.SortFunc(found, bySeq)
	n := start
	for _, reg := range found {
		if reg.fires(ev) {
			dst[n] = reg
			n++
		}
	}
	clear(dst[n:])
	return dst[:n]
}

// fires applies a registration's per-event conditions, cheapest first.
func (reg *registration) fires(ev *event) bool {
	if reg.hook.Disabled != nil {
		return false
	}
	if ev.SkipKey != "" && slices.Contains(reg.skipKeys, ev.SkipKey) {
		return false
	}
	if ev.entity == customEntity && len(reg.custom) > 0 && !slices.Contains(reg.custom, ev.CustomEntity) {
		return false
	}
	rules := reg.entities[ev.optionsKey]
	if rules == nil {
		return true
	}
	return rules.holds(ev.data, ev.previous, ev.action == "Update")
}

const customEntity = "CustomEntity"

// event is an Event checked and parsed for matching and delivery.
type event struct {
	Event
	index          int
	entity, action string // "Account", "Update"
	optionsKey     string // the key of options.entity: the entity, or the custom entity's API name
	data           gjson.Result
	previous       gjson.Result // does not exist when the host gave none
	related        gjson.Result
}

// parseEvent checks e and parses it into ev. It reads the records in
// place: ev is valid only as long as the caller's buffers are unchanged,
// which both callers, Match and Dispatch, need only until they return.
func (r *Registry) parseEvent(ev *event, i int, e Event) error {
	*ev = event{Event: e, index: i}
	ev.entity, ev.action, _ = strings.Cut(e.Name, ".")
	if strings.Contains(e.Name, "*") || !r.known(e.Name) {
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
	if ev.data, err = ev.parse("data", e.Data, false); err != nil {
		return err
	}
	if ev.previous, err = ev.parse("previous", e.Previous, true); err != nil {
		return err
	}
	if ev.related, err = ev.parse("related", e.Related, true); err != nil {
		return err
	}
	// Parsed above; the caller's buffers are not kept.
	ev.Data, ev.Previous, ev.Related = nil, nil, nil
	return nil
}

// parse checks that b is a JSON object (or, when optional, nothing or null).
func (ev *event) parse(field string, b json.RawMessage, optional bool) (gjson.Result, error) {
	if optional && (len(b) == 0 || isNull(b)) {
		return gjson.Result{}, nil
	}
	if !json.Valid(b) {
		return gjson.Result{}, ev.invalid(field, "not JSON")
	}
	res := gjson.Parse(bytesView(b))
	if !res.IsObject() {
		return gjson.Result{}, ev.invalid(field, "not a JSON object")
	}
	return res, nil
}

func (ev *event) invalid(field, reason string) error {
	id := ""
	if ev.ID != "" {
		id = " " + ev.ID
	}
	return fmt.Errorf("webhook: event %d%s (%q): %w", ev.index, id, ev.Name, invalid(field, "%s", reason))
}

// bytesView returns b as a string without copying; the string is valid
// only as long as b is neither modified nor kept.
func bytesView(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// index finds registrations by space and event name. Writers change only
// the buckets of one registration: a bucket is a slice for fast reads with
// a position map for O(1) removal. It requires Registry.mu.
type index struct {
	spaces map[string]*spaceIndex
}

type spaceIndex struct {
	buckets map[string]*bucket // by event name, "Entity.*" or "*"
}

type bucket struct {
	regs []*registration
	pos  map[*registration]int
}

func (ix *index) add(reg *registration) {
	if ix.spaces == nil {
		ix.spaces = map[string]*spaceIndex{}
	}
	sp := ix.spaces[reg.hook.Space]
	if sp == nil {
		sp = &spaceIndex{buckets: map[string]*bucket{}}
		ix.spaces[reg.hook.Space] = sp
	}
	for _, key := range reg.keys {
		b := sp.buckets[key]
		if b == nil {
			b = &bucket{pos: map[*registration]int{}}
			sp.buckets[key] = b
		}
		b.pos[reg] = len(b.regs)
		b.regs = append(b.regs, reg)
	}
}

func (ix *index) remove(reg *registration) {
	sp := ix.spaces[reg.hook.Space]
	for _, key := range reg.keys {
		b := sp.buckets[key]
		i := b.pos[reg]
		last := len(b.regs) - 1
		b.regs[i] = b.regs[last]
		b.pos[b.regs[i]] = i
		b.regs[last] = nil
		b.regs = b.regs[:last]
		delete(b.pos, reg)
		if len(b.regs) == 0 {
			delete(sp.buckets, key)
		}
	}
	if len(sp.buckets) == 0 {
		delete(ix.spaces, reg.hook.Space)
	}
}

func (sp *spaceIndex) appendBucket(dst []*registration, key string) []*registration {
	if b := sp.buckets[key]; b != nil {
		dst = append(dst, b.regs...)
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
		out = append(out, b.regs...)
	}
	slices.SortFunc(out, bySeq)
	return slices.CompactFunc(out, func(a, b *registration) bool { return a == b })
}
