package webhook

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// MemoryQueue is the default Queue: it keeps deliveries in memory, so they
// are lost when the process ends, but Dispatchers of one process may share
// it. It runs no goroutines, and Claim does not scan the pending
// deliveries: it takes them off heaps of spaces and of targets ordered by
// their earliest delivery, so that its cost grows with what it returns
// and skips, and with the logarithm of what is waiting.
//
// Enqueue and Settle store copies of the Delivery values they are given,
// and Claim and Dead return copies the caller owns, but the copies share
// the arrays behind EventIDs and Body, which nobody modifies after a
// delivery is built: a caller must not modify their elements. The slices
// are stored at full capacity, so appending to a returned slice copies it.
// Stored times lose their monotonic clock reading, as they would in a
// database.
//
// Beyond the Queue contract, a MemoryQueue holds at most one delivery per
// ID, pending, leased or dead, and an outcome acts on the delivery with
// its ID wherever it is.
//
// The zero value is an empty MemoryQueue with the default QueueLimits. A
// MemoryQueue is safe for simultaneous use by multiple goroutines.
type MemoryQueue struct {
	limits QueueLimits // zero fields mean the defaults

	mu      sync.Mutex          // guards the fields below
	seq     uint64              // the last enqueue order given out
	held    int                 // pending deliveries, leased ones included
	entries map[string]*queued  // every delivery held, by ID
	targets map[string]*targetQ // targets that hold a delivery, a pause or failures
	spaces  map[string]*spaceQ  // spaces that have a pending delivery, leased or not
	// The spaces with a target ready to claim from: due holds those whose
	// earliest delivery a Claim found due, fewest leased first (a Claim
	// that finds one not due after all moves it back), and later the
	// others, earliest first.
	due, later minHeap[*spaceQ]
	paused     minHeap[*targetQ] // targets paused, earliest end first
	leases     minHeap[*queued]  // leased deliveries, earliest lease end first
	// waiting holds the targets with a pending delivery not leased, paused
	// or not, by the later of their earliest Due and their pause's end:
	// NextDue's answer, without disturbing the spaces' order.
	waiting minHeap[waitingTarget]

	aside []*targetQ // scratch space of Claim: targets at their limit
}

var _ Queue = (*MemoryQueue)(nil)

// NewMemoryQueue returns an empty MemoryQueue bound by limits.
func NewMemoryQueue(limits QueueLimits) *MemoryQueue {
	return &MemoryQueue{limits: limits}
}

type queuedState uint8

const (
	statePending queuedState = iota
	stateLeased
	stateDead
)

// slot is where a delivery stands in the order of the heaps: at, then
// enqueue order.
type slot struct {
	// at is when the delivery matters next: d.Due while it is pending, the
	// end of its lease while it is leased. One field serves both heaps, so
	// that one before method orders both.
	at  time.Time
	seq uint64 // enqueue order, which breaks ties of at
}

func (e slot) before(o slot) bool {
	if c := e.at.Compare(o.at); c != 0 {
		return c < 0
	}
	return e.seq < o.seq
}

// queued is one delivery a MemoryQueue holds.
type queued struct {
	d Delivery
	slot
	state  queuedState
	index  int      // position in target.pending while pending, in MemoryQueue.leases while leased
	target *targetQ // nil while dead
}

func (e *queued) before(o *queued) bool { return e.slot.before(o.slot) }

func (e *queued) setIndex(i int) { e.index = i }

// targetQ is what a MemoryQueue keeps for one target.
type targetQ struct {
	id      string
	space   *spaceQ
	pending minHeap[*queued] // not leased, earliest Due first, enqueue order among equals
	leased  int
	held    int // pending and leased
	dead    []*queued
	health  Health
	// until is the end of the target's latest pause, kept until Purge:
	// NextDue reports the later of it and a Due even once it has passed,
	// as a Queue in a database that keeps it in a column does.
	until time.Time
	// pausing says the target is in MemoryQueue.paused rather than in
	// space.ready: which of the two orders before uses.
	pausing bool
	index   int // in space.ready or MemoryQueue.paused; -1 in neither
	wait    int // in MemoryQueue.waiting; -1 when it has no pending delivery
	// While t has a pending delivery, first is the slot of the earliest
	// and wake when it may be claimed, the later of its Due and until:
	// copies that let the heaps of targets and spaces compare without
	// following pointers, which at a million deliveries miss the cache.
	first slot
	wake  time.Time
}

func (t *targetQ) before(o *targetQ) bool {
	if t.pausing {
		return t.until.Before(o.until)
	}
	return t.first.before(o.first)
}

