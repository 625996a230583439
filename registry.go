package webhook

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
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

// RegistryConfig configures a Registry. The zero value means the
// documented defaults; NewRegistry reads it once.
type RegistryConfig struct {
	// Store keeps the registrations where every replica of the service
	// sees them. nil means the Registry's memory alone, which the process
	// takes with it when it ends.
	Store Store
	// Clock stamps Created, Modified and Disabled. nil means the system
	// clock; give a Registry the Clock of its Dispatcher.
	Clock Clock
	// Addresses refuses, at registration, a URL whose host is a refused
	// IP literal or localhost, for the reason the HTTPTransport would give
	// when dialling. Give it the policy of the HTTPTransport; the zero
	// value is the safe default.
	Addresses AddressPolicy
	// Events adds event names of the host's own entities to Pipeliner's
	// catalogue, each "Entity.Action" ("Invoice.Paid"); "Entity.*" is
	// added with them. Every replica must be given the same.
	Events []string
	// Logger gets an error when following the Store fails. nil means
	// slog.Default().
	Logger *slog.Logger
	// Limits bound what one registration may carry; its zero fields mean
	// the defaults.
	Limits Limits
}

// Registry holds webhook registrations, each in its team space, compiled
// for matching. Every call that reads or changes one names its space, and
// an id of another space is exactly like one that does not exist.
//
// With a Store, the Registry writes through it and follows, in a
// goroutine of its own until Close, the changes other replicas make; Get,
// List, Update, Delete and Apply catch up with the Store first, so that
// they see every change that returned before them on any replica, while
// matching reads only the Registry's memory.
//
// A Registry is safe for simultaneous use by multiple goroutines. Use
// NewRegistry; the zero value is not usable.
type Registry struct {
	store     Store
	clock     Clock
	addresses AddressPolicy
	log       *slog.Logger
	events    map[string]string // the catalogue, each name to its entity's "Entity.*"; fixed by NewRegistry
	limits    Limits            // what one registration may carry

	mu    sync.RWMutex // guards the fields below
	byID  map[spaceID]*registration
	byKey map[string]*registration
	index index
	seq   uint64 // creation order of registrations
	// version is, without a Store, the last version given to a change;
	// with one, the Store's version up to which its changes are applied.
	version int64
	// gone holds, with a Store, the keys of deleted registrations by the
	// version of their deletion, until version passes it: until then a
	// catch-up may still bring an older state of them.
	gone     map[string]int64
	watchers map[int]func(key string)
	watchSeq int

	syncing chan struct{} // a token: one catch-up at a time
	stop    context.CancelFunc
	done    chan struct{} // closed when the goroutine following the Store ends
}

// spaceID is how callers address a registration.
type spaceID struct{ space, id string }

// maxConflicts is how often a change is tried again after it raced a
// change of the same registration on another replica. Each conflict is
// another writer's success, so the retries end; the bound only keeps one
// caller from starving for ever behind a stream of writers (8 was seen
// to run out with two replicas updating one registration in a loop under
// the race detector).
const maxConflicts = 32

// NewRegistry returns a Registry whose catalogue is Pipeliner's 138 event
// names and cfg.Events. With a Store, it loads the registrations stored
// there before it returns, and follows the Store until Close.
func NewRegistry(ctx context.Context, cfg RegistryConfig) (*Registry, error) {
	r := &Registry{store: cfg.Store, clock: cfg.Clock, addresses: cfg.Addresses, log: cfg.Logger, limits: cfg.Limits.withDefaults(),
		events: map[string]string{}, byID: map[spaceID]*registration{}, byKey: map[string]*registration{},
		watchers: map[int]func(string){}, syncing: make(chan struct{}, 1)}
	if r.clock == nil {
		r.clock = systemClock{}
	}
	if r.log == nil {
		r.log = slog.Default()
	}
	for _, name := range strings.Fields(catalogue) {
		entity, _, _ := strings.Cut(name, ".")
		r.events[name] = entity + ".*"
	}
	var errs FieldErrors
	for i, name := range cfg.Events {
		entity, action, ok := strings.Cut(name, ".")
		if !ok || !isIdent(entity) || !(isIdent(action) || action == "*") {
			errs = append(errs, invalid(fmt.Sprintf("events[%d]", i), "%q is not Entity.Action", name))
			continue
		}
		r.events[name] = entity + ".*"
		r.events[entity+".*"] = entity + ".*"
	}
	if len(errs) > 0 {
		return nil, errs
	}
	if r.store == nil {
		return r, nil
	}
	r.gone = map[string]int64{}
	if err := r.catchUp(ctx); err != nil {
		return nil, err
	}
	follow, stop := context.WithCancel(context.Background())
	r.stop, r.done = stop, make(chan struct{})
	go r.follow(follow)
	return r, nil
}

