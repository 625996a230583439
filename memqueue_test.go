package webhook_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/stretchr/testify/require"

	"github.com/crmhook/webhook"
	"github.com/crmhook/webhook/queuetest"
)

func TestMemoryQueue(t *testing.T) {
	t.Run("NewMemoryQueue", func(t *testing.T) {
		queuetest.Run(t, func(*testing.T) webhook.Queue { return webhook.NewMemoryQueue(0) })
	})
	t.Run("zero value", func(t *testing.T) {
		queuetest.Run(t, func(*testing.T) webhook.Queue { return new(webhook.MemoryQueue) })
	})
}

var memBase = time.Unix(1_700_000_000, 0).UTC()

// memDelivery returns a delivery of hook due at due.
func memDelivery(id, hook string, due time.Time) *webhook.Delivery {
	return &webhook.Delivery{ID: id, WebhookID: hook, EventIDs: []string{"ev-" + id},
		Body: []byte(`[{"id":"` + id + `"}]`), Created: memBase, Due: due}
}

func TestMemoryQueueKeepsTheNewestDead(t *testing.T) {
	ctx := t.Context()
	for _, tt := range []struct {
		name    string
		maxDead int
		kill    int
		want    []string
	}{
		{"fewer than the bound", 3, 2, []string{"d0", "d1"}},
		{"as many as the bound", 3, 3, []string{"d0", "d1", "d2"}},
		{"more than the bound", 3, 5, []string{"d2", "d3", "d4"}},
		{"a bound of 1", 1, 5, []string{"d4"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			q := webhook.NewMemoryQueue(tt.maxDead)
			for i := range tt.kill {
				require.NoError(t, q.DeadLetter(ctx, memDelivery("d"+strconv.Itoa(i), "hook", memBase)))
			}
			require.NoError(t, q.DeadLetter(ctx, memDelivery("other", "hook-2", memBase)), "another webhook's dead")
			dead, err := q.Dead(ctx, "hook")
			require.NoError(t, err)
			var got []string
			for _, d := range dead {
				got = append(got, d.ID)
			}
			require.Equal(t, tt.want, got)

			// A dropped delivery is gone: it cannot be revived, and its ID
			// is free again.
			if tt.kill > len(tt.want) {
				_, err := q.Revive(ctx, "hook", "d0", memBase)
				require.ErrorIs(t, err, webhook.ErrNotFound)
				require.NoError(t, q.Enqueue(ctx, memDelivery("d0", "hook", memBase)))
			}
		})
	}
}

func TestMemoryQueueDefaultDeadBound(t *testing.T) {
	ctx := t.Context()
	for _, maxDead := range []int{0, -1} {
		q := webhook.NewMemoryQueue(maxDead)
		for i := range 1001 {
			require.NoError(t, q.DeadLetter(ctx, memDelivery("d"+strconv.Itoa(i), "hook", memBase)))
		}
		dead, err := q.Dead(ctx, "hook")
		require.NoError(t, err)
		require.Len(t, dead, 1000, "maxDead %d", maxDead)
		require.Equal(t, "d1", dead[0].ID, "maxDead %d", maxDead)
	}
}

func TestMemoryQueueEnqueueRefusesWhatItCannotHold(t *testing.T) {
	ctx := t.Context()
	for _, tt := range []struct {
		name string
		ds   []*webhook.Delivery
	}{
		{"a nil delivery", []*webhook.Delivery{memDelivery("a", "hook", memBase), nil}},
		{"no id", []*webhook.Delivery{memDelivery("a", "hook", memBase), memDelivery("", "hook", memBase)}},
		{"an id twice in one call", []*webhook.Delivery{memDelivery("a", "hook", memBase), memDelivery("a", "hook-2", memBase)}},
		{"the id of a queued delivery", []*webhook.Delivery{memDelivery("a", "hook", memBase), memDelivery("queued", "hook-2", memBase)}},
		{"the id of a dead delivery", []*webhook.Delivery{memDelivery("a", "hook", memBase), memDelivery("dead", "hook-2", memBase)}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			q := webhook.NewMemoryQueue(0)
			require.NoError(t, q.Enqueue(ctx, memDelivery("queued", "hook-q", memBase.Add(time.Hour))))
			require.NoError(t, q.DeadLetter(ctx, memDelivery("dead", "hook-d", memBase)))
			err := q.Enqueue(ctx, tt.ds...)
			require.ErrorIs(t, err, webhook.ErrInvalid)
			got, err := q.Claim(ctx, memBase, 10, time.Minute, nil)
			require.NoError(t, err)
			require.Empty(t, got, "Enqueue stored part of a call that failed")
		})
	}
}

