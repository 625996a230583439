package queuetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/crmhook/webhook"
)

// pauseChecks are the clauses of Outcome.PauseUntil: a failed attempt
// holds back every delivery of its target until then.
var pauseChecks = []check{
	{"a Failed outcome with PauseUntil holds back every delivery of its target until then, and only its target's", func(t *testing.T, open opener) {
		for _, kind := range []webhook.OutcomeKind{webhook.Retried, webhook.Died} {
			t.Run(kindName(kind), func(t *testing.T) {
				c := open(t, none)
				c.enqueue(delivery("target-a", "a1", base), delivery("target-a", "a2", base), delivery("target-b", "b1", base))
				got := c.requireClaim(base, 1, 1, "a1")
				end := at(30 * time.Second) // before b1's lease ends
				c.settle(base, failure(kind, failed(got[0], base, 429), end))
				c.requireClaim(base, 10, 10, "b1")
				// Deliveries enqueued during the pause wait too.
				c.enqueue(delivery("target-a", "a3", at(time.Second)), delivery("target-c", "c1", at(time.Second)))
				c.requireClaim(end.Add(-time.Microsecond), 10, 10, "c1")
				want := []string{"a1", "a2", "a3"}
				if kind == webhook.Died {
					want = want[1:]
				}
				c.requireClaim(end, 10, 10, want...)
			})
		}
	}},

	{"a later PauseUntil replaces the target's pause, an earlier one does not", func(t *testing.T, open opener) {
		short, long := at(time.Minute), at(time.Hour)
		for _, tt := range []struct {
			name        string
			first, then time.Time
			together    bool // in one Settle
		}{
			{"later", short, long, false},
			{"earlier", long, short, false},
			{"in one Settle, later", short, long, true},
			{"in one Settle, earlier", long, short, true},
		} {
			t.Run(tt.name, func(t *testing.T) {
				c := open(t, none)
				c.enqueue(delivery("target-a", "a1", base), delivery("target-a", "a2", base), delivery("target-a", "a3", base))
				got := c.requireClaim(base, 2, 2, "a1", "a2")
				first := failure(webhook.Retried, failed(got[0], base, 429), tt.first)
				then := failure(webhook.Retried, failed(got[1], base, 503), tt.then)
				if tt.together {
					c.settle(base, first, then)
				} else {
					c.settle(base, first)
					c.settle(at(time.Second), then)
				}
				c.requireClaim(long.Add(-time.Microsecond), 10, 10)
				c.requireClaim(long, 10, 10, "a1", "a2", "a3")
			})
		}
	}},

	{"a pause holds back a target whatever its perTarget and its leases", func(t *testing.T, open opener) {
		// A pause set by one delivery's outcome while another of the
		// target is leased: the leased one's lease still ends, and its
		// delivery waits for the pause like the others.
		for _, perTarget := range []int{1, 3} {
			t.Run(fmt.Sprintf("perTarget %d", perTarget), func(t *testing.T) {
				c := open(t, none)
				c.enqueue(delivery("target-a", "a1", base), delivery("target-a", "a2", base))
				got := c.claimFor(base, 2, 10*time.Second, 2)
				requireIDs(t, []string{"a1", "a2"}, got, "Claim")
				end := at(time.Hour)
				c.settle(base, failure(webhook.Retried, failed(got[0], base, 429), end))
				c.requireClaim(at(10*time.Second), 10, perTarget)
				c.requireClaim(end.Add(-time.Microsecond), 10, perTarget)
				want := []string{"a1", "a2"}
				c.requireClaim(end, 10, perTarget, want[:min(perTarget, 2)]...)
			})
		}
	}},
}
