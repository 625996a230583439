package webhook

import (
	"bytes"
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// catalogue is Pipeliner's event catalogue, one name a line, copied from
// the documentation so that the library needs nothing at run time.
//
//go:embed events.txt
var catalogue string

// Registry holds webhook registrations in memory, compiled for matching.
// A Registry is safe for simultaneous use by multiple goroutines.
type Registry struct {
	// Now returns the time stamped on Created and Modified; nil means
	// time.Now. Set it before the Registry is first used.
	Now func() time.Time
	// Addresses refuses, at registration, a URL whose host is a refused
	// IP literal or localhost, for the reason the HTTPTransport would give
	// when dialling. Give it the policy of the HTTPTransport; the zero
	// value is the safe default. Set it before the Registry is first used.
	Addresses AddressPolicy

	limits Limits // what one registration may carry; set by NewRegistry

	mu     sync.RWMutex
	events map[string]bool // the catalogue; requires mu
	byID   map[string]*registration
	index  index
	seq    uint64 // creation order of registrations
}

// NewRegistry returns an empty Registry whose catalogue is Pipeliner's 138
// event names; AddEvents extends it.
func NewRegistry() *Registry {
	r := &Registry{events: map[string]bool{}, byID: map[string]*registration{}, limits: Limits{}.withDefaults()}
	for _, name := range strings.Fields(catalogue) {
		r.events[name] = true
	}
	return r
}

// AddEvents adds event names of the host's own entities to the catalogue,
// each "Entity.Action" ("Invoice.Paid"); "Entity.*" is added with them. It
// adds all of names or, when one is malformed, none.
func (r *Registry) AddEvents(names ...string) error {
	for i, name := range names {
		entity, action, ok := strings.Cut(name, ".")
		if !ok || !isIdent(entity) || !(isIdent(action) || action == "*") {
			return invalid(fmt.Sprintf("events[%d]", i), "%q is not Entity.Action", name)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, name := range names {
		entity, _, _ := strings.Cut(name, ".")
		r.events[name] = true
		r.events[entity+".*"] = true
	}
	return nil
}

func isIdent(s string) bool {
	for i, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return s != ""
}

func (r *Registry) known(name string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.events[name]
}

func (r *Registry) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// Create validates w and stores it in w.Space. It assigns ID (a random
// UUID), Created and Modified when they are zero, so that a host can
// restore registrations it persisted with their own; a given ID must be a
// UUID that no registration has yet.
func (r *Registry) Create(ctx context.Context, w Webhook) (Webhook, error) {
	if err := ctx.Err(); err != nil {
		return Webhook{}, err
	}
	now := r.now().UTC().Truncate(time.Second)
	if w.ID == "" {
		w.ID = newUUID()
	}
	if w.Created.IsZero() {
		w.Created = now
	}
	if w.Modified.IsZero() {
		w.Modified = w.Created
	}
	// Pipeliner's times have whole seconds: what is stored is what JSON gives back.
	w.Created, w.Modified = w.Created.UTC().Truncate(time.Second), w.Modified.UTC().Truncate(time.Second)
	reg, err := r.compile(w, false)
	if err != nil {
		return Webhook{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, taken := r.byID[w.ID]; taken {
		return Webhook{}, invalid("id", "%s is taken", w.ID)
	}
	r.seq++
	reg.seq = r.seq
	r.byID[w.ID] = reg
	r.index.add(reg)
	return reg.webhook(), nil
}

// Get returns the registration with the given id.
func (r *Registry) Get(ctx context.Context, id string) (Webhook, error) {
	if err := ctx.Err(); err != nil {
		return Webhook{}, err
	}
	reg, err := r.lookup(id)
	if err != nil {
		return Webhook{}, err
	}
	return reg.webhook(), nil
}

// Update replaces the registration w.ID with w, keeping its ID, Space and
// Created and stamping Modified. An empty w.Space keeps the registration's
// space; another space is refused, since a registration never changes
// tenant. Deliveries already accepted go out as they were matched.
func (r *Registry) Update(ctx context.Context, w Webhook) (Webhook, error) {
	if err := ctx.Err(); err != nil {
		return Webhook{}, err
	}
	old, err := r.lookup(w.ID)
	if err != nil {
		return Webhook{}, err
	}
	if w.Space != "" && w.Space != old.hook.Space {
		return Webhook{}, invalid("space", "registration %s belongs to another space and cannot move", w.ID)
	}
	w.Space, w.Created, w.Disabled = old.hook.Space, old.hook.Created, nil
	w.Modified = r.now().UTC().Truncate(time.Second)
	reg, err := r.compile(w, false)
	if err != nil {
		return Webhook{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	// Another Update or a Delete may have come first; the latest wins.
	cur, ok := r.byID[w.ID]
	if !ok {
		return Webhook{}, fmt.Errorf("webhook %q: %w", w.ID, ErrNotFound)
	}
	reg.seq = cur.seq
	r.index.remove(cur)
	r.index.add(reg)
	r.byID[w.ID] = reg
	return reg.webhook(), nil
}

// Delete removes the registration with the given id. Chunks of it that are
// still waiting are not sent.
func (r *Registry) Delete(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	reg, ok := r.byID[id]
	if !ok {
		return fmt.Errorf("webhook %q: %w", id, ErrNotFound)
	}
	delete(r.byID, id)
	r.index.remove(reg)
	return nil
}

// List returns the registrations of a space in the order they were created.
func (r *Registry) List(ctx context.Context, space string) ([]Webhook, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r.mu.RLock()
	regs := r.index.all(space)
	r.mu.RUnlock()
	out := make([]Webhook, len(regs))
	for i, reg := range regs {
		out[i] = reg.webhook()
	}
	return out, nil
}

func (r *Registry) lookup(id string) (*registration, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	reg, ok := r.byID[id]
	if !ok {
		return nil, fmt.Errorf("webhook %q: %w", id, ErrNotFound)
	}
	return reg, nil
}

// disable marks the registration id disabled, unless it is gone or
// disabled already; it returns the registration's new state, or nil when
// nothing changed.
func (r *Registry) disable(id, reason string, at time.Time) *Disabled {
	r.mu.Lock()
	defer r.mu.Unlock()
	cur, ok := r.byID[id]
	if !ok || cur.hook.Disabled != nil {
		return nil
	}
	// Registrations are immutable once compiled: Match reads them without
	// the lock. The copy shares the compiled rules, which never change,
	// and what the registration built when it fired (see shared).
	reg := *cur
	reg.hook.Disabled = &Disabled{At: at.UTC().Truncate(time.Second), Reason: reason}
	r.index.remove(cur)
	r.index.add(&reg)
	r.byID[id] = &reg
	dis := *reg.hook.Disabled
	return &dis
}

// registration is the compiled, immutable form of a stored Webhook:
// everything an event needs is parsed once here, never per event.
type registration struct {
	hook  Webhook       // the stored copy but for its Options, which are in shared
	seq   uint64        // creation order
	rules []entityRules // options.entity compiled; few, so a slice rather than a map
	// entities holds those of rules that expand or cut down a record, by
	// entity name, for appendItem; the others send it as it is.
	entities   map[string]*entityRules
	related    projection
	skipKeys   []string
	custom     []string // custom entity API names; empty means all
	chunkSize  int
	chunkDelay time.Duration
	shared     *shared
}

// rulesOf returns the compiled options of an entity, or nil. It scans,
// and is small enough to be inlined where Match calls it, once for each
// registration an event may fire: Limits.Entities bounds the scan.
func (reg *registration) rulesOf(entity string) *entityRules {
	for i := range reg.rules {
		if reg.rules[i].entity == entity {
			return &reg.rules[i]
		}
	}
	return nil
}

// searchRules is rulesOf in time logarithmic in the entities, which are
// sorted: for the index, which looks an entity up for each event name a
// registration lists. It searches by hand, as node.search does.
func (reg *registration) searchRules(entity string) *entityRules {
	rules := reg.rules
	lo, hi := 0, len(rules)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if rules[mid].entity < entity {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo < len(rules) && rules[lo].entity == entity {
		return &rules[lo]
	}
	return nil
}

func bySeq(a, b *registration) int {
	switch {
	case a.seq < b.seq:
		return -1
	case a.seq > b.seq:
		return 1
	}
	return 0
}

// webhook returns a new copy of the stored Webhook, for a caller.
func (reg *registration) webhook() Webhook {
	w := reg.hook
	w.Events = slices.Clone(w.Events)
	if w.Disabled != nil {
		dis := *w.Disabled
		w.Disabled = &dis
	}
	w.Options = viewOptions(reg.shared.options)
	// Its strings cannot change, but the caller may write to its filters.
	for _, e := range w.Options.Entity {
		for path, raw := range e.Filter {
			e.Filter[path] = bytes.Clone(raw)
		}
	}
	return w
}

// shared is what a registration shares with its copies (disabling makes
// one): its options, and what it builds when it first fires, since in a
// large registry most registrations fire rarely and their JSON would be a
// tenth of their memory. Neither the payload nor Match's copy, which only
// a registration that fires builds and hands out, has Disabled, so that
// the copies may share them too.
type shared struct {
	options     string // as compact JSON, which the compiled rules point into
	payload     string
	public      *Webhook
	payloadOnce sync.Once // after the strings, where it costs no padding
	publicOnce  sync.Once
	macs        macs // keyed with hook.Signature
}

// payloadJSON returns the "webhook" object of the registration's request
// bodies: the registration as a receiver sees it, never with its
// signature, the receiver's secret.
func (reg *registration) payloadJSON() string {
	sh := reg.shared
	sh.payloadOnce.Do(func() {
		public := reg.hook
		public.Signature, public.Disabled = "", nil         // a disabled registration sends nothing
		b, _ := public.marshal(json.RawMessage(sh.options)) // valid JSON: it cannot fail
		sh.payload = string(b)
	})
	return sh.payload
}

// public returns the copy of the registration that Match hands out,
// shared and read-only.
func (reg *registration) public() *Webhook {
	sh := reg.shared
	sh.publicOnce.Do(func() {
		w := reg.webhook()
		// Only an enabled registration fires; without Disabled, the copy
		// is right for the disabled copies of this one that share it too.
		w.Disabled = nil
		sh.public = &w
	})
	return sh.public
}

// isUUID reports whether s is a UUID in its textual 8-4-4-4-12 form, in
// either case.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails; see crypto/rand.Read
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}