func (t *targetQ) setIndex(i int) { t.index = i }

// waitingTarget is a target in MemoryQueue.waiting, which orders targets
// by wake and keeps their place in wait: a target is in a space's ready
// targets or the paused ones, and also there.
type waitingTarget struct{ *targetQ }

func (w waitingTarget) before(o waitingTarget) bool { return w.wake.Before(o.wake) }

func (w waitingTarget) setIndex(i int) { w.wait = i }

// spaceQ is what a MemoryQueue keeps for one space.
type spaceQ struct {
	name    string
	leased  int
	targets int               // in MemoryQueue.targets; the space goes with the last
	ready   minHeap[*targetQ] // targets with a pending delivery not paused, by their earliest
	inDue   bool              // in MemoryQueue.due rather than later: which order before uses
	index   int               // in due or later; -1 in neither
	first   slot              // ready[0].first while it has a ready target, for the same reason
}

func (s *spaceQ) before(o *spaceQ) bool {
	if s.inDue && s.leased != o.leased {
		return s.leased < o.leased
	}
	return s.first.before(o.first)
}

func (s *spaceQ) setIndex(i int) { s.index = i }

// Enqueue stores copies of ds as pending, as the Queue contract says. It
// also refuses, with an error that wraps ErrInvalid, a nil delivery, one
// without ID or Target, or two with the same ID.
func (q *MemoryQueue) Enqueue(ctx context.Context, ds ...*Delivery) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for i, d := range ds {
		if err := checkDelivery(d); err != nil {
			return fmt.Errorf("enqueue delivery %d of %d: %w", i+1, len(ds), err)
		}
	}
	lim := q.limits.WithDefaults()
	q.mu.Lock()
	defer q.mu.Unlock()
	q.init()
	if q.held+len(ds) > lim.MaxPending {
		return fmt.Errorf("%w: %d pending deliveries, %d more would pass the bound of %d",
			ErrQueueFull, q.held, len(ds), lim.MaxPending)
	}
	add := map[string]int{}
	ids := make(map[string]bool, len(ds))
	for _, d := range ds {
		if q.entries[d.ID] != nil || ids[d.ID] {
			return fmt.Errorf("%w: delivery %s of webhook %s is queued already", ErrInvalid, d.ID, d.WebhookID)
		}
		ids[d.ID] = true
		add[d.Target]++
	}
	for target, n := range add {
		held := 0
		if t := q.targets[target]; t != nil {
			held = t.held
		}
		if held+n > lim.MaxPendingPerTarget {
			return fmt.Errorf("%w: webhook %s has %d pending deliveries, %d more would pass the bound of %d",
				ErrQueueFull, target, held, n, lim.MaxPendingPerTarget)
		}
	}
	for _, d := range ds {
		q.seq++
		e := &queued{d: queuedCopy(d), slot: slot{seq: q.seq}}
		q.entries[d.ID] = e
		q.addPending(e)
	}
	return nil
}

// Claim leases and returns up to max due deliveries, as the Queue
// contract says.
func (q *MemoryQueue) Claim(ctx context.Context, now time.Time, max int, lease time.Duration, perTarget int) ([]*Delivery, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if max <= 0 {
		return nil, nil
	}
	perTarget = orDefault(perTarget, 1)
	now = now.Round(0)
	q.mu.Lock()
	defer q.mu.Unlock()
	q.expire(now)
	for len(q.later) > 0 && !q.later[0].first.at.After(now) {
		s := q.later.remove(0)
		s.inDue = true
		q.due.push(s)
	}
	var claimed []*queued
	for len(claimed) < max && len(q.due) > 0 {
		s := q.due[0]
		t := s.ready[0]
		switch {
		case t.pending[0].at.After(now):
			// Not due after all: time went back, or its earliest changed.
			q.due.remove(0)
			s.inDue = false
			q.later.push(s)
			continue
		case t.leased >= perTarget:
			s.ready.remove(0)
			q.aside = append(q.aside, t)
			q.place(s)
			continue
		}
		e := t.pending.remove(0)
		e.state, e.at = stateLeased, now.Add(lease)
		q.leases.push(e)
		t.leased++
		s.leased++
		claimed = append(claimed, e)
		q.ready(t)
	}
	for _, t := range q.aside {
		q.ready(t)
	}
	clear(q.aside)
	q.aside = q.aside[:0]
	if len(claimed) == 0 {
		return nil, nil
	}
	// One array for the whole batch: two allocations a Claim, not one a
	// delivery.
	batch := make([]Delivery, len(claimed))
	out := make([]*Delivery, len(claimed))
	for i, e := range claimed {
		batch[i] = e.d
		out[i] = &batch[i]
	}
	return out, nil
}

