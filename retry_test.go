package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/stretchr/testify/require"
)

// scripted starts a receiver that answers its n-th request (from 1) as
// answer says, and keeps every request.
func scripted(t *testing.T, answer func(n int, w http.ResponseWriter)) (*httptest.Server, chan received) {
	reqs := make(chan received, 1000)
	var count atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		reqs <- received{Method: req.Method, Path: req.URL.Path, Header: req.Header.Clone(), Body: body}
		answer(int(count.Add(1)), w)
	}))
	t.Cleanup(srv.Close)
	return srv, reqs
}

// observed returns an Observer that hands every attempt to the channel.
func observed() (func(Attempt), chan Attempt) {
	ch := make(chan Attempt, 10000)
	return func(a Attempt) { ch <- a }, ch
}

func nextAttempt(t *testing.T, ch chan Attempt) Attempt {
	t.Helper()
	select {
	case a := <-ch:
		return a
	case <-time.After(10 * time.Second):
		t.Fatal("no attempt was observed")
		return Attempt{}
	}
}

// failingTransport answers every request with status, and Retry-After
// when retryAfter is set.
func failingTransport(status int, retryAfter string) Transport {
	return transportFunc(func(ctx context.Context, req *Request) (*Response, error) {
		h := http.Header{}
		if retryAfter != "" {
			h.Set("Retry-After", retryAfter)
		}
		return &Response{StatusCode: status, Header: h}, nil
	})
}

