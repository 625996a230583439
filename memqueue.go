package webhook

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// defaultMaxDead is how many dead deliveries a MemoryQueue keeps per
// registration unless told otherwise: enough to see what went wrong and
// revive it, few enough that a receiver that is down for days does not
// fill the memory.
const defaultMaxDead = 1000

// skipSetMin is the length of skip from which Claim looks names up in a
// set instead of scanning the slice: the scan is cheaper for the few
// registrations a Dispatcher usually has in flight.
const skipSetMin = 16

// MemoryQueue is the default Queue: it keeps deliveries in memory, so they
// are lost when the process ends. It runs no goroutines, and Claim does not
// scan the pending deliveries: it takes the due ones off a heap of
// registrations ordered by their earliest delivery, so that its cost grows
// with what it returns and skips, and with the logarithm of what is
// waiting.
//
// Enqueue, Retry and DeadLetter store copies of the Delivery values they
// are given, and Claim and Dead return copies the caller owns, but the
// copies share the arrays behind EventIDs and Body, which nobody modifies
// after a delivery is built: a caller must not modify their elements. The
// slices are stored at full capacity, so appending to a returned slice
// copies it. Stored times lose their monotonic clock reading, as they would
// in a database.
//
// Beyond the Queue contract, a MemoryQueue holds at most one delivery per
// ID, pending, leased or dead: Enqueue refuses an ID it holds, Retry and
// DeadLetter act on the delivery with d.ID wherever it is, or store d when
// there is none, and Ack removes the delivery wherever it is, dead ones
// included.
//
// The zero value is an empty MemoryQueue that keeps 1000 dead deliveries
// per registration. A MemoryQueue is safe for simultaneous use by multiple
// goroutines.
type MemoryQueue struct {
	maxDead int

	mu      sync.Mutex
	seq     uint64                // the last enqueue order given out
	entries map[string]*queued    // every delivery held, by ID
	hooks   map[string]*hookQueue // the registrations that have a pending or leased delivery
	ready   minHeap[*hookQueue]   // the registrations that have a pending delivery, earliest first
	leases  minHeap[*queued]      // the leased deliveries, earliest lease end first
	dead    map[string][]*queued  // the dead of each registration, oldest first

	// Scratch space of Claim, kept to spare it allocations.
	aside   []*hookQueue
	claimed []*queued
	skipSet map[string]struct{}
}

var _ Queue = (*MemoryQueue)(nil)

// NewMemoryQueue returns an empty MemoryQueue that keeps at most maxDead
// dead deliveries per registration, dropping the oldest first. If maxDead
// is 0 or less, 1000 is used.
func NewMemoryQueue(maxDead int) *MemoryQueue {
	return &MemoryQueue{maxDead: maxDead}
}

type queuedState uint8

const (
	statePending queuedState = iota
	stateLeased
	stateDead
)

// queued is one delivery a MemoryQueue holds.
type queued struct {
	d     Delivery
	seq   uint64 // enqueue order, which breaks ties of at
	state queuedState
	// at is when the delivery matters next: d.Due while it is pending, the
	// end of its lease while it is leased. One field serves both heaps, so
	// that one before method orders both.
	at    time.Time
	index int        // position in hook.pending while pending, in MemoryQueue.leases while leased
	hook  *hookQueue // nil while dead
}

func (e *queued) before(o *queued) bool {
	if c := e.at.Compare(o.at); c != 0 {
		return c < 0
	}
	return e.seq < o.seq
}

func (e *queued) setIndex(i int) { e.index = i }

// hookQueue is what a MemoryQueue holds for one registration.
type hookQueue struct {
	id      string
	pending minHeap[*queued] // earliest Due first, enqueue order among equals
	held    int              // pending and leased deliveries; the hookQueue goes when it reaches 0
	index   int              // position in MemoryQueue.ready, -1 when not there
}

// before orders registrations by their earliest pending delivery, so that
// Claim takes deliveries in (Due, enqueue order) across registrations too.
// Only hooks with a pending delivery are compared.
func (h *hookQueue) before(o *hookQueue) bool { return h.pending[0].before(o.pending[0]) }

func (h *hookQueue) setIndex(i int) { h.index = i }

