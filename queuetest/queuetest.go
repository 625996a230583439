// Package queuetest checks that a webhook.Queue implementation keeps the
// Queue contract.
//
// An implementation's tests call Run with a function that returns an
// empty Queue:
//
//	func TestTableQueue(t *testing.T) {
//		queuetest.Run(t, func(t *testing.T) webhook.Queue {
//			return newTableQueue(t) // a fresh table, dropped with t.Cleanup
//		})
//	}
//
// The checks work on fake time: they pass Claim and Revive explicit times
// and never sleep. Their times are whole microseconds in UTC, without a
// monotonic reading, and they compare times with time.Time.Equal, so that
// a Queue that stores times in a database passes.
package queuetest

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/stretchr/testify/require"

	"github.com/crmhook/webhook"
)

// Run checks every clause of the webhook.Queue contract, each in a subtest
// of t with a Queue of its own from newQueue, which must return an empty
// Queue. The subtests do not run in parallel, so that Queues over one
// database do not see each other's deliveries, provided newQueue empties
// it.
func Run(t *testing.T, newQueue func(t *testing.T) webhook.Queue) {
	t.Helper()
	open := func(t *testing.T) *tester {
		t.Helper()
		q := newQueue(t)
		require.NotNil(t, q, "newQueue returned nil")
		return &tester{t: t, q: q, ctx: t.Context()}
	}
	for _, tc := range checks {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, open) })
	}
}

// base is the fake time the checks start at: whole seconds, UTC.
var base = time.Unix(1_700_000_000, 0).UTC()

// lease is the lease of every Claim unless a check says otherwise.
const lease = time.Minute

// at returns base plus d.
func at(d time.Duration) time.Time { return base.Add(d) }

// delivery returns a delivery to hook due at due with every field set, as a
// retried delivery has them, so that a field that does not round-trip
// shows.
func delivery(id, hook string, due time.Time) *webhook.Delivery {
	return &webhook.Delivery{
		ID:         id,
		WebhookID:  hook,
		EventIDs:   []string{"ev-" + id + "-1", "ev-" + id + "-2"},
		Body:       []byte(`[{"id":"` + id + `","name":"Acme"}]`),
		Created:    base.Add(-time.Hour + 123456*time.Microsecond),
		Attempts:   2,
		Due:        due,
		LastStatus: 503,
		LastError:  "503 Service Unavailable",
	}
}