func TestRetriesUntilDeliveredWithTheSameDeliveryID(t *testing.T) {
	srv, reqs := scripted(t, func(n int, w http.ResponseWriter) {
		if n <= 2 {
			w.WriteHeader(http.StatusInternalServerError)
			io.WriteString(w, "database down")
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	r := newTestRegistry()
	hook := mustCreate(t, r, Webhook{URL: srv.URL, Events: []string{"*"}, Signature: testSignature})
	obs, attempts := observed()
	d := newTestDispatcher(t, r, Config{Observer: obs, Logger: quietLogger(),
		RetrySchedule: []time.Duration{time.Millisecond, time.Millisecond, time.Millisecond}})
	dispatch(t, d, Event{ID: "ev-1", Name: "Account.Create", Data: account})

	var ids []string
	var body []byte
	for i := range 3 {
		req := <-reqs
		ids = append(ids, req.Header.Get(HeaderID))
		if i == 0 {
			body = req.Body
		}
		require.Equal(t, body, req.Body, "every attempt sends the same bytes")
		require.NoError(t, VerifySignature(testSignature, req.Body, req.Header.Get(HeaderSignature)))
		ts, err := strconv.ParseInt(req.Header.Get(HeaderTimestamp), 10, 64)
		require.NoError(t, err, "webhook-timestamp is unix seconds")
		require.InDelta(t, time.Now().Unix(), ts, 60)
		require.True(t, strings.HasPrefix(req.Header.Get("User-Agent"), "crmhook-webhook/"+Version), req.Header.Get("User-Agent"))
	}
	require.Equal(t, []string{ids[0], ids[0], ids[0]}, ids, "the id stays the same across retries")
	require.True(t, isUUID(ids[0]))
	require.Empty(t, reqs)

	for n := 1; n <= 3; n++ {
		a := nextAttempt(t, attempts)
		require.Equal(t, n, a.Attempt)
		require.Equal(t, ids[0], a.DeliveryID)
		require.Equal(t, hook.ID, a.WebhookID)
		require.Equal(t, []string{"ev-1"}, a.EventIDs)
		require.False(t, a.Dead)
		if n < 3 {
			require.Equal(t, http.StatusInternalServerError, a.StatusCode)
			require.Error(t, a.Err)
			require.Equal(t, "database down", string(a.Response))
			require.False(t, a.RetryAt.IsZero(), "a failed attempt says when it will be retried")
		} else {
			require.Equal(t, http.StatusNoContent, a.StatusCode)
			require.NoError(t, a.Err)
			require.True(t, a.RetryAt.IsZero())
		}
	}
}

func TestStandardWebhooksReceiverVerifiesOurRequests(t *testing.T) {
	verifier, err := standardwebhooks.NewWebhookRaw([]byte(testSignature))
	require.NoError(t, err)
	verified := make(chan error, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		verified <- verifier.Verify(body, req.Header)
		verified <- VerifyStandard(testSignature, req.Header, body, time.Now(), 5*time.Minute)
		tampered := append([]byte(nil), body...)
		tampered[len(tampered)-2] = ' '
		verified <- verifier.Verify(tampered, req.Header)
	}))
	t.Cleanup(srv.Close)
	r := newTestRegistry()
	mustCreate(t, r, Webhook{URL: srv.URL, Events: []string{"*"}, Signature: testSignature})
	d := newTestDispatcher(t, r, Config{Signature: StandardSignature})
	dispatch(t, d, Event{Name: "Account.Create", Data: account})
	require.NoError(t, <-verified, "the reference library accepts the request")
	require.NoError(t, <-verified, "so does VerifyStandard")
	require.ErrorIs(t, <-verified, standardwebhooks.ErrNoMatchingSignature, "and a changed body is refused")
}

func TestRetryScheduleJitterDeadLettersAndRedeliver(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock()
	var up atomic.Bool
	rec := &Recorder{}
	tr := transportFunc(func(ctx context.Context, req *Request) (*Response, error) {
		if up.Load() {
			return rec.Send(ctx, req)
		}
		return &Response{StatusCode: http.StatusServiceUnavailable, Header: http.Header{}}, nil
	})
	r := newTestRegistry()
	hook := mustCreate(t, r, Webhook{URL: "https://example.com/h", Events: []string{"*"}, Options: Options{ChunkSize: 1}})
	obs, attempts := observed()
	d := newTestDispatcher(t, r, Config{Transport: tr, Clock: clock, Observer: obs, Logger: quietLogger(),
		RetrySchedule: []time.Duration{100 * time.Second, 1000 * time.Second}})
	require.NoError(t, d.Dispatch(ctx, Event{ID: "ev-1", Name: "Task.Create", Data: account},
		Event{ID: "ev-2", Name: "Task.Update", Data: account}))

	for _, delay := range []time.Duration{100 * time.Second, 1000 * time.Second} {
		for range 2 {
			a := nextAttempt(t, attempts)
			require.Error(t, a.Err)
			wait := a.RetryAt.Sub(clock.Now())
			require.GreaterOrEqual(t, wait, delay*9/10, "jitter is within 10%%")
			require.Less(t, wait, delay*11/10, "jitter is within 10%%")
		}
		clock.Advance(delay * 11 / 10)
	}
	var deadIDs []string
	for range 2 {
		a := nextAttempt(t, attempts)
		require.Equal(t, 3, a.Attempt)
		require.True(t, a.Dead, "the schedule is exhausted after 1+2 attempts")
		require.True(t, a.RetryAt.IsZero())
		deadIDs = append(deadIDs, a.DeliveryID)
	}
	require.NoError(t, d.Flush(ctx), "dead deliveries are done as far as Flush goes")

	dead, err := d.Dead(ctx, "", hook.ID)
	require.NoError(t, err)
	require.Len(t, dead, 2)
	require.ElementsMatch(t, deadIDs, []string{dead[0].ID, dead[1].ID})
	for _, dl := range dead {
		require.Equal(t, 3, dl.Attempts)
		require.Equal(t, http.StatusServiceUnavailable, dl.LastStatus)
		require.Contains(t, dl.LastError, "503")
	}

	up.Store(true)
	n, err := d.Redeliver(ctx, "", hook.ID, dead[0].ID)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	a := nextAttempt(t, attempts)
	require.NoError(t, a.Err)
	require.Equal(t, dead[0].ID, a.DeliveryID, "a redelivery keeps its id, so receivers can drop duplicates")
	require.Equal(t, 1, a.Attempt, "with a fresh schedule")

	_, err = d.Redeliver(ctx, "", hook.ID, dead[0].ID)
	require.ErrorIs(t, err, ErrNotFound, "it is no longer dead")
	n, err = d.Redeliver(ctx, "", hook.ID, "")
	require.NoError(t, err)
	require.Equal(t, 1, n, "all the rest")
	require.NoError(t, nextAttempt(t, attempts).Err)
	dead, err = d.Dead(ctx, "", hook.ID)
	require.NoError(t, err)
	require.Empty(t, dead)
	var got []string
	for _, req := range rec.Requests() {
		got = append(got, req.EventIDs...)
	}
	require.ElementsMatch(t, []string{"ev-1", "ev-2"}, got)
}

func TestGoneDisablesTheRegistrationAtOnce(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock()
	var gone atomic.Bool
	gone.Store(true)
	srv, reqs := scripted(t, func(n int, w http.ResponseWriter) {
		if gone.Load() {
			w.WriteHeader(http.StatusGone)
		}
	})
	other := newReceiver(t)
	r := newTestRegistry()
	hook := mustCreate(t, r, Webhook{URL: srv.URL, Events: []string{"Task.*"}, Options: Options{ChunkSize: 1}})
	mustCreate(t, r, Webhook{URL: other.URL, Events: []string{"Task.*"}})
	obs, attempts := observed()
	d := newTestDispatcher(t, r, Config{Clock: clock, Observer: obs, Logger: quietLogger()})
	events := []Event{{ID: "ev-1", Name: "Task.Create", Data: account}, {ID: "ev-2", Name: "Task.Update", Data: account},
		{ID: "ev-3", Name: "Task.Delete", Data: account}}
	dispatch(t, d, events...)

	require.Len(t, reqs, 1, "nothing more is sent after the 410")
	<-reqs
	require.Len(t, other.drain(), 1, "the other registration is not affected")
	var disabledBy []Attempt
	for range 4 {
		if a := nextAttempt(t, attempts); a.Disabled != nil {
			disabledBy = append(disabledBy, a)
		}
	}
	require.Len(t, disabledBy, 1)
	require.Equal(t, http.StatusGone, disabledBy[0].StatusCode)
	require.True(t, disabledBy[0].Dead)

	got, err := r.Get(ctx, "", hook.ID)
	require.NoError(t, err)
	require.NotNil(t, got.Disabled, "still in the Registry, visibly disabled")
	require.Contains(t, got.Disabled.Reason, "410 Gone")
	require.Equal(t, clock.Now().Truncate(time.Second), got.Disabled.At)
	b, err := json.Marshal(got)
	require.NoError(t, err)
	require.Contains(t, string(b), `"disabled":{"at":"2026-11-26T10:15:00","reason":"the receiver answered 410 Gone"}`)
	require.Equal(t, []string{other.URL}, matchURLs(t, NewMatcher(r), events[0]), "it matches nothing")

	dead, err := d.Dead(ctx, "", hook.ID)
	require.NoError(t, err)
	require.Len(t, dead, 3, "the 410'd delivery and the two that were waiting behind it")

	_, err = d.Redeliver(ctx, "", hook.ID, "")
	require.ErrorIs(t, err, ErrInvalid, "nothing is redelivered to a disabled registration")
	require.ErrorContains(t, err, "410 Gone")

	// An Update enables it again, and its dead deliveries can be sent.
	gone.Store(false)
	updated, err := r.Update(ctx, "", got.ID, Patch{})
	require.NoError(t, err)
	require.Nil(t, updated.Disabled)
	require.Equal(t, []string{srv.URL, other.URL}, matchURLs(t, NewMatcher(r), events[0]))
	n, err := d.Redeliver(ctx, "", hook.ID, "")
	require.NoError(t, err)
	require.Equal(t, 3, n)
	var ids []string
	for range 3 {
		ids = append(ids, decodeItems(t, (<-reqs).Body)[0].Event)
	}
	require.ElementsMatch(t, []string{"Task.Create", "Task.Update", "Task.Delete"}, ids)
}

func TestFailingForTooLongDisablesTheRegistration(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock()
	r := newTestRegistry()
	hook := mustCreate(t, r, Webhook{URL: "https://example.com/down", Events: []string{"*"}})
	obs, attempts := observed()
	d := newTestDispatcher(t, r, Config{Transport: failingTransport(http.StatusInternalServerError, ""), Clock: clock,
		Observer: obs, Logger: quietLogger(), DisableAfter: 50 * time.Minute, DisableAttempts: 3,
		RetrySchedule: []time.Duration{30 * time.Minute, 30 * time.Minute, 30 * time.Minute}})
	require.NoError(t, d.Dispatch(ctx, Event{Name: "Task.Create", Data: account}))

	// Attempts at 0 and about 30 min: failing, but not for 50 min yet.
	for n := 1; n <= 2; n++ {
		a := nextAttempt(t, attempts)
		require.Equal(t, n, a.Attempt)
		require.Nil(t, a.Disabled)
		require.False(t, a.Dead)
		clock.Advance(33 * time.Minute)
	}
	// The third comes after at least 54 min: three failures over 50 min.
	a := nextAttempt(t, attempts)
	require.Equal(t, 3, a.Attempt)
	require.NotNil(t, a.Disabled)
	require.Contains(t, a.Disabled.Reason, "3 attempts failed")
	require.True(t, a.Dead)
	got, err := r.Get(ctx, "", hook.ID)
	require.NoError(t, err)
	require.Equal(t, a.Disabled, got.Disabled)
}

func TestASuccessResetsTheFailureCount(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock()
	var fail atomic.Bool
	tr := transportFunc(func(ctx context.Context, req *Request) (*Response, error) {
		if fail.Load() {
			return &Response{StatusCode: http.StatusInternalServerError}, nil
		}
		return &Response{StatusCode: http.StatusOK}, nil
	})
	r := newTestRegistry()
	hook := mustCreate(t, r, Webhook{URL: "https://example.com/flaky", Events: []string{"*"}})
	obs, attempts := observed()
	d := newTestDispatcher(t, r, Config{Transport: tr, Clock: clock, Observer: obs, Logger: quietLogger(),
		DisableAfter: time.Minute, DisableAttempts: 2, RetrySchedule: []time.Duration{}})
	send := func() Attempt {
		require.NoError(t, d.Dispatch(ctx, Event{Name: "Task.Create", Data: account}))
		return nextAttempt(t, attempts)
	}
	fail.Store(true)
	require.Nil(t, send().Disabled)
	clock.Advance(time.Hour)
	fail.Store(false)
	require.NoError(t, send().Err)
	fail.Store(true)
	require.Nil(t, send().Disabled, "the failures before the success do not count")
	clock.Advance(time.Hour)
	require.NotNil(t, send().Disabled)
	got, err := r.Get(ctx, "", hook.ID)
	require.NoError(t, err)
	require.NotNil(t, got.Disabled)
}

func TestRetryAfterIsHonouredWithinTheCapAndThrottlesTheReceiver(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock()
	tests := []struct {
		name       string
		status     int
		retryAfter string
		want       time.Duration
	}{
		{"429 with seconds", http.StatusTooManyRequests, "120", 120 * time.Second},
		// An HTTP date has whole seconds; the fake clock is 0.123456 s past one.
		{"503 with an HTTP date", http.StatusServiceUnavailable, clock.Now().Add(300 * time.Second).Format(http.TimeFormat), 300*time.Second - 123456*time.Microsecond},
		{"502 beyond the cap", http.StatusBadGateway, "7200", 10 * time.Minute},
		{"a Retry-After shorter than the schedule's delay", http.StatusTooManyRequests, "0", time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newTestRegistry()
			mustCreate(t, r, Webhook{URL: "https://example.com/busy", Events: []string{"*"}})
			obs, attempts := observed()
			d := newTestDispatcher(t, r, Config{Transport: failingTransport(tt.status, tt.retryAfter), Clock: clock,
				Observer: obs, Logger: quietLogger(), MaxRetryAfter: 10 * time.Minute,
				RetrySchedule: []time.Duration{time.Second}})
			require.NoError(t, d.Dispatch(ctx, Event{Name: "Task.Create", Data: account}))
			a := nextAttempt(t, attempts)
			wait := a.RetryAt.Sub(clock.Now())
			if tt.want == time.Second {
				require.InDelta(t, float64(time.Second), float64(wait), float64(time.Second/10))
			} else {
				require.Equal(t, tt.want, wait)
			}
		})
	}

	t.Run("429, 502 and 504 hold back the receiver's other deliveries, and no one else's", func(t *testing.T) {
		var busy atomic.Bool
		busy.Store(true)
		var sent sync.Map // event id -> webhook url
		tr := transportFunc(func(ctx context.Context, req *Request) (*Response, error) {
			if strings.HasSuffix(req.URL, "/busy") && busy.Load() {
				busy.Store(false)
				return &Response{StatusCode: http.StatusTooManyRequests, Header: http.Header{"Retry-After": {"60"}}}, nil
			}
			sent.Store(req.URL+" "+req.EventIDs[0], true)
			return &Response{StatusCode: http.StatusOK}, nil
		})
		r := newTestRegistry()
		mustCreate(t, r, Webhook{URL: "https://example.com/busy", Events: []string{"*"}})
		mustCreate(t, r, Webhook{URL: "https://example.com/calm", Events: []string{"*"}})
		obs, attempts := observed()
		d := newTestDispatcher(t, r, Config{Transport: tr, Clock: clock, Observer: obs, Logger: quietLogger(),
			RetrySchedule: []time.Duration{time.Second}})
		require.NoError(t, d.Dispatch(ctx, Event{ID: "ev-1", Name: "Task.Create", Data: account}))
		nextAttempt(t, attempts)
		nextAttempt(t, attempts)
		require.NoError(t, d.Dispatch(ctx, Event{ID: "ev-2", Name: "Task.Create", Data: account}))
		a := nextAttempt(t, attempts)
		require.Equal(t, "https://example.com/calm", a.URL, "only the calm receiver gets ev-2 for now")
		clock.Advance(59 * time.Second)
		require.NoError(t, d.Dispatch(ctx, Event{ID: "ev-3", Name: "Task.Create", Data: account}))
		require.Equal(t, "https://example.com/calm", nextAttempt(t, attempts).URL, "the pause lasts 60 s")
		clock.Advance(time.Second)
		require.NoError(t, d.Flush(ctx))
		for _, id := range []string{"ev-1", "ev-2", "ev-3"} {
			_, ok := sent.Load("https://example.com/busy " + id)
			require.True(t, ok, "%s reached the busy receiver after its pause", id)
		}
	})
}