// Settle records outcomes as the Queue contract says.
func (q *MemoryQueue) Settle(ctx context.Context, now time.Time, outcomes ...Outcome) ([]Health, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for i, o := range outcomes {
		if err := checkDelivery(o.Delivery); err != nil {
			return nil, fmt.Errorf("settle outcome %d of %d: %w", i+1, len(outcomes), err)
		}
		if o.Kind < Delivered || o.Kind > Dropped {
			return nil, fmt.Errorf("settle outcome %d of %d: %w: kind %d", i+1, len(outcomes), ErrInvalid, o.Kind)
		}
	}
	now = now.Round(0)
	dead := q.limits.WithDefaults().MaxDead
	q.mu.Lock()
	defer q.mu.Unlock()
	q.init()
	health := make([]Health, len(outcomes))
	for i, o := range outcomes {
		d := o.Delivery
		e := q.entries[d.ID]
		switch o.Kind {
		case Delivered, Dropped:
			if e != nil {
				q.remove(e)
			}
		case Retried, Released:
			if e == nil {
				e = q.take(e, d) // a copy of d, as given
			} else {
				q.unlink(e)
				e.d.Due = d.Due.Round(0)
				if o.Kind == Retried { // Released changes nothing else
					e.d.Attempts, e.d.LastStatus, e.d.LastError = d.Attempts, d.LastStatus, d.LastError
				}
			}
			q.addPending(e)
		case Died:
			e = q.take(e, d)
			e.d, e.state = queuedCopy(d), stateDead
			t := q.target(d)
			t.dead = append(t.dead, e)
			if len(t.dead) > dead {
				for _, old := range t.dead[:len(t.dead)-dead] {
					delete(q.entries, old.d.ID)
				}
				// Reslicing keeps Died O(1); append reallocates, and so
				// frees the dropped front, once the array is full.
				clear(t.dead[:len(t.dead)-dead])
				t.dead = t.dead[len(t.dead)-dead:]
			}
		}
		health[i] = q.account(o, now)
	}
	return health, nil
}

// account applies o's effect on its target's Health and pause, and
// returns the Health. It requires q.mu held.
func (q *MemoryQueue) account(o Outcome, now time.Time) Health {
	t := q.targets[o.Delivery.Target]
	if t == nil {
		if !o.Failed {
			return Health{}
		}
		t = q.target(o.Delivery)
	}
	switch {
	case o.Kind == Delivered:
		t.health = Health{}
	case o.Failed:
		if t.health.Failures == 0 {
			t.health.FailingSince = now
		}
		t.health.Failures++
		if until := o.PauseUntil.Round(0); until.After(t.until) {
			// Paused even if until has passed by now: a Claim at an
			// earlier now must not find it; the next Claim at or after
			// until ends the pause.
			t.until = until
			q.pause(t)
		}
	}
	h := t.health
	q.forget(t)
	return h
}

// Dead returns copies of the dead deliveries of target, oldest first.
func (q *MemoryQueue) Dead(ctx context.Context, target string) ([]*Delivery, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	t := q.targets[target]
	if t == nil || len(t.dead) == 0 {
		return nil, nil
	}
	batch := make([]Delivery, len(t.dead))
	out := make([]*Delivery, len(t.dead))
	for i, e := range t.dead {
		batch[i] = e.d
		out[i] = &batch[i]
	}
	return out, nil
}

// Revive makes the dead delivery id of target pending again, or all of
// them when id is "", as the Queue contract says. A revived delivery
// keeps its enqueue order.
func (q *MemoryQueue) Revive(ctx context.Context, target, id string, now time.Time) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now = now.Round(0)
	q.mu.Lock()
	defer q.mu.Unlock()
	t := q.targets[target]
	var list []*queued
	switch {
	case t == nil:
	case id == "":
		list, t.dead = t.dead, nil
	default:
		if i := slices.IndexFunc(t.dead, func(e *queued) bool { return e.d.ID == id }); i >= 0 {
			list = []*queued{t.dead[i]}
			t.dead = slices.Delete(t.dead, i, i+1)
		}
	}
	if id != "" && len(list) == 0 {
		return nil, fmt.Errorf("%w: dead delivery %s of webhook %s", ErrNotFound, id, target)
	}
	ids := make([]string, 0, len(list))
	for _, e := range list {
		e.d.Attempts, e.d.Due = 0, now
		q.addPending(e)
		ids = append(ids, e.d.ID)
	}
	if t != nil {
		q.forget(t)
	}
	return ids, nil
}

