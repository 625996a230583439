package webhook

import (
	"math"
	"time"
)

// Limits bound what one registration may carry: how long each of its lists
// may be and how large its strings and its options are. They keep what a
// tenant can make the service do within bounds: compiling a registration is
// linear in its size, and the work one registration adds to every event of
// its space is bounded by them.
//
// The zero value means every default. A field of 0 (or less) means the
// default that its comment gives; the defaults fit real use of Pipeliner's
// webhooks with room to spare, where a registration rarely lists more than
// a few dozen of anything. A registration over a limit is refused with a
// *FieldError that names the field and the limit ("options.entity.Contact.
// filter.email1: 150 values, at most 100").
//
// A host raises or lowers them with RegistryConfig.Limits. Raised limits
// keep compiling linear and the cost of an event bounded, in proportion.
type Limits struct {
	// Events is the most names in a registration's events. If 0, 200:
	// Pipeliner's catalogue has 138, and a host adds a few of its own.
	Events int
	// Entities is the most keys of options.entity. If 0, 50: Pipeliner's
	// catalogue has 26 entities, and custom entities have keys of their own.
	Entities int
	// FilterFields is the most fields of one entity's filter, and of its
	// filter-op. If 0, 20.
	FilterFields int
	// FilterValues is the most values of one filter field. If 0, 100.
	FilterValues int
	// FilterValueBytes is the most bytes of one filter value as JSON (a
	// string with its quotes). If 0, 1024: ids, e-mail addresses and names
	// are far shorter, and text operators search for words, not pages.
	FilterValueBytes int
	// LoadOnly is the most load-only paths of one entity, or of
	// related_entity. If 0, 200: an entity of many custom fields, each named.
	LoadOnly int
	// Expand is the most expand paths of one entity, or of related_entity.
	// If 0, 20: each is a relation the host loads for every event.
	Expand int
	// OnFieldChange is the most on-field-change paths of one entity. If 0,
	// 50.
	OnFieldChange int
	// SkipKeys is the most skip_keys. If 0, 20: one for each integration
	// that writes to the CRM.
	SkipKeys int
	// CustomEntities is the most names in custom_entity_api_name. If 0, 100.
	CustomEntities int
	// URLBytes is the most bytes of the url. If 0, 2048, which browsers,
	// proxies and servers commonly accept.
	URLBytes int
	// NameBytes is the most bytes of a name: an entity name (a key of
	// options.entity), a skip key, a custom entity API name. If 0, 128.
	NameBytes int
	// PathBytes is the most bytes of a dot path of filter, filter-op,
	// load-only, expand or on-field-change. If 0, 256.
	PathBytes int
	// PathDepth is the most names of a dot path ("a.b.c" has 3). If 0, 10.
	PathDepth int
	// OptionsBytes is the most bytes of the options as JSON, as a Registry
	// stores them (compact). If 0, 1 MiB. It bounds the registration as a
	// whole, whose lists at their maximum with short names and values fit
	// in it; each request of the registration carries its options too
	// (Pipeliner's "webhook" object), which the Dispatcher's MaxBody bounds.
	OptionsBytes int
	// ChunkDelay is the largest chunk_delay, in seconds. If 0, 3600: chunk
	// N of a Dispatch call waits N hours at most, and every chunk waits in
	// the Queue until it is due.
	ChunkDelay int
}

// The defaults of Limits, documented on its fields.
const (
	defaultMaxEvents           = 200
	defaultMaxEntities         = 50
	defaultMaxFilterFields     = 20
	defaultMaxFilterValues     = 100
	defaultMaxFilterValueBytes = 1024
	defaultMaxLoadOnly         = 200
	defaultMaxExpand           = 20
	defaultMaxOnFieldChange    = 50
	defaultMaxSkipKeys         = 20
	defaultMaxCustomEntities   = 100
	defaultMaxURLBytes         = 2048
	defaultMaxNameBytes        = 128
	defaultMaxPathBytes        = 256
	defaultMaxPathDepth        = 10
	defaultMaxOptionsBytes     = 1 << 20
	defaultMaxChunkDelay       = 3600
)

// withDefaults returns l with every field that is 0 or less set to its
// default.
func (l Limits) withDefaults() Limits {
	set := func(v *int, def int) {
		if *v <= 0 {
			*v = def
		}
	}
	set(&l.Events, defaultMaxEvents)
	set(&l.Entities, defaultMaxEntities)
	set(&l.FilterFields, defaultMaxFilterFields)
	set(&l.FilterValues, defaultMaxFilterValues)
	set(&l.FilterValueBytes, defaultMaxFilterValueBytes)
	set(&l.LoadOnly, defaultMaxLoadOnly)
	set(&l.Expand, defaultMaxExpand)
	set(&l.OnFieldChange, defaultMaxOnFieldChange)
	set(&l.SkipKeys, defaultMaxSkipKeys)
	set(&l.CustomEntities, defaultMaxCustomEntities)
	set(&l.URLBytes, defaultMaxURLBytes)
	set(&l.NameBytes, defaultMaxNameBytes)
	set(&l.PathBytes, defaultMaxPathBytes)
	set(&l.PathDepth, defaultMaxPathDepth)
	set(&l.OptionsBytes, defaultMaxOptionsBytes)
	set(&l.ChunkDelay, defaultMaxChunkDelay)
	return l
}

// tooMany reports a list of n entries, of what unit names, over its limit,
// or nil.
func tooMany(field string, n int, unit string, limit int) *FieldError {
	if n <= limit {
		return nil
	}
	return invalid(field, "%d %s, at most %d", n, unit, limit)
}

// tooLong reports a string of n bytes over its limit, or nil; what names
// the string when the field does not.
func tooLong(field, what string, n, limit int) *FieldError {
	if n <= limit {
		return nil
	}
	if what != "" {
		what += " "
	}
	return invalid(field, "%s%d bytes, at most %d", what, n, limit)
}

// maxDelaySeconds is the largest delay, in seconds, that a time.Duration
// holds: chunk_delay beyond it (a host that raised Limits.ChunkDelay, or a
// trusted registration) is taken as it.
const maxDelaySeconds = math.MaxInt64 / int64(time.Second)

// chunkDelay converts chunk_delay seconds into a Duration without
// overflowing.
func chunkDelay(seconds int) time.Duration {
	return time.Duration(min(max(int64(seconds), 0), maxDelaySeconds)) * time.Second
}

// chunkWait is how long chunk n of a Dispatch call waits, n*delay, kept at
// the largest Duration rather than overflowing into the past however many
// chunks a call makes.
func chunkWait(n int, delay time.Duration) time.Duration {
	if n <= 0 || delay <= 0 {
		return 0
	}
	if int64(n) > math.MaxInt64/int64(delay) {
		return math.MaxInt64
	}
	return time.Duration(n) * delay
}
