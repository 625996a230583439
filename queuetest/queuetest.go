// Package queuetest checks that a webhook.Queue implementation keeps the
// Queue contract.
//
// An implementation's tests call Run with a function that returns an
// empty Queue bound by the QueueLimits it is given:
//
//	func TestTableQueue(t *testing.T) {
//		queuetest.Run(t, func(t *testing.T, lim webhook.QueueLimits) webhook.Queue {
//			return newTableQueue(t, lim) // fresh tables, dropped with t.Cleanup
//		})
//	}
//
// A Queue over a database runs the checks as they are: each check, and
// each case of a table within one, gets a Queue of its own from newQueue,
// called with the test of that check or case, and the checks run one
// after the other, never in parallel. So newQueue empties the tables (or
// creates a schema and drops it with t.Cleanup) and returns a Queue over
// them, bound by lim:
//
//	queuetest.Run(t, func(t *testing.T, lim webhook.QueueLimits) webhook.Queue {
//		_, err := pool.Exec(t.Context(), "TRUNCATE webhook_deliveries, webhook_targets")
//		require.NoError(t, err)
//		q, err := postgres.NewQueue(t.Context(), pool, postgres.QueueConfig{Limits: lim})
//		require.NoError(t, err)
//		return q
//	})
//
// Simultaneous use is checked with goroutines that share one Queue value;
// several processes over one database are the implementation's to check.
//
// The checks work on fake time: they pass Claim, Settle and Revive
// explicit times and never sleep, so a Queue must take its time from
// those arguments, never from a clock. The times are whole microseconds in
// UTC, without a monotonic reading, and the checks compare times with
// time.Time.Equal, so that a Queue that stores times in a database
// column passes. They compare no error text, only the sentinels
// (errors.Is), do not rely on the identity of pointers, and treat a nil
// slice and an empty one alike. Ids, targets and spaces are short ASCII
// strings such as "d1", "target-a" and "space-a", not UUIDs: a Queue must
// take any string.
//
// Where the contract leaves a choice, the checks do not make it: what one
// Claim returns is compared as a set, since it does not order the
// deliveries it returns (the order in which Claim takes them shows in a
// series of Claims of one delivery each); the order of the ids that
// Revive returns is not checked; and NextDue is asked only where a lease
// that ended has been seen ended by a Claim.
package queuetest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/stretchr/testify/require"

	"github.com/crmhook/webhook"
)

// Run checks every clause of the webhook.Queue contract, each in a subtest
// of t with a Queue of its own from newQueue, which must return an empty
// Queue bound by lim (the zero QueueLimits, meaning the defaults, unless a
// check is about the bounds). The subtests do not run in parallel, so
// that Queues over one database do not see each other's deliveries,
// provided newQueue empties it.
func Run(t *testing.T, newQueue func(t *testing.T, lim webhook.QueueLimits) webhook.Queue) {
	t.Helper()
	open := func(t *testing.T, lim webhook.QueueLimits) *tester {
		t.Helper()
		q := newQueue(t, lim)
		require.NotNil(t, q, "newQueue returned nil")
		return &tester{t: t, q: q, ctx: t.Context()}
	}
	for _, checks := range [][]check{enqueueChecks, claimChecks, fairnessChecks, settleChecks,
		pauseChecks, deadChecks, purgeChecks, pendingChecks, nextDueChecks, sharingChecks} {
		for _, c := range checks {
			t.Run(c.name, func(t *testing.T) { c.run(t, open) })
		}
	}
}

// check is one of Run's subtests: a clause of the contract, named as a
// sentence. It opens the Queues it needs, each bound by the limits it
// passes.
type check struct {
	name string
	run  func(t *testing.T, open opener)
}

// opener returns a tester of a new, empty Queue bound by lim.
type opener func(t *testing.T, lim webhook.QueueLimits) *tester

// none is the zero QueueLimits: the defaults, which no check reaches
// unless it means to.
var none webhook.QueueLimits

// base is the fake time the checks start at: whole seconds, UTC.
var base = time.Unix(1_700_000_000, 0).UTC()

// lease is the lease of every Claim unless a check says otherwise.
const lease = time.Minute

// at returns base plus d.
func at(d time.Duration) time.Time { return base.Add(d) }

// later is a time after every Due and lease end of the checks, unless they
// say otherwise.
var later = at(24 * time.Hour)

// space is the space of the checks that use one.
const space = "space-a"

// delivery returns a delivery of target, in the space of the checks that
// use one, due at due.
func delivery(target, id string, due time.Time) *webhook.Delivery {
	return spaceDelivery(space, target, id, due)
}

