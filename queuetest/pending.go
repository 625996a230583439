package queuetest

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/crmhook/webhook"
)

// pendingChecks are the clauses of Queue.Pending.
var pendingChecks = []check{
	{"Pending returns those of the ids the Queue holds pending, leased or not, and no dead, settled or unknown one", func(t *testing.T, open opener) {
		c := open(t, none)
		c.kill(base, delivery("target-a", "dead", base))
		c.enqueue(delivery("target-a", "leased", base), delivery("target-b", "delivered", base),
			delivery("target-a", "pending", at(time.Hour)), delivery("target-c", "retried", base))
		byID := map[string]*webhook.Delivery{}
		for _, d := range c.requireClaim(base, 10, 10, "leased", "delivered", "retried") {
			byID[d.ID] = d
		}
		c.settle(base, outcome(webhook.Delivered, byID["delivered"]),
			failure(webhook.Retried, failed(byID["retried"], later, 500), time.Time{}))
		all := []string{"unknown", "pending", "dead", "leased", "delivered", "retried"}
		require.ElementsMatch(t, []string{"pending", "leased", "retried"}, c.pending(all...))
		require.Equal(t, []string{"leased"}, c.pending("leased"))
		require.Empty(t, c.pending("dead", "unknown"))
		require.Empty(t, c.pending())
	}},
}

func (c *tester) pending(ids ...string) []string {
	c.t.Helper()
	got, err := c.q.Pending(c.ctx, ids...)
	require.NoError(c.t, err, "Pending")
	return got
}
