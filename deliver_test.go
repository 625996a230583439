package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestDispatchWithoutSignatureSendsNoSignatureHeader(t *testing.T) {
	rcv := newReceiver(t)
	r := newTestRegistry()
	mustCreate(t, r, Webhook{URL: rcv.URL, Events: []string{"*"}})
	d := newTestDispatcher(t, r, Config{})
	dispatch(t, d, Event{Name: "Lead.Lost", Data: account, Time: time.Date(2026, 1, 2, 3, 4, 5, 6000, time.FixedZone("CET", 3600))})
	req := rcv.next(t)
	require.Empty(t, req.Header.Values(HeaderSignature))
	items := decodeItems(t, req.Body)
	require.Equal(t, "2026-01-02T02:04:05.000006Z", items[0].EventTime, "an event's own time, in UTC")
	require.Equal(t, "", items[0].TeamSpaceID)
}

func TestDispatchRefusesBadEventsWithoutDeliveringAny(t *testing.T) {
	ctx := context.Background()
	rcv := newReceiver(t)
	r := newTestRegistry()
	mustCreate(t, r, Webhook{URL: rcv.URL, Events: []string{"*"}})
	d := newTestDispatcher(t, r, Config{})

	tests := []struct {
		name  string
		bad   Event
		field string
	}{
		{"an unknown event name", Event{Name: "Account.Explode", Data: account}, "name"},
		{"data that is not an object", Event{Name: "Account.Update", Data: json.RawMessage(`"a1"`)}, "data"},
		{"a custom entity event without its API name", Event{Name: "CustomEntity.Create", Data: account}, "custom_entity"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			good := Event{ID: "ev-1", Name: "Account.Create", Data: account}
			tt.bad.ID = "ev-2"
			err := d.Dispatch(ctx, good, tt.bad)
			requireFieldError(t, err, tt.field)
			require.Contains(t, err.Error(), "event 1 ev-2", "the error names the event")
			require.NoError(t, d.Flush(ctx))
			require.Empty(t, rcv.drain(), "a refused call delivers nothing")
		})
	}

	// Fixed, the same call goes out once.
	dispatch(t, d, Event{ID: "ev-1", Name: "Account.Create", Data: account}, Event{ID: "ev-2", Name: "Account.Update", Data: account})
	reqs := rcv.drain()
	require.Len(t, reqs, 1)
	require.Len(t, decodeItems(t, reqs[0].Body), 2)
}

func TestDispatchDropsWaitingChunksOfADeletedRegistration(t *testing.T) {
	ctx := context.Background()
	rcv := newReceiver(t)
	clock := newFakeClock()
	r := newTestRegistry()
	w := mustCreate(t, r, Webhook{URL: rcv.URL, Events: []string{"*"}, Options: Options{ChunkSize: 1, ChunkDelay: 60}})
	var got attempts
	d := newTestDispatcher(t, r, Config{Clock: clock, Observer: got.add})
	require.NoError(t, d.Dispatch(ctx, Event{Name: "Task.Create", Data: account}, Event{Name: "Task.Update", Data: account}))
	require.Equal(t, "Task.Create", decodeItems(t, rcv.next(t).Body)[0].Event, "chunk 0 goes at once")

	require.NoError(t, r.Delete(ctx, "", w.ID))
	clock.Advance(time.Minute)
	require.NoError(t, d.Flush(ctx))
	require.Empty(t, rcv.drain(), "chunk 1 of a deleted registration is not sent")
	require.Len(t, got.list(), 1, "chunk 0's attempt only")
	require.Empty(t, got.failed(), "chunk 1 is not reported as a failure: nobody is waiting for it")
}