// Purge removes every delivery of target and what q keeps of it.
func (q *MemoryQueue) Purge(ctx context.Context, target string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	t := q.targets[target]
	if t == nil {
		return nil
	}
	if t.pausing {
		q.paused.remove(t.index)
		t.pausing = false
	}
	for _, e := range t.dead {
		delete(q.entries, e.d.ID)
	}
	t.dead, t.health = nil, Health{}
	// A scan of the leases, at most as many as the claimers' workers: a
	// registration is deleted far less often than a delivery is claimed,
	// so the leases are not also listed by target.
	var leased []*queued
	for _, e := range q.leases {
		if e.target == t {
			leased = append(leased, e)
		}
	}
	for _, e := range leased {
		q.remove(e)
	}
	for len(t.pending) > 0 {
		q.remove(t.pending[0])
	}
	// Out of every heap now, whose order the end of its pause may have
	// been part of.
	t.until = time.Time{}
	q.forget(t)
	return nil
}

// Pending returns those of ids that q holds as pending, leased or not.
func (q *MemoryQueue) Pending(ctx context.Context, ids ...string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []string
	for _, id := range ids {
		if e := q.entries[id]; e != nil && e.state != stateDead {
			out = append(out, id)
		}
	}
	return out, nil
}

// NextDue reports when Claim may next return something, as the Queue
// contract says.
func (q *MemoryQueue) NextDue(ctx context.Context) (t time.Time, ok bool, err error) {
	if err := ctx.Err(); err != nil {
		return time.Time{}, false, err
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.waiting) > 0 {
		t, ok = q.waiting[0].wake, true
	}
	if len(q.leases) > 0 && (!ok || q.leases[0].at.Before(t)) {
		t, ok = q.leases[0].at, true
	}
	return t, ok, nil
}

// checkDelivery reports a delivery that no Queue method can store.
func checkDelivery(d *Delivery) error {
	switch {
	case d == nil:
		return fmt.Errorf("%w: nil delivery", ErrInvalid)
	case d.ID == "":
		return fmt.Errorf("%w: delivery of webhook %s has no id", ErrInvalid, d.WebhookID)
	case d.Target == "":
		return fmt.Errorf("%w: delivery %s has no target", ErrInvalid, d.ID)
	}
	return nil
}

// queuedCopy returns the copy of d that a MemoryQueue keeps: the slices at
// full capacity, so that appending to a copy handed out never writes into
// the shared array, and Due without its monotonic reading, so that every
// comparison uses the wall clock.
func queuedCopy(d *Delivery) Delivery {
	c := *d
	c.EventIDs = slices.Clip(c.EventIDs)
	c.Body = slices.Clip(c.Body)
	c.Due = c.Due.Round(0)
	return c
}

// init makes the maps of a zero MemoryQueue. It requires q.mu held.
func (q *MemoryQueue) init() {
	if q.entries == nil {
		q.entries = make(map[string]*queued)
		q.targets = make(map[string]*targetQ)
		q.spaces = make(map[string]*spaceQ)
	}
}

// target returns the target of d, made if q has none. It requires q.mu
// held.
func (q *MemoryQueue) target(d *Delivery) *targetQ {
	t := q.targets[d.Target]
	if t == nil {
		s := q.spaces[d.Space]
		if s == nil {
			s = &spaceQ{name: d.Space, index: -1}
			q.spaces[d.Space] = s
		}
		t = &targetQ{id: d.Target, space: s, index: -1, wait: -1}
		q.targets[d.Target] = t
		s.targets++
	}
	return t
}

// forget drops what q keeps of t, and of its space, once it is nothing:
// no delivery, no failure and no pause, ended or not, to remember. It
// requires q.mu held.
func (q *MemoryQueue) forget(t *targetQ) {
	if t.held > 0 || len(t.dead) > 0 || t.health.Failures > 0 || t.pausing || !t.until.IsZero() {
		return
	}
	if q.targets[t.id] != t {
		return
	}
	delete(q.targets, t.id)
	s := t.space
	if s.targets--; s.targets == 0 {
		delete(q.spaces, s.name)
	}
}

