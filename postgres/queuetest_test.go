package postgres

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/crmhook/webhook"
	"github.com/crmhook/webhook/queuetest"
)

// TestQueueKeepsTheContract runs the core's conformance suite. Its checks
// run one after the other; each gets a Queue over the same database,
// emptied.
func TestQueueKeepsTheContract(t *testing.T) {
	t.Parallel()
	pool := newTestPool(t)
	queuetest.Run(t, func(t *testing.T, lim webhook.QueueLimits) webhook.Queue {
		_, err := pool.Exec(t.Context(), `TRUNCATE webhook_deliveries, webhook_targets, webhook_queue_counts`)
		require.NoError(t, err)
		return newTestQueue(t, pool, lim)
	})
}