func isIdent(s string) bool {
	for i, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return s != ""
}

func (r *Registry) known(name string) bool { return r.events[name] != "" }

// now is the time stamped on a change: Pipeliner's times have whole
// seconds, and what is stored is what JSON gives back.
func (r *Registry) now() time.Time { return r.clock.Now().UTC().Truncate(time.Second) }

// Create validates w and stores it in space; w.Space is ignored. It
// assigns ID (a random UUID), Created and Modified when they are zero and
// keeps Disabled, so that a host can restore registrations it kept with
// their own; a given ID must be a UUID that no registration of space has.
// A tenant never chooses them: the REST handler builds w from a Patch.
func (r *Registry) Create(ctx context.Context, space string, w Webhook) (Webhook, error) {
	if err := ctx.Err(); err != nil {
		return Webhook{}, err
	}
	reg, err := r.prepareCreate(space, w)
	if err != nil {
		return Webhook{}, err
	}
	if err := r.commit(ctx, []write{{reg: reg}}); err != nil {
		return Webhook{}, err
	}
	return reg.webhook(), nil
}

// prepareCreate compiles a new registration of space.
func (r *Registry) prepareCreate(space string, w Webhook) (*registration, error) {
	w.Space = space
	if w.ID == "" {
		w.ID = newUUID()
	}
	if w.Created.IsZero() {
		w.Created = r.now()
	}
	if w.Modified.IsZero() {
		w.Modified = w.Created
	}
	w.Created, w.Modified = w.Created.UTC().Truncate(time.Second), w.Modified.UTC().Truncate(time.Second)
	reg, err := r.compile(w, false)
	if err != nil {
		return nil, err
	}
	reg.key = newUUID()
	return reg, nil
}

// Get returns the registration id of space.
func (r *Registry) Get(ctx context.Context, space, id string) (Webhook, error) {
	reg, err := r.find(ctx, space, id)
	if err != nil {
		return Webhook{}, err
	}
	return reg.webhook(), nil
}

// Update changes the registration id of space as p says, stamps Modified
// and enables it again if a Dispatcher had disabled it. Deliveries already
// accepted go out as they were built.
func (r *Registry) Update(ctx context.Context, space, id string, p Patch) (Webhook, error) {
	if id == "" {
		return Webhook{}, notFound(id) // a Change with no id would create
	}
	res, err := r.Apply(ctx, space, []Change{{ID: id, Patch: p}}, true)
	if err != nil {
		return Webhook{}, err
	}
	return res[0].Webhook, nil
}

// Delete removes the registration id of space. Its deliveries, pending
// and dead, are removed from the Queue of every Dispatcher of the
// Registry; none is sent after Delete returns, but for attempts already
// under way.
func (r *Registry) Delete(ctx context.Context, space, id string) error {
	_, err := r.Apply(ctx, space, []Change{{ID: id, Delete: true}}, true)
	return err
}

