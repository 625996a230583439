package queuetest

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/crmhook/webhook"
)

// enqueueChecks are the clauses of Queue.Enqueue.
var enqueueChecks = []check{
	{"Enqueue stores every field, and Claim returns them as stored", func(t *testing.T, open opener) {
		c := open(t, none)
		full := delivery("target-a", "full", base)
		full.Created = base.Add(-3*time.Hour + 7*time.Microsecond)
		full.Due = base.Add(-time.Second + time.Microsecond)
		// The zero values: no space, no events, no body, no attempt yet.
		bare := &webhook.Delivery{ID: "bare", Target: "target-b", Created: base, Due: base}
		want := clones(full, bare)
		c.enqueue(full, bare)
		requireSameDeliveries(t, want, c.claim(base, 10, 1), "Claim")
	}},

	{"Enqueue refuses an id the Queue holds, wrapping ErrInvalid, and stores none of the call", func(t *testing.T, open opener) {
		for _, tt := range []struct {
			name  string
			lease bool // the held delivery is leased, not only pending
			call  []string
		}{
			{"an id held pending", false, []string{"b", "a"}},
			{"an id held leased", true, []string{"b", "a"}},
			{"an id twice in the call", false, []string{"b", "c", "b"}},
		} {
			t.Run(tt.name, func(t *testing.T) {
				c := open(t, none)
				c.enqueue(delivery("target-a", "a", base))
				if tt.lease {
					c.requireClaim(base, 1, 1, "a")
				}
				var ds []*webhook.Delivery
				for i, id := range tt.call {
					ds = append(ds, delivery("target-"+id, id, at(time.Duration(i)*time.Second)))
				}
				require.ErrorIs(t, c.q.Enqueue(c.ctx, ds...), webhook.ErrInvalid)
				c.requireClaim(later, 10, 10, "a") // its lease, if any, has ended
			})
		}
	}},

	{"Enqueue past MaxPending wraps ErrQueueFull and stores none of the call; leased deliveries count, dead ones do not", func(t *testing.T, open opener) {
		c := open(t, webhook.QueueLimits{MaxPending: 3})
		require.ErrorIs(t, c.q.Enqueue(c.ctx, delivery("target-1", "x1", base), delivery("target-2", "x2", base),
			delivery("target-3", "x3", base), delivery("target-4", "x4", base)), webhook.ErrQueueFull, "a call past the bound by itself")
		c.requireNothingDue()

		c.enqueue(delivery("target-a", "a1", base), delivery("target-b", "b1", base))
		c.requireClaim(base, 1, 1, "a1")
		err := c.q.Enqueue(c.ctx, delivery("target-c", "c1", base), delivery("target-d", "d1", base))
		require.ErrorIs(t, err, webhook.ErrQueueFull, "one pending, one leased and two more")
		c.requireClaim(base, 10, 10, "b1") // neither c1 nor d1

		c.enqueue(delivery("target-c", "c1", base))
		require.ErrorIs(t, c.q.Enqueue(c.ctx, delivery("target-d", "d1", base)), webhook.ErrQueueFull, "at the bound")

		// a1 dies: it counts no more.
		a1 := failed(delivery("target-a", "a1", base), later, 410)
		c.settle(base, outcome(webhook.Died, a1))
		c.enqueue(delivery("target-d", "d1", base))
		require.ErrorIs(t, c.q.Enqueue(c.ctx, delivery("target-e", "e1", base)), webhook.ErrQueueFull, "at the bound again")
		c.requireDead("target-a", a1)
	}},

	{"Enqueue past MaxPendingPerTarget wraps ErrQueueFull and stores none of the call; leased deliveries count, dead ones do not", func(t *testing.T, open opener) {
		c := open(t, webhook.QueueLimits{MaxPendingPerTarget: 2})
		require.ErrorIs(t, c.q.Enqueue(c.ctx, delivery("target-x", "x1", base), delivery("target-x", "x2", base),
			delivery("target-x", "x3", base)), webhook.ErrQueueFull, "a call past the bound by itself")
		c.requireNothingDue()

		c.enqueue(delivery("target-a", "a1", base), delivery("target-a", "a2", base))
		c.requireClaim(base, 1, 1, "a1")
		err := c.q.Enqueue(c.ctx, delivery("target-b", "b1", base), delivery("target-a", "a3", base))
		require.ErrorIs(t, err, webhook.ErrQueueFull, "target-a holds one pending and one leased")
		// Other targets have bounds of their own.
		c.enqueue(delivery("target-b", "b1", base), delivery("target-b", "b2", base))
		c.requireClaim(base, 10, 10, "a2", "b1", "b2") // not a3

		// a1 dies: it counts no more.
		a1 := failed(delivery("target-a", "a1", base), later, 410)
		c.settle(base, outcome(webhook.Died, a1))
		c.enqueue(delivery("target-a", "a3", at(time.Second)))
		require.ErrorIs(t, c.q.Enqueue(c.ctx, delivery("target-a", "a4", base)), webhook.ErrQueueFull, "at the bound again")
		c.requireClaim(at(time.Second), 10, 10, "a3")
	}},
}
