package webhook_test

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/crmhook/webhook"
)

// scanQueue is the model that TestMemoryQueueAgreesWithAScan holds
// MemoryQueue to, and the baseline of its benchmarks: every method as the
// Queue contract and the MemoryQueue doc say, by scanning every delivery
// it holds. It is not safe for simultaneous use.
type scanQueue struct {
	limits    webhook.QueueLimits
	seq, died uint64
	all       []*scanEntry
	targets   map[string]*scanTarget // Health and pause, by target
}

type scanEntry struct {
	d        webhook.Delivery
	seq      uint64 // enqueue order
	state    scanState
	leaseEnd time.Time
	died     uint64 // the order of the deaths
}

type scanState uint8

const (
	scanPending scanState = iota
	scanLeased
	scanDead
)

type scanTarget struct {
	health webhook.Health
	until  time.Time // the end of its latest pause
}

func newScanQueue(lim webhook.QueueLimits) *scanQueue {
	return &scanQueue{limits: lim.WithDefaults(), targets: map[string]*scanTarget{}}
}

func (q *scanQueue) find(id string) (int, *scanEntry) {
	for i, e := range q.all {
		if e.d.ID == id {
			return i, e
		}
	}
	return -1, nil
}

func (q *scanQueue) target(target string) *scanTarget {
	t := q.targets[target]
	if t == nil {
		t = &scanTarget{}
		q.targets[target] = t
	}
	return t
}

// held counts the pending deliveries, leased ones included, of target, or
// of all when target is "".
func (q *scanQueue) held(target string) int {
	n := 0
	for _, e := range q.all {
		if e.state != scanDead && (target == "" || e.d.Target == target) {
			n++
		}
	}
	return n
}

// Enqueue checks in MemoryQueue's order, which the contract leaves open:
// the bound in all, ids, the bounds per target.
func (q *scanQueue) Enqueue(_ context.Context, ds ...*webhook.Delivery) error {
	if q.held("")+len(ds) > q.limits.MaxPending {
		return webhook.ErrQueueFull
	}
	add := map[string]int{}
	for i, d := range ds {
		if _, e := q.find(d.ID); e != nil || slices.ContainsFunc(ds[:i], func(o *webhook.Delivery) bool { return o.ID == d.ID }) {
			return webhook.ErrInvalid
		}
		add[d.Target]++
	}
	for target, n := range add {
		if q.held(target)+n > q.limits.MaxPendingPerTarget {
			return webhook.ErrQueueFull
		}
	}
	for _, d := range ds {
		q.seq++
		q.all = append(q.all, &scanEntry{d: *d, seq: q.seq})
	}
	return nil
}

func (e *scanEntry) before(o *scanEntry) bool {
	if c := e.d.Due.Compare(o.d.Due); c != 0 {
		return c < 0
	}
	return e.seq < o.seq
}

func (q *scanQueue) Claim(_ context.Context, now time.Time, limit int, lease time.Duration, perTarget int) ([]*webhook.Delivery, error) {
	if limit <= 0 {
		return nil, nil // before the leases end, which NextDue would show
	}
	perTarget = max(perTarget, 1)
	for _, e := range q.all {
		if e.state == scanLeased && !e.leaseEnd.After(now) {
			e.state = scanPending
		}
	}
	var out []*webhook.Delivery
	for len(out) < limit {
		bySpace, byTarget := map[string]int{}, map[string]int{}
		first := map[string]*scanEntry{} // each target's first pending delivery
		for _, e := range q.all {
			switch {
			case e.state == scanLeased:
				bySpace[e.d.Space]++
				byTarget[e.d.Target]++
			case e.state == scanPending && (first[e.d.Target] == nil || e.before(first[e.d.Target])):
				first[e.d.Target] = e
			}
		}
		var best *scanEntry
		for target, e := range first {
			if e.d.Due.After(now) || q.target(target).until.After(now) || byTarget[target] >= perTarget {
				continue
			}
			if best == nil || bySpace[e.d.Space] < bySpace[best.d.Space] ||
				bySpace[e.d.Space] == bySpace[best.d.Space] && e.before(best) {
				best = e
			}
		}
		if best == nil {
			break
		}
		best.state, best.leaseEnd = scanLeased, now.Add(lease)
		c := best.d
		out = append(out, &c)
	}
	return out, nil
}