func TestDispatchReportsFailedDeliveries(t *testing.T) {
	ok := newReceiver(t)
	failing := newReceiver(t)
	failing.status.Store(http.StatusInternalServerError)
	target := newReceiver(t)
	redirect := httptest.NewServer(http.RedirectHandler(target.URL, http.StatusFound))
	t.Cleanup(redirect.Close)
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close() // nothing listens there any more

	r := newTestRegistry()
	okHook := mustCreate(t, r, Webhook{URL: ok.URL, Events: []string{"*"}})
	failHook := mustCreate(t, r, Webhook{URL: failing.URL, Events: []string{"*"}})
	redirHook := mustCreate(t, r, Webhook{URL: redirect.URL, Events: []string{"*"}})
	goneHook := mustCreate(t, r, Webhook{URL: gone.URL, Events: []string{"*"}})
	var got attempts
	d := newTestDispatcher(t, r, Config{Observer: got.add, Logger: quietLogger(), RetrySchedule: []time.Duration{}})

	dispatch(t, d, Event{ID: "ev-1", Name: "Account.Create", Data: account})
	require.Len(t, ok.drain(), 1, "one failing receiver does not stop the others")
	require.Len(t, failing.drain(), 1)
	require.Empty(t, target.drain(), "redirects are not followed")

	byHook := map[string]Attempt{}
	for _, a := range got.list() {
		byHook[a.WebhookID] = a
	}
	require.Len(t, byHook, 4)
	require.NoError(t, byHook[okHook.ID].Err)
	require.Equal(t, http.StatusOK, byHook[okHook.ID].StatusCode)
	require.Equal(t, http.StatusInternalServerError, byHook[failHook.ID].StatusCode)
	require.Equal(t, []string{"ev-1"}, byHook[failHook.ID].EventIDs)
	require.Equal(t, failing.URL, byHook[failHook.ID].URL)
	require.Equal(t, http.StatusFound, byHook[redirHook.ID].StatusCode)
	require.Error(t, byHook[redirHook.ID].Err, "a 3xx is a failure")
	require.Equal(t, 0, byHook[goneHook.ID].StatusCode)
	require.Error(t, byHook[goneHook.ID].Err)
	for _, id := range []string{failHook.ID, redirHook.ID, goneHook.ID} {
		require.True(t, byHook[id].Dead, "without retries a failed delivery is dead at once")
		require.Equal(t, 1, byHook[id].Attempt)
	}
}

func TestDispatchLogsFailuresThroughSlog(t *testing.T) {
	failing := newReceiver(t)
	failing.status.Store(http.StatusServiceUnavailable)
	r := newTestRegistry()
	hook := mustCreate(t, r, Webhook{URL: failing.URL, Events: []string{"*"}})
	var buf syncBuffer
	d := newTestDispatcher(t, r, Config{Logger: slog.New(slog.NewTextHandler(&buf, nil)), RetrySchedule: []time.Duration{}})
	dispatch(t, d, Event{Name: "Account.Create", Data: account})
	line := buf.String()
	require.Contains(t, line, "level=WARN")
	require.Contains(t, line, "webhook_id="+hook.ID)
	require.Contains(t, line, "status=503")
}

type syncBuffer struct {
	mu sync.Mutex
	sb strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sb.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sb.String()
}

// blockingReceiver holds every request until release is closed.
func blockingReceiver(t *testing.T) (srv *httptest.Server, entered chan struct{}, release chan struct{}) {
	entered, release = make(chan struct{}, 100), make(chan struct{})
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Reading the body lets the server notice a client that hangs up.
		io.Copy(io.Discard, r.Body)
		entered <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	return srv, entered, release
}

func TestDispatchSlowReceiverHoldsUpOnlyItself(t *testing.T) {
	slow, entered, release := blockingReceiver(t)
	fast := newReceiver(t)
	r := newTestRegistry()
	mustCreate(t, r, Webhook{URL: slow.URL, Events: []string{"*"}})
	mustCreate(t, r, Webhook{URL: fast.URL, Events: []string{"*"}})
	d := newTestDispatcher(t, r, Config{})
	ctx := context.Background()

	require.NoError(t, d.Dispatch(ctx, Event{Name: "Account.Create", Data: account}))
	<-entered
	require.NoError(t, d.Dispatch(ctx, Event{Name: "Account.Update", Data: account}))
	// Both calls reach the fast receiver while the slow one holds the first.
	require.Equal(t, "Account.Create", decodeItems(t, fast.next(t).Body)[0].Event)
	require.Equal(t, "Account.Update", decodeItems(t, fast.next(t).Body)[0].Event)
	close(release)
	require.NoError(t, d.Flush(ctx))
}

