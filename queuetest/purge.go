package queuetest

import (
	"testing"
	"time"

	"github.com/crmhook/webhook"
)

// purgeChecks are the clauses of Queue.Purge.
var purgeChecks = []check{
	{"Purge removes a target's pending, leased and dead deliveries, its Health and its pause, and nothing of other targets", func(t *testing.T, open opener) {
		c := open(t, none)
		// Each of target-a and target-b holds a leased delivery (1), a
		// pending one (2) and a dead one (3) whose failure paused it.
		for _, target := range []string{"a", "b"} {
			for _, n := range []string{"1", "2", "3"} {
				c.enqueue(delivery("target-"+target, target+n, base))
			}
		}
		byID := map[string]*webhook.Delivery{}
		for _, d := range c.requireClaim(base, 10, 10, "a1", "a2", "a3", "b1", "b2", "b3") {
			byID[d.ID] = d
		}
		pause := at(time.Hour)
		b3 := failed(byID["b3"], later, 429)
		c.settle(base,
			failure(webhook.Died, failed(byID["a3"], later, 429), pause), outcome(webhook.Released, byID["a2"]),
			failure(webhook.Died, clone(b3), pause), outcome(webhook.Released, byID["b2"]))

		c.purge("target-a")
		c.requireDead("target-a")
		c.requireDead("target-b", b3)
		// target-a is neither paused nor at its perTarget limit any more,
		// and holds nothing but a4; target-b is still paused.
		c.enqueue(delivery("target-a", "a4", base))
		c.requireClaim(at(time.Second), 10, 1, "a4")
		// An outcome that counts nothing shows each target's Health.
		requireHealth(t, []webhook.Health{{}, {Failures: 1, FailingSince: base}},
			c.settle(at(time.Second), outcome(webhook.Released, delivery("target-a", "a4", at(time.Second))),
				outcome(webhook.Dropped, delivery("target-b", "not-held", base))), "Health after Purge")
		c.requireClaim(at(time.Second), 10, 10, "a4")
		c.requireClaim(pause, 10, 10, "a4", "b1", "b2")
	}},

	{"Purge frees the target's place in the bounds", func(t *testing.T, open opener) {
		c := open(t, webhook.QueueLimits{MaxPending: 3, MaxPendingPerTarget: 2})
		c.enqueue(delivery("target-a", "a1", base), delivery("target-a", "a2", base), delivery("target-b", "b1", base))
		c.requireClaim(base, 1, 1, "a1")
		c.purge("target-a")
		c.enqueue(delivery("target-a", "a3", base), delivery("target-a", "a4", base))
		c.requireClaim(base, 10, 10, "a3", "a4", "b1")
	}},

	{"a Settle after Purge stores the delivery again, as an outcome of an id the Queue does not hold", func(t *testing.T, open opener) {
		for _, tt := range []struct {
			kind          webhook.OutcomeKind
			pending, dead bool
		}{
			{webhook.Retried, true, false},
			{webhook.Released, true, false},
			{webhook.Died, false, true},
			{webhook.Delivered, false, false},
		} {
			t.Run(kindName(tt.kind), func(t *testing.T) {
				c := open(t, none)
				c.enqueue(delivery("target-a", "a1", base))
				got := c.requireClaim(base, 1, 1, "a1")
				c.purge("target-a")
				d := failed(got[0], at(time.Second), 500)
				c.settle(base, outcome(tt.kind, clone(d)))
				var dead, pending []*webhook.Delivery
				if tt.dead {
					dead = append(dead, d)
				}
				if tt.pending {
					pending = append(pending, d)
				}
				c.requireDead("target-a", dead...)
				requireDeliveries(t, pending, c.claim(later, 10, 10), "Claim")
			})
		}
	}},

	{"Purge of a target the Queue does not know changes nothing", func(t *testing.T, open opener) {
		c := open(t, none)
		c.purge("target-unknown")
		c.enqueue(delivery("target-a", "a1", base))
		c.purge("target-unknown")
		c.requireClaim(base, 10, 10, "a1")
	}},
}
