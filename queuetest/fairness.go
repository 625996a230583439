package queuetest

import (
	"testing"
	"time"
)

// fairnessChecks are the clauses of Queue.Claim between spaces: each
// delivery is taken from the space with the fewest leased deliveries,
// counting those the Claim took, and among equals the earliest in (Due,
// enqueue order).
var fairnessChecks = []check{
	{"Claim takes one delivery from each space before a second from any: a busy space does not starve a quiet one", func(t *testing.T, open opener) {
		c := open(t, none)
		for i, id := range []string{"a1", "a2", "a3", "a4", "a5"} {
			c.enqueue(spaceDelivery("space-a", "target-"+id, id, at(time.Duration(i)*time.Second)))
		}
		c.enqueue(spaceDelivery("space-b", "target-b1", "b1", at(10*time.Second)))
		c.requireClaim(at(time.Minute), 2, 1, "a1", "b1")
		c.requireClaim(at(time.Minute), 2, 1, "a2", "a3")
	}},

	{"Claim counts the leases of every Claim: with space-a holding leases, space-b's later delivery goes first", func(t *testing.T, open opener) {
		c := open(t, none)
		for _, id := range []string{"a1", "a2", "a3"} {
			c.enqueue(spaceDelivery("space-a", "target-"+id, id, base))
		}
		c.requireClaim(base, 2, 1, "a1", "a2")
		c.enqueue(spaceDelivery("space-b", "target-b1", "b1", at(10*time.Second)),
			spaceDelivery("space-b", "target-b2", "b2", at(20*time.Second)))
		// space-a holds 2 leases, space-b none and then 1: b1 and b2, though
		// a3 is due before them.
		c.requireOrder(at(30*time.Second), 1, "b1", "b2", "a3")
	}},

	{"Claim takes from the spaces with as few leases in the order of their earliest (Due, enqueue order)", func(t *testing.T, open opener) {
		c := open(t, none)
		c.enqueue(spaceDelivery("space-c", "target-c1", "c1", at(time.Second)))
		c.enqueue(spaceDelivery("space-a", "target-a1", "a1", at(2*time.Second)))
		c.enqueue(spaceDelivery("space-b", "target-b1", "b1", at(time.Second)))
		// c1 and b1 are due together, and c1 was enqueued first; then a1
		// and b1 come from spaces with no lease, and b1 is due first.
		c.requireOrder(at(time.Minute), 1, "c1", "b1", "a1")
	}},

	{"Claim counts the leases it took itself", func(t *testing.T, open opener) {
		c := open(t, none)
		// space-a holds 2 leases, space-b 1, space-c none.
		c.enqueue(spaceDelivery("space-a", "target-a1", "a1", base), spaceDelivery("space-a", "target-a2", "a2", base),
			spaceDelivery("space-b", "target-b1", "b1", base))
		c.requireClaim(base, 3, 1, "a1", "a2", "b1")
		c.enqueue(
			spaceDelivery("space-a", "target-a3", "a3", base),
			spaceDelivery("space-a", "target-a4", "a4", base),
			spaceDelivery("space-b", "target-b2", "b2", at(time.Second)),
			spaceDelivery("space-c", "target-c1", "c1", at(2*time.Second)),
			spaceDelivery("space-c", "target-c2", "c2", at(3*time.Second)),
			spaceDelivery("space-c", "target-c3", "c3", at(4*time.Second)))
		// c1 (c holds none); b2 (b and c hold 1, b2 is earlier); c2 (c
		// holds 1, a and b 2); a3 (each holds 2, a3 is the earliest).
		// Earliest first would take a3, a4, b2 and c1; fewest leases before
		// the Claim, c1, c2, c3 and then b2.
		c.requireClaim(at(30*time.Second), 4, 1, "c1", "b2", "c2", "a3")
	}},

	{"a space's leases that ended count no more", func(t *testing.T, open opener) {
		c := open(t, none)
		c.enqueue(spaceDelivery("space-a", "target-a1", "a1", base), spaceDelivery("space-a", "target-a2", "a2", base))
		got := c.claimFor(base, 2, 10*time.Second, 1)
		requireIDs(t, []string{"a1", "a2"}, got, "the first Claim")
		c.enqueue(spaceDelivery("space-a", "target-a3", "a3", at(time.Second)),
			spaceDelivery("space-b", "target-b1", "b1", at(5*time.Second)))
		// At base+10s space-a's leases have ended: both spaces hold none,
		// and a1 is the earliest.
		c.requireOrder(at(10*time.Second), 1, "a1", "b1", "a2", "a3")
	}},

	{"a space whose earliest target is at its perTarget limit competes with its next target's delivery", func(t *testing.T, open opener) {
		c := open(t, none)
		c.enqueue(spaceDelivery("space-a", "target-a1", "a1", base), spaceDelivery("space-a", "target-a1", "a1-next", base),
			spaceDelivery("space-a", "target-a2", "a2", at(5*time.Second)),
			spaceDelivery("space-b", "target-b1", "b1", at(3*time.Second)),
			spaceDelivery("space-b", "target-b2", "b2", at(7*time.Second)))
		c.requireClaim(base, 1, 1, "a1")
		// space-b holds none: b1; then one each, and target-a1 is at its
		// limit: a2 before b2.
		c.requireOrder(at(30*time.Second), 1, "b1", "a2", "b2")
	}},
}