// clone returns a copy of d that shares nothing with it.
func clone(d *webhook.Delivery) *webhook.Delivery {
	c := *d
	c.EventIDs = append([]string(nil), d.EventIDs...)
	c.Body = append([]byte(nil), d.Body...)
	return &c
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

func (c *tester) claim(now time.Time, limit int, skip ...string) []*webhook.Delivery {
	c.t.Helper()
	ds, err := c.q.Claim(c.ctx, now, limit, lease, skip)
	require.NoError(c.t, err, "Claim")
	require.LessOrEqual(c.t, len(ds), max(limit, 0), "Claim returned more than max")
	return ds
}

// claimIDs claims and returns the IDs of what it got, in order.
func (c *tester) claimIDs(now time.Time, limit int, skip ...string) []string {
	c.t.Helper()
	return ids(c.claim(now, limit, skip...))
}

func (c *tester) ack(ids ...string) {
	c.t.Helper()
	for _, id := range ids {
		require.NoError(c.t, c.q.Ack(c.ctx, id), "Ack %s", id)
	}
}

func (c *tester) dead(webhookID string) []*webhook.Delivery {
	c.t.Helper()
	ds, err := c.q.Dead(c.ctx, webhookID)
	require.NoError(c.t, err, "Dead")
	return ds
}

func (c *tester) nextDue() (time.Time, bool) {
	c.t.Helper()
	due, ok, err := c.q.NextDue(c.ctx)
	require.NoError(c.t, err, "NextDue")
	return due, ok
}

// requireNextDue checks that NextDue reports want.
func (c *tester) requireNextDue(want time.Time) {
	c.t.Helper()
	got, ok := c.nextDue()
	require.True(c.t, ok, "NextDue reports nothing, want %v", want)
	require.True(c.t, got.Equal(want), "NextDue = %v, want %v", got, want)
}

// kill enqueues ds, which must be due one after the other, and claims and
// dead-letters each in turn as a Dispatcher does when the last attempt
// fails. It returns what it dead-lettered.
func (c *tester) kill(ds ...*webhook.Delivery) []*webhook.Delivery {
	c.t.Helper()
	c.enqueue(ds...)
	var dead []*webhook.Delivery
	for _, d := range ds {
		got := c.claim(d.Due, 1)
		require.Equal(c.t, []string{d.ID}, ids(got), "claim before DeadLetter")
		got[0].Attempts, got[0].LastStatus, got[0].LastError = 10, 410, "410 Gone"
		require.NoError(c.t, c.q.DeadLetter(c.ctx, got[0]), "DeadLetter")
		dead = append(dead, clone(got[0]))
	}
	return dead
}

func ids(ds []*webhook.Delivery) []string {
	out := []string{}
	for _, d := range ds {
		out = append(out, d.ID)
	}
	return out
}

// requireDeliveries checks every field of got against want. Times compare
// with Equal (go-cmp uses the method), and a nil slice equals an empty one,
// as a database may not tell them apart.
func requireDeliveries(t *testing.T, want, got []*webhook.Delivery) {
	t.Helper()
	if d := cmp.Diff(want, got, cmpopts.EquateEmpty()); d != "" {
		t.Fatalf("deliveries (-want +got):\n%s", d)
	}
}

// checks are Run's subtests, one a clause of the contract, in the order of
// the Queue doc comment.
var checks = []struct {
	name string
	run  func(t *testing.T, open func(*testing.T) *tester)
}{
	{"Claim returns what Enqueue stored, every field as given", func(t *testing.T, open func(*testing.T) *tester) {
		c := open(t)
		full := delivery("full", "hook-a", base)
		bare := &webhook.Delivery{ID: "bare", WebhookID: "hook-b", Body: []byte("[]"), Created: base, Due: base}
		want := []*webhook.Delivery{clone(full), clone(bare)}
		c.enqueue(full, bare)
		requireDeliveries(t, want, c.claim(base, 10))
	}},

	{"Claim leaves a delivery that is not due until now reaches its Due", func(t *testing.T, open func(*testing.T) *tester) {
		c := open(t)
		c.enqueue(delivery("d", "hook-a", at(time.Second)))
		require.Empty(t, c.claim(base, 10))
		require.Empty(t, c.claim(at(time.Second-time.Millisecond), 10))
		require.Equal(t, []string{"d"}, c.claimIDs(at(time.Second), 10), "a Due equal to now is due")
	}},

	{"Claim returns the earliest Due first and enqueue order among equals", func(t *testing.T, open func(*testing.T) *tester) {
		// IDs and webhook IDs do not sort in the expected order, so that a
		// Queue that orders by either fails.
		fill := func(c *tester) {
			c.enqueue(delivery("late", "hook-1", at(2*time.Second)))
			c.enqueue(delivery("zero-a", "hook-5", base))
			c.enqueue(delivery("one-a", "hook-4", at(time.Second)))
			c.enqueue(delivery("one-b", "hook-3", at(time.Second)), delivery("zero-b", "hook-2", base))
		}
		order := []string{"zero-a", "zero-b", "one-a", "one-b", "late"}
		for limit := 1; limit <= len(order); limit++ {
			t.Run(fmt.Sprintf("max %d in one Claim", limit), func(t *testing.T) {
				c := open(t)
				fill(c)
				require.Equal(t, order[:limit], c.claimIDs(at(time.Minute), limit))
			})
		}
		t.Run("one at a time", func(t *testing.T) {
			c := open(t)
			fill(c)
			var got []string
			for range order {
				got = append(got, c.claimIDs(at(time.Minute), 1)...)
			}
			require.Equal(t, order, got)
		})
	}},

	{"Claim returns at most one delivery per webhook, its earliest", func(t *testing.T, open func(*testing.T) *tester) {
		c := open(t)
		c.enqueue(delivery("x-late", "hook-x", at(2*time.Second)),
			delivery("x-first", "hook-x", base),
			delivery("y", "hook-y", at(time.Second)),
			delivery("x-second", "hook-x", base))
		now := at(time.Minute)
		require.Equal(t, []string{"x-first", "y"}, c.claimIDs(now, 10))
		require.Equal(t, []string{"x-second"}, c.claimIDs(now, 10), "the next of hook-x, while x-first is leased")
		c.ack("x-first", "y", "x-second")
		require.Equal(t, []string{"x-late"}, c.claimIDs(now, 10))
	}},

	{"Claim leaves out the webhooks in skip", func(t *testing.T, open func(*testing.T) *tester) {
		long := []string{"hook-a", "hook-b"}
		for i := range 30 {
			long = append(long, "other-"+strconv.Itoa(i))
		}
		for _, tt := range []struct {
			name      string
			skip      []string
			want, not []string
		}{
			{"none", nil, []string{"a", "b", "c"}, []string{}},
			{"two of three and an unknown one", []string{"hook-c", "hook-x", "hook-a"}, []string{"b"}, []string{"a", "c"}},
			{"a long list", long, []string{"c"}, []string{"a", "b"}},
		} {
			t.Run(tt.name, func(t *testing.T) {
				c := open(t)
				c.enqueue(delivery("a", "hook-a", base), delivery("b", "hook-b", at(time.Millisecond)),
					delivery("c", "hook-c", at(2*time.Millisecond)))
				require.Equal(t, tt.want, c.claimIDs(at(time.Second), 10, tt.skip...))
				require.Equal(t, tt.not, c.claimIDs(at(time.Second), 10), "what skip left out")
			})
		}
	}},

	{"Claim returns at most max and leases only what it returns", func(t *testing.T, open func(*testing.T) *tester) {
		all := []string{"d0", "d1", "d2", "d3", "d4"}
		for _, limit := range []int{-1, 0, 1, 3, 5, 10} {
			t.Run(fmt.Sprintf("max %d", limit), func(t *testing.T) {
				c := open(t)
				for i, id := range all {
					c.enqueue(delivery(id, "hook-"+id, at(time.Duration(i)*time.Millisecond)))
				}
				n := min(max(limit, 0), len(all))
				require.Equal(t, all[:n], c.claimIDs(at(time.Second), limit))
				require.Equal(t, all[n:], c.claimIDs(at(time.Second), 10), "the rest")
			})
		}
	}},

	{"Claim does not return a leased delivery until its lease has passed", func(t *testing.T, open func(*testing.T) *tester) {
		c := open(t)
		c.enqueue(delivery("d", "hook-a", base))
		require.Equal(t, []string{"d"}, c.claimIDs(base, 10))
		require.Empty(t, c.claim(base, 10))
		require.Empty(t, c.claim(at(lease/2), 10))
		require.Empty(t, c.claim(at(lease-time.Millisecond), 10))
	}},

	{"a lease that runs out returns the delivery to pending, unchanged", func(t *testing.T, open func(*testing.T) *tester) {
		c := open(t)
		d := delivery("d", "hook-a", base)
		c.enqueue(clone(d))
		require.Equal(t, []string{"d"}, c.claimIDs(base, 10))
		expired := at(lease + time.Nanosecond)
		requireDeliveries(t, []*webhook.Delivery{d}, c.claim(expired, 10))
		require.Empty(t, c.claim(expired, 10), "leased again by the second Claim")
	}},

	{"Ack removes a delivery, leased or pending", func(t *testing.T, open func(*testing.T) *tester) {
		c := open(t)
		c.enqueue(delivery("leased", "hook-a", base), delivery("pending", "hook-b", at(time.Second)))
		require.Equal(t, []string{"leased"}, c.claimIDs(base, 10))
		c.ack("leased", "pending")
		require.Empty(t, c.claim(at(24*time.Hour), 10))
		_, ok := c.nextDue()
		require.False(t, ok, "NextDue after everything was acked")
	}},

	{"Ack of an id that is not there is not an error", func(t *testing.T, open func(*testing.T) *tester) {
		c := open(t)
		c.ack("never-enqueued")
		c.enqueue(delivery("d", "hook-a", base))
		require.Equal(t, []string{"d"}, c.claimIDs(base, 10))
		c.ack("d", "d")
	}},

	{"Retry ends the lease and stores the attempt: due at the new Due", func(t *testing.T, open func(*testing.T) *tester) {
		for _, tt := range []struct {
			name string
			due  time.Time
		}{
			{"at once, inside the old lease", base},
			{"later, inside the old lease", at(10 * time.Second)},
			{"after the old lease", at(lease + time.Hour)},
		} {
			t.Run(tt.name, func(t *testing.T) {
				c := open(t)
				c.enqueue(delivery("d", "hook-a", base))
				got := c.claim(base, 10)
				require.Len(t, got, 1)
				r := clone(got[0])
				r.Attempts, r.Due, r.LastStatus, r.LastError = 3, tt.due, 500, "500 Internal Server Error"
				require.NoError(t, c.q.Retry(c.ctx, clone(r)))
				if tt.due.After(base) {
					require.Empty(t, c.claim(tt.due.Add(-time.Millisecond), 10), "claimed before its new Due")
				}
				c.requireNextDue(tt.due)
				requireDeliveries(t, []*webhook.Delivery{r}, c.claim(tt.due, 10))
			})
		}
	}},

	{"DeadLetter keeps the delivery, as given, among the dead, oldest first", func(t *testing.T, open func(*testing.T) *tester) {
		c := open(t)
		c.enqueue(delivery("b", "hook-b", at(time.Hour)))
		dead := c.kill(delivery("a1", "hook-a", base), delivery("a2", "hook-a", at(time.Millisecond)))
		requireDeliveries(t, dead, c.dead("hook-a"))
		require.Empty(t, c.dead("hook-b"))
		require.Empty(t, c.dead("hook-none"))
		require.Equal(t, []string{"b"}, c.claimIDs(at(24*time.Hour), 10), "only b: the dead are not claimed")
		c.ack("b")
		_, ok := c.nextDue()
		require.False(t, ok, "NextDue with only dead deliveries")
	}},

	{"Revive with an id makes that dead delivery pending, due at now, without attempts", func(t *testing.T, open func(*testing.T) *tester) {
		c := open(t)
		dead := c.kill(delivery("a1", "hook-a", base), delivery("a2", "hook-a", at(time.Millisecond)))
		now := at(time.Hour)
		revived, err := c.q.Revive(c.ctx, "hook-a", "a1", now)
		require.NoError(t, err)
		require.Equal(t, []string{"a1"}, revived)
		requireDeliveries(t, dead[1:], c.dead("hook-a"))
		c.requireNextDue(now)
		require.Empty(t, c.claim(now.Add(-time.Millisecond), 10))
		want := clone(dead[0])
		want.Attempts, want.Due = 0, now
		requireDeliveries(t, []*webhook.Delivery{want}, c.claim(now, 10))
	}},

	{"Revive without an id revives every dead delivery of the webhook", func(t *testing.T, open func(*testing.T) *tester) {
		c := open(t)
		dead := c.kill(delivery("a1", "hook-a", base), delivery("b1", "hook-b", at(time.Millisecond)),
			delivery("a2", "hook-a", at(2*time.Millisecond)))
		now := at(time.Hour)
		revived, err := c.q.Revive(c.ctx, "hook-a", "", now)
		require.NoError(t, err)
		require.ElementsMatch(t, []string{"a1", "a2"}, revived)
		require.Empty(t, c.dead("hook-a"))
		requireDeliveries(t, dead[1:2], c.dead("hook-b"))
		// One per Claim, as they share a webhook; the contract does not say
		// in which order revived deliveries come.
		var got []*webhook.Delivery
		for range 2 {
			ds := c.claim(now, 10)
			require.Len(t, ds, 1)
			got = append(got, ds...)
			c.ack(ds[0].ID)
		}
		require.ElementsMatch(t, []string{"a1", "a2"}, ids(got))
		for _, d := range got {
			require.Zero(t, d.Attempts, "Attempts of %s", d.ID)
			require.True(t, d.Due.Equal(now), "Due of %s = %v, want %v", d.ID, d.Due, now)
		}
		revived, err = c.q.Revive(c.ctx, "hook-a", "", now)
		require.NoError(t, err)
		require.Empty(t, revived, "no dead left")
	}},

	{"Revive of an id that names no dead delivery of the webhook wraps ErrNotFound", func(t *testing.T, open func(*testing.T) *tester) {
		for _, tt := range []struct{ name, webhookID, id string }{
			{"an unknown id", "hook-a", "nope"},
			{"another webhook's dead delivery", "hook-b", "a1"},
			{"a pending delivery", "hook-p", "p"},
			{"a webhook without dead", "hook-none", "a1"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				c := open(t)
				dead := c.kill(delivery("a1", "hook-a", base))
				c.enqueue(delivery("p", "hook-p", at(time.Hour)))
				revived, err := c.q.Revive(c.ctx, tt.webhookID, tt.id, at(time.Hour))
				require.ErrorIs(t, err, webhook.ErrNotFound)
				require.Empty(t, revived)
				requireDeliveries(t, dead, c.dead("hook-a"))
				require.Equal(t, []string{"p"}, c.claimIDs(at(time.Hour), 10), "only p is pending")
			})
		}
	}},

	{"Enqueue of an id the Queue holds is refused, and stores none of the call", func(t *testing.T, open func(*testing.T) *tester) {
		c := open(t)
		c.enqueue(delivery("a", "hook-a", base))
		err := c.q.Enqueue(c.ctx, delivery("b", "hook-b", base), delivery("a", "hook-a", base))
		require.ErrorIs(t, err, webhook.ErrInvalid)
		require.Equal(t, []string{"a"}, c.claimIDs(base, 10), "b was not stored either")
	}},

	{"Retry and DeadLetter of an id the Queue does not hold store it", func(t *testing.T, open func(*testing.T) *tester) {
		c := open(t)
		late := delivery("late", "hook-a", at(time.Second))
		late.Attempts = 2
		require.NoError(t, c.q.Retry(c.ctx, late))
		requireDeliveries(t, []*webhook.Delivery{late}, c.claim(at(time.Second), 10))
		gone := delivery("gone", "hook-b", base)
		require.NoError(t, c.q.DeadLetter(c.ctx, gone))
		requireDeliveries(t, []*webhook.Delivery{gone}, c.dead("hook-b"))
	}},

	{"Ack removes a dead delivery too", func(t *testing.T, open func(*testing.T) *tester) {
		c := open(t)
		c.kill(delivery("a1", "hook-a", base))
		c.ack("a1")
		require.Empty(t, c.dead("hook-a"))
	}},

	{"NextDue reports the earliest Due or lease end, and Claim then returns it", func(t *testing.T, open func(*testing.T) *tester) {
		c := open(t)
		_, ok := c.nextDue()
		require.False(t, ok, "NextDue of an empty Queue")

		c.enqueue(delivery("a", "hook-a", at(5*time.Second)), delivery("b", "hook-b", at(3*time.Second)))
		c.requireNextDue(at(3 * time.Second))
		require.Equal(t, []string{"b"}, c.claimIDs(at(3*time.Second), 10))
		c.requireNextDue(at(5 * time.Second))
		require.Equal(t, []string{"a"}, c.claimIDs(at(5*time.Second), 10))

		bEnds := at(3*time.Second + lease)
		c.requireNextDue(bEnds)
		c.enqueue(delivery("c", "hook-c", at(time.Hour)))
		c.requireNextDue(bEnds)
		require.Equal(t, []string{"b"}, c.claimIDs(bEnds, 10), "b at the end of its lease")
		c.requireNextDue(at(5*time.Second + lease))

		c.ack("a", "b")
		c.requireNextDue(at(time.Hour))
		c.ack("c")
		_, ok = c.nextDue()
		require.False(t, ok, "NextDue after everything was acked")
	}},

	{"the caller owns what it enqueues and what Claim and Dead return", func(t *testing.T, open func(*testing.T) *tester) {
		c := open(t)
		d := delivery("a", "hook-a", base)
		want := []*webhook.Delivery{clone(d)}
		c.enqueue(d)
		// A caller may reuse the struct: change every field and enqueue it
		// again as another delivery.
		d.ID, d.WebhookID, d.Attempts, d.Due, d.LastError = "b", "hook-b", 99, at(time.Second), "reused"
		d.EventIDs = append(d.EventIDs, "ev-b")
		d.Body = []byte("[]")
		want = append(want, clone(d))
		c.enqueue(d)

		got := c.claim(at(time.Second), 10)
		requireDeliveries(t, want, got)
		for _, g := range got {
			g.Attempts, g.Due, g.LastStatus, g.LastError = 7, at(time.Hour), 418, "mine"
			g.EventIDs = append(g.EventIDs, "appended")
			g.Body = append(g.Body, '!')
		}
		requireDeliveries(t, want, c.claim(at(time.Second+lease), 10))
		c.ack("a", "b")

		dead := c.kill(delivery("c", "hook-c", at(time.Hour)))
		for _, g := range c.dead("hook-c") {
			g.ID, g.Attempts, g.LastError = "changed", 0, "mine"
			g.EventIDs = append(g.EventIDs, "appended")
		}
		requireDeliveries(t, dead, c.dead("hook-c"))
	}},

	{"concurrent Claims lease each delivery to one of them", func(t *testing.T, open func(*testing.T) *tester) {
		const hooks, perHook, workers = 100, 3, 8
		c := open(t)
		var all []*webhook.Delivery
		for i := range hooks * perHook {
			h := i % hooks
			all = append(all, delivery(fmt.Sprintf("d%d", i), fmt.Sprintf("hook-%d", h), at(time.Duration(i)*time.Millisecond)))
		}
		c.enqueue(all...)
		now := at(time.Hour) // every delivery is due, no lease ends
		got := make([][]string, workers)
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for {
					ds, err := c.q.Claim(c.ctx, now, 3, 2*time.Hour, nil)
					if err != nil {
						t.Errorf("Claim: %v", err) // not require: FailNow belongs to the test's goroutine
						return
					}
					if len(ds) == 0 {
						return // all claimed: every delivery is due and no lease ends
					}
					for _, d := range ds {
						got[w] = append(got[w], d.ID)
						// Ack some, so that Claims race Acks too.
						if len(got[w])%2 == 0 {
							if err := c.q.Ack(c.ctx, d.ID); err != nil {
								t.Errorf("Ack %s: %v", d.ID, err)
								return
							}
						}
					}
				}
			})
		}
		wg.Wait()
		seen := map[string]int{}
		for _, g := range got {
			for _, id := range g {
				seen[id]++
			}
		}
		for _, d := range all {
			require.Equal(t, 1, seen[d.ID], "times %s was claimed", d.ID)
		}
		require.Len(t, seen, len(all))
	}},
}
