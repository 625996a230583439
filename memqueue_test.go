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

	gocmp "github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/stretchr/testify/require"

	"github.com/crmhook/webhook"
	"github.com/crmhook/webhook/queuetest"
)

func TestMemoryQueue(t *testing.T) {
	t.Run("NewMemoryQueue", func(t *testing.T) {
		queuetest.Run(t, func(_ *testing.T, lim webhook.QueueLimits) webhook.Queue { return webhook.NewMemoryQueue(lim) })
	})
	t.Run("zero value", func(t *testing.T) {
		queuetest.Run(t, func(t *testing.T, lim webhook.QueueLimits) webhook.Queue {
			if lim != (webhook.QueueLimits{}) {
				t.Skip("the zero value has the default limits")
			}
			return new(webhook.MemoryQueue)
		})
	})
}

var memBase = time.Unix(1_700_000_000, 0).UTC()

// memDelivery returns a delivery of target, in a space of its own, due at
// due.
func memDelivery(id, target string, due time.Time) *webhook.Delivery {
	return &webhook.Delivery{ID: id, Space: "space-" + target, WebhookID: "hook-" + target, Target: target,
		EventIDs: []string{"ev-" + id}, Body: []byte(`[{"id":"` + id + `"}]`), Created: memBase, Due: due}
}

// died returns the outcome of d's last attempt, which failed for good.
func died(d *webhook.Delivery) webhook.Outcome {
	return webhook.Outcome{Delivery: d, Kind: webhook.Died, Failed: true}
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
			q := webhook.NewMemoryQueue(webhook.QueueLimits{MaxDead: tt.maxDead})
			for i := range tt.kill {
				_, err := q.Settle(ctx, memBase, died(memDelivery("d"+strconv.Itoa(i), "target", memBase)))
				require.NoError(t, err)
			}
			_, err := q.Settle(ctx, memBase, died(memDelivery("other", "target-2", memBase)))
			require.NoError(t, err, "another target's dead")
			dead, err := q.Dead(ctx, "target")
			require.NoError(t, err)
			require.Equal(t, tt.want, memIDs(dead))

			// A dropped delivery is gone: it cannot be revived, and its ID
			// is free again.
			if tt.kill > len(tt.want) {
				_, err := q.Revive(ctx, "target", "d0", memBase)
				require.ErrorIs(t, err, webhook.ErrNotFound)
				require.NoError(t, q.Enqueue(ctx, memDelivery("d0", "target", memBase)))
			}
		})
	}
}

func TestMemoryQueueDefaultLimits(t *testing.T) {
	ctx := t.Context()
	for _, lim := range []webhook.QueueLimits{{}, {MaxPending: -1, MaxPendingPerTarget: -1, MaxDead: -1}} {
		t.Run(fmt.Sprintf("%+v", lim), func(t *testing.T) {
			q := webhook.NewMemoryQueue(lim)
			for i := range webhook.DefaultMaxDead + 1 {
				_, err := q.Settle(ctx, memBase, died(memDelivery("dead"+strconv.Itoa(i), "target", memBase)))
				require.NoError(t, err)
			}
			dead, err := q.Dead(ctx, "target")
			require.NoError(t, err)
			require.Len(t, dead, webhook.DefaultMaxDead)
			require.Equal(t, "dead1", dead[0].ID)

			fill := func(n int, target func(i int) string) []*webhook.Delivery {
				ds := make([]*webhook.Delivery, n)
				for i := range ds {
					ds[i] = memDelivery(target(i)+"-"+strconv.Itoa(i), target(i), memBase)
				}
				return ds
			}
			one := func(int) string { return "target" }
			require.NoError(t, q.Enqueue(ctx, fill(webhook.DefaultMaxPendingPerTarget, one)...))
			require.ErrorIs(t, q.Enqueue(ctx, memDelivery("one-more", "target", memBase)), webhook.ErrQueueFull)
			many := func(i int) string { return "t" + strconv.Itoa(i%1000) }
			require.NoError(t, q.Enqueue(ctx, fill(webhook.DefaultMaxPending-webhook.DefaultMaxPendingPerTarget, many)...))
			require.ErrorIs(t, q.Enqueue(ctx, memDelivery("one-more", "other", memBase)), webhook.ErrQueueFull)
		})
	}
}