func TestInFlightLimitsPerRegistrationAndInAll(t *testing.T) {
	var mu sync.Mutex
	now, peak := map[string]int{}, map[string]int{}
	total, peakTotal := 0, 0
	release := make(chan struct{})
	entered := make(chan struct{}, 100)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		io.Copy(io.Discard, req.Body)
		mu.Lock()
		now[req.URL.Path]++
		total++
		peak[req.URL.Path] = max(peak[req.URL.Path], now[req.URL.Path])
		peakTotal = max(peakTotal, total)
		mu.Unlock()
		entered <- struct{}{}
		<-release
		mu.Lock()
		now[req.URL.Path]--
		total--
		mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	r := newTestRegistry()
	for _, p := range []string{"/a", "/b", "/c"} {
		mustCreate(t, r, Webhook{URL: srv.URL + p, Events: []string{"*"}, Options: Options{ChunkSize: 1}})
	}
	d := newTestDispatcher(t, r, Config{MaxInFlight: 2, Workers: 5})
	ctx := context.Background()
	var events []Event
	for i := range 6 {
		events = append(events, Event{ID: fmt.Sprint(i), Name: "Task.Create", Data: account})
	}
	require.NoError(t, d.Dispatch(ctx, events...))
	for range 5 {
		<-entered
	}
	close(release)
	require.NoError(t, d.Flush(ctx))
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, 5, peakTotal, "Workers bounds the requests in flight in all")
	for p, n := range peak {
		require.LessOrEqual(t, n, 2, "MaxInFlight bounds %s", p)
	}
}

