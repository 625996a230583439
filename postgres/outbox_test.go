package postgres

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/crmhook/webhook"
)

// newOutboxDB returns a pool on a fresh database with a table of the
// host's, orders, and a Queue.
func newOutboxDB(t *testing.T, limits webhook.QueueLimits) (*pgxpool.Pool, *Queue) {
	t.Helper()
	pool := newTestPool(t)
	_, err := pool.Exec(t.Context(), `CREATE TABLE orders (id text PRIMARY KEY)`)
	require.NoError(t, err)
	return pool, newTestQueue(t, pool, limits)
}

func countOrders(t *testing.T, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	require.NoError(t, pool.QueryRow(t.Context(), `SELECT count(*) FROM orders`).Scan(&n))
	return n
}

func claimAll(t *testing.T, q *Queue) []string {
	t.Helper()
	got, err := q.Claim(t.Context(), testBase.Add(time.Hour), 100, time.Minute, 100)
	require.NoError(t, err)
	return ids(got)
}

func TestOutboxCommitsWithTheHostsChange(t *testing.T) {
	t.Parallel()
	pool, q := newOutboxDB(t, webhook.QueueLimits{})
	wake := listeningWake(t, q)
	ctx := t.Context()
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx)
	_, err = tx.Exec(ctx, `INSERT INTO orders VALUES ('o1')`)
	require.NoError(t, err)
	require.NoError(t, q.Tx(tx).Enqueue(ctx, testDelivery("d1", "s", "t", testBase), testDelivery("d2", "s", "t", testBase)))

	require.Empty(t, claimAll(t, q), "seen before the commit")
	select {
	case <-wake:
		t.Fatal("woken before the commit")
	case <-time.After(100 * time.Millisecond):
	}
	require.NoError(t, tx.Commit(ctx))
	requireWoken(t, wake)
	require.Equal(t, []string{"d1", "d2"}, claimAll(t, q))
	require.Equal(t, 1, countOrders(t, pool))
	requireConsistent(t, pool, "after the commit")
}

func TestOutboxRollbackLeavesNoTrace(t *testing.T) {
	t.Parallel()
	pool, q := newOutboxDB(t, webhook.QueueLimits{})
	ctx := t.Context()
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO orders VALUES ('o1')`); err != nil {
			return err
		}
		if err := q.Tx(tx).Enqueue(ctx, testDelivery("d1", "s", "t", testBase)); err != nil {
			return err
		}
		return context.Canceled // the host changes its mind
	})
	require.ErrorIs(t, err, context.Canceled)
	require.Empty(t, claimAll(t, q))
	_, ok, err := q.NextDue(ctx)
	require.NoError(t, err)
	require.False(t, ok)
	require.Zero(t, countOrders(t, pool))
	requireConsistent(t, pool, "after the rollback")
	// The id is free: nothing of it was kept.
	require.NoError(t, q.Enqueue(ctx, testDelivery("d1", "s", "t", testBase)))
}

func TestOutboxRefusedCallLeavesTheTransactionUsable(t *testing.T) {
	t.Parallel()
	pool, q := newOutboxDB(t, webhook.QueueLimits{MaxPendingPerTarget: 2})
	ctx := t.Context()
	require.NoError(t, q.Enqueue(ctx, testDelivery("held", "s", "t", testBase)))
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx)
	_, err = tx.Exec(ctx, `INSERT INTO orders VALUES ('o1')`)
	require.NoError(t, err)

	out := q.Tx(tx)
	err = out.Enqueue(ctx, testDelivery("a", "s", "t", testBase), testDelivery("b", "s", "t", testBase))
	require.ErrorIs(t, err, webhook.ErrQueueFull, "past the target's bound")
	err = out.Enqueue(ctx, testDelivery("c", "s", "t2", testBase), testDelivery("held", "s", "t", testBase))
	require.ErrorIs(t, err, webhook.ErrInvalid, "an id the Queue holds")
	require.NoError(t, out.Enqueue(ctx, testDelivery("a", "s", "t", testBase)), "the transaction is still usable")
	_, err = tx.Exec(ctx, `INSERT INTO orders VALUES ('o2')`)
	require.NoError(t, err)
	require.NoError(t, tx.Commit(ctx))

	require.Equal(t, []string{"held", "a"}, claimAll(t, q), "none of the refused calls")
	require.Equal(t, 2, countOrders(t, pool))
	requireConsistent(t, pool, "after the commit")
}
