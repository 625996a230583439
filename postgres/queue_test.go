package postgres

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/crmhook/webhook"
)

// newTestQueue returns a Queue on pool, closed when t ends.
func newTestQueue(t testing.TB, pool *pgxpool.Pool, limits webhook.QueueLimits) *Queue {
	t.Helper()
	q, err := NewQueue(context.Background(), pool, QueueConfig{Limits: limits})
	require.NoError(t, err)
	t.Cleanup(func() { q.Close() })
	return q
}

var testBase = time.Unix(1_700_000_000, 0).UTC()

// testDelivery returns delivery id to target of space, due at due.
func testDelivery(id, space, target string, due time.Time) *webhook.Delivery {
	return &webhook.Delivery{ID: id, Space: space, WebhookID: "w-" + target, Target: target,
		EventIDs: []string{"ev-" + id}, Body: []byte(`[{"id":"` + id + `"}]`), Created: testBase, Due: due}
}

func ids(ds []*webhook.Delivery) []string {
	out := []string{}
	for _, d := range ds {
		out = append(out, d.ID)
	}
	return out
}

func TestNewQueueWantsAMigratedDatabase(t *testing.T) {
	t.Parallel()
	pool := newTestPool(t)
	_, err := pool.Exec(t.Context(), `DELETE FROM webhook_schema_version`)
	require.NoError(t, err)
	_, err = NewQueue(t.Context(), pool, QueueConfig{})
	require.ErrorContains(t, err, "postgres.Migrate")
	_, err = NewStore(t.Context(), pool, StoreConfig{})
	require.ErrorContains(t, err, "postgres.Migrate")
}