func TestPendingRetriesCostNoGoroutine(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock()
	r := newTestRegistry()
	const regs, workers = 10_000, 8
	for i := range regs {
		mustCreate(t, r, Webhook{URL: fmt.Sprintf("https://example.com/%d", i), Events: []string{"*"}})
	}
	before := runtime.NumGoroutine()
	obs, attempts := observed()
	d := newTestDispatcher(t, r, Config{Transport: failingTransport(http.StatusInternalServerError, ""), Clock: clock,
		Observer: obs, Logger: quietLogger(), RetrySchedule: []time.Duration{time.Hour}, Workers: workers})
	require.NoError(t, d.Dispatch(ctx, Event{Name: "Task.Create", Data: account}))
	for range regs {
		require.False(t, nextAttempt(t, attempts).RetryAt.IsZero())
	}
	// What stays is the scheduler, the recorder and the workers, however
	// many deliveries wait.
	if n := runtime.NumGoroutine() - before; n > 2+workers {
		buf := make([]byte, 1<<20)
		t.Fatalf("%d goroutines for %d pending retries and %d workers:\n%s", n, regs, workers, buf[:runtime.Stack(buf, true)])
	}
}

func TestRequestBodiesStayWithinMaxBody(t *testing.T) {
	rec := &Recorder{}
	r := newTestRegistry()
	hook := mustCreate(t, r, Webhook{URL: "https://example.com/h", Events: []string{"*"}})
	const maxBody = 4000
	d := newTestDispatcher(t, r, Config{Transport: rec, MaxBody: maxBody})
	var events []Event
	for i := range 20 {
		data := fmt.Sprintf(`{"id":"%d","note":"%s"}`, i, strings.Repeat("x", 700))
		events = append(events, Event{ID: fmt.Sprint(i), Name: "Note.Create", Data: json.RawMessage(data)})
	}
	dispatch(t, d, events...)
	var ids []string
	reqs := rec.Requests()
	require.Greater(t, len(reqs), 1, "twenty items of about 1 KB do not fit in 4000 bytes")
	for _, req := range reqs {
		require.LessOrEqual(t, len(req.Body), maxBody)
		require.Len(t, decodeItems(t, req.Body), len(req.EventIDs))
		ids = append(ids, req.EventIDs...)
	}
	for i, id := range ids {
		require.Equal(t, fmt.Sprint(i), id, "in event order")
	}

	huge := Event{ID: "big", Name: "Note.Create", Data: json.RawMessage(`{"note":"` + strings.Repeat("y", maxBody) + `"}`)}
	err := d.Dispatch(context.Background(), events[0], huge)
	require.ErrorIs(t, err, ErrTooLarge)
	require.ErrorContains(t, err, "event 1 (big) for webhook "+hook.ID)
	require.NoError(t, d.Flush(context.Background()))
	require.Len(t, rec.Requests(), len(reqs), "a refused call sends nothing")
}