// Enqueue stores copies of ds as pending. It fails with an error that
// wraps ErrInvalid, and stores none of ds, if one of them is nil, has no
// ID, or has the ID of a delivery q holds or of another of ds.
func (q *MemoryQueue) Enqueue(ctx context.Context, ds ...*Delivery) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for i, d := range ds {
		if err := checkDelivery(d); err != nil {
			return fmt.Errorf("enqueue delivery %d of %d: %w", i+1, len(ds), err)
		}
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.init()
	for i, d := range ds {
		if _, ok := q.entries[d.ID]; ok {
			// Undo this call's deliveries so that Enqueue stores all or
			// nothing, as a transaction of a durable Queue would.
			for _, d := range ds[:i] {
				q.remove(q.entries[d.ID])
			}
			return fmt.Errorf("%w: delivery %s of webhook %s is queued already", ErrInvalid, d.ID, d.WebhookID)
		}
		q.seq++
		e := &queued{d: queuedCopy(d), seq: q.seq}
		q.entries[d.ID] = e
		q.addPending(e)
	}
	return nil
}

// Claim leases and returns up to max pending deliveries whose Due is not
// after now, as the Queue contract says. The lease ends at now+lease: a
// Claim whose now is not before that time finds the delivery pending
// again, so that Claim at the time NextDue reports returns it. If max is 0
// or less, Claim returns nothing and leases nothing.
func (q *MemoryQueue) Claim(ctx context.Context, now time.Time, max int, lease time.Duration, skip []string) ([]*Delivery, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if max <= 0 {
		return nil, nil
	}
	now = now.Round(0)
	q.mu.Lock()
	defer q.mu.Unlock()
	q.expire(now)
	skipped := q.skipper(skip)
	aside, claimed := q.aside[:0], q.claimed[:0]
	for len(claimed) < max && len(q.ready) > 0 {
		h := q.ready[0]
		if h.pending[0].at.After(now) {
			break
		}
		// The registration stays off ready until the loop ends, so that it
		// gives at most one delivery, and so that a skipped one does not
		// come up again.
		q.ready.remove(0)
		aside = append(aside, h)
		if skipped(h.id) {
			continue
		}
		e := h.pending.remove(0)
		e.state, e.at = stateLeased, now.Add(lease)
		q.leases.push(e)
		claimed = append(claimed, e)
	}
	for _, h := range aside {
		q.settle(h)
	}
	var out []*Delivery
	if len(claimed) > 0 {
		// One array for the whole batch: two allocations a Claim, not one a
		// delivery.
		batch := make([]Delivery, len(claimed))
		out = make([]*Delivery, len(claimed))
		for i, e := range claimed {
			batch[i] = e.d
			out[i] = &batch[i]
		}
	}
	clear(aside)
	clear(claimed)
	q.aside, q.claimed = aside[:0], claimed[:0]
	return out, nil
}

// skipper returns whether a registration is in skip. requires q.mu held.
func (q *MemoryQueue) skipper(skip []string) func(string) bool {
	if len(skip) < skipSetMin {
		return func(id string) bool { return slices.Contains(skip, id) }
	}
	if q.skipSet == nil {
		q.skipSet = make(map[string]struct{}, len(skip))
	}
	clear(q.skipSet)
	for _, id := range skip {
		q.skipSet[id] = struct{}{}
	}
	return func(id string) bool {
		_, ok := q.skipSet[id]
		return ok
	}
}

// Ack removes the delivery with id, wherever it is: pending, leased or
// dead. An id that q does not hold is not an error.
func (q *MemoryQueue) Ack(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if e := q.entries[id]; e != nil {
		q.remove(e)
	}
	return nil
}

// Retry ends the lease of the delivery with d.ID and stores d's Attempts,
// Due, LastStatus and LastError: the delivery is pending again, due at
// d.Due. A dead delivery with d.ID is pending again too. If q holds no
// delivery with d.ID, Retry stores a copy of d as pending: a delivery is
// better attempted once more than lost. A nil d or one without ID is an
// error that wraps ErrInvalid.
func (q *MemoryQueue) Retry(ctx context.Context, d *Delivery) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := checkDelivery(d); err != nil {
		return fmt.Errorf("retry: %w", err)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	e := q.take(d)
	e.d.Attempts, e.d.Due = d.Attempts, d.Due.Round(0)
	e.d.LastStatus, e.d.LastError = d.LastStatus, d.LastError
	q.addPending(e)
	return nil
}

