package queuetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/crmhook/webhook"
)

// claimChecks are the clauses of Queue.Claim within one space: what is
// due, max, the order of a target's deliveries, perTarget and leases.
var claimChecks = []check{
	{"Claim returns a delivery once its Due is not after now", func(t *testing.T, open opener) {
		c := open(t, none)
		c.enqueue(delivery("target-a", "d", at(time.Second)))
		c.requireClaim(base, 10, 1)
		c.requireClaim(at(time.Second-time.Microsecond), 10, 1)
		c.requireClaim(at(time.Second), 10, 1, "d")
	}},

	{"Claim returns at most max deliveries, leases only those, and max <= 0 claims nothing", func(t *testing.T, open opener) {
		all := []string{"d0", "d1", "d2", "d3", "d4"}
		for _, limit := range []int{-1, 0, 1, 3, 5, 10} {
			t.Run(fmt.Sprintf("max %d", limit), func(t *testing.T) {
				c := open(t, none)
				for i, id := range all {
					c.enqueue(delivery("target-"+id, id, at(time.Duration(i)*time.Millisecond)))
				}
				n := min(max(limit, 0), len(all))
				c.requireClaim(at(time.Second), limit, 1, all[:n]...)
				c.requireClaim(at(time.Second), 10, 1, all[n:]...)
			})
		}
	}},

	{"Claim takes a target's deliveries in the order of their Due, and of Enqueue among equals", func(t *testing.T, open opener) {
		// The ids do not sort in the expected order, so that a Queue that
		// orders by them fails.
		fill := func(c *tester) {
			c.enqueue(delivery("target-a", "late", at(2*time.Second)))
			c.enqueue(delivery("target-a", "zero-a", base))
			c.enqueue(delivery("target-a", "one-a", at(time.Second)))
			c.enqueue(delivery("target-a", "one-b", at(time.Second)), delivery("target-a", "zero-b", base))
		}
		order := []string{"zero-a", "zero-b", "one-a", "one-b", "late"}
		for n := 1; n <= len(order); n++ {
			t.Run(fmt.Sprintf("the first %d in one Claim", n), func(t *testing.T) {
				c := open(t, none)
				fill(c)
				c.requireClaim(at(time.Minute), n, n, order[:n]...)
			})
		}
		t.Run("one at a time", func(t *testing.T) {
			c := open(t, none)
			fill(c)
			c.requireOrder(at(time.Minute), len(order), order...)
		})
		t.Run("each when the one before it is settled", func(t *testing.T) {
			c := open(t, none)
			fill(c)
			for _, id := range order {
				got := c.requireClaim(at(time.Minute), 10, 1, id)
				c.settle(at(time.Minute), outcome(webhook.Delivered, got[0]))
			}
		})
	}},

	{"Claim keeps a target's order through Released, Retried and Revive", func(t *testing.T, open opener) {
		c := open(t, none)
		d1, d2, d3 := delivery("target-a", "d1", base), delivery("target-a", "d2", base), delivery("target-a", "d3", base)
		c.enqueue(d1, d2, d3)
		// Released and Retried due as before: d1 is still first.
		got := c.requireClaim(base, 10, 1, "d1")
		c.settle(base, outcome(webhook.Released, got[0]))
		got = c.requireClaim(base, 10, 1, "d1")
		c.settle(base, failure(webhook.Retried, failed(got[0], base, 500), time.Time{}))
		got = c.requireClaim(base, 10, 1, "d1")
		c.settle(base, outcome(webhook.Died, failed(got[0], base, 410)))
		// d2 retried later than d3 is due.
		got = c.requireClaim(base, 10, 1, "d2")
		c.settle(base, failure(webhook.Retried, failed(got[0], at(time.Second), 500), time.Time{}))
		now := at(time.Second)
		got = c.requireClaim(now, 10, 1, "d3")
		c.settle(now, outcome(webhook.Delivered, got[0]))
		// d1 revived at now is due with d2 and was enqueued before it.
		c.revive("target-a", "d1", now)
		c.requireOrder(now, 2, "d1", "d2")
	}},

	{"Claim leases at most perTarget deliveries of a target, counting every Claim; perTarget < 1 means 1", func(t *testing.T, open opener) {
		for _, tt := range []struct{ perTarget, limit int }{{-1, 1}, {0, 1}, {1, 1}, {2, 2}, {3, 3}} {
			t.Run(fmt.Sprintf("perTarget %d", tt.perTarget), func(t *testing.T) {
				c := open(t, none)
				all := []string{"a0", "a1", "a2", "a3", "a4"}
				for i, id := range all {
					c.enqueue(delivery("target-a", id, at(time.Duration(i)*time.Millisecond)))
				}
				c.enqueue(delivery("target-b", "b0", at(time.Second)))
				now := at(time.Minute)
				got := c.requireClaim(now, 10, tt.perTarget, append([]string{"b0"}, all[:tt.limit]...)...)
				c.requireClaim(now, 10, tt.perTarget)
				// The limit counts the leases of every Claim: one settled
				// makes room for one more.
				for _, d := range got {
					if d.ID == all[0] {
						c.settle(now, outcome(webhook.Delivered, d))
					}
				}
				c.requireClaim(now, 10, tt.perTarget, all[tt.limit])
				c.requireClaim(now, 10, tt.perTarget)
			})
		}
	}},

	{"Claim skips a target at its perTarget limit and takes the next target's", func(t *testing.T, open opener) {
		c := open(t, none)
		c.enqueue(delivery("target-a", "a1", base), delivery("target-a", "a2", base), delivery("target-b", "b1", at(time.Second)))
		c.requireClaim(base, 1, 1, "a1")
		c.requireClaim(at(time.Second), 1, 1, "b1")
	}},

	{"a lease ends at now+lease: from then on the delivery is pending again, unchanged, and its lease counts no more", func(t *testing.T, open opener) {
		for _, l := range []time.Duration{time.Microsecond, 10 * time.Second, time.Hour} {
			t.Run(l.String(), func(t *testing.T) {
				c := open(t, none)
				d1 := delivery("target-a", "d1", base)
				c.enqueue(clone(d1), delivery("target-a", "d2", base))
				requireDeliveries(t, []*webhook.Delivery{d1}, c.claimFor(base, 10, l, 1), "the first Claim")
				c.requireClaim(at(l-time.Microsecond), 10, 1)
				// At its end d1's lease counts no more: with perTarget 1,
				// d1 is claimed again, before d2, as it was before its
				// lease.
				got := c.claimFor(at(l), 10, l, 1)
				requireDeliveries(t, []*webhook.Delivery{d1}, got, "at the end of the lease")
				got = c.claimFor(at(3*l), 10, l, 1)
				requireDeliveries(t, []*webhook.Delivery{d1}, got, "after the end of the second lease")
			})
		}
	}},
}