func TestAcceptedDeliveriesSurviveTheDispatcher(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock()
	q := NewMemoryQueue(QueueLimits{})
	r := newTestRegistry()
	mustCreate(t, r, Webhook{URL: "https://example.com/a", Events: []string{"Task.Create"}})
	b := mustCreate(t, r, Webhook{URL: "https://example.com/b", Events: []string{"Task.Update"}})
	hang := transportFunc(func(ctx context.Context, req *Request) (*Response, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})
	first, err := NewDispatcher(r, Config{Transport: hang, Queue: q, Clock: clock, Logger: quietLogger()})
	require.NoError(t, err)
	require.NoError(t, first.Dispatch(ctx, Event{ID: "ev-1", Name: "Task.Create", Data: account}))
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	// Canceled if the attempt had started, which is up to the scheduler.
	if err := first.Close(cancelled); err != nil {
		require.ErrorIs(t, err, context.Canceled)
	}

	// Another process accepted ev-2, claimed it, and died holding the lease.
	require.NoError(t, q.Enqueue(ctx, &Delivery{ID: "crashed", WebhookID: b.ID, Target: r.byID[spaceID{"", b.ID}].key,
		EventIDs: []string{"ev-2"}, Body: []byte(`[]`), Created: clock.Now(), Due: clock.Now()}))
	claimed, err := q.Claim(ctx, clock.Now(), 10, DefaultLease, 1)
	require.NoError(t, err)
	require.Len(t, claimed, 2)
	for _, dl := range claimed {
		if dl.ID != "crashed" {
			_, err := q.Settle(ctx, clock.Now(), Outcome{Delivery: dl, Kind: Released}) // a's, as a closing Dispatcher leaves it
			require.NoError(t, err)
		}
	}

	rec := &Recorder{}
	obs, attempts := observed()
	newTestDispatcher(t, r, Config{Transport: rec, Queue: q, Clock: clock, Observer: obs})
	got := nextAttempt(t, attempts)
	require.NoError(t, got.Err)
	require.Equal(t, []string{"ev-1"}, got.EventIDs, "the next Dispatcher delivers what the closed one accepted")
	clock.Advance(DefaultLease)
	got = nextAttempt(t, attempts)
	require.NoError(t, got.Err)
	require.Equal(t, "crashed", got.DeliveryID, "and what a crashed one held, once its lease ran out")
	require.Len(t, rec.Requests(), 2)
}