func TestMemoryQueueRefusesWhatItCannotHold(t *testing.T) {
	ctx := t.Context()
	ok := memDelivery("a", "target", memBase)
	noTarget := memDelivery("b", "", memBase)
	for _, tt := range []struct {
		name     string
		enqueue  []*webhook.Delivery
		outcomes []webhook.Outcome
	}{
		{"a nil delivery", []*webhook.Delivery{ok, nil}, []webhook.Outcome{died(ok), died(nil)}},
		{"no id", []*webhook.Delivery{ok, memDelivery("", "target", memBase)}, []webhook.Outcome{died(ok), died(memDelivery("", "target", memBase))}},
		{"no target", []*webhook.Delivery{ok, noTarget}, []webhook.Outcome{died(ok), died(noTarget)}},
		{"an id twice in one call", []*webhook.Delivery{ok, memDelivery("a", "target-2", memBase)}, nil},
		{"the id of a queued delivery", []*webhook.Delivery{ok, memDelivery("queued", "target-2", memBase)}, nil},
		{"the id of a dead delivery", []*webhook.Delivery{ok, memDelivery("dead", "target-2", memBase)}, nil},
		{"an unknown kind", nil, []webhook.Outcome{died(ok), {Delivery: ok, Kind: webhook.Dropped + 1}}},
		{"no kind", nil, []webhook.Outcome{died(ok), {Delivery: ok}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			q := webhook.NewMemoryQueue(webhook.QueueLimits{})
			require.NoError(t, q.Enqueue(ctx, memDelivery("queued", "target-q", memBase.Add(time.Hour))))
			_, err := q.Settle(ctx, memBase, died(memDelivery("dead", "target-d", memBase)))
			require.NoError(t, err)
			if tt.enqueue != nil {
				require.ErrorIs(t, q.Enqueue(ctx, tt.enqueue...), webhook.ErrInvalid, "Enqueue")
			}
			if tt.outcomes != nil {
				health, err := q.Settle(ctx, memBase, tt.outcomes...)
				require.ErrorIs(t, err, webhook.ErrInvalid, "Settle")
				require.Nil(t, health)
			}
			got, err := q.Claim(ctx, memBase, 10, time.Minute, 10)
			require.NoError(t, err)
			require.Empty(t, got, "a call that failed stored part of what it was given")
			dead, err := q.Dead(ctx, "target")
			require.NoError(t, err)
			require.Empty(t, dead, "a call that failed stored part of what it was given")
		})
	}
}

// TestMemoryQueueActsOnAnIDWhereverItIs checks what the MemoryQueue doc
// adds to the contract: an outcome acts on the delivery with its ID,
// pending, leased or dead.
func TestMemoryQueueActsOnAnIDWhereverItIs(t *testing.T) {
	ctx := t.Context()
	q := webhook.NewMemoryQueue(webhook.QueueLimits{})
	x := memDelivery("x", "target", memBase)
	_, err := q.Settle(ctx, memBase, died(x))
	require.NoError(t, err)
	requireMemDead(t, q, "target", "x")

	// Retried takes it out of the dead.
	r := *x
	r.Due = memBase.Add(time.Second)
	_, err = q.Settle(ctx, memBase, webhook.Outcome{Delivery: &r, Kind: webhook.Retried, Failed: true})
	require.NoError(t, err)
	requireMemDead(t, q, "target")
	got, err := q.Claim(ctx, r.Due, 10, time.Minute, 1)
	require.NoError(t, err)
	require.Equal(t, []string{"x"}, memIDs(got))

	// Delivered removes a dead one.
	_, err = q.Settle(ctx, memBase, died(x))
	require.NoError(t, err)
	_, err = q.Settle(ctx, memBase, webhook.Outcome{Delivery: x, Kind: webhook.Delivered})
	require.NoError(t, err)
	requireMemDead(t, q, "target")
	_, ok, err := q.NextDue(ctx)
	require.NoError(t, err)
	require.False(t, ok, "NextDue after the only delivery was delivered")
}

func requireMemDead(t *testing.T, q *webhook.MemoryQueue, target string, want ...string) {
	t.Helper()
	dead, err := q.Dead(t.Context(), target)
	require.NoError(t, err)
	require.Equal(t, want, memIDs(dead))
}

