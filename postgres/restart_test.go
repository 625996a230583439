package postgres

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/crmhook/webhook"
)

// TestServerRestartInTheMiddleOfWork restarts the server while a worker
// enqueues, claims and settles, and while the Queue and the Store listen:
// calls fail during the outage, and then everything works again by
// itself: every delivery whose Enqueue returned nil is delivered, the
// listeners reconnect and wake their waiters. It does not run in
// parallel: the restart ends every session of the server.
func TestServerRestartInTheMiddleOfWork(t *testing.T) {
	srv := server(t)
	if srv.cluster == nil {
		t.Skipf("%s names a server of the user's, which the tests do not restart", urlEnv)
	}
	pool := newTestPool(t)
	q := newTestQueue(t, pool, webhook.QueueLimits{})
	s, err := NewStore(t.Context(), pool, StoreConfig{PollInterval: time.Hour})
	require.NoError(t, err)
	defer s.Close()
	wake := listeningWake(t, q)
	waitConnected(t, s)

	var mu sync.Mutex // guards accepted and delivered
	accepted := map[string]bool{}
	delivered := map[string]bool{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	failed := 0 // Enqueues refused during the outage
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			id := fmt.Sprint("d", i)
			if err := q.Enqueue(t.Context(), testDelivery(id, "s", fmt.Sprint("t", i%5), testBase)); err == nil {
				mu.Lock()
				accepted[id] = true
				mu.Unlock()
			} else {
				failed++
			}
			drain(t, q, &mu, delivered)
			time.Sleep(5 * time.Millisecond)
		}
	})
	time.Sleep(200 * time.Millisecond)
	srv.restart(t)
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()
	mu.Lock()
	t.Logf("%d Enqueues accepted, %d failed while the server restarted", len(accepted), failed)
	mu.Unlock()

	// Wake fires for the reconnection, and for news after it.
	requireWoken(t, wake)
	require.Eventually(t, func() bool {
		return q.Enqueue(t.Context(), testDelivery("after", "s", "t0", testBase)) == nil
	}, 10*time.Second, 50*time.Millisecond)
	mu.Lock()
	accepted["after"] = true
	mu.Unlock()
	requireWoken(t, wake)

	// Every accepted delivery comes out, the ones claimed before the
	// restart once their lease (a minute of fake time) has passed.
	require.Eventually(t, func() bool {
		drainAt(t, q, &mu, delivered, testBase.Add(time.Hour))
		mu.Lock()
		defer mu.Unlock()
		for id := range accepted {
			if !delivered[id] {
				return false
			}
		}
		return true
	}, 10*time.Second, 50*time.Millisecond, "accepted deliveries lost in the restart")
	requireConsistent(t, pool, "after the restart")

	// The Store's listener is back: a change wakes a Wait at once.
	requireWaitWakes(t, s, 0, func() {
		require.Eventually(t, func() bool {
			_, err := s.Write(t.Context(), created("k", fullWebhook("s", "a")))
			return err == nil
		}, 10*time.Second, 50*time.Millisecond)
	})
}

// drain claims and delivers what is due at testBase, ignoring errors (the
// server may be down).
func drain(t *testing.T, q *Queue, mu *sync.Mutex, delivered map[string]bool) {
	drainAt(t, q, mu, delivered, testBase)
}

// drainAt claims what is due at now, counts it delivered, as a Dispatcher
// sends what it claims, and settles it. A Settle that fails may have
// committed or not: in the second case the delivery is claimed again once
// its lease ends.
func drainAt(t *testing.T, q *Queue, mu *sync.Mutex, delivered map[string]bool, now time.Time) {
	ds, err := q.Claim(t.Context(), now, 20, time.Minute, 5)
	if err != nil || len(ds) == 0 {
		return
	}
	var outcomes []webhook.Outcome
	mu.Lock()
	for _, d := range ds {
		delivered[d.ID] = true
		outcomes = append(outcomes, webhook.Outcome{Delivery: d, Kind: webhook.Delivered})
	}
	mu.Unlock()
	q.Settle(t.Context(), now, outcomes...)
}
