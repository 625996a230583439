package webhook

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"slices"
	"sync"
	"time"
)

// registration is the compiled, immutable form of a stored Webhook:
// everything an event needs is parsed once here, never per event.
type registration struct {
	hook    Webhook       // the stored copy but for its Options, which are in shared
	key     string        // its identity, which no other registration ever has (see Stored.Key)
	version int64         // of this state; see Registry.version
	seq     uint64        // creation order
	rules   []entityRules // options.entity compiled; few, so a slice rather than a map
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