// TestMemoryQueueZeroValueStopsOnADoneContext calls every method of a zero
// MemoryQueue, which has not made its maps yet, with a done context.
func TestMemoryQueueZeroValueStopsOnADoneContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	var q webhook.MemoryQueue
	d := memDelivery("d", "target", memBase)
	_, err := q.Claim(ctx, memBase, 1, time.Minute, 1)
	require.ErrorIs(t, err, context.Canceled, "Claim")
	_, err = q.Settle(ctx, memBase, died(d))
	require.ErrorIs(t, err, context.Canceled, "Settle")
	_, err = q.Dead(ctx, "target")
	require.ErrorIs(t, err, context.Canceled, "Dead")
	_, err = q.Revive(ctx, "target", "", memBase)
	require.ErrorIs(t, err, context.Canceled, "Revive")
	require.ErrorIs(t, q.Purge(ctx, "target"), context.Canceled, "Purge")
	require.ErrorIs(t, q.Enqueue(ctx, d), context.Canceled, "Enqueue")
	_, _, err = q.NextDue(ctx)
	require.ErrorIs(t, err, context.Canceled, "NextDue")
	_, ok, err := q.NextDue(t.Context())
	require.NoError(t, err)
	require.False(t, ok, "a call with a done context stored something")
}

// TestMemoryQueueAtScale fills a queue as a busy Dispatcher would, 10,000
// targets with 5 retries each, half of them in one space and the others
// spread over nine, and checks that Claim, which does not scan, still
// takes exactly the due ones in the order fairness between spaces asks.
func TestMemoryQueueAtScale(t *testing.T) {
	const targets, perTarget, spaces = 10_000, 5, 10
	ctx := t.Context()
	q := webhook.NewMemoryQueue(webhook.QueueLimits{})
	spaceOf := func(h int) int {
		if h < targets/2 {
			return 0
		}
		return 1 + h%(spaces-1)
	}
	// Delivery j of target h is due j hours plus h milliseconds after
	// memBase: in round j, every target has one due, in target order.
	due := func(h, j int) time.Time {
		return memBase.Add(time.Duration(j)*time.Hour + time.Duration(h)*time.Millisecond)
	}
	id := func(h, j int) string { return fmt.Sprintf("t%d-%d", h, j) }
	var ds []*webhook.Delivery
	for j := perTarget - 1; j >= 0; j-- { // latest first, so that enqueue order does not help
		for h := range targets {
			d := memDelivery(id(h, j), "target-"+strconv.Itoa(h), due(h, j))
			d.Space = "space-" + strconv.Itoa(spaceOf(h))
			ds = append(ds, d)
		}
	}
	require.NoError(t, q.Enqueue(ctx, ds...))

	// The order of a round: each delivery from the space with the fewest
	// leased, among equals the one with the earliest; a space's due
	// deliveries in target order.
	var order []int
	heads, leased := make([][]int, spaces), make([]int, spaces)
	for h := range targets {
		heads[spaceOf(h)] = append(heads[spaceOf(h)], h)
	}
	for range targets {
		best := -1
		for s := range spaces {
			if len(heads[s]) > 0 && (best < 0 || leased[s] < leased[best] ||
				leased[s] == leased[best] && heads[s][0] < heads[best][0]) {
				best = s
			}
		}
		order = append(order, heads[best][0])
		heads[best], leased[best] = heads[best][1:], leased[best]+1
	}

	const lease = 2 * time.Hour
	for j := range perTarget {
		now := memBase.Add(time.Duration(j)*time.Hour + 10*time.Second) // targets 0 to 9,999 due: 9.999 s
		first, err := q.Claim(ctx, now, 100, lease, 1)
		require.NoError(t, err)
		rest, err := q.Claim(ctx, now, 2*targets, lease, 1)
		require.NoError(t, err)
		var want []string
		for _, h := range order {
			want = append(want, id(h, j))
		}
		got := memIDs(slices.Concat(first, rest))
		require.Equal(t, want[:100], got[:100], "round %d: the first Claim", j)
		require.Equal(t, want[100:], got[100:], "round %d: the second Claim", j)
		more, err := q.Claim(ctx, now, 2*targets, lease, 1)
		require.NoError(t, err)
		require.Empty(t, more, "round %d: claimed again, or not due yet", j)
		outcomes := make([]webhook.Outcome, 0, targets)
		for _, d := range slices.Concat(first, rest) {
			outcomes = append(outcomes, webhook.Outcome{Delivery: d, Kind: webhook.Delivered})
		}
		_, err = q.Settle(ctx, now, outcomes...)
		require.NoError(t, err)
		next, ok, err := q.NextDue(ctx)
		require.NoError(t, err)
		if j == perTarget-1 {
			require.False(t, ok, "NextDue after the last round")
		} else {
			require.True(t, ok)
			require.True(t, next.Equal(due(0, j+1)), "round %d: NextDue = %v", j, next)
		}
	}
}

