package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Replicas in one process: Registries over one memStore, Dispatchers over
// one MemoryQueue, as replicas of a service share a database.

// newReplica returns a Registry over store, closed when the test ends.
func newReplica(t testing.TB, store Store, clock Clock) *Registry {
	t.Helper()
	r, err := NewRegistry(context.Background(), RegistryConfig{Store: store, Addresses: loopback, Clock: clock, Logger: quietLogger()})
	require.NoError(t, err)
	t.Cleanup(func() { r.Close() })
	return r
}

// eventually waits until cond holds; the deadline only stops a hung test.
func eventually(t testing.TB, cond func() bool, format string, args ...any) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf(format, args...)
		}
	}
}

func TestReplicasFollowEachOthersChanges(t *testing.T) {
	ctx := context.Background()
	store := newMemStore()
	clock := newFakeClock()
	a, b := newReplica(t, store, clock), newReplica(t, store, clock)
	ma, mb := NewMatcher(a), NewMatcher(b)
	ev := Event{Space: "team-1", Name: "Account.Update", Data: account}

	created, err := a.Create(ctx, "team-1", Webhook{URL: "https://example.com/a", Events: []string{"Account.*"}})
	require.NoError(t, err)
	// b's Match reads only b's memory, which b's goroutine fills.
	eventually(t, func() bool { return len(matchURLs(t, mb, ev)) == 1 }, "b never matched a's registration")

	// b's Get catches up first: it sees what returned before it, at once.
	clock.Advance(time.Hour)
	url := "https://example.com/b"
	updated, err := b.Update(ctx, "team-1", created.ID, Patch{URL: &url})
	require.NoError(t, err)
	got, err := a.Get(ctx, "team-1", created.ID)
	require.NoError(t, err)
	require.Equal(t, updated, got, "what b stored, Modified included, not restamped by a")
	eventually(t, func() bool { return slicesEqual(matchURLs(t, ma, ev), []string{url}) }, "a never matched b's update")

	// A Dispatcher of a disables; b sees it, with a's time and reason.
	dis, err := a.disable(ctx, a.byID[spaceID{"team-1", created.ID}].key, "gone", clock.Now())
	require.NoError(t, err)
	eventually(t, func() bool { return len(matchURLs(t, mb, ev)) == 0 }, "b still matches a disabled registration")
	got, err = b.Get(ctx, "team-1", created.ID)
	require.NoError(t, err)
	require.Equal(t, dis, got.Disabled)

	require.NoError(t, b.Delete(ctx, "team-1", created.ID))
	_, err = a.Get(ctx, "team-1", created.ID)
	require.ErrorIs(t, err, ErrNotFound)
	require.Empty(t, mustList(t, a))

	// A Registry started later loads what is stored.
	c := newReplica(t, store, clock)
	mustCreate(t, a, Webhook{Space: "team-1", URL: "https://example.com/c", Events: []string{"*"}})
	list, err := c.List(ctx, "team-1")
	require.NoError(t, err)
	require.Len(t, list, 1)
}

func slicesEqual(a, b []string) bool { return fmt.Sprint(a) == fmt.Sprint(b) }

