package webhook

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Issue 11, item 7: 32 registrations of one space whose receiver hangs
// held every worker, and another space's delivery waited behind all of
// them. A freed worker now goes to the space with fewer in flight.
func TestASpaceThatHangsDoesNotStarveAnother(t *testing.T) {
	ctx := context.Background()
	release := make(chan struct{})
	arrived := make(chan string, 100)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		arrived <- r.URL.Path
		if r.URL.Path == "/hangs" {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
	}))
	t.Cleanup(srv.Close)
	r := newTestRegistry()
	for range 32 {
		mustCreate(t, r, Webhook{Space: "noisy", URL: srv.URL + "/hangs", Events: []string{"Task.*"}})
	}
	mustCreate(t, r, Webhook{Space: "quiet", URL: srv.URL + "/quiet", Events: []string{"Task.*"}})
	const workers = 8
	d := newTestDispatcher(t, r, Config{Workers: workers, Logger: quietLogger()})
	require.NoError(t, d.Dispatch(ctx, Event{Space: "noisy", Name: "Task.Create", Data: account}))
	for range workers {
		require.Equal(t, "/hangs", <-arrived)
	}
	require.NoError(t, d.Dispatch(ctx, Event{Space: "quiet", Name: "Task.Create", Data: account}))
	select {
	case p := <-arrived:
		t.Fatalf("%s arrived with every worker held", p)
	case <-time.After(50 * time.Millisecond): // time for a ninth request, were there a ninth worker
	}
	// The first worker that frees (here a release; else its timeout) goes
	// to the quiet space, not to the 24 deliveries of the noisy one that
	// were due first.
	release <- struct{}{}
	require.Equal(t, "/quiet", <-arrived)
	close(release)
	require.NoError(t, d.Flush(ctx))
}

// Issue 11, item 2: a Dispatcher with nothing due armed no timer, and a
// delivery another replica left in the Queue waited until something woke
// it.
func TestADispatcherFindsWhatOthersPutInItsQueue(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock()
	q := NewMemoryQueue(QueueLimits{})
	r := newTestRegistry()
	obs, attempts := observed()
	newTestDispatcher(t, r, Config{Queue: q, Clock: clock, Transport: &Recorder{}, Observer: obs, PollInterval: 2 * time.Second})
	waitArmed(t, clock)
	// Another replica's delivery, and one it claimed before it crashed.
	for _, id := range []string{"crashed", "left"} {
		hook := mustCreate(t, r, Webhook{URL: "https://example.com/" + id, Events: []string{"*"}})
		require.NoError(t, q.Enqueue(ctx, &Delivery{ID: id, WebhookID: hook.ID, Target: r.byID[spaceID{"", hook.ID}].key,
			Body: []byte(`[]`), Due: clock.Now()}))
	}
	claimed, err := q.Claim(ctx, clock.Now(), 1, time.Minute, 1)
	require.NoError(t, err)
	require.Equal(t, "crashed", claimed[0].ID, "by a process that dies")

	clock.Advance(2 * time.Second)
	require.Equal(t, "left", nextAttempt(t, attempts).DeliveryID, "found at the next poll")
	clock.Advance(time.Minute)
	require.Equal(t, "crashed", nextAttempt(t, attempts).DeliveryID, "and what a crashed replica held, once its lease ended")
}

// waitArmed waits until something armed a timer on clock: the scheduler
// has gone to sleep.
func waitArmed(t *testing.T, clock *fakeClock) {
	t.Helper()
	eventually(t, func() bool { return clock.armed() > 0 }, "the scheduler never slept")
}