// List returns the registrations of space in the order this Registry
// learned of them: the order they were created, on one replica.
func (r *Registry) List(ctx context.Context, space string) ([]Webhook, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := r.catchUp(ctx); err != nil {
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

// Apply makes changes in space, as Pipeliner's batch-modify and
// batch-delete do. The results are in the order of the changes. When
// atomic, all of them are made or, if one fails, none: the error is the
// first failing change's, and the results say which failed (Err) and why.
// Otherwise each is made on its own, and its error is in its result.
func (r *Registry) Apply(ctx context.Context, space string, changes []Change, atomic bool) ([]ChangeResult, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !atomic {
		results := make([]ChangeResult, len(changes))
		for i := range changes {
			res, err := r.Apply(ctx, space, changes[i:i+1], true)
			if res == nil {
				res = []ChangeResult{{Err: err}}
			}
			results[i] = res[0]
		}
		return results, nil
	}
	for try := 1; ; try++ {
		if err := r.catchUp(ctx); err != nil {
			return nil, err
		}
		ws, results, err := r.prepare(space, changes)
		if err != nil {
			return results, err
		}
		err = r.commit(ctx, ws)
		if errors.Is(err, ErrConflict) && try < maxConflicts {
			continue // another replica changed one of them first: start again from its change
		}
		if err != nil {
			return nil, err
		}
		for i, w := range ws {
			if w.reg != nil {
				results[i].Webhook = w.reg.webhook()
			}
		}
		return results, nil
	}
}

// prepare compiles changes against the registrations as they are. On
// error, the results say which changes failed and why.
func (r *Registry) prepare(space string, changes []Change) ([]write, []ChangeResult, error) {
	ws := make([]write, len(changes))
	results := make([]ChangeResult, len(changes))
	var first error
	seen := map[string]bool{}
	for i, c := range changes {
		w, err := r.prepareChange(space, c, seen)
		ws[i], results[i].Err = w, err
		if err != nil && first == nil {
			first = err
		}
		if w.old != nil {
			results[i].Webhook = Webhook{ID: w.old.hook.ID, Space: space}
		}
	}
	return ws, results, first
}

func (r *Registry) prepareChange(space string, c Change, seen map[string]bool) (write, error) {
	switch {
	case c.Delete && c.ID == "":
		return write{}, notFound(c.ID) // not a create: nothing has no id
	case c.ID == "":
		var w Webhook
		c.Patch.apply(&w)
		reg, err := r.prepareCreate(space, w)
		return write{reg: reg}, err
	}
	r.mu.RLock()
	old := r.byID[spaceID{space, c.ID}]
	r.mu.RUnlock()
	switch {
	case old == nil:
		return write{}, notFound(c.ID)
	case seen[c.ID]:
		return write{}, FieldErrors{invalid("id", "%s is changed twice in one batch", c.ID)}
	}
	seen[c.ID] = true
	if c.Delete {
		return write{old: old}, nil
	}
	w := old.webhook()
	c.Patch.apply(&w)
	w.Modified, w.Disabled = r.now(), nil
	reg, err := r.compile(w, false)
	if err != nil {
		return write{}, err
	}
	reg.key, reg.seq = old.key, old.seq
	return write{old: old, reg: reg}, nil
}

// apply sets the fields of w that p gives.
func (p *Patch) apply(w *Webhook) {
	if p.URL != nil {
		w.URL = *p.URL
	}
	if p.Events != nil {
		w.Events = slices.Clone(*p.Events)
	}
	if p.Options != nil {
		w.Options = *p.Options
	}
	if p.InsecureSSL != nil {
		w.InsecureSSL = *p.InsecureSSL
	}
	if p.Signature != nil {
		w.Signature = *p.Signature
	}
}

// find returns the registration id of space, after catching up with the
// Store.
func (r *Registry) find(ctx context.Context, space, id string) (*registration, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := r.catchUp(ctx); err != nil {
		return nil, err
	}
	r.mu.RLock()
	reg := r.byID[spaceID{space, id}]
	r.mu.RUnlock()
	if reg == nil {
		return nil, notFound(id)
	}
	return reg, nil
}

// notFound is the error for an id of no registration of the caller's
// space: the same whether another space has it or none does.
func notFound(id string) error { return fmt.Errorf("webhook %q: %w", id, ErrNotFound) }

// byTarget returns the registration whose key is key, for a delivery built
// for it. A key this replica does not know may belong to a registration
// another replica created a moment ago: it catches up with the Store
// before it answers ErrNotFound, which then means the registration is
// gone. Any other error means the Store could not tell.
func (r *Registry) byTarget(ctx context.Context, key string) (*registration, error) {
	r.mu.RLock()
	reg := r.byKey[key]
	_, gone := r.gone[key]
	r.mu.RUnlock()
	if reg != nil || gone || r.store == nil {
		return reg, r.missing(reg, key)
	}
	if err := r.catchUp(ctx); err != nil {
		return nil, err
	}
	r.mu.RLock()
	reg = r.byKey[key]
	r.mu.RUnlock()
	return reg, r.missing(reg, key)
}

func (r *Registry) missing(reg *registration, key string) error {
	if reg != nil {
		return nil
	}
	return fmt.Errorf("webhook: registration %s: %w", key, ErrNotFound)
}

// disable marks the registration whose key is key disabled, unless it is
// gone or disabled already; it returns the registration's new state, or
// nil when nothing changed.
func (r *Registry) disable(ctx context.Context, key, reason string, at time.Time) (*Disabled, error) {
	for try := 1; ; try++ {
		r.mu.RLock()
		cur := r.byKey[key]
		r.mu.RUnlock()
		if cur == nil || cur.hook.Disabled != nil {
			return nil, nil
		}
		// Registrations are immutable once compiled: Match reads them
		// without the lock. The copy shares the compiled rules, which
		// never change, and what the registration built when it fired
		// (see shared).
		reg := *cur
		reg.hook.Disabled = &Disabled{At: at.UTC().Truncate(time.Second), Reason: reason}
		err := r.commit(ctx, []write{{old: cur, reg: &reg}})
		if errors.Is(err, ErrConflict) && try < maxConflicts {
			if err := r.catchUp(ctx); err != nil {
				return nil, err
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		dis := *reg.hook.Disabled
		return &dis, nil
	}
}