// flakyQueue is a MemoryQueue whose Claim fails while down is set.
type flakyQueue struct {
	*MemoryQueue
	down atomic.Bool
}

func (q *flakyQueue) Claim(ctx context.Context, now time.Time, max int, lease time.Duration, perTarget int) ([]*Delivery, error) {
	if q.down.Load() {
		return nil, fmt.Errorf("database unreachable")
	}
	return q.MemoryQueue.Claim(ctx, now, max, lease, perTarget)
}

// settleFailing is a MemoryQueue whose Settle fails its first fails calls.
type settleFailing struct {
	*MemoryQueue
	fails atomic.Int32
}

func (q *settleFailing) Settle(ctx context.Context, now time.Time, outcomes ...Outcome) ([]Health, error) {
	if q.fails.Add(-1) >= 0 {
		return nil, fmt.Errorf("database unreachable")
	}
	return q.MemoryQueue.Settle(ctx, now, outcomes...)
}

func TestAnOutcomeTheQueueFailsToRecordIsRecordedLater(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock()
	q := &settleFailing{MemoryQueue: NewMemoryQueue(QueueLimits{})}
	q.fails.Store(2)
	r := newTestRegistry()
	mustCreate(t, r, Webhook{URL: "https://example.com/h", Events: []string{"*"}})
	rec := &Recorder{}
	d := newTestDispatcher(t, r, Config{Transport: rec, Queue: q, Clock: clock, Logger: quietLogger(), PollInterval: time.Second})
	require.NoError(t, d.Dispatch(ctx, Event{Name: "Task.Create", Data: account}))
	flushed := make(chan error, 1)
	go func() { flushed <- d.Flush(ctx) }()
	// The recorder tries again every poll interval of the fake clock.
	require.NoError(t, advanceUntil(t, clock, flushed), "Flush returns once the outcome is recorded")
	reqs := rec.Requests()
	require.Len(t, reqs, 1, "sent once: the outcome was not lost")
	items := decodeItems(t, reqs[0].Body)
	require.Len(t, items, 1)
	require.JSONEq(t, string(account), string(items[0].Entity), "the record, at the receiver")
	waitSettled(t, q.MemoryQueue)
	id := reqs[0].Header.Get(HeaderID) // the delivery's
	require.NotEmpty(t, id)
	pending, err := q.Pending(ctx, id)
	require.NoError(t, err)
	require.Empty(t, pending, "recorded delivered")
}