func TestCloseLetsInFlightFinishKeepsPendingAndLeavesNoGoroutine(t *testing.T) {
	ctx := context.Background()
	slow, entered, release := blockingReceiver(t)
	clock := newFakeClock()
	q := NewMemoryQueue(QueueLimits{})
	r := newTestRegistry()
	mustCreate(t, r, Webhook{URL: slow.URL, Events: []string{"*"}, Options: Options{ChunkSize: 1, ChunkDelay: 10}})
	tr := NewHTTPTransport(HTTPConfig{AddressPolicy: loopback})
	t.Cleanup(func() { tr.Close() })
	var got attempts
	// Taken after the receivers started: what goleak reports is the Dispatcher's.
	ignore := goleak.IgnoreCurrent()
	d, err := NewDispatcher(r, Config{Clock: clock, Queue: q, Transport: tr, Observer: got.add})
	require.NoError(t, err)
	require.NoError(t, d.Dispatch(ctx, Event{ID: "now", Name: "Task.Create", Data: account},
		Event{ID: "later", Name: "Task.Update", Data: account}))
	<-entered

	closed := make(chan error, 1)
	go func() { closed <- d.Close(ctx) }()
	require.ErrorIs(t, waitClosed(d, ctx), ErrClosed, "Close stops intake at once")
	close(release)
	require.NoError(t, <-closed)
	tr.Close()
	goleak.VerifyNone(t, ignore)

	a := got.list()
	require.Len(t, a, 1)
	require.NoError(t, a[0].Err, "the request in flight finished")
	require.Equal(t, []string{"now"}, a[0].EventIDs)
	// The delayed chunk was not due: it stays in the Queue, as it was.
	pending, err := q.Claim(ctx, clock.Now().Add(10*time.Second), 10, time.Minute, 1)
	require.NoError(t, err)
	require.Len(t, pending, 1)
	require.Equal(t, []string{"later"}, pending[0].EventIDs)
	require.Zero(t, pending[0].Attempts)
	require.Zero(t, clock.armed(), "no timer is left either")
}

// waitClosed dispatches until d refuses; Close sets the flag first thing,
// so the loop ends as soon as Close has started.
func waitClosed(d *Dispatcher, ctx context.Context) error {
	for {
		d.mu.Lock()
		closed := d.closed
		d.mu.Unlock()
		if closed {
			return d.Dispatch(ctx, Event{Name: "Task.Create", Data: account})
		}
		runtime.Gosched()
	}
}

func TestCloseCancelsInFlightWhenItsContextEnds(t *testing.T) {
	slow, entered, _ := blockingReceiver(t)
	clock := newFakeClock()
	q := NewMemoryQueue(QueueLimits{})
	r := newTestRegistry()
	mustCreate(t, r, Webhook{URL: slow.URL, Events: []string{"*"}})
	tr := NewHTTPTransport(HTTPConfig{AddressPolicy: loopback})
	t.Cleanup(func() { tr.Close() })
	var got attempts
	ignore := goleak.IgnoreCurrent()
	d, err := NewDispatcher(r, Config{Clock: clock, Queue: q, Transport: tr, Observer: got.add, Logger: quietLogger()})
	require.NoError(t, err)
	require.NoError(t, d.Dispatch(context.Background(), Event{ID: "stuck", Name: "Task.Create", Data: account}))
	<-entered

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, d.Close(ctx), context.Canceled)
	tr.Close()
	goleak.VerifyNone(t, ignore)

	a := got.list()
	require.Len(t, a, 1)
	require.ErrorIs(t, a[0].Err, ErrClosed)
	require.False(t, a[0].Dead)
	// Nothing accepted is lost: the cancelled attempt does not count, and
	// the delivery waits in the Queue for the next Dispatcher.
	pending, err := q.Claim(context.Background(), clock.Now(), 10, time.Minute, 1)
	require.NoError(t, err)
	require.Len(t, pending, 1)
	require.Equal(t, []string{"stuck"}, pending[0].EventIDs)
	require.Zero(t, pending[0].Attempts)
	require.ErrorIs(t, d.Dispatch(context.Background(), Event{Name: "Task.Create", Data: account}), ErrClosed)
	require.NoError(t, d.Close(context.Background()), "a second Close is harmless")
}

