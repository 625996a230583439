package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/crmhook/webhook"
)

// loopback lets registrations and requests reach the tests' receivers.
var loopback = webhook.AddressPolicy{AllowedPrefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}

// replica is one process's worth of the library over a shared database:
// a pool, a Store under a Registry, a Queue under a Dispatcher.
type replica struct {
	pool  *pgxpool.Pool
	store *Store
	queue *Queue
	reg   *webhook.Registry
	disp  *webhook.Dispatcher
}

// newReplica starts a replica on the database of cfg, closed when t
// ends: one of the proof's, with the defaults.
func newReplica(t *testing.T, cfg *pgxpool.Config) *replica {
	t.Helper()
	return newProofReplica(t, cfg, proofConfig{})
}

// receiver counts the requests it gets by webhook-id, and the most in
// flight at once.
type receiver struct {
	*httptest.Server
	delay       time.Duration // how long each request takes; set before the first
	mu          sync.Mutex    // guards the fields below
	got         map[string]int
	inFlight    int
	maxInFlight int
	arrived     chan struct{} // receives, coalesced, at every request
}

func newReceiver(t *testing.T) *receiver {
	rc := &receiver{got: map[string]int{}, arrived: make(chan struct{}, 1)}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc.mu.Lock()
		rc.inFlight++
		rc.maxInFlight = max(rc.maxInFlight, rc.inFlight)
		rc.mu.Unlock()
		time.Sleep(max(rc.delay, time.Millisecond))
		rc.mu.Lock()
		rc.inFlight--
		rc.got[r.Header.Get(webhook.HeaderID)]++
		rc.mu.Unlock()
		select {
		case rc.arrived <- struct{}{}:
		default:
		}
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) count() (requests, distinct int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, n := range rc.got {
		requests += n
	}
	return requests, len(rc.got)
}

func contactEvent(i int) webhook.Event {
	return webhook.Event{Space: "team", Name: "Contact.Create", Data: json.RawMessage(fmt.Sprintf(`{"id":"c%d"}`, i))}
}

// TestTwoReplicasShareRegistrationsAndDeliveries runs two replicas on one
// database, each with its own pool, Registry and Dispatcher: a
// registration created on one matches on the other within a second, and
// events dispatched through both are all delivered once, never more than
// one request at a time to the registration.
func TestTwoReplicasShareRegistrationsAndDeliveries(t *testing.T) {
	t.Parallel()
	_, cfg := newTestDatabase(t)
	rc := newReceiver(t)
	a, b := newReplica(t, cfg), newReplica(t, cfg)

	created := time.Now()
	w, err := a.reg.Create(t.Context(), "team", webhook.Webhook{URL: rc.URL, Events: []string{"Contact.Create"}})
	require.NoError(t, err)
	matcher := webhook.NewMatcher(b.reg)
	require.Eventually(t, func() bool {
		hooks, err := matcher.Match(contactEvent(0))
		return err == nil && len(hooks) == 1 && hooks[0].ID == w.ID
	}, time.Second, 5*time.Millisecond, "replica B does not match A's registration within a second")
	t.Logf("B matched A's registration %v after it was created", time.Since(created))

	const events = 200
	for i := range events {
		via := a
		if i%2 == 1 {
			via = b
		}
		require.NoError(t, via.disp.Dispatch(t.Context(), contactEvent(i)))
	}
	require.Eventually(t, func() bool {
		_, distinct := rc.count()
		return distinct == events
	}, 30*time.Second, 10*time.Millisecond)
	requests, _ := rc.count()
	require.Equal(t, events, requests, "duplicates")
	rc.mu.Lock()
	require.Equal(t, 1, rc.maxInFlight, "requests in flight to the registration at once")
	rc.mu.Unlock()
}

// TestDispatchToTheHostsTransaction uses the outbox through the
// Dispatcher: a rolled-back transaction sends nothing and leaves Flush
// working; a committed one is sent.
func TestDispatchToTheHostsTransaction(t *testing.T) {
	t.Parallel()
	pool, cfg := newTestDatabase(t)
	rc := newReceiver(t)
	a := newReplica(t, cfg)
	_, err := a.reg.Create(t.Context(), "team", webhook.Webhook{URL: rc.URL, Events: []string{"Contact.Create"}})
	require.NoError(t, err)
	ctx := t.Context()

	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if err := a.disp.DispatchTo(ctx, a.queue.Tx(tx), contactEvent(1)); err != nil {
			return err
		}
		return context.Canceled // rolled back
	})
	require.ErrorIs(t, err, context.Canceled)
	flushCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	require.NoError(t, a.disp.Flush(flushCtx), "Flush after a rollback")

	require.NoError(t, pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		return a.disp.DispatchTo(ctx, a.queue.Tx(tx), contactEvent(2))
	}))
	select {
	case <-rc.arrived:
	case <-time.After(5 * time.Second):
		t.Fatal("the committed delivery was not sent within 5 s")
	}
	requests, distinct := rc.count()
	require.Equal(t, 1, requests)
	require.Equal(t, 1, distinct)
}