// TestAFailedSettleIsNotTriedPastHalfTheLease: the lease counts from the
// Claim, not from the end of the attempt; once half of it has passed, an
// outcome the Queue failed to record is left to the lease's end rather
// than recorded over what another process may have done since.
func TestAFailedSettleIsNotTriedPastHalfTheLease(t *testing.T) {
	clock := newFakeClock()
	q := &settleFailing{MemoryQueue: NewMemoryQueue(QueueLimits{})}
	now := clock.Now()
	require.NoError(t, q.Enqueue(context.Background(), &Delivery{ID: "d1", WebhookID: "w", Target: "t", Created: now, Due: now}))
	claimed, err := q.Claim(context.Background(), now, 1, time.Minute, 1)
	require.NoError(t, err)
	require.Len(t, claimed, 1)
	// Started once the test holds the lease: its scheduler would claim d1.
	d := newTestDispatcher(t, newTestRegistry(), Config{Queue: q, Clock: clock, Logger: quietLogger(), Lease: time.Minute, PollInterval: time.Second})
	outcome := Outcome{Delivery: claimed[0], Kind: Delivered}
	// When the Dispatcher would have claimed it, as its claims note.
	claimedAt := func(at time.Time) {
		d.mu.Lock()
		d.busy["d1"] = at
		d.mu.Unlock()
	}

	q.fails.Store(1)
	claimedAt(now.Add(-30 * time.Second))
	_, err = d.recordOutcomes(now, []Outcome{outcome})
	require.Error(t, err, "claimed half a lease ago: given up at once")
	require.Zero(t, q.fails.Load(), "one Settle, not tried again")

	q.fails.Store(1)
	claimedAt(now.Add(-time.Second))
	done := make(chan error, 1)
	go func() {
		_, err := d.recordOutcomes(now, []Outcome{outcome})
		done <- err
	}()
	require.NoError(t, advanceUntil(t, clock, done), "claimed a second ago: tried again, and recorded")
	pending, err := q.Pending(context.Background(), "d1")
	require.NoError(t, err)
	require.Empty(t, pending, "recorded delivered")
}