type transportFunc func(ctx context.Context, req *Request) (*Response, error)

func (f transportFunc) Send(ctx context.Context, req *Request) (*Response, error) { return f(ctx, req) }

func TestDispatchIsSafeForSimultaneousUse(t *testing.T) {
	rec := &Recorder{}
	r := newTestRegistry()
	for i := range 5 {
		mustCreate(t, r, Webhook{URL: fmt.Sprintf("https://example.com/%d", i), Events: []string{"Account.*"}, Options: Options{ChunkSize: 3}})
	}
	d := newTestDispatcher(t, r, Config{Transport: rec})
	ctx := context.Background()
	var wg sync.WaitGroup
	for g := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				e := Event{ID: fmt.Sprintf("%d-%d", g, i), Name: "Account.Update", Data: account}
				if err := d.Dispatch(ctx, e, e); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	require.NoError(t, d.Flush(ctx))
	// 200 calls of 2 items each reach each of 5 registrations, one request a call.
	require.Len(t, rec.Requests(), 5*200)
	for _, req := range rec.Requests() {
		require.Equal(t, []string{req.EventIDs[0], req.EventIDs[0]}, req.EventIDs)
	}
}

func TestDispatchAssignsEventIDs(t *testing.T) {
	rec := &Recorder{}
	r := newTestRegistry()
	mustCreate(t, r, Webhook{URL: "https://example.com/h", Events: []string{"*"}})
	d := newTestDispatcher(t, r, Config{Transport: rec})
	dispatch(t, d, Event{Name: "Task.Create", Data: account}, Event{ID: "mine", Name: "Task.Create", Data: account})
	ids := rec.Requests()[0].EventIDs
	require.Len(t, ids, 2)
	require.True(t, isUUID(ids[0]), "assigned id %q", ids[0])
	require.Equal(t, "mine", ids[1])
}

func TestDispatchKeepsNoReferenceToTheCallersBuffers(t *testing.T) {
	rec := &Recorder{}
	clock := newFakeClock()
	r := newTestRegistry()
	mustCreate(t, r, Webhook{URL: "https://example.com/h", Events: []string{"*"}, Options: Options{ChunkSize: 1, ChunkDelay: 1}})
	d := newTestDispatcher(t, r, Config{Transport: rec, Clock: clock})
	buf := []byte(`{"id":"a1"}`)
	ctx := context.Background()
	require.NoError(t, d.Dispatch(ctx, Event{Name: "Task.Create", Data: account}, Event{Name: "Task.Create", Data: buf}))
	copy(buf, `{"id":"XX"}`) // the host reuses its buffer
	clock.Advance(time.Second)
	require.NoError(t, d.Flush(ctx))
	reqs := rec.Requests()
	require.Len(t, reqs, 2)
	require.JSONEq(t, `{"id":"a1"}`, string(decodeItems(t, reqs[1].Body)[0].Entity))
}

func TestNewDispatcherRefusesABadConfig(t *testing.T) {
	_, err := NewDispatcher(nil, Config{})
	requireFieldError(t, err, "registry")
	_, err = NewDispatcher(newTestRegistry(), Config{RetrySchedule: []time.Duration{time.Second, -time.Second}})
	requireFieldError(t, err, "retry_schedule[1]")
	_, err = NewDispatcher(newTestRegistry(), Config{Signature: StandardSignature + 1})
	requireFieldError(t, err, "signature")
}

