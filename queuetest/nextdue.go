package queuetest

import (
	"testing"
	"time"

	"github.com/crmhook/webhook"
)

// nextDueChecks are the clauses of Queue.NextDue. Each also claims at the
// time NextDue reports, and gets something.
var nextDueChecks = []check{
	{"NextDue reports nothing when no delivery is pending or leased", func(t *testing.T, open opener) {
		c := open(t, none)
		c.requireNothingDue()
		c.kill(base, delivery("target-a", "a1", base))
		c.requireNothingDue() // the dead do not count
		c.enqueue(delivery("target-a", "a2", at(time.Second)))
		got := c.requireClaim(at(time.Second), 10, 10, "a2")
		c.settle(at(time.Second), outcome(webhook.Delivered, got[0]))
		c.requireNothingDue()
	}},

	{"NextDue reports the earliest Due of the pending deliveries not leased, and the earliest end of a lease", func(t *testing.T, open opener) {
		c := open(t, none)
		c.enqueue(delivery("target-a", "a", at(5*time.Second)), delivery("target-b", "b", at(3*time.Second)))
		c.requireNextDue(at(3 * time.Second))
		c.requireClaim(at(3*time.Second), 10, 10, "b")
		c.requireNextDue(at(5 * time.Second))
		c.requireClaim(at(5*time.Second), 10, 10, "a")

		bEnds := at(3*time.Second + lease)
		c.requireNextDue(bEnds)
		c.enqueue(delivery("target-c", "c", at(time.Hour)))
		c.requireNextDue(bEnds)
		c.requireClaim(bEnds, 10, 10, "b")
		c.requireNextDue(at(5*time.Second + lease))
		c.requireClaim(at(5*time.Second+lease), 10, 10, "a")
		c.requireNextDue(bEnds.Add(lease))
	}},

	{"NextDue reports the later of Due and the end of the target's pause", func(t *testing.T, open opener) {
		for _, tt := range []struct {
			name string
			due  time.Duration
			want time.Duration
		}{
			{"due during the pause", 30 * time.Second, time.Hour},
			{"due after the pause", 2 * time.Hour, 2 * time.Hour},
		} {
			t.Run(tt.name, func(t *testing.T) {
				c := open(t, none)
				c.enqueue(delivery("target-a", "a1", base), delivery("target-b", "b1", at(3*time.Hour)))
				got := c.requireClaim(base, 10, 10, "a1")
				c.settle(base, failure(webhook.Retried, failed(got[0], at(tt.due), 429), at(time.Hour)))
				c.requireNextDue(at(tt.want))
				c.requireClaim(at(tt.want-time.Microsecond), 10, 10)
				c.requireClaim(at(tt.want), 10, 10, "a1")
			})
		}
	}},

	{"NextDue passes over a paused target that holds nothing pending", func(t *testing.T, open opener) {
		c := open(t, none)
		c.enqueue(delivery("target-a", "a1", base), delivery("target-b", "b1", at(2*time.Hour)))
		got := c.requireClaim(base, 10, 10, "a1")
		c.settle(base, failure(webhook.Died, failed(got[0], later, 429), at(time.Hour)))
		c.requireNextDue(at(2 * time.Hour))
		c.requireClaim(at(2*time.Hour), 10, 10, "b1")
	}},

	{"NextDue reports what Claim could return were no target at its perTarget limit", func(t *testing.T, open opener) {
		c := open(t, none)
		c.enqueue(delivery("target-a", "a1", base), delivery("target-a", "a2", at(time.Second)))
		c.requireClaim(base, 10, 1, "a1")
		// a2 is due at base+1s; Claim returns it then with a perTarget
		// of 2, not of 1.
		c.requireNextDue(at(time.Second))
		c.requireClaim(at(time.Second), 10, 1)
		c.requireClaim(at(time.Second), 10, 2, "a2")
		c.requireNextDue(at(lease))
	}},
}