func TestMemoryQueueRetryAndDeadLetterOfAnUnknownIDStoreIt(t *testing.T) {
	ctx := t.Context()
	q := webhook.NewMemoryQueue(0)
	require.NoError(t, q.Retry(ctx, memDelivery("r", "hook", memBase)))
	got, err := q.Claim(ctx, memBase, 10, time.Minute, nil)
	require.NoError(t, err)
	require.Len(t, got, 1)
	require.Equal(t, "r", got[0].ID)

	require.NoError(t, q.DeadLetter(ctx, memDelivery("x", "hook", memBase)))
	dead, err := q.Dead(ctx, "hook")
	require.NoError(t, err)
	require.Len(t, dead, 1)
	require.Equal(t, "x", dead[0].ID)

	// Retry of a dead delivery takes it out of the dead, and Ack removes a
	// dead one: a MemoryQueue holds one delivery an ID.
	x := *dead[0]
	x.Due = memBase.Add(time.Second)
	require.NoError(t, q.Retry(ctx, &x))
	dead, err = q.Dead(ctx, "hook")
	require.NoError(t, err)
	require.Empty(t, dead)
	require.NoError(t, q.DeadLetter(ctx, &x))
	require.NoError(t, q.Ack(ctx, "x"))
	dead, err = q.Dead(ctx, "hook")
	require.NoError(t, err)
	require.Empty(t, dead)
}

func TestMemoryQueueStopsOnADoneContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	q := webhook.NewMemoryQueue(0)
	d := memDelivery("d", "hook", memBase)
	_, err := q.Claim(ctx, memBase, 1, time.Minute, nil)
	require.ErrorIs(t, err, context.Canceled, "Claim")
	_, err = q.Dead(ctx, "hook")
	require.ErrorIs(t, err, context.Canceled, "Dead")
	_, err = q.Revive(ctx, "hook", "", memBase)
	require.ErrorIs(t, err, context.Canceled, "Revive")
	_, _, err = q.NextDue(ctx)
	require.ErrorIs(t, err, context.Canceled, "NextDue")
	for name, call := range map[string]func() error{
		"Enqueue":    func() error { return q.Enqueue(ctx, d) },
		"Ack":        func() error { return q.Ack(ctx, "d") },
		"Retry":      func() error { return q.Retry(ctx, d) },
		"DeadLetter": func() error { return q.DeadLetter(ctx, d) },
	} {
		require.ErrorIs(t, call(), context.Canceled, name)
	}
	_, ok, err := q.NextDue(t.Context())
	require.NoError(t, err)
	require.False(t, ok, "a call with a done context stored something")
}

// TestMemoryQueueAtScale fills a queue as a busy Dispatcher would, 10,000
// registrations with 5 retries each, and checks that Claim, which does not
// scan, still finds exactly the due ones in order.
func TestMemoryQueueAtScale(t *testing.T) {
	const hooks, perHook = 10_000, 5
	ctx := t.Context()
	q := webhook.NewMemoryQueue(0)
	// Delivery j of hook h is due j hours plus h milliseconds after
	// memBase: in round j, every hook has one due, in hook order.
	due := func(h, j int) time.Time {
		return memBase.Add(time.Duration(j)*time.Hour + time.Duration(h)*time.Millisecond)
	}
	id := func(h, j int) string { return fmt.Sprintf("h%d-%d", h, j) }
	var ds []*webhook.Delivery
	for j := perHook - 1; j >= 0; j-- { // latest first, so that enqueue order does not help
		for h := range hooks {
			ds = append(ds, memDelivery(id(h, j), "hook-"+strconv.Itoa(h), due(h, j)))
		}
	}
	require.NoError(t, q.Enqueue(ctx, ds...))

	next, ok, err := q.NextDue(ctx)
	require.NoError(t, err)
	require.True(t, ok)
	require.True(t, next.Equal(due(0, 0)), "NextDue = %v", next)

	const lease = 2 * time.Hour
	for j := range perHook {
		now := memBase.Add(time.Duration(j)*time.Hour + 10*time.Second) // hooks 0 to 9,999 due: 9.999 s
		first, err := q.Claim(ctx, now, 100, lease, nil)
		require.NoError(t, err)
		rest, err := q.Claim(ctx, now, 2*hooks, lease, []string{"hook-5000"})
		require.NoError(t, err)
		last, err := q.Claim(ctx, now, 2*hooks, lease, nil)
		require.NoError(t, err)
		var want, got []string
		for h := range hooks {
			want = append(want, id(h, j))
		}
		for _, d := range slices.Concat(first, rest, last) {
			got = append(got, d.ID)
		}
		require.Equal(t, want[:100], got[:100], "round %d: the first 100", j)
		require.Equal(t, slices.Concat(want[100:5000], want[5001:], want[5000:5001]), got[100:], "round %d: the rest, hook-5000 skipped, then hook-5000", j)
		more, err := q.Claim(ctx, now, 2*hooks, lease, nil)
		require.NoError(t, err)
		require.Empty(t, more, "round %d: claimed again, or not due yet", j)
		for _, id := range got {
			require.NoError(t, q.Ack(ctx, id))
		}
		next, ok, err := q.NextDue(ctx)
		require.NoError(t, err)
		if j == perHook-1 {
			require.False(t, ok, "NextDue after the last round")
		} else {
			require.True(t, ok)
			require.True(t, next.Equal(due(0, j+1)), "round %d: NextDue = %v", j, next)
		}
	}
}

