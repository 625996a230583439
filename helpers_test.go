package webhook

import (
	"context"
	"encoding/json"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"
)

// Shared by the tests of every file: a real receiver, a fake clock, and
// short ways to register and dispatch.

// received is one request as a receiver saw it.
type received struct {
	Method string
	Path   string
	Header http.Header
	Body   []byte
}

// receiver is a real HTTP(S) server that keeps every request it gets and
// answers with status (200 unless set).
type receiver struct {
	*httptest.Server
	reqs   chan received
	status atomic.Int32
}

func newReceiver(t testing.TB) *receiver { return startReceiver(t, false) }

// newTLSReceiver serves HTTPS with a certificate that only its Client trusts.
func newTLSReceiver(t testing.TB) *receiver { return startReceiver(t, true) }

func startReceiver(t testing.TB, tls bool) *receiver {
	r := &receiver{reqs: make(chan received, 1000)}
	r.status.Store(http.StatusOK)
	r.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.reqs <- received{Method: req.Method, Path: req.URL.Path, Header: req.Header.Clone(), Body: body}
		w.WriteHeader(int(r.status.Load()))
	}))
	// Refused handshakes are what some tests expect; keep them out of the output.
	r.Config.ErrorLog = log.New(io.Discard, "", 0)
	if tls {
		r.StartTLS()
	} else {
		r.Start()
	}
	t.Cleanup(r.Close)
	return r
}

// next returns the next request; the timeout only stops a hung test.
func (r *receiver) next(t testing.TB) received {
	t.Helper()
	select {
	case req := <-r.reqs:
		return req
	case <-time.After(10 * time.Second):
		t.Fatal("the receiver got no request")
		return received{}
	}
}

// drain returns the requests already received, without waiting: after a
// Flush every request that was sent is here.
func (r *receiver) drain() []received {
	var out []received
	for {
		select {
		case req := <-r.reqs:
			out = append(out, req)
		default:
			return out
		}
	}
}

// item is one element of a request body, as a receiver decodes it.
type item struct {
	Webhook       json.RawMessage `json:"webhook"`
	Event         string          `json:"event"`
	EventTime     string          `json:"event_time"`
	TeamSpaceID   string          `json:"team_space_id"`
	Entity        json.RawMessage `json:"entity"`
	RelatedEntity json.RawMessage `json:"related_entity"`
}

func decodeItems(t testing.TB, body []byte) []item {
	t.Helper()
	var items []item
	require.NoError(t, json.Unmarshal(body, &items), "body: %s", body)
	return items
}

// fakeClock is a Clock whose time moves only when a test advances it.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	at   time.Time
	f    func()
	done bool // fired or stopped
}

func newFakeClock() *fakeClock {
	return clockAt(time.Date(2026, 11, 26, 10, 15, 0, 123456000, time.UTC))
}

// clockAt returns a fake clock that reads t until a test advances it.
func clockAt(t time.Time) *fakeClock { return &fakeClock{now: t} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		if t.done {
			return false
		}
		t.done = true
		return true
	}
}

// Advance moves the time on by d and runs, in order, the timers that came
// due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var due []*fakeTimer
	for _, t := range c.timers {
		if !t.done && !t.at.After(c.now) {
			t.done = true
			due = append(due, t)
		}
	}
	c.mu.Unlock()
	sort.SliceStable(due, func(i, j int) bool { return due[i].at.Before(due[j].at) })
	for _, t := range due {
		t.f()
	}
}

// armed counts the timers that have neither fired nor been stopped.
func (c *fakeClock) armed() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, t := range c.timers {
		if !t.done {
			n++
		}
	}
	return n
}

// mustCreate creates w in w.Space.
func mustCreate(t testing.TB, r *Registry, w Webhook) Webhook {
	t.Helper()
	got, err := r.Create(context.Background(), w.Space, w)
	require.NoError(t, err)
	return got
}

// loopback lets tests register and reach their httptest receivers, which
// listen on 127.0.0.1; every other refused address stays refused.
var loopback = AddressPolicy{AllowedPrefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}

// newTestRegistry returns a Registry that accepts the URLs of httptest
// receivers.
func newTestRegistry() *Registry { return newRegistry(RegistryConfig{Addresses: loopback}) }

// newRegistry returns a Registry without a Store, which NewRegistry
// cannot refuse but for cfg.Events.
func newRegistry(cfg RegistryConfig) *Registry {
	r, err := NewRegistry(context.Background(), cfg)
	if err != nil {
		panic(err)
	}
	return r
}