// take returns q's entry for d.ID, out of whichever set held it, or a new
// one holding a copy of d. It requires q.mu held.
func (q *MemoryQueue) take(d *Delivery) *queued {
	q.init()
	e := q.entries[d.ID]
	if e == nil {
		q.seq++
		e = &queued{d: queuedCopy(d), seq: q.seq}
		q.entries[d.ID] = e
		return e
	}
	q.unlink(e)
	return e
}

// DeadLetter ends the lease of the delivery with d.ID and keeps a copy of
// d, as given, as the newest dead delivery of d.WebhookID, dropping the
// oldest when there are more than q keeps. It does so also when q holds no
// delivery with d.ID, and moves a dead one to the newest place. A nil d or
// one without ID is an error that wraps ErrInvalid.
func (q *MemoryQueue) DeadLetter(ctx context.Context, d *Delivery) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := checkDelivery(d); err != nil {
		return fmt.Errorf("dead-letter: %w", err)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	e := q.take(d)
	e.d, e.state = queuedCopy(d), stateDead
	list := append(q.dead[d.WebhookID], e)
	if keep := q.deadBound(); len(list) > keep {
		for _, old := range list[:len(list)-keep] {
			delete(q.entries, old.d.ID)
		}
		// Reslicing instead of copying keeps DeadLetter O(1); append
		// reallocates, and so frees the dropped front, once the array is
		// full.
		clear(list[:len(list)-keep])
		list = list[len(list)-keep:]
	}
	q.dead[d.WebhookID] = list
	return nil
}

// Dead returns copies of the dead deliveries of webhookID, oldest first.
func (q *MemoryQueue) Dead(ctx context.Context, webhookID string) ([]*Delivery, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	list := q.dead[webhookID]
	if len(list) == 0 {
		return nil, nil
	}
	batch := make([]Delivery, len(list))
	out := make([]*Delivery, len(list))
	for i, e := range list {
		batch[i] = e.d
		out[i] = &batch[i]
	}
	return out, nil
}

// Revive makes the dead delivery id of webhookID pending again, or all of
// them when id is "", as the Queue contract says. A revived
// delivery keeps its enqueue order, and its LastStatus and LastError, which
// say why it died.
func (q *MemoryQueue) Revive(ctx context.Context, webhookID, id string, now time.Time) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now = now.Round(0)
	q.mu.Lock()
	defer q.mu.Unlock()
	revive := func(e *queued) {
		e.d.Attempts, e.d.Due = 0, now
		q.addPending(e)
	}
	if id == "" {
		list := q.dead[webhookID]
		delete(q.dead, webhookID)
		var ids []string
		for _, e := range list {
			revive(e)
			ids = append(ids, e.d.ID)
		}
		return ids, nil
	}
	e := q.entries[id]
	if e == nil || e.state != stateDead || e.d.WebhookID != webhookID {
		return nil, fmt.Errorf("%w: dead delivery %s of webhook %s", ErrNotFound, id, webhookID)
	}
	q.unlink(e)
	revive(e)
	return []string{id}, nil
}