func memIDs(ds []*webhook.Delivery) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.ID)
	}
	return out
}

// TestMemoryQueueAgreesWithAScan runs random calls on a MemoryQueue and on
// scanQueue and requires the same answers, so that the bookkeeping of
// MemoryQueue's heaps shows in any order of calls, not only in the orders
// queuetest tries: several spaces, targets paused and at their perTarget
// limits, leases that end, outcomes of every kind and of deliveries it
// does not hold, revivals, purges and the bounds. After each call it
// compares NextDue, Pending of every id and Dead of every target.
func TestMemoryQueueAgreesWithAScan(t *testing.T) {
	lim := webhook.QueueLimits{MaxPending: 30, MaxPendingPerTarget: 8, MaxDead: 3}
	const ids, targets, spaces = 48, 8, 3
	targetOf := func(i int) string { return "target-" + strconv.Itoa(i%targets) }
	spaceOf := func(target string) string { return "space-" + strconv.Itoa(int(target[len(target)-1]-'0')%spaces) }
	var allIDs []string
	for i := range ids {
		allIDs = append(allIDs, "d"+strconv.Itoa(i))
	}
	for seed := range uint64(40) {
		t.Run(fmt.Sprintf("seed %d", seed), func(t *testing.T) {
			ctx := t.Context()
			r := rand.New(rand.NewPCG(seed, 0))
			q, m := webhook.NewMemoryQueue(lim), newScanQueue(lim)
			now := memBase
			sec := func(lo, hi int) time.Duration { return time.Duration(lo+r.IntN(hi-lo+1)) * time.Second }
			random := func() *webhook.Delivery {
				i := r.IntN(ids)
				target := targetOf(i)
				d := memDelivery("d"+strconv.Itoa(i), target, now.Add(sec(-30, 90)))
				d.Space = spaceOf(target)
				d.Attempts, d.LastStatus, d.LastError = r.IntN(10), 500+r.IntN(5), "error "+strconv.Itoa(r.IntN(100))
				return d
			}
			var inHand []*webhook.Delivery // what the Claims returned, for outcomes
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
				if d := gocmp.Diff(want, got, cmpopts.EquateEmpty()); d != "" {
					t.Fatalf("%s (-model +MemoryQueue):\n%s\ncalls: %v", what, d, ops)
				}
			}
			for range 2000 {
				switch op := r.IntN(20); {
				case op < 4:
					ds := []*webhook.Delivery{random()}
					for r.IntN(3) == 0 {
						ds = append(ds, random())
					}
					ops = append(ops, fmt.Sprintf("Enqueue %v", memIDs(ds)))
					same("Enqueue", nil, nil, m.Enqueue(ctx, ds...), q.Enqueue(ctx, ds...))
				case op < 9:
					limit, lease, perTarget := r.IntN(5), sec(1, 60), r.IntN(5)-1
					ops = append(ops, fmt.Sprintf("Claim %d %v %d", limit, lease, perTarget))
					want, wantErr := m.Claim(ctx, now, limit, lease, perTarget)
					got, gotErr := q.Claim(ctx, now, limit, lease, perTarget)
					same("Claim", want, got, wantErr, gotErr)
					inHand = append(inHand, got...)
				case op < 14:
					var outcomes []webhook.Outcome
					for len(outcomes) == 0 || r.IntN(3) == 0 {
						outcomes = append(outcomes, randomOutcome(r, now, &inHand, random))
					}
					ops = append(ops, "Settle "+outcomesString(outcomes))
					want, wantErr := m.Settle(ctx, now, outcomes...)
					got, gotErr := q.Settle(ctx, now, outcomes...)
					same("Settle", want, got, wantErr, gotErr)
				case op < 16:
					d := random()
					if r.IntN(2) == 0 {
						d.ID = ""
					}
					ops = append(ops, "Revive "+d.Target+" "+d.ID)
					want, wantErr := m.Revive(ctx, d.Target, d.ID, now)
					got, gotErr := q.Revive(ctx, d.Target, d.ID, now)
					same("Revive", want, got, wantErr, gotErr)
				case op < 17:
					target := targetOf(r.IntN(targets))
					ops = append(ops, "Purge "+target)
					same("Purge", nil, nil, m.Purge(ctx, target), q.Purge(ctx, target))
				default:
					now = now.Add(sec(0, 20))
					ops = append(ops, "now "+now.Sub(memBase).String())
				}
				wantT, wantOK, wantErr := m.NextDue(ctx)
				gotT, gotOK, gotErr := q.NextDue(ctx)
				same("NextDue", []any{wantT, wantOK}, []any{gotT, gotOK}, wantErr, gotErr)
				want, wantErr := m.Pending(ctx, allIDs...)
				got, gotErr := q.Pending(ctx, allIDs...)
				same("Pending", want, got, wantErr, gotErr)
				for i := range targets {
					want, wantErr := m.Dead(ctx, targetOf(i))
					got, gotErr := q.Dead(ctx, targetOf(i))
					same("Dead "+targetOf(i), want, got, wantErr, gotErr)
				}
			}
		})
	}
}