// newTestDispatcher returns a Dispatcher that is closed when the test ends.
// Without a Transport in cfg it gets the default one, allowed to reach the
// test's receivers.
func newTestDispatcher(t testing.TB, r *Registry, cfg Config) *Dispatcher {
	t.Helper()
	if cfg.Transport == nil {
		tr := NewHTTPTransport(HTTPConfig{AddressPolicy: loopback})
		t.Cleanup(func() { tr.Close() })
		cfg.Transport = tr
	}
	d, err := NewDispatcher(r, cfg)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, d.Close(ctx))
	})
	return d
}

// dispatch hands events to d and waits until they are delivered.
func dispatch(t testing.TB, d *Dispatcher, events ...Event) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, d.Dispatch(ctx, events...))
	require.NoError(t, d.Flush(ctx))
}

// waitSettled waits until q has no leased delivery: the Dispatcher has
// recorded the outcome of every attempt it made.
func waitSettled(t testing.TB, q *MemoryQueue) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; runtime.Gosched() {
		q.mu.Lock()
		n := len(q.leases)
		q.mu.Unlock()
		if n == 0 {
			return
		}
		require.True(t, time.Now().Before(deadline), "%d deliveries still leased", n)
	}
}

// matchURLs returns the URLs of the registrations e fires, in order.
func matchURLs(t testing.TB, m *Matcher, e Event) []string {
	t.Helper()
	hooks, err := m.Match(e)
	require.NoError(t, err)
	urls := []string{}
	for _, h := range hooks {
		urls = append(urls, h.URL)
	}
	return urls
}

// attempts collects what Config.Observer sees.
type attempts struct {
	mu  sync.Mutex
	all []Attempt
}

func (o *attempts) add(a Attempt) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.all = append(o.all, a)
}

func (o *attempts) list() []Attempt {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]Attempt(nil), o.all...)
}

// failed returns the attempts that failed.
func (o *attempts) failed() []Attempt {
	var out []Attempt
	for _, a := range o.list() {
		if a.Err != nil {
			out = append(out, a)
		}
	}
	return out
}

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func TestDispatchDeliversSignedPayloadToReceiver(t *testing.T) {
	rcv := newReceiver(t)
	clock := newFakeClock()
	r := newTestRegistry()
	hook := mustCreate(t, r, Webhook{Space: "team-1", URL: rcv.URL + "/hooks/crm?tenant=1", Events: []string{"Account.Create"},
		Signature: testSignature})
	d := newTestDispatcher(t, r, Config{Clock: clock})

	data := `{"id": "a1", "name": "Acme \u00e9", "value": 1.50}`
	dispatch(t, d, Event{Space: "team-1", Name: "Account.Create", Data: json.RawMessage(data)})

	req := rcv.next(t)
	require.Equal(t, http.MethodPost, req.Method)
	require.Equal(t, "/hooks/crm", req.Path)
	require.Equal(t, "application/json", req.Header.Get("Content-Type"))
	require.NoError(t, VerifySignature(testSignature, req.Body, req.Header.Get(HeaderSignature)))
	require.Equal(t, Sign(testSignature, req.Body), req.Header.Get("WebHook-Signature"), "lowercase hex")

	items := decodeItems(t, req.Body)
	require.Len(t, items, 1)
	// The registration, as the API shows it, but never its signature.
	public := hook
	public.Signature = ""
	wantHook, err := json.Marshal(public)
	require.NoError(t, err)
	require.JSONEq(t, string(wantHook), string(items[0].Webhook))
	require.NotContains(t, string(req.Body), testSignature)
	want := item{Webhook: items[0].Webhook, Event: "Account.Create", EventTime: "2026-11-26T10:15:00.123456Z",
		TeamSpaceID: "team-1", Entity: json.RawMessage(data), RelatedEntity: json.RawMessage("null")}
	if d := cmp.Diff(want, items[0]); d != "" {
		t.Fatalf("item (-want +got):\n%s", d)
	}
	// The record's bytes are sent as the host gave them.
	require.Contains(t, string(req.Body), `"entity":`+data)
	require.Empty(t, rcv.drain())
}

func mustList(t testing.TB, r *Registry) []Webhook {
	t.Helper()
	hooks, err := r.List(context.Background(), "")
	require.NoError(t, err)
	return hooks
}