// expire returns to pending every delivery whose lease has ended by now,
// and to their spaces the targets whose pause has. It requires q.mu held.
func (q *MemoryQueue) expire(now time.Time) {
	for len(q.leases) > 0 && !q.leases[0].at.After(now) {
		e := q.leases.remove(0)
		t := e.target
		t.leased--
		t.space.leased--
		e.state, e.at = statePending, e.d.Due
		t.pending.push(e)
		q.ready(t)
	}
	for len(q.paused) > 0 && !q.paused[0].until.After(now) {
		t := q.paused.remove(0)
		t.pausing = false
		q.ready(t)
		q.forget(t)
	}
}

// addPending makes e, which is in q.entries and nowhere else, pending.
// It requires q.mu held.
func (q *MemoryQueue) addPending(e *queued) {
	t := q.target(&e.d)
	e.state, e.at, e.target = statePending, e.d.Due, t
	t.held++
	q.held++
	t.pending.push(e)
	q.ready(t)
}

// take returns e, taken out of wherever it was, or, when e is nil, a new
// entry holding a copy of d. It requires q.mu held.
func (q *MemoryQueue) take(e *queued, d *Delivery) *queued {
	if e == nil {
		q.seq++
		e = &queued{d: queuedCopy(d), slot: slot{seq: q.seq}}
		q.entries[d.ID] = e
		return e
	}
	q.unlink(e)
	return e
}

// remove drops e for good. It requires q.mu held.
func (q *MemoryQueue) remove(e *queued) {
	t := q.targets[e.d.Target]
	q.unlink(e)
	delete(q.entries, e.d.ID)
	if t != nil {
		q.forget(t)
	}
}

// unlink takes e out of the pending, leased or dead deliveries, leaving it
// in q.entries for the caller to put elsewhere or delete. It requires q.mu
// held.
func (q *MemoryQueue) unlink(e *queued) {
	switch e.state {
	case statePending, stateLeased:
		t := e.target
		if e.state == statePending {
			t.pending.remove(e.index)
		} else {
			q.leases.remove(e.index)
			t.leased--
			t.space.leased--
		}
		t.held--
		q.held--
		e.target = nil
		q.ready(t)
	case stateDead:
		t := q.targets[e.d.Target]
		i := slices.Index(t.dead, e) // a scan of at most MaxDead, on a path that is rare
		t.dead = slices.Delete(t.dead, i, i+1)
	}
}

// ready puts t where its deliveries say after they changed: in its
// space's ready targets at the place of its earliest pending delivery, or
// out of them when it has none or is paused. It then places the space. It
// requires q.mu held.
func (q *MemoryQueue) ready(t *targetQ) {
	q.await(t)
	s := t.space
	switch {
	case t.pausing:
		// Held back until its pause ends, whatever it holds.
	case len(t.pending) == 0:
		if t.index >= 0 {
			s.ready.remove(t.index)
		}
	case t.index < 0:
		s.ready.push(t)
	default:
		s.ready.fix(t.index)
	}
	q.place(s)
}

// await sets t.first and t.wake after its pending deliveries or its
// pause changed, and puts t in q.waiting at the place of its wake, or out
// of it when it has no pending delivery. It requires q.mu held.
func (q *MemoryQueue) await(t *targetQ) {
	if len(t.pending) == 0 {
		if t.wait >= 0 {
			q.waiting.remove(t.wait)
		}
		return
	}
	t.first, t.wake = t.pending[0].slot, t.pending[0].at
	if t.until.After(t.wake) {
		t.wake = t.until
	}
	if t.wait < 0 {
		q.waiting.push(waitingTarget{t})
	} else {
		q.waiting.fix(t.wait)
	}
}

// pause moves t, paused until t.until, out of its space's ready targets.
// It requires q.mu held.
func (q *MemoryQueue) pause(t *targetQ) {
	q.await(t) // t.until changed
	if t.pausing {
		q.paused.fix(t.index)
		return
	}
	if t.index >= 0 {
		t.space.ready.remove(t.index)
		q.place(t.space)
	}
	t.pausing = true
	q.paused.push(t)
}

// place puts s where its ready targets say: among the due or the later
// spaces at its place, or in neither when it has none. It requires q.mu
// held.
func (q *MemoryQueue) place(s *spaceQ) {
	heap := &q.later
	if s.inDue {
		heap = &q.due
	}
	if len(s.ready) > 0 {
		s.first = s.ready[0].first
	}
	switch {
	case len(s.ready) == 0:
		if s.index >= 0 {
			heap.remove(s.index)
		}
		s.inDue = false
	case s.index < 0:
		s.inDue = false
		q.later.push(s)
	default:
		heap.fix(s.index)
	}
}