// randomOutcome returns an outcome of a delivery in hand, taken out of it,
// or of a random one, as a Dispatcher makes them: Failed for Retried and
// Died, a pause for some of those.
func randomOutcome(r *rand.Rand, now time.Time, inHand *[]*webhook.Delivery, random func() *webhook.Delivery) webhook.Outcome {
	var d *webhook.Delivery
	if n := len(*inHand); n > 0 && r.IntN(4) > 0 {
		i := r.IntN(n)
		c := *(*inHand)[i]
		d = &c
		*inHand = slices.Delete(*inHand, i, i+1)
	} else {
		d = random()
	}
	o := webhook.Outcome{Delivery: d, Kind: webhook.OutcomeKind(1 + r.IntN(5))}
	switch o.Kind {
	case webhook.Retried, webhook.Died:
		d.Attempts++
		d.LastStatus, d.LastError = 500+r.IntN(5), "failed at "+now.Sub(memBase).String()
		d.Due = now.Add(time.Duration(r.IntN(60)) * time.Second)
		o.Failed = r.IntN(4) > 0
		if o.Failed && r.IntN(3) == 0 {
			o.PauseUntil = now.Add(time.Duration(r.IntN(90)-10) * time.Second)
		}
	case webhook.Released:
		d.Due = now.Add(time.Duration(r.IntN(30)) * time.Second)
		d.Attempts += 100 // which Released must not store
	}
	return o
}

func outcomesString(outcomes []webhook.Outcome) string {
	var s []string
	for _, o := range outcomes {
		x := fmt.Sprintf("%s:%d", o.Delivery.ID, o.Kind)
		if o.Failed {
			x += "!"
		}
		if !o.PauseUntil.IsZero() {
			x += "~" + o.PauseUntil.Sub(memBase).String()
		}
		s = append(s, x)
	}
	return fmt.Sprint(s)
}