// BenchmarkMemoryQueue measures the cycle of a delivery attempted at once:
// Enqueue, Claim, Ack, in a queue that holds 10,000 due deliveries, ten a
// registration over 1,000, or one a registration, so that every Enqueue
// goes to a registration that held nothing and every Ack leaves one that
// holds nothing. The baseline keeps deliveries in a slice and scans it, as
// a Queue without an index would.
func BenchmarkMemoryQueue(b *testing.B) {
	const pending = 10_000
	for _, tt := range []struct {
		name     string
		hooks    int
		newQueue func() webhook.Queue
	}{
		{"MemoryQueue, 1,000 registrations", 1_000, func() webhook.Queue { return webhook.NewMemoryQueue(0) }},
		{"MemoryQueue, 20,000 registrations", 2 * pending, func() webhook.Queue { return webhook.NewMemoryQueue(0) }},
		{"baseline: scan, 1,000 registrations", 1_000, func() webhook.Queue { return &scanQueue{maxDead: 1000} }},
	} {
		hooks := tt.hooks
		b.Run(tt.name, func(b *testing.B) {
			ctx, q := b.Context(), tt.newQueue()
			// The queue is FIFO here (one Due), so an ID comes back only
			// after the pending deliveries ahead of it are acked: a ring of
			// twice as many IDs keeps them unique without formatting one
			// an iteration.
			ids := make([]string, 2*pending)
			for i := range ids {
				ids[i] = "d" + strconv.Itoa(i)
			}
			hookIDs := make([]string, hooks)
			for i := range hookIDs {
				hookIDs[i] = "hook-" + strconv.Itoa(i)
			}
			d := memDelivery("", "", memBase)
			for i := range pending {
				d.ID, d.WebhookID = ids[i], hookIDs[i%hooks]
				require.NoError(b, q.Enqueue(ctx, d))
			}
			b.ReportAllocs()
			i := pending
			for b.Loop() {
				d.ID, d.WebhookID = ids[i%len(ids)], hookIDs[i%hooks]
				i++
				if err := q.Enqueue(ctx, d); err != nil {
					b.Fatal(err)
				}
				got, err := q.Claim(ctx, memBase, 1, time.Minute, nil)
				if err != nil || len(got) != 1 {
					b.Fatal(len(got), err)
				}
				if err := q.Ack(ctx, got[0].ID); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// scanQueue is the baseline of BenchmarkMemoryQueue and the model that
// TestMemoryQueueAgreesWithAScan holds MemoryQueue to: every method as the
// MemoryQueue doc says, by scanning every delivery. It is not safe for
// simultaneous use.
type scanQueue struct {
	maxDead   int
	seq, died uint64
	all       []*scanEntry
}

type scanEntry struct {
	d        webhook.Delivery
	seq      uint64 // enqueue order
	state    string // "pending", "leased" or "dead"
	leaseEnd time.Time
	died     uint64 // dead-letter order
}

func (q *scanQueue) find(id string) (int, *scanEntry) {
	for i, e := range q.all {
		if e.d.ID == id {
			return i, e
		}
	}
	return -1, nil
}

func (q *scanQueue) Enqueue(_ context.Context, ds ...*webhook.Delivery) error {
	for i, d := range ds {
		if _, e := q.find(d.ID); e != nil || slices.ContainsFunc(ds[:i], func(o *webhook.Delivery) bool { return o.ID == d.ID }) {
			return webhook.ErrInvalid
		}
	}
	for _, d := range ds {
		q.seq++
		q.all = append(q.all, &scanEntry{d: *d, seq: q.seq, state: "pending"})
	}
	return nil
}

func (q *scanQueue) Claim(_ context.Context, now time.Time, limit int, lease time.Duration, skip []string) ([]*webhook.Delivery, error) {
	if limit <= 0 {
		return nil, nil // before the leases run out, which NextDue would show
	}
	for _, e := range q.all {
		if e.state == "leased" && !e.leaseEnd.After(now) {
			e.state = "pending"
		}
	}
	taken := map[string]bool{}
	for _, s := range skip {
		taken[s] = true
	}
	var out []*webhook.Delivery
	for len(out) < limit {
		var best *scanEntry
		for _, e := range q.all {
			if e.state == "pending" && !taken[e.d.WebhookID] && !e.d.Due.After(now) &&
				(best == nil || e.d.Due.Before(best.d.Due) || e.d.Due.Equal(best.d.Due) && e.seq < best.seq) {
				best = e
			}
		}
		if best == nil {
			break
		}
		best.state, best.leaseEnd = "leased", now.Add(lease)
		taken[best.d.WebhookID] = true
		c := best.d
		out = append(out, &c)
	}
	return out, nil
}

func (q *scanQueue) Ack(_ context.Context, id string) error {
	if i, e := q.find(id); e != nil {
		q.all = slices.Delete(q.all, i, i+1)
	}
	return nil
}

func (q *scanQueue) Retry(_ context.Context, d *webhook.Delivery) error {
	_, e := q.find(d.ID)
	if e == nil {
		return q.Enqueue(context.Background(), d)
	}
	e.d.Attempts, e.d.Due, e.d.LastStatus, e.d.LastError = d.Attempts, d.Due, d.LastStatus, d.LastError
	e.state = "pending"
	return nil
}

func (q *scanQueue) DeadLetter(_ context.Context, d *webhook.Delivery) error {
	_, e := q.find(d.ID)
	if e == nil {
		q.seq++
		e = &scanEntry{seq: q.seq}
		q.all = append(q.all, e)
	}
	q.died++
	e.d, e.state, e.died = *d, "dead", q.died
	if dead := q.dead(d.WebhookID); len(dead) > q.maxDead {
		for _, old := range dead[:len(dead)-q.maxDead] {
			_ = q.Ack(context.Background(), old.d.ID)
		}
	}
	return nil
}

// dead returns the dead of webhookID, oldest first.
func (q *scanQueue) dead(webhookID string) []*scanEntry {
	var dead []*scanEntry
	for _, e := range q.all {
		if e.state == "dead" && e.d.WebhookID == webhookID {
			dead = append(dead, e)
		}
	}
	slices.SortFunc(dead, func(a, b *scanEntry) int { return int(a.died) - int(b.died) })
	return dead
}

func (q *scanQueue) Dead(_ context.Context, webhookID string) ([]*webhook.Delivery, error) {
	var out []*webhook.Delivery
	for _, e := range q.dead(webhookID) {
		c := e.d
		out = append(out, &c)
	}
	return out, nil
}

func (q *scanQueue) Revive(_ context.Context, webhookID, id string, now time.Time) ([]string, error) {
	var ids []string
	for _, e := range q.dead(webhookID) {
		if id == "" || e.d.ID == id {
			e.state, e.d.Attempts, e.d.Due = "pending", 0, now
			ids = append(ids, e.d.ID)
		}
	}
	if id != "" && len(ids) == 0 {
		return nil, webhook.ErrNotFound
	}
	return ids, nil
}

func (q *scanQueue) NextDue(context.Context) (t time.Time, ok bool, err error) {
	for _, e := range q.all {
		at := e.d.Due
		switch e.state {
		case "dead":
			continue
		case "leased":
			at = e.leaseEnd
		}
		if !ok || at.Before(t) {
			t, ok = at, true
		}
	}
	return t, ok, nil
}

// TestMemoryQueueAgreesWithAScan runs random calls on a MemoryQueue and on
// scanQueue and requires the same answers, so that the bookkeeping of
// MemoryQueue's heaps shows in any order of calls, not only in the orders
// queuetest tries.
func TestMemoryQueueAgreesWithAScan(t *testing.T) {
	const maxDead = 3
	for seed := range uint64(20) {
		t.Run(fmt.Sprintf("seed %d", seed), func(t *testing.T) {
			ctx := t.Context()
			r := rand.New(rand.NewPCG(seed, 0))
			q, m := webhook.NewMemoryQueue(maxDead), &scanQueue{maxDead: maxDead}
			hooks := []string{"hook-0", "hook-1", "hook-2", "hook-3", "hook-4", "hook-5"}
			now := memBase
			random := func() *webhook.Delivery {
				d := memDelivery("d"+strconv.Itoa(r.IntN(40)), hooks[r.IntN(len(hooks))],
					now.Add(time.Duration(r.IntN(120)-30)*time.Second))
				d.Attempts, d.LastStatus, d.LastError = r.IntN(10), 500+r.IntN(5), "error "+strconv.Itoa(r.IntN(100))
				return d
			}
			var ops []string
			same := func(what string, want, got any, wantErr, gotErr error) {
				t.Helper()
				require.Equal(t, wantErr == nil, gotErr == nil, "%s: error %v, model %v; calls: %v", what, gotErr, wantErr, ops)
				if wantErr != nil {
					require.ErrorIs(t, gotErr, wantErr, what)
				}
				if reflect.DeepEqual(want, got) {
					return // cmp.Diff alone would take most of the test's time
				}
				if d := cmp.Diff(want, got, cmpopts.EquateEmpty()); d != "" {
					t.Fatalf("%s (-model +MemoryQueue):\n%s\ncalls: %v", what, d, ops)
				}
			}
			for range 1500 {
				switch op := r.IntN(9); op {
				case 0, 1:
					ds := []*webhook.Delivery{random()}
					if op == 1 {
						ds = append(ds, random())
					}
					ops = append(ops, "Enqueue "+ds[0].ID)
					same("Enqueue", nil, nil, m.Enqueue(ctx, ds...), q.Enqueue(ctx, ds...))
				case 2, 3:
					limit, lease := r.IntN(4), time.Duration(r.IntN(60)+1)*time.Second
					var skip []string
					for _, h := range hooks {
						if r.IntN(4) == 0 {
							skip = append(skip, h)
						}
					}
					ops = append(ops, fmt.Sprintf("Claim %d %v %v", limit, lease, skip))
					want, wantErr := m.Claim(ctx, now, limit, lease, skip)
					got, gotErr := q.Claim(ctx, now, limit, lease, skip)
					same("Claim", want, got, wantErr, gotErr)
				case 4:
					d := random()
					ops = append(ops, "Ack "+d.ID)
					same("Ack", nil, nil, m.Ack(ctx, d.ID), q.Ack(ctx, d.ID))
				case 5:
					d := random()
					ops = append(ops, "Retry "+d.ID)
					same("Retry", nil, nil, m.Retry(ctx, d), q.Retry(ctx, d))
				case 6:
					d := random()
					ops = append(ops, "DeadLetter "+d.ID)
					same("DeadLetter", nil, nil, m.DeadLetter(ctx, d), q.DeadLetter(ctx, d))
				case 7:
					d := random()
					if r.IntN(2) == 0 {
						d.ID = ""
					}
					ops = append(ops, "Revive "+d.WebhookID+" "+d.ID)
					want, wantErr := m.Revive(ctx, d.WebhookID, d.ID, now)
					got, gotErr := q.Revive(ctx, d.WebhookID, d.ID, now)
					same("Revive", want, got, wantErr, gotErr)
				case 8:
					now = now.Add(time.Duration(r.IntN(20)) * time.Second)
					ops = append(ops, "now "+now.Sub(memBase).String())
				}
				wantT, wantOK, wantErr := m.NextDue(ctx)
				gotT, gotOK, gotErr := q.NextDue(ctx)
				same("NextDue", []any{wantT, wantOK}, []any{gotT, gotOK}, wantErr, gotErr)
				for _, h := range hooks {
					want, wantErr := m.Dead(ctx, h)
					got, gotErr := q.Dead(ctx, h)
					same("Dead "+h, want, got, wantErr, gotErr)
				}
			}
		})
	}
}