// TestConcurrentClaimersShareTheWork has claimers with pools of their
// own, as replicas have, deliver every delivery once, with no target ever
// over its perTarget limit and each target's deliveries in order.
func TestConcurrentClaimersShareTheWork(t *testing.T) {
	t.Parallel()
	const targets, perTargetDeliveries, claimers, perTarget = 12, 15, 4, 2
	pool, cfg := newTestDatabase(t)
	q := newTestQueue(t, pool, webhook.QueueLimits{})
	var all []*webhook.Delivery
	for i := range perTargetDeliveries {
		for tg := range targets {
			all = append(all, testDelivery(fmt.Sprintf("d%d-%02d", tg, i), fmt.Sprintf("s%d", tg%3), fmt.Sprintf("t%d", tg), testBase))
		}
	}
	require.NoError(t, q.Enqueue(t.Context(), all...))

	var mu sync.Mutex // guards the maps below
	inFlight := map[string]int{}
	delivered := map[string]int{}
	var wg sync.WaitGroup
	for range claimers {
		p, err := pgxpool.NewWithConfig(t.Context(), cfg.Copy())
		require.NoError(t, err)
		defer p.Close()
		replica := newTestQueue(t, p, webhook.QueueLimits{})
		wg.Go(func() {
			for {
				ds, err := replica.Claim(t.Context(), testBase, 3, time.Hour, perTarget)
				if err != nil {
					t.Errorf("Claim: %v", err)
					return
				}
				if len(ds) == 0 {
					mu.Lock()
					done := len(delivered) == len(all)
					mu.Unlock()
					if done {
						return
					}
					time.Sleep(time.Millisecond) // others hold the rest
					continue
				}
				var outcomes []webhook.Outcome
				mu.Lock()
				for _, d := range ds {
					inFlight[d.Target]++
					if inFlight[d.Target] > perTarget {
						t.Errorf("target %s has %d leased", d.Target, inFlight[d.Target])
					}
				}
				mu.Unlock()
				time.Sleep(2 * time.Millisecond) // sending, while the others claim
				mu.Lock()
				for _, d := range ds {
					inFlight[d.Target]--
					delivered[d.ID]++
					outcomes = append(outcomes, webhook.Outcome{Delivery: d, Kind: webhook.Delivered})
				}
				mu.Unlock()
				if _, err := replica.Settle(t.Context(), testBase, outcomes...); err != nil {
					t.Errorf("Settle: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	for _, d := range all {
		require.Equal(t, 1, delivered[d.ID], "times %s was claimed", d.ID)
	}
	_, ok, err := q.NextDue(t.Context())
	require.NoError(t, err)
	require.False(t, ok, "all delivered")
}

// TestConcurrentClaimsKeepATargetsOrder has claimers race on one target
// with perTarget 1: each claims the target's next delivery only once the
// one before is settled, whichever replica held it.
func TestConcurrentClaimsKeepATargetsOrder(t *testing.T) {
	t.Parallel()
	const n, claimers = 40, 4
	pool, cfg := newTestDatabase(t)
	q := newTestQueue(t, pool, webhook.QueueLimits{})
	var all []*webhook.Delivery
	for i := range n {
		all = append(all, testDelivery(fmt.Sprintf("d%02d", i), "s", "t", testBase.Add(time.Duration(i%7)*time.Millisecond)))
	}
	require.NoError(t, q.Enqueue(t.Context(), all...))
	var want []string // (Due, enqueue order)
	for ms := range 7 {
		for i := range n {
			if i%7 == ms {
				want = append(want, fmt.Sprintf("d%02d", i))
			}
		}
	}
	var mu sync.Mutex // guards got
	var got []string
	var wg sync.WaitGroup
	for range claimers {
		p, err := pgxpool.NewWithConfig(t.Context(), cfg.Copy())
		require.NoError(t, err)
		defer p.Close()
		replica := newTestQueue(t, p, webhook.QueueLimits{})
		wg.Go(func() {
			for {
				ds, err := replica.Claim(t.Context(), testBase.Add(time.Second), 1, time.Hour, 1)
				if err != nil {
					t.Errorf("Claim: %v", err)
					return
				}
				mu.Lock()
				got = append(got, ids(ds)...)
				done := len(got) == n
				mu.Unlock()
				if done {
					return
				}
				if len(ds) == 0 {
					time.Sleep(time.Millisecond)
					continue
				}
				if _, err := replica.Settle(t.Context(), testBase, webhook.Outcome{Delivery: ds[0], Kind: webhook.Delivered}); err != nil {
					t.Errorf("Settle: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	require.Equal(t, want, got)
}

// TestOneSpaceDoesNotStarveAnother is the starvation case of issue 11: a
// space whose 256 registrations hang holds all the workers it can get,
// and another space's delivery is claimed with the first free worker.
func TestOneSpaceDoesNotStarveAnother(t *testing.T) {
	t.Parallel()
	pool := newTestPool(t)
	q := newTestQueue(t, pool, webhook.QueueLimits{})
	var busy []*webhook.Delivery
	for i := range 256 {
		busy = append(busy, testDelivery(fmt.Sprintf("busy-%03d", i), "busy", fmt.Sprintf("hang-%03d", i), testBase))
	}
	require.NoError(t, q.Enqueue(t.Context(), busy...))
	got, err := q.Claim(t.Context(), testBase, 64, time.Hour, 1)
	require.NoError(t, err)
	require.Len(t, got, 64, "64 workers, all on the busy space: no other has work")

	require.NoError(t, q.Enqueue(t.Context(), testDelivery("quiet", "quiet", "quiet-hook", testBase.Add(time.Second))))
	got, err = q.Claim(t.Context(), testBase.Add(time.Second), 1, time.Hour, 1)
	require.NoError(t, err)
	require.Equal(t, []string{"quiet"}, ids(got), "the free worker goes to the space with nothing leased")
}

func TestPerTargetBoundIsExactUnderConcurrentEnqueues(t *testing.T) {
	t.Parallel()
	const bound, tries = 5, 12
	pool := newTestPool(t)
	q := newTestQueue(t, pool, webhook.QueueLimits{MaxPendingPerTarget: bound})
	errs := make([]error, tries)
	var wg sync.WaitGroup
	for i := range tries {
		wg.Go(func() { errs[i] = q.Enqueue(t.Context(), testDelivery(fmt.Sprint("d", i), "s", "t", testBase)) })
	}
	wg.Wait()
	accepted := 0
	for _, err := range errs {
		if err == nil {
			accepted++
		} else {
			require.ErrorIs(t, err, webhook.ErrQueueFull)
		}
	}
	require.Equal(t, bound, accepted)
}

func TestQueueMethodsReturnCtxsError(t *testing.T) {
	t.Parallel()
	pool := newTestPool(t)
	q := newTestQueue(t, pool, webhook.QueueLimits{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	d := testDelivery("d", "s", "t", testBase)
	require.ErrorIs(t, q.Enqueue(ctx, d), context.Canceled)
	require.ErrorIs(t, q.Tx(nil).Enqueue(ctx, d), context.Canceled)
	_, err := q.Claim(ctx, testBase, 1, time.Minute, 1)
	require.ErrorIs(t, err, context.Canceled)
	_, err = q.Settle(ctx, testBase, webhook.Outcome{Delivery: d, Kind: webhook.Delivered})
	require.ErrorIs(t, err, context.Canceled)
	_, err = q.Dead(ctx, "t")
	require.ErrorIs(t, err, context.Canceled)
	_, err = q.Revive(ctx, "t", "", testBase)
	require.ErrorIs(t, err, context.Canceled)
	require.ErrorIs(t, q.Purge(ctx, "t"), context.Canceled)
	_, err = q.Pending(ctx, "d")
	require.ErrorIs(t, err, context.Canceled)
	_, _, err = q.NextDue(ctx)
	require.ErrorIs(t, err, context.Canceled)
}

func TestWake(t *testing.T) {
	t.Parallel()
	t.Run("fires on another replica's Enqueue", func(t *testing.T) {
		t.Parallel()
		pool, cfg := newTestDatabase(t)
		q := newTestQueue(t, pool, webhook.QueueLimits{})
		wake := listeningWake(t, q)
		other, err := pgxpool.NewWithConfig(t.Context(), cfg.Copy())
		require.NoError(t, err)
		defer other.Close()
		replica := newTestQueue(t, other, webhook.QueueLimits{})
		require.NoError(t, replica.Enqueue(t.Context(), testDelivery("d", "s", "t", testBase)))
		requireWoken(t, wake)
	})
	t.Run("fires when a settled delivery is due again", func(t *testing.T) {
		t.Parallel()
		pool := newTestPool(t)
		q := newTestQueue(t, pool, webhook.QueueLimits{})
		require.NoError(t, q.Enqueue(t.Context(), testDelivery("d", "s", "t", testBase)))
		got, err := q.Claim(t.Context(), testBase, 1, time.Minute, 1)
		require.NoError(t, err)
		wake := listeningWake(t, q)
		_, err = q.Settle(t.Context(), testBase, webhook.Outcome{Delivery: got[0], Kind: webhook.Released})
		require.NoError(t, err)
		requireWoken(t, wake)
	})
	t.Run("heals after its connection is killed", func(t *testing.T) {
		t.Parallel()
		pool := newTestPool(t)
		q := newTestQueue(t, pool, webhook.QueueLimits{})
		wake := listeningWake(t, q)
		killListeners(t, pool)
		requireWoken(t, wake) // the reconnection: a notification may have been missed
		require.NoError(t, q.Enqueue(t.Context(), testDelivery("d", "s", "t", testBase)))
		requireWoken(t, wake)
	})
	t.Run("stops with ctx and Close, its goroutine gone", func(t *testing.T) {
		t.Parallel()
		pool := newTestPool(t)
		q := newTestQueue(t, pool, webhook.QueueLimits{})
		ctx, cancel := context.WithCancel(t.Context())
		listeningWake(t, q)
		wake := q.Wake(ctx)
		cancel()
		require.NoError(t, q.Close())
		require.NoError(t, q.Enqueue(t.Context(), testDelivery("d", "s", "t", testBase)))
		select {
		case <-wake:
			// A wake from before: fine, but nothing after.
		case <-time.After(100 * time.Millisecond):
		}
		select {
		case <-q.listen.done:
		default:
			t.Fatal("the listener's goroutine outlived Close")
		}
	})
}

// listeningWake returns q.Wake's channel once the listener listens,
// drained of the wake its connection made.
func listeningWake(t *testing.T, q *Queue) <-chan struct{} {
	t.Helper()
	wake := q.Wake(t.Context())
	requireWoken(t, wake) // connected
	return wake
}

func requireWoken(t *testing.T, wake <-chan struct{}) {
	t.Helper()
	select {
	case <-wake:
	case <-time.After(5 * time.Second):
		t.Fatal("no wake within 5 s")
	}
}

// TestHealthOutlivesTheProcess settles failures through two Queues with
// pools of their own, as a replica and its successor after a restart
// would: the second continues the first's count and clock, so that the
// days to disabling a registration are counted across restarts.
func TestHealthOutlivesTheProcess(t *testing.T) {
	t.Parallel()
	pool, cfg := newTestDatabase(t)
	first := newTestQueue(t, pool, webhook.QueueLimits{})
	d := testDelivery("d", "s", "t", testBase)
	require.NoError(t, first.Enqueue(t.Context(), d))
	failed := func(q *Queue, now time.Time) webhook.Health {
		t.Helper()
		got, err := q.Claim(t.Context(), now, 1, time.Minute, 1)
		require.NoError(t, err)
		require.Len(t, got, 1)
		got[0].Attempts++
		got[0].Due = now
		h, err := q.Settle(t.Context(), now, webhook.Outcome{Delivery: got[0], Kind: webhook.Retried, Failed: true})
		require.NoError(t, err)
		return h[0]
	}
	day := 24 * time.Hour
	require.Equal(t, webhook.Health{Failures: 1, FailingSince: testBase}, failed(first, testBase))
	first.Close()

	p, err := pgxpool.NewWithConfig(t.Context(), cfg.Copy())
	require.NoError(t, err)
	defer p.Close()
	next := newTestQueue(t, p, webhook.QueueLimits{})
	require.Equal(t, webhook.Health{Failures: 2, FailingSince: testBase}, failed(next, testBase.Add(3*day)))
}