// BenchmarkMemoryQueue measures the cycle of a delivery attempted at once:
// Enqueue, Claim, Settle, in a queue that holds 10,000 due deliveries: ten
// a target over 1,000 targets, in one space or spread over 100, or one a
// target, so that every Enqueue goes to a target that held nothing and
// every Settle leaves one that holds nothing. The baseline is scanQueue,
// which scans every delivery, as a Queue without an index would.
func BenchmarkMemoryQueue(b *testing.B) {
	const pending = 10_000
	for _, tt := range []struct {
		name            string
		targets, spaces int
		newQueue        func() webhook.Queue
	}{
		{"MemoryQueue, 1,000 targets", 1_000, 1, func() webhook.Queue { return webhook.NewMemoryQueue(webhook.QueueLimits{}) }},
		{"MemoryQueue, 1,000 targets in 100 spaces", 1_000, 100, func() webhook.Queue { return webhook.NewMemoryQueue(webhook.QueueLimits{}) }},
		{"MemoryQueue, 20,000 targets", 2 * pending, 1, func() webhook.Queue { return webhook.NewMemoryQueue(webhook.QueueLimits{}) }},
		{"MemoryQueue, 20,000 targets in 20,000 spaces", 2 * pending, 2 * pending, func() webhook.Queue { return webhook.NewMemoryQueue(webhook.QueueLimits{}) }},
		{"baseline: scan, 1,000 targets", 1_000, 1, func() webhook.Queue { return newScanQueue(webhook.QueueLimits{}) }},
	} {
		b.Run(tt.name, func(b *testing.B) {
			ctx, q := b.Context(), tt.newQueue()
			// The queue is FIFO here (one Due), so an ID comes back only
			// after the pending deliveries ahead of it are settled: a ring
			// of twice as many IDs keeps them unique without formatting
			// one an iteration.
			ids := make([]string, 2*pending)
			for i := range ids {
				ids[i] = "d" + strconv.Itoa(i)
			}
			targets, spaces := make([]string, tt.targets), make([]string, tt.targets)
			for i := range targets {
				targets[i], spaces[i] = "target-"+strconv.Itoa(i), "space-"+strconv.Itoa(i%tt.spaces)
			}
			d := memDelivery("", "", memBase)
			for i := range pending {
				d.ID, d.Target, d.Space = ids[i], targets[i%tt.targets], spaces[i%tt.targets]
				require.NoError(b, q.Enqueue(ctx, d))
			}
			b.ReportAllocs()
			i := pending
			for b.Loop() {
				d.ID, d.Target, d.Space = ids[i%len(ids)], targets[i%tt.targets], spaces[i%tt.targets]
				i++
				if err := q.Enqueue(ctx, d); err != nil {
					b.Fatal(err)
				}
				got, err := q.Claim(ctx, memBase, 1, time.Minute, 1)
				if err != nil || len(got) != 1 {
					b.Fatal(len(got), err)
				}
				if _, err := q.Settle(ctx, memBase, webhook.Outcome{Delivery: got[0], Kind: webhook.Delivered}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkMemoryQueueClaim measures a scheduler's round in a queue of
// 1,000 and of 1,000,000 due deliveries, ten a target, the targets in 100
// spaces or each in a space of its own: Claim of 10, NextDue, and Settle
// of the 10 as retried (ns/op), and the Claim alone (claim-ns/op).
// Claim's work grows with what it returns and skips and with the
// logarithm of what waits, not with the pending deliveries nor with the
// spaces that have some due; at a million deliveries its heaps no longer
// fit in the caches, which is most of the difference.
func BenchmarkMemoryQueueClaim(b *testing.B) {
	for _, tt := range []struct{ pending, spaces int }{{1_000, 100}, {1_000_000, 100}, {1_000_000, 100_000}} {
		b.Run(fmt.Sprintf("%d pending in %d spaces", tt.pending, tt.spaces), func(b *testing.B) {
			pending := tt.pending
			ctx, q := b.Context(), webhook.NewMemoryQueue(webhook.QueueLimits{MaxPending: pending, MaxPendingPerTarget: pending})
			targets := pending / 10
			proto := memDelivery("", "", memBase)
			batch := make([]*webhook.Delivery, 0, 10_000)
			for i := range pending {
				d := *proto
				d.ID, d.Target = "d"+strconv.Itoa(i), "target-"+strconv.Itoa(i%targets)
				d.Space = "space-" + strconv.Itoa(i%targets%tt.spaces)
				d.Due = memBase.Add(time.Duration(i) * time.Microsecond)
				if batch = append(batch, &d); len(batch) == cap(batch) || i == pending-1 {
					require.NoError(b, q.Enqueue(ctx, batch...))
					batch = batch[:0]
				}
			}
			now := memBase.Add(time.Hour)
			outcomes := make([]webhook.Outcome, 10)
			var claiming time.Duration
			b.ReportAllocs()
			for b.Loop() {
				now = now.Add(time.Microsecond)
				start := time.Now()
				got, err := q.Claim(ctx, now, 10, time.Minute, 1)
				claiming += time.Since(start)
				if err != nil || len(got) != 10 {
					b.Fatal(len(got), err)
				}
				if _, _, err := q.NextDue(ctx); err != nil {
					b.Fatal(err)
				}
				for i, d := range got {
					d.Due = now
					outcomes[i] = webhook.Outcome{Delivery: d, Kind: webhook.Retried}
				}
				if _, err := q.Settle(ctx, now, outcomes...); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(claiming.Nanoseconds())/float64(b.N), "claim-ns/op")
		})
	}
}