// spaceDelivery returns a delivery of target, in space, due at due, with
// every field set as a retried delivery has them, so that a field that
// does not round-trip shows.
func spaceDelivery(space, target, id string, due time.Time) *webhook.Delivery {
	return &webhook.Delivery{
		ID:         id,
		Space:      space,
		WebhookID:  "hook-" + target,
		Target:     target,
		EventIDs:   []string{"ev-" + id + "-1", "ev-" + id + "-2"},
		Body:       []byte(`[{"id":"` + id + `","name":"Acme – Zürich"}]`),
		Created:    base.Add(-time.Hour + 123456*time.Microsecond),
		Attempts:   2,
		Due:        due,
		LastStatus: 503,
		LastError:  "503 Service Unavailable: réessayez",
	}
}

// clone returns a copy of d that shares nothing with it.
func clone(d *webhook.Delivery) *webhook.Delivery {
	c := *d
	c.EventIDs = slices.Clone(d.EventIDs)
	c.Body = slices.Clone(d.Body)
	return &c
}

// clones returns clones of ds.
func clones(ds ...*webhook.Delivery) []*webhook.Delivery {
	out := make([]*webhook.Delivery, len(ds))
	for i, d := range ds {
		out[i] = clone(d)
	}
	return out
}

// failed returns d as an attempt that failed leaves it: one more attempt,
// due at due, with the receiver's answer.
func failed(d *webhook.Delivery, due time.Time, status int) *webhook.Delivery {
	c := clone(d)
	c.Attempts++
	c.Due = due
	c.LastStatus, c.LastError = status, fmt.Sprintf("the receiver answered %d", status)
	return c
}

// outcome returns an outcome of kind for d, not counted as a failure.
func outcome(kind webhook.OutcomeKind, d *webhook.Delivery) webhook.Outcome {
	return webhook.Outcome{Delivery: d, Kind: kind}
}

// failure returns an outcome of kind for d that counts as a failed
// attempt, pausing the target until pause unless it is zero.
func failure(kind webhook.OutcomeKind, d *webhook.Delivery, pause time.Time) webhook.Outcome {
	return webhook.Outcome{Delivery: d, Kind: kind, Failed: true, PauseUntil: pause}
}

// tester runs Queue methods and fails its test on an error.
type tester struct {
	t   *testing.T
	q   webhook.Queue
	ctx context.Context
}

func (c *tester) enqueue(ds ...*webhook.Delivery) {
	c.t.Helper()
	require.NoError(c.t, c.q.Enqueue(c.ctx, ds...), "Enqueue")
}

// claimFor claims with the lease given.
func (c *tester) claimFor(now time.Time, limit int, lease time.Duration, perTarget int) []*webhook.Delivery {
	c.t.Helper()
	ds, err := c.q.Claim(c.ctx, now, limit, lease, perTarget)
	require.NoError(c.t, err, "Claim")
	require.LessOrEqual(c.t, len(ds), max(limit, 0), "Claim returned more than max")
	for _, d := range ds {
		require.NotNil(c.t, d, "Claim returned a nil delivery")
	}
	return ds
}

func (c *tester) claim(now time.Time, limit, perTarget int) []*webhook.Delivery {
	c.t.Helper()
	return c.claimFor(now, limit, lease, perTarget)
}

// requireClaim claims and requires the ids of what it got to be want, in
// any order: the contract does not order what one Claim returns.
func (c *tester) requireClaim(now time.Time, limit, perTarget int, want ...string) []*webhook.Delivery {
	c.t.Helper()
	got := c.claim(now, limit, perTarget)
	requireIDs(c.t, want, got, "Claim(%s, max %d, perTarget %d)", since(now), limit, perTarget)
	return got
}

// requireOrder claims one delivery at a time, as many times as want has
// ids, and requires them in want's order: the order in which Claim takes
// deliveries, which one Claim of several does not show.
func (c *tester) requireOrder(now time.Time, perTarget int, want ...string) []*webhook.Delivery {
	c.t.Helper()
	var all []*webhook.Delivery
	for i, id := range want {
		got := c.claim(now, 1, perTarget)
		require.Len(c.t, got, 1, "Claim %d of one delivery at %s: want %s (all: %v)", i+1, since(now), id, want)
		require.Equal(c.t, id, got[0].ID, "Claim %d of one delivery at %s (all: %v)", i+1, since(now), want)
		all = append(all, got[0])
	}
	return all
}

// settle records outcomes and requires a Health for each.
func (c *tester) settle(now time.Time, outcomes ...webhook.Outcome) []webhook.Health {
	c.t.Helper()
	health, err := c.q.Settle(c.ctx, now, outcomes...)
	require.NoError(c.t, err, "Settle")
	require.Len(c.t, health, len(outcomes), "Settle: one Health an outcome")
	return health
}

