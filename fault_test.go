package webhook

import (
	"context"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"
)

// faultyReceiver is a real receiver that fails on purpose, in one way per
// path. A delivery fails the first few times it arrives, a number fixed by
// its webhook-id, so that every run exercises every failure and every
// delivery gets through in the end.
type faultyReceiver struct {
	*httptest.Server
	internal string // where the redirects point

	mu       sync.Mutex
	seen     map[string]int            // times each delivery arrived
	received map[string]map[string]int // path -> event id -> times processed
}

// faults maps a path to how it fails and how many times at most.
var faults = map[string]int{
	"/ok":       0,
	"/500":      3,
	"/reset":    2,
	"/hang":     1,
	"/429":      3,
	"/redirect": 2,
	"/gone":     -1, // always
}

func newFaultyReceiver(t *testing.T, internal string) *faultyReceiver {
	f := &faultyReceiver{internal: internal, seen: map[string]int{}, received: map[string]map[string]int{}}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.Close)
	return f
}

func (f *faultyReceiver) serve(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return
	}
	id := req.Header.Get(HeaderID)
	h := fnv.New32a()
	io.WriteString(h, id)
	f.mu.Lock()
	f.seen[id]++
	n := f.seen[id]
	f.mu.Unlock()
	limit := faults[req.URL.Path]
	failing := limit < 0 || n <= int(h.Sum32()%uint32(limit+1))
	switch {
	case !failing:
		f.record(req.URL.Path, body)
	case req.URL.Path == "/500":
		w.WriteHeader(http.StatusInternalServerError)
	case req.URL.Path == "/429":
		w.Header().Set("Retry-After", "1") // more than MaxRetryAfter: the cap applies
		w.WriteHeader(http.StatusTooManyRequests)
	case req.URL.Path == "/redirect":
		http.Redirect(w, req, f.internal+"/steal", http.StatusTemporaryRedirect)
	case req.URL.Path == "/gone":
		w.WriteHeader(http.StatusGone)
	case req.URL.Path == "/reset":
		// Processed, then the connection is reset before the answer: the
		// sender cannot know, retries, and the receiver sees a duplicate.
		f.record(req.URL.Path, body)
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.(*net.TCPConn).SetLinger(0)
			conn.Close()
		}
	case req.URL.Path == "/hang":
		// Processed, then no answer until the sender has given up.
		f.record(req.URL.Path, body)
		<-req.Context().Done()
	}
}

func (f *faultyReceiver) record(path string, body []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := f.received[path]
	if m == nil {
		m = map[string]int{}
		f.received[path] = m
	}
	gjson.ParseBytes(body).ForEach(func(_, item gjson.Result) bool {
		m[item.Get("entity.id").Str]++
		return true
	})
}

func TestFaultInjection(t *testing.T) {
	const events = 10_000
	if testing.Short() {
		t.Skip("the fault-injection suite takes a few seconds")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// The internal service listens on 127.0.0.2, which the policy refuses.
	var stolen atomic.Int64
	internal := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { stolen.Add(1) }))
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	require.NoError(t, err)
	internal.Listener.Close()
	internal.Listener = ln
	internal.Start()
	t.Cleanup(internal.Close)
	rcv := newFaultyReceiver(t, internal.URL)

	policy := AddressPolicy{AllowedPrefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}
	r := newRegistry(RegistryConfig{Addresses: policy})
	_, err = r.Create(ctx, "", Webhook{URL: internal.URL + "/steal", Events: []string{"*"}})
	require.ErrorIs(t, err, ErrRefusedAddress, "the internal address cannot even be registered")
	hooks := map[string]Webhook{}
	for path := range faults {
		hooks[path] = mustCreate(t, r, Webhook{URL: rcv.URL + path, Events: []string{"Task.*"}, Signature: testSignature})
	}

	// The timeout is what a hang costs; it leaves a loaded machine, with
	// the race detector on, time to answer the rest.
	tr := NewHTTPTransport(HTTPConfig{AddressPolicy: policy, Timeout: 250 * time.Millisecond})
	t.Cleanup(func() { tr.Close() })
	var attempts, dead atomic.Int64
	var deliveries sync.Map
	d := newTestDispatcher(t, r, Config{Transport: tr, Logger: quietLogger(), MaxInFlight: 4,
		// Enough retries that no live delivery dies, however slow a
		// machine makes an answer.
		RetrySchedule: slices.Repeat([]time.Duration{time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond}, 5),
		MaxRetryAfter: 10 * time.Millisecond,
		Observer: func(a Attempt) {
			attempts.Add(1)
			deliveries.Store(a.DeliveryID, true)
			if a.Dead {
				dead.Add(1)
			}
		}})

	start := time.Now()
	batch := make([]Event, 0, 500)
	for i := range events {
		batch = append(batch, Event{ID: fmt.Sprint(i), Name: "Task.Update", Data: []byte(fmt.Sprintf(`{"id":"%d","name":"task %d"}`, i, i))})
		if len(batch) == cap(batch) {
			require.NoError(t, d.Dispatch(ctx, batch...))
			batch = batch[:0]
		}
	}
	require.NoError(t, d.Flush(ctx))
	elapsed := time.Since(start)

	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	items, duplicates := 0, 0
	for path := range faults {
		if path == "/gone" {
			continue
		}
		got := rcv.received[path]
		require.Len(t, got, events, "every item reaches %s at least once", path)
		for i := range events {
			n := got[fmt.Sprint(i)]
			require.GreaterOrEqual(t, n, 1, "item %d at %s", i, path)
			items += n
			duplicates += n - 1
		}
	}
	require.Empty(t, rcv.received["/gone"])
	gone, err := r.Get(ctx, "", hooks["/gone"].ID)
	require.NoError(t, err)
	require.NotNil(t, gone.Disabled, "the 410 receiver is disabled")
	goneDead, err := d.Dead(ctx, "", gone.ID)
	require.NoError(t, err)
	// Deliveries accepted before it was disabled are kept, dead, for a
	// replay; later events no longer match it.
	require.NotEmpty(t, goneDead)
	require.Equal(t, int64(len(goneDead)), dead.Load(), "no live registration has a dead delivery")
	goneRequests := 0
	for id, n := range rcv.seen {
		if slices.ContainsFunc(goneDead, func(dl *Delivery) bool { return dl.ID == id }) {
			goneRequests += n
		}
	}
	require.LessOrEqual(t, goneRequests, 4, "after the first 410, at most the requests already in flight")
	require.Zero(t, stolen.Load(), "nothing reaches the internal address")
	for path := range faults {
		if path != "/gone" {
			h, err := r.Get(ctx, "", hooks[path].ID)
			require.NoError(t, err)
			require.Nil(t, h.Disabled, path)
		}
	}
	n := 0
	deliveries.Range(func(any, any) bool { n++; return true })
	t.Logf("%d events, %d live registrations: %d items received, %d of them duplicates (%.1f%%); %d deliveries, %d attempts, %d dead (the 410's); %v",
		events, len(faults)-1, items, duplicates, 100*float64(duplicates)/float64(items), n, attempts.Load(), dead.Load(), elapsed.Round(time.Millisecond))
}