func TestDispatchSurvivesAPanickingTransport(t *testing.T) {
	rec := &Recorder{}
	r := newTestRegistry()
	bad := mustCreate(t, r, Webhook{URL: "https://panic.example/", Events: []string{"*"}})
	mustCreate(t, r, Webhook{URL: "https://fine.example/", Events: []string{"*"}})
	var got attempts
	tr := transportFunc(func(ctx context.Context, req *Request) (*Response, error) {
		if req.WebhookID == bad.ID {
			panic("host bug")
		}
		return rec.Send(ctx, req)
	})
	d := newTestDispatcher(t, r, Config{Transport: tr, Observer: got.add, Logger: quietLogger(), RetrySchedule: []time.Duration{}})
	dispatch(t, d, Event{Name: "Account.Create", Data: account})
	require.Len(t, rec.Requests(), 1)
	failed := got.failed()
	require.Len(t, failed, 1)
	require.Equal(t, bad.ID, failed[0].WebhookID)
	require.ErrorContains(t, failed[0].Err, "panic: host bug")
}

// BenchmarkDeliveryAttempt measures what one attempt costs beside the POST
// it wraps: the headers, the signature, the registration lookup and the
// Queue's bookkeeping (enqueue, claim, ack). "raw-client" is a bare
// http.Client POST of the same body to the same keep-alive receiver;
// "attempt-discard" is the attempt with a Transport that does nothing, so
// its figure is the overhead alone.
func BenchmarkDeliveryAttempt(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
	}))
	b.Cleanup(srv.Close)
	body := []byte(`[` + strings.Repeat(`{"event":"Contact.Update","entity":{"id":"c1","name":"`+strings.Repeat("x", 900)+`"}},`, 15) +
		`{"event":"Contact.Update","entity":{"id":"c1"}}]`)

	b.Run("raw-client", func(b *testing.B) {
		client := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
		b.Cleanup(client.CloseIdleConnections)
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			resp, err := client.Post(srv.URL, "application/json", bytes.NewReader(body))
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
	attempt := func(b *testing.B, tr Transport, format SignatureFormat) {
		ctx := context.Background()
		r := newTestRegistry()
		hook := mustCreate(b, r, Webhook{URL: srv.URL, Events: []string{"*"}, Signature: testSignature})
		q := NewMemoryQueue(QueueLimits{})
		d := newTestDispatcher(b, r, Config{Transport: tr, Queue: q, Signature: format})
		dl := &Delivery{ID: newUUID(), WebhookID: hook.ID, Target: r.byID[spaceID{"", hook.ID}].key, EventIDs: []string{"ev-1"}, Body: body}
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			// Nothing pokes the Dispatcher's scheduler here: the claim is
			// the benchmark's own.
			if err := q.Enqueue(ctx, dl); err != nil {
				b.Fatal(err)
			}
			claimed, err := q.Claim(ctx, time.Now(), 1, DefaultLease, 1)
			if err != nil || len(claimed) != 1 {
				b.Fatal(err, len(claimed))
			}
			f := d.attempt(claimed[0])
			if _, err := q.Settle(ctx, time.Now(), f.outcome); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("attempt-http", func(b *testing.B) {
		tr := NewHTTPTransport(HTTPConfig{AddressPolicy: loopback})
		b.Cleanup(func() { tr.Close() })
		attempt(b, tr, PipelinerSignature)
	})
	discard := transportFunc(func(context.Context, *Request) (*Response, error) { return &Response{StatusCode: http.StatusOK}, nil })
	b.Run("attempt-discard", func(b *testing.B) { attempt(b, discard, PipelinerSignature) })
	b.Run("attempt-discard-standard", func(b *testing.B) { attempt(b, discard, StandardSignature) })
}

func TestCanonicalHeaderNames(t *testing.T) {
	for name, canonical := range map[string]string{HeaderID: canonicalID, HeaderTimestamp: canonicalTimestamp, HeaderSignature: canonicalSignature} {
		require.Equal(t, http.CanonicalHeaderKey(name), canonical)
	}
}