// Issue 11, item 7: Dispatch never pushed back, and 1,000,000 events to a
// dead receiver took the memory queue to 1.2 GB.
func TestDispatchPastTheQueuesBoundsIsRefusedWhole(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock()
	r := newTestRegistry()
	mustCreate(t, r, Webhook{Space: "a", URL: "https://example.com/a", Events: []string{"Task.*"}, Options: Options{ChunkSize: 1}})
	mustCreate(t, r, Webhook{Space: "b", URL: "https://example.com/b", Events: []string{"Task.*"}, Options: Options{ChunkSize: 1}})
	q := NewMemoryQueue(QueueLimits{MaxPending: 5, MaxPendingPerTarget: 3})
	d := newTestDispatcher(t, r, Config{Queue: q, Clock: clock, Logger: quietLogger(),
		Transport: failingTransport(http.StatusServiceUnavailable, ""), RetrySchedule: []time.Duration{time.Hour}})
	events := func(space string, n int) []Event {
		var evs []Event
		for range n {
			evs = append(evs, Event{Space: space, Name: "Task.Create", Data: account})
		}
		return evs
	}
	pending := func() int {
		q.mu.Lock()
		defer q.mu.Unlock()
		return q.held
	}
	require.NoError(t, d.Dispatch(ctx, events("a", 2)...))
	err := d.Dispatch(ctx, events("a", 2)...)
	require.ErrorIs(t, err, ErrQueueFull, "2 + 2 of one registration is past 3")
	require.Equal(t, 2, pending(), "none of the refused call")
	require.NoError(t, d.Dispatch(ctx, events("b", 3)...))
	require.ErrorIs(t, d.Dispatch(ctx, events("a", 1)...), ErrQueueFull, "5 in all")
	require.Equal(t, 5, pending())
}

// Issue 11, item 6: a Flush waiting when Close was called was never
// released.
func TestCloseReleasesAWaitingFlush(t *testing.T) {
	ctx := context.Background()
	slow, entered, _ := blockingReceiver(t)
	r := newTestRegistry()
	mustCreate(t, r, Webhook{URL: slow.URL, Events: []string{"*"}})
	tr := NewHTTPTransport(HTTPConfig{AddressPolicy: loopback})
	t.Cleanup(func() { tr.Close() })
	d, err := NewDispatcher(r, Config{Transport: tr, Logger: quietLogger()})
	require.NoError(t, err)
	require.NoError(t, d.Dispatch(ctx, Event{Name: "Task.Create", Data: account}))
	<-entered
	flushed := make(chan error, 1)
	go func() { flushed <- d.Flush(ctx) }()
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	require.ErrorIs(t, d.Close(cancelled), context.Canceled)
	require.ErrorIs(t, <-flushed, ErrClosed)
}

// txQueue is a host's transaction, as a durable Queue's view of it would
// be: deliveries written to it reach the Queue on commit, or nowhere.
type txQueue struct {
	q       Queue
	mu      sync.Mutex
	written []*Delivery
}

func (tx *txQueue) Enqueue(ctx context.Context, ds ...*Delivery) error {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	tx.written = append(tx.written, ds...)
	return nil
}

func (tx *txQueue) commit(ctx context.Context) error { return tx.q.Enqueue(ctx, tx.written...) }

func TestDispatchToATransactionThatRollsBackLeavesNoTrace(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock()
	q := NewMemoryQueue(QueueLimits{})
	r := newTestRegistry()
	mustCreate(t, r, Webhook{URL: "https://example.com/h", Events: []string{"*"}})
	rec := &Recorder{}
	d := newTestDispatcher(t, r, Config{Queue: q, Clock: clock, Transport: rec})

	rolledBack := &txQueue{q: q}
	require.NoError(t, d.DispatchTo(ctx, rolledBack, Event{ID: "ev-1", Name: "Task.Create", Data: account}))
	require.Len(t, rolledBack.written, 1)
	require.NoError(t, d.Flush(ctx), "nothing to wait for: the transaction never committed")

	committed := &txQueue{q: q}
	require.NoError(t, d.DispatchTo(ctx, committed, Event{ID: "ev-2", Name: "Task.Create", Data: account}))
	require.NoError(t, committed.commit(ctx))
	require.NoError(t, d.Dispatch(ctx, Event{ID: "ev-3", Name: "Task.Update", Data: account}))
	require.NoError(t, d.Flush(ctx))
	waitSettled(t, q)
	var got []string
	for _, req := range rec.Requests() {
		got = append(got, req.EventIDs...)
	}
	require.ElementsMatch(t, []string{"ev-2", "ev-3"}, got)
}