// NextDue reports the earliest Due of the pending deliveries that are not
// leased or the earliest end of a lease, whichever comes first. At that
// time Claim returns a delivery, unless skip leaves it out.
func (q *MemoryQueue) NextDue(ctx context.Context) (t time.Time, ok bool, err error) {
	if err := ctx.Err(); err != nil {
		return time.Time{}, false, err
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.ready) > 0 {
		t, ok = q.ready[0].pending[0].at, true
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

// init makes the maps of a zero MemoryQueue. requires q.mu held.
func (q *MemoryQueue) init() {
	if q.entries == nil {
		q.entries = make(map[string]*queued)
		q.hooks = make(map[string]*hookQueue)
		q.dead = make(map[string][]*queued)
	}
}

func (q *MemoryQueue) deadBound() int {
	if q.maxDead <= 0 {
		return defaultMaxDead
	}
	return q.maxDead
}

// expire returns to pending every delivery whose lease has ended by now.
// requires q.mu held.
func (q *MemoryQueue) expire(now time.Time) {
	for len(q.leases) > 0 && !q.leases[0].at.After(now) {
		e := q.leases.remove(0)
		e.state, e.at = statePending, e.d.Due
		e.hook.pending.push(e)
		q.settle(e.hook)
	}
}

// addPending makes e, which is in q.entries and nowhere else, pending.
// requires q.mu held.
func (q *MemoryQueue) addPending(e *queued) {
	h := q.hooks[e.d.WebhookID]
	if h == nil {
		h = &hookQueue{id: e.d.WebhookID, index: -1}
		q.hooks[h.id] = h
	}
	e.state, e.at, e.hook = statePending, e.d.Due, h
	h.held++
	h.pending.push(e)
	q.settle(h)
}

// remove drops e for good. requires q.mu held.
func (q *MemoryQueue) remove(e *queued) {
	q.unlink(e)
	delete(q.entries, e.d.ID)
}

// unlink takes e out of the pending, leased or dead deliveries, leaving it
// in q.entries for the caller to put elsewhere or delete. requires q.mu
// held.
func (q *MemoryQueue) unlink(e *queued) {
	switch e.state {
	case statePending, stateLeased:
		h := e.hook
		if e.state == statePending {
			h.pending.remove(e.index)
		} else {
			q.leases.remove(e.index)
		}
		h.held--
		q.settle(h)
		e.hook = nil
	case stateDead:
		list := q.dead[e.d.WebhookID]
		i := slices.Index(list, e) // a scan of at most maxDead, on a path that is rare
		list = slices.Delete(list, i, i+1)
		if len(list) == 0 {
			delete(q.dead, e.d.WebhookID)
		} else {
			q.dead[e.d.WebhookID] = list
		}
	}
}

// settle puts h where its deliveries say after they changed: in q.ready
// at the place of its earliest pending delivery, or out of it when it has
// none, and out of q.hooks when it holds nothing. requires q.mu held.
func (q *MemoryQueue) settle(h *hookQueue) {
	switch {
	case len(h.pending) == 0:
		if h.index >= 0 {
			q.ready.remove(h.index)
		}
		if h.held == 0 {
			delete(q.hooks, h.id)
		}
	case h.index < 0:
		q.ready.push(h)
	default:
		q.ready.fix(h.index)
	}
}

// heapElem is what a minHeap holds: something ordered that remembers its
// place, so that it can be removed or moved without a search.
type heapElem[T any] interface {
	before(T) bool
	setIndex(int)
}

// minHeap is a binary min-heap, smallest first. It is container/heap
// without the interface conversions and dynamic calls on every swap.
type minHeap[T heapElem[T]] []T

func (h *minHeap[T]) push(x T) {
	*h = append(*h, x)
	x.setIndex(len(*h) - 1)
	h.up(len(*h) - 1)
}

// remove takes out and returns the element at i.
func (h *minHeap[T]) remove(i int) T {
	s := *h
	last := len(s) - 1
	x := s[i]
	if i != last {
		s[i] = s[last]
		s[i].setIndex(i)
	}
	var zero T
	s[last] = zero // no stale pointer in the spare capacity
	*h = s[:last]
	if i != last {
		h.fix(i)
	}
	x.setIndex(-1)
	return x
}

// fix restores the order after the element at i changed.
func (h minHeap[T]) fix(i int) {
	if !h.down(i) {
		h.up(i)
	}
}

func (h minHeap[T]) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !h[i].before(h[p]) {
			return
		}
		h.swap(i, p)
		i = p
	}
}

// down reports whether the element at i moved.
func (h minHeap[T]) down(i int) bool {
	start := i
	for {
		c := 2*i + 1
		if c >= len(h) {
			break
		}
		if r := c + 1; r < len(h) && h[r].before(h[c]) {
			c = r
		}
		if !h[c].before(h[i]) {
			break
		}
		h.swap(i, c)
		i = c
	}
	return i > start
}

func (h minHeap[T]) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].setIndex(i)
	h[j].setIndex(j)
}
