package queuetest

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/crmhook/webhook"
)

// deadChecks are the clauses of Queue.Dead and Queue.Revive, and of
// QueueLimits.MaxDead.
var deadChecks = []check{
	{"Dead lists a target's dead deliveries as they died, in the order they died", func(t *testing.T, open opener) {
		c := open(t, none)
		c.enqueue(delivery("target-a", "a1", base), delivery("target-a", "a2", base), delivery("target-a", "a3", base),
			delivery("target-b", "b1", base))
		byID := map[string]*webhook.Delivery{}
		for _, d := range c.requireClaim(base, 10, 10, "a1", "a2", "a3", "b1") {
			byID[d.ID] = d
		}
		a2 := failed(byID["a2"], later, 410)
		a2.Body = []byte(`[{"id":"a2","changed":true}]`) // as given, every field
		a1, a3 := failed(byID["a1"], later, 500), failed(byID["a3"], later, 503)
		c.settle(base, outcome(webhook.Died, clone(a2)))
		c.settle(at(time.Second), outcome(webhook.Died, clone(a3)), failure(webhook.Died, clone(a1), time.Time{}))
		c.requireDead("target-a", a2, a3, a1)
		c.requireDead("target-b")
		c.requireDead("target-unknown")
		// The dead are not claimed: only b1, once its lease has ended.
		c.requireClaim(later, 10, 10, "b1")
	}},

	{"Died beyond MaxDead drops the target's oldest dead", func(t *testing.T, open opener) {
		c := open(t, webhook.QueueLimits{MaxDead: 2})
		dead := c.kill(base, delivery("target-a", "a1", base), delivery("target-b", "b1", base))
		dead = append(dead, c.kill(base, delivery("target-a", "a2", base), delivery("target-a", "a3", base))...)
		c.requireDead("target-a", dead[2], dead[3])
		c.requireDead("target-b", dead[1])
		// Three dying in one Settle keep the bound too.
		dead = c.kill(base, delivery("target-c", "c1", base), delivery("target-c", "c2", base), delivery("target-c", "c3", base))
		c.requireDead("target-c", dead[1:]...)
		// A dropped delivery is gone.
		_, err := c.q.Revive(c.ctx, "target-a", "a1", base)
		require.ErrorIs(t, err, webhook.ErrNotFound, "Revive of a dropped dead delivery")
	}},

	{"Revive with an id makes that dead delivery pending, due at now, with no attempts and its last error", func(t *testing.T, open opener) {
		c := open(t, none)
		dead := c.kill(base, delivery("target-a", "a1", base), delivery("target-a", "a2", base))
		now := at(time.Hour)
		require.Equal(t, []string{"a1"}, c.revive("target-a", "a1", now))
		c.requireDead("target-a", dead[1])
		c.requireNextDue(now)
		c.requireClaim(now.Add(-time.Microsecond), 10, 10)
		want := clone(dead[0])
		want.Attempts, want.Due = 0, now
		requireDeliveries(t, []*webhook.Delivery{want}, c.claim(now, 10, 10), "Claim of the revived delivery")
	}},

	{"Revive without an id revives every dead delivery of the target", func(t *testing.T, open opener) {
		c := open(t, none)
		dead := c.kill(base, delivery("target-a", "a1", base), delivery("target-b", "b1", base), delivery("target-a", "a2", base))
		now := at(time.Hour)
		require.ElementsMatch(t, []string{"a1", "a2"}, c.revive("target-a", "", now))
		c.requireDead("target-a")
		c.requireDead("target-b", dead[1])
		var want []*webhook.Delivery
		for _, d := range []*webhook.Delivery{dead[0], dead[2]} {
			w := clone(d)
			w.Attempts, w.Due = 0, now
			want = append(want, w)
		}
		requireSameDeliveries(t, want, c.claim(now, 10, 10), "Claim of the revived deliveries")
		require.Empty(t, c.revive("target-a", "", now), "Revive with no dead left")
		require.Empty(t, c.revive("target-unknown", "", now), "Revive of a target the Queue does not know")
	}},

	{"Revive of an id that names no dead delivery of the target wraps ErrNotFound and changes nothing", func(t *testing.T, open opener) {
		for _, tt := range []struct{ name, target, id string }{
			{"an unknown id", "target-a", "nope"},
			{"another target's dead delivery", "target-b", "a1"},
			{"a pending delivery", "target-p", "p1"},
			{"a leased delivery", "target-p", "p0"},
			{"a target without dead", "target-none", "a1"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				c := open(t, none)
				dead := c.kill(base, delivery("target-a", "a1", base))
				c.enqueue(delivery("target-p", "p0", base), delivery("target-p", "p1", at(time.Second)))
				c.requireClaim(base, 1, 1, "p0")
				revived, err := c.q.Revive(c.ctx, tt.target, tt.id, at(time.Second))
				require.ErrorIs(t, err, webhook.ErrNotFound)
				require.Empty(t, revived)
				c.requireDead("target-a", dead...)
				c.requireClaim(at(time.Second), 10, 10, "p1")
				c.requireClaim(later, 10, 10, "p0", "p1") // their leases ended
			})
		}
	}},

	{"Revive is not bound by QueueLimits", func(t *testing.T, open opener) {
		c := open(t, webhook.QueueLimits{MaxPending: 2, MaxPendingPerTarget: 1})
		c.kill(base, delivery("target-a", "a1", base))
		c.kill(base, delivery("target-a", "a2", base))
		c.enqueue(delivery("target-a", "a3", base), delivery("target-b", "b1", base))
		require.ElementsMatch(t, []string{"a1", "a2"}, c.revive("target-a", "", at(time.Second)))
		c.requireClaim(at(time.Second), 10, 10, "a1", "a2", "a3", "b1")
		require.ErrorIs(t, c.q.Enqueue(c.ctx, delivery("target-c", "c1", base)), webhook.ErrQueueFull, "past the bound after Revive")
	}},
}