func (q *scanQueue) Settle(_ context.Context, now time.Time, outcomes ...webhook.Outcome) ([]webhook.Health, error) {
	health := make([]webhook.Health, len(outcomes))
	for i, o := range outcomes {
		d := o.Delivery
		i0, e := q.find(d.ID)
		switch o.Kind {
		case webhook.Delivered, webhook.Dropped:
			if e != nil {
				q.all = slices.Delete(q.all, i0, i0+1)
			}
		case webhook.Retried, webhook.Released:
			switch {
			case e == nil:
				q.seq++
				e = &scanEntry{d: *d, seq: q.seq}
				q.all = append(q.all, e)
			case o.Kind == webhook.Retried:
				e.d.Attempts, e.d.Due, e.d.LastStatus, e.d.LastError = d.Attempts, d.Due, d.LastStatus, d.LastError
			default:
				e.d.Due = d.Due
			}
			e.state = scanPending
		case webhook.Died:
			if e == nil {
				q.seq++
				e = &scanEntry{seq: q.seq}
				q.all = append(q.all, e)
			}
			q.died++
			e.d, e.state, e.died = *d, scanDead, q.died
			if dead := q.dead(d.Target); len(dead) > q.limits.MaxDead {
				for _, old := range dead[:len(dead)-q.limits.MaxDead] {
					i, _ := q.find(old.d.ID)
					q.all = slices.Delete(q.all, i, i+1)
				}
			}
		}
		t := q.target(d.Target)
		switch {
		case o.Kind == webhook.Delivered:
			t.health = webhook.Health{}
		case o.Failed:
			if t.health.Failures == 0 {
				t.health.FailingSince = now
			}
			t.health.Failures++
			if o.PauseUntil.After(t.until) {
				t.until = o.PauseUntil
			}
		}
		health[i] = t.health
	}
	return health, nil
}

// dead returns the dead of target, oldest first.
func (q *scanQueue) dead(target string) []*scanEntry {
	var dead []*scanEntry
	for _, e := range q.all {
		if e.state == scanDead && e.d.Target == target {
			dead = append(dead, e)
		}
	}
	slices.SortFunc(dead, func(a, b *scanEntry) int { return cmp.Compare(a.died, b.died) })
	return dead
}

func (q *scanQueue) Dead(_ context.Context, target string) ([]*webhook.Delivery, error) {
	var out []*webhook.Delivery
	for _, e := range q.dead(target) {
		c := e.d
		out = append(out, &c)
	}
	return out, nil
}

func (q *scanQueue) Revive(_ context.Context, target, id string, now time.Time) ([]string, error) {
	var ids []string
	for _, e := range q.dead(target) {
		if id == "" || e.d.ID == id {
			e.state, e.d.Attempts, e.d.Due = scanPending, 0, now
			ids = append(ids, e.d.ID)
		}
	}
	if id != "" && len(ids) == 0 {
		return nil, webhook.ErrNotFound
	}
	return ids, nil
}

func (q *scanQueue) Purge(_ context.Context, target string) error {
	q.all = slices.DeleteFunc(q.all, func(e *scanEntry) bool { return e.d.Target == target })
	delete(q.targets, target)
	return nil
}

func (q *scanQueue) Pending(_ context.Context, ids ...string) ([]string, error) {
	var out []string
	for _, id := range ids {
		if _, e := q.find(id); e != nil && e.state != scanDead {
			out = append(out, id)
		}
	}
	return out, nil
}

func (q *scanQueue) NextDue(context.Context) (t time.Time, ok bool, err error) {
	for _, e := range q.all {
		var at time.Time
		switch e.state {
		case scanDead:
			continue
		case scanLeased:
			at = e.leaseEnd
		default:
			at = e.d.Due
			if until := q.target(e.d.Target).until; until.After(at) {
				at = until
			}
		}
		if !ok || at.Before(t) {
			t, ok = at, true
		}
	}
	return t, ok, nil
}