func TestAFailingQueueIsTriedAgain(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock()
	q := &flakyQueue{MemoryQueue: NewMemoryQueue(QueueLimits{})}
	q.down.Store(true)
	r := newTestRegistry()
	mustCreate(t, r, Webhook{URL: "https://example.com/h", Events: []string{"*"}})
	var logs syncBuffer
	obs, attempts := observed()
	d := newTestDispatcher(t, r, Config{Transport: &Recorder{}, Queue: q, Clock: clock, Observer: obs,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	require.NoError(t, d.Dispatch(ctx, Event{Name: "Task.Create", Data: account}), "Enqueue works")
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(logs.String(), "database unreachable"); runtime.Gosched() {
		require.True(t, time.Now().Before(deadline), "the Claim error was not logged")
	}
	q.down.Store(false)
	clock.Advance(time.Second)
	require.NoError(t, nextAttempt(t, attempts).Err, "delivered once the Queue answers again")
}

func TestDeliveryStateIsForgottenWhenThereIsNothingToRemember(t *testing.T) {
	ctx := context.Background()
	r := newTestRegistry()
	var failing []Webhook
	for i := range 50 {
		w := mustCreate(t, r, Webhook{URL: fmt.Sprintf("https://example.com/%d", i), Events: []string{"*"}})
		if i%2 == 1 {
			failing = append(failing, w)
		}
	}
	tr := transportFunc(func(ctx context.Context, req *Request) (*Response, error) {
		for _, w := range failing {
			if w.ID == req.WebhookID {
				return &Response{StatusCode: http.StatusInternalServerError}, nil
			}
		}
		return &Response{StatusCode: http.StatusOK}, nil
	})
	q := NewMemoryQueue(QueueLimits{})
	d := newTestDispatcher(t, r, Config{Transport: tr, Queue: q, Logger: quietLogger(), RetrySchedule: []time.Duration{}})
	targets := func() int {
		q.mu.Lock()
		defer q.mu.Unlock()
		return len(q.targets)
	}
	dispatch(t, d, Event{Name: "Task.Create", Data: account})
	require.Equal(t, len(failing), targets(), "only the failing registrations are remembered, to disable them in time")

	// Deleted, their deliveries, dead ones included, and their failures go.
	for _, w := range failing {
		require.NoError(t, r.Delete(ctx, "", w.ID))
	}
	dispatch(t, d, Event{Name: "Task.Update", Data: account})
	for deadline := time.Now().Add(10 * time.Second); targets() > 0; runtime.Gosched() {
		require.True(t, time.Now().Before(deadline), "%d targets remembered", targets())
	}
}

// slowEnqueue is a MemoryQueue whose Enqueue says it began, then waits
// for release.
type slowEnqueue struct {
	*MemoryQueue
	entered, release chan struct{}
}

func (q *slowEnqueue) Enqueue(ctx context.Context, ds ...*Delivery) error {
	q.entered <- struct{}{}
	<-q.release
	return q.MemoryQueue.Enqueue(ctx, ds...)
}

// TestFlushWaitsForADispatchWhoseEnqueueIsUnderWay: Flush asks the Queue
// every PollInterval which deliveries it still holds; one whose Enqueue
// has not returned yet is not there, and must not count as done.
func TestFlushWaitsForADispatchWhoseEnqueueIsUnderWay(t *testing.T) {
	ctx := context.Background()
	q := &slowEnqueue{MemoryQueue: NewMemoryQueue(QueueLimits{}), entered: make(chan struct{}), release: make(chan struct{})}
	rcv := newReceiver(t)
	r := newTestRegistry()
	mustCreate(t, r, Webhook{URL: rcv.URL + "/h", Events: []string{"*"}})
	d := newTestDispatcher(t, r, Config{Queue: q, PollInterval: time.Millisecond})
	var release sync.Once
	t.Cleanup(func() { release.Do(func() { close(q.release) }) }) // before Close, which waits for the Dispatch
	dispatched := make(chan error, 1)
	go func() {
		dispatched <- d.Dispatch(ctx, Event{Name: "Account.Create", Data: json.RawMessage(`{"id":"a1"}`)})
	}()
	<-q.entered
	flushed := make(chan error, 1)
	go func() { flushed <- d.Flush(ctx) }()
	select {
	case err := <-flushed:
		t.Fatalf("Flush returned (%v) while the Dispatch's Enqueue was under way", err)
	case <-time.After(100 * time.Millisecond): // a hundred PollIntervals
	}
	release.Do(func() { close(q.release) })
	require.NoError(t, <-dispatched)
	require.NoError(t, <-flushed)
	got := rcv.drain()
	require.Len(t, got, 1, "Flush returns once the delivery is sent")
	items := decodeItems(t, got[0].Body)
	require.Len(t, items, 1)
	require.JSONEq(t, `{"id":"a1"}`, string(items[0].Entity))
}

// advanceUntil moves clock on a second at a time until done yields, and
// returns what it yields; the real-time bound only stops a hung test.
func advanceUntil[T any](t *testing.T, clock *fakeClock, done <-chan T) T {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; clock.Advance(time.Second) {
		require.True(t, time.Now().Before(deadline), "nothing came while the clock moved on")
		select {
		case v := <-done:
			return v
		case <-time.After(time.Millisecond):
		}
	}
}