func (c *tester) dead(target string) []*webhook.Delivery {
	c.t.Helper()
	ds, err := c.q.Dead(c.ctx, target)
	require.NoError(c.t, err, "Dead")
	return ds
}

// requireDead requires the dead of target to be want, in order, every
// field.
func (c *tester) requireDead(target string, want ...*webhook.Delivery) {
	c.t.Helper()
	requireDeliveries(c.t, want, c.dead(target), "Dead(%s)", target)
}

func (c *tester) revive(target, id string, now time.Time) []string {
	c.t.Helper()
	ids, err := c.q.Revive(c.ctx, target, id, now)
	require.NoError(c.t, err, "Revive(%s, %q)", target, id)
	return ids
}

func (c *tester) purge(target string) {
	c.t.Helper()
	require.NoError(c.t, c.q.Purge(c.ctx, target), "Purge(%s)", target)
}

// requireNextDue requires NextDue to report want.
func (c *tester) requireNextDue(want time.Time) {
	c.t.Helper()
	got, ok, err := c.q.NextDue(c.ctx)
	require.NoError(c.t, err, "NextDue")
	require.True(c.t, ok, "NextDue reports nothing, want %s", since(want))
	require.True(c.t, got.Equal(want), "NextDue = %s, want %s", since(got), since(want))
}

// requireNothingDue requires NextDue to report that nothing is pending or
// leased.
func (c *tester) requireNothingDue() {
	c.t.Helper()
	got, ok, err := c.q.NextDue(c.ctx)
	require.NoError(c.t, err, "NextDue")
	require.False(c.t, ok, "NextDue = %s, want nothing pending or leased", since(got))
}

// kill enqueues ds, which must be due at now, claims them all (the Queue
// must hold nothing else claimable at now) and records their deaths in
// their order, each with a last attempt that failed. It returns them as it
// recorded them: as the Queue must keep them.
func (c *tester) kill(now time.Time, ds ...*webhook.Delivery) []*webhook.Delivery {
	c.t.Helper()
	c.enqueue(ds...)
	var want []string
	for _, d := range ds {
		want = append(want, d.ID)
	}
	got := c.requireClaim(now, len(ds), len(ds), want...)
	byID := map[string]*webhook.Delivery{}
	for _, d := range got {
		byID[d.ID] = d
	}
	var dead []*webhook.Delivery
	var outcomes []webhook.Outcome
	for _, d := range ds {
		x := failed(byID[d.ID], now.Add(time.Hour), 410)
		dead = append(dead, clone(x))
		outcomes = append(outcomes, outcome(webhook.Died, x))
	}
	c.settle(now, outcomes...)
	return dead
}

// ids returns the ids of ds, in order.
func ids(ds []*webhook.Delivery) []string {
	out := []string{}
	for _, d := range ds {
		out = append(out, d.ID)
	}
	return out
}

// requireIDs requires the ids of got to be want, in any order.
func requireIDs(t *testing.T, want []string, got []*webhook.Delivery, msg string, args ...any) {
	t.Helper()
	w, g := slices.Sorted(slices.Values(want)), slices.Sorted(slices.Values(ids(got)))
	if len(w) == 0 && len(g) == 0 {
		return
	}
	require.Equal(t, w, g, append([]any{msg}, args...)...)
}

// requireDeliveries requires every field of got to equal want's, in
// order. Times compare with Equal (go-cmp uses the method), and a nil
// slice equals an empty one, as a database may not tell them apart.
func requireDeliveries(t *testing.T, want, got []*webhook.Delivery, msg string, args ...any) {
	t.Helper()
	if d := cmp.Diff(want, got, cmpopts.EquateEmpty()); d != "" {
		t.Fatalf("%s: deliveries (-want +got):\n%s", fmt.Sprintf(msg, args...), d)
	}
}

// requireSameDeliveries requires every field of got to equal want's, in
// any order.
func requireSameDeliveries(t *testing.T, want, got []*webhook.Delivery, msg string, args ...any) {
	t.Helper()
	byID := func(a, b *webhook.Delivery) int { return strings.Compare(a.ID, b.ID) }
	requireDeliveries(t, slices.SortedFunc(slices.Values(want), byID), slices.SortedFunc(slices.Values(got), byID), msg, args...)
}

// requireHealth requires every Health of got to equal want's: Failures,
// and FailingSince with Equal.
func requireHealth(t *testing.T, want, got []webhook.Health, msg string, args ...any) {
	t.Helper()
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("%s: Health (-want +got):\n%s", fmt.Sprintf(msg, args...), d)
	}
}

// since shows t as an offset from base, as the checks write times.
func since(t time.Time) string {
	return "base+" + t.Sub(base).String()
}