func TestReplicasChangingOneRegistrationAtOnceLoseNothing(t *testing.T) {
	ctx := context.Background()
	store := newMemStore()
	a, b := newReplica(t, store, nil), newReplica(t, store, nil)
	w := mustCreate(t, a, Webhook{URL: "https://example.com/a", Events: []string{"Account.Create"}})
	// Two replicas patch different fields of it at the same time: each
	// change is made from the other's, never over it.
	var wg sync.WaitGroup
	for i, r := range []*Registry{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range 20 {
				var p Patch
				if i == 0 {
					url := fmt.Sprintf("https://example.com/%d", n)
					p.URL = &url
				} else {
					sig := fmt.Sprintf("01234567-abcd-dcba-ffff-0000000000%02d", n)
					p.Signature = &sig
				}
				if _, err := r.Update(ctx, "", w.ID, p); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	got, err := b.Get(ctx, "", w.ID)
	require.NoError(t, err)
	require.Equal(t, "https://example.com/19", got.URL)
	require.Equal(t, "01234567-abcd-dcba-ffff-000000000019", got.Signature)
}

func TestADeliveryIsHeldUntilTheStoreSaysWhetherItsRegistrationExists(t *testing.T) {
	ctx := context.Background()
	store := newMemStore()
	q := NewMemoryQueue(QueueLimits{})
	rcv := newReceiver(t)
	a := newReplica(t, store, nil)
	// Replica b stops following the store: it will not hear of the
	// registration until a call of its own catches up.
	b := newReplica(t, store, nil)
	require.NoError(t, b.Close())
	hook := mustCreate(t, a, Webhook{Space: "team-1", URL: rcv.URL, Events: []string{"Task.*"}})

	// Replica a accepts a delivery, and stops before it sends it.
	da, err := NewDispatcher(a, Config{Queue: q, Transport: &Recorder{}, Workers: 1})
	require.NoError(t, err)
	require.NoError(t, da.Close(ctx))
	dl := &Delivery{ID: "d1", Space: "team-1", WebhookID: hook.ID, Target: a.byID[spaceID{"team-1", hook.ID}].key,
		EventIDs: []string{"ev-1"}, Body: []byte(`[{"id":"t1"}]`), Due: time.Now()}
	require.NoError(t, q.Enqueue(ctx, dl))

	// b has not heard of the registration, and the store is down: the
	// delivery waits, reported, instead of being dropped.
	store.down.Store(true)
	obs, attempts := observed()
	newTestDispatcher(t, b, Config{Queue: q, Observer: obs, PollInterval: 10 * time.Millisecond, Logger: quietLogger()})
	held := nextAttempt(t, attempts)
	require.ErrorIs(t, held.Err, errStoreDown)
	require.False(t, held.Dropped)
	require.False(t, held.RetryAt.IsZero(), "held, to be tried again")

	store.down.Store(false)
	for a := nextAttempt(t, attempts); a.Err != nil; a = nextAttempt(t, attempts) {
		require.ErrorIs(t, a.Err, errStoreDown, "only held while the store was down")
	}
	req := rcv.next(t)
	require.Equal(t, "d1", req.Header.Get(HeaderID), "sent once b caught up")
}

func TestADeliveryOfADeletedRegistrationIsDroppedAndReported(t *testing.T) {
	ctx := context.Background()
	store := newMemStore()
	q := NewMemoryQueue(QueueLimits{})
	a := newReplica(t, store, nil)
	hook := mustCreate(t, a, Webhook{Space: "team-1", URL: "https://example.com/h", Events: []string{"Task.*"}})
	key := a.byID[spaceID{"team-1", hook.ID}].key
	require.NoError(t, a.Delete(ctx, "team-1", hook.ID))
	// A delivery that another replica enqueued before it heard of the
	// deletion, and that no purge removed.
	require.NoError(t, q.Enqueue(ctx, &Delivery{ID: "d1", Space: "team-1", WebhookID: hook.ID, Target: key,
		EventIDs: []string{"ev-1"}, Body: []byte(`[]`), Due: time.Now()}))

	var logs syncBuffer
	obs, attempts := observed()
	rec := &Recorder{}
	d := newTestDispatcher(t, newReplica(t, store, nil), Config{Queue: q, Transport: rec, Observer: obs,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	got := nextAttempt(t, attempts)
	require.True(t, got.Dropped)
	require.ErrorIs(t, got.Err, ErrNotFound)
	require.Equal(t, "d1", got.DeliveryID)
	require.Empty(t, rec.Requests())
	eventually(t, func() bool { return len(q.entries) == 0 }, "the dropped delivery is still queued")
	require.Contains(t, logs.String(), "level=WARN msg=\"webhook: delivery dropped\"")
	require.NoError(t, d.Flush(ctx))
}

// concurrency counts requests in flight per path, and the most at once.
type concurrency struct {
	mu       sync.Mutex
	now, top map[string]int
}

func (c *concurrency) enter(path string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now[path]++
	c.top[path] = max(c.top[path], c.now[path])
}

func (c *concurrency) leave(path string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now[path]--
}

func TestReplicasShareEachRegistrationsLimitAndOrder(t *testing.T) {
	ctx := context.Background()
	store := newMemStore()
	q := NewMemoryQueue(QueueLimits{})
	c := &concurrency{now: map[string]int{}, top: map[string]int{}}
	var mu sync.Mutex
	var order []string
	srv := newReceiverFunc(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		c.enter(r.URL.Path)
		defer c.leave(r.URL.Path)
		time.Sleep(time.Millisecond) // long enough for another replica to try
		mu.Lock()
		order = append(order, string(body))
		mu.Unlock()
	})
	a, b := newReplica(t, store, nil), newReplica(t, store, nil)
	mustCreate(t, a, Webhook{URL: srv.URL + "/one", Events: []string{"Task.*"}, Options: Options{ChunkSize: 1}})
	da := newTestDispatcher(t, a, Config{Queue: q})
	db := newTestDispatcher(t, b, Config{Queue: q})
	eventually(t, func() bool { return len(mustList(t, b)) == 1 }, "b never heard of the registration")
	var want []string
	for i := range 40 {
		d := da
		if i%2 == 1 {
			d = db
		}
		data := fmt.Sprintf(`{"n":%d}`, i)
		require.NoError(t, d.Dispatch(ctx, Event{Name: "Task.Create", Data: json.RawMessage(data), ID: fmt.Sprint(i)}))
		want = append(want, data)
	}
	require.NoError(t, da.Flush(ctx))
	require.NoError(t, db.Flush(ctx))
	require.Equal(t, 1, c.top["/one"], "MaxInFlight 1 holds across both replicas")
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, order, 40)
	for i, body := range order {
		require.Contains(t, body, `"entity":`+want[i], "in the order the events were accepted")
	}
}

func TestReplicasShareAPauseAndTheDisableClock(t *testing.T) {
	ctx := context.Background()
	store := newMemStore()
	q := NewMemoryQueue(QueueLimits{})
	clock := newFakeClock()
	var requests atomic.Int32
	throttle := transportFunc(func(ctx context.Context, req *Request) (*Response, error) {
		if requests.Add(1) == 1 {
			return &Response{StatusCode: http.StatusTooManyRequests, Header: http.Header{"Retry-After": {"60"}}}, nil
		}
		return &Response{StatusCode: http.StatusInternalServerError}, nil
	})
	a, b := newReplica(t, store, clock), newReplica(t, store, clock)
	hook := mustCreate(t, a, Webhook{URL: "https://example.com/h", Events: []string{"Task.*"}, Options: Options{ChunkSize: 1}})
	cfg := Config{Queue: q, Transport: throttle, Clock: clock, Logger: quietLogger(), DisableAttempts: 3,
		DisableAfter: 90 * time.Second, RetrySchedule: []time.Duration{time.Second, time.Second, time.Second, time.Second}}
	oa, attemptsA := observed()
	ob, attemptsB := observed()
	cfg.Observer = oa
	da := newTestDispatcher(t, a, cfg)
	cfg.Observer = ob
	db := newTestDispatcher(t, b, cfg)
	eventually(t, func() bool { return len(mustList(t, b)) == 1 }, "b never heard of the registration")

	// The first attempt is answered 429 Retry-After 60: the registration
	// is paused, for both replicas.
	require.NoError(t, da.Dispatch(ctx, Event{Name: "Task.Create", Data: account}))
	var first Attempt
	select { // either replica may claim it
	case first = <-attemptsA:
	case first = <-attemptsB:
	case <-time.After(10 * time.Second):
		t.Fatal("no attempt was observed")
	}
	require.Equal(t, http.StatusTooManyRequests, first.StatusCode)
	require.NoError(t, db.Dispatch(ctx, Event{Name: "Task.Update", Data: account}))
	clock.Advance(30 * time.Second)
	waitSettled(t, q)
	require.Equal(t, int32(1), requests.Load(), "b sent nothing while the registration was paused")

	// Once the pause ends, failures on either replica count against one
	// clock: three over 61 s disable nothing, the next, 90 s after the
	// first, disables it.
	clock.Advance(31 * time.Second)
	var disabled *Disabled
	for range 2 {
		select {
		case x := <-attemptsA:
			disabled = cmpOr(disabled, x.Disabled)
		case x := <-attemptsB:
			disabled = cmpOr(disabled, x.Disabled)
		case <-time.After(10 * time.Second):
			t.Fatal("no attempt after the pause")
		}
	}
	require.Nil(t, disabled, "three failures over 61 s disable nothing")
	clock.Advance(30 * time.Second)
	for disabled == nil {
		select {
		case x := <-attemptsA:
			disabled = x.Disabled
		case x := <-attemptsB:
			disabled = x.Disabled
		case <-time.After(10 * time.Second):
			t.Fatal("the registration was never disabled")
		}
	}
	require.Contains(t, disabled.Reason, "attempts failed")
	got, err := b.Get(ctx, "", hook.ID)
	require.NoError(t, err)
	require.NotNil(t, got.Disabled)
}

func cmpOr(a, b *Disabled) *Disabled {
	if a != nil {
		return a
	}
	return b
}

// newReceiverFunc is a real receiver that keeps every request, as
// newReceiver does, and answers it with f.
func newReceiverFunc(t testing.TB, f func(w http.ResponseWriter, r *http.Request, body []byte)) *receiver {
	t.Helper()
	rcv := newReceiver(t)
	rcv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rcv.reqs <- received{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Body: body}
		f(w, r, body)
	})
	return rcv
}
