package postgres

// What the proof of issue 11 (proof_test.go) is made of: replicas whose
// requests say who sent them, a receiver that reads the items it gets,
// workloads of registrations and events, and Queues that misbehave on
// demand.

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/crmhook/webhook"
)

// headerReplica names, in the requests of the tests' replicas, the
// replica that sent them.
const headerReplica = "X-Replica"

// taggedTransport sends through Transport with name in headerReplica.
type taggedTransport struct {
	webhook.Transport
	name string
}

func (tt taggedTransport) Send(ctx context.Context, req *webhook.Request) (*webhook.Response, error) {
	if tt.name == "" {
		return tt.Transport.Send(ctx, req)
	}
	tagged := *req // a Transport must not modify req
	tagged.Header = req.Header.Clone()
	tagged.Header.Set(headerReplica, tt.name)
	return tt.Transport.Send(ctx, &tagged)
}

// proofConfig is what the replicas of the proof differ in.
type proofConfig struct {
	name        string // sent in headerReplica
	workers     int
	maxInFlight int
	lease       time.Duration // 0: 30 s
	poll        time.Duration // 0: 200 ms
	timeout     time.Duration // of each request; 0: the HTTPTransport's
	observe     func(webhook.Attempt)
	// wrap, when set, returns the Queue the Dispatcher is to use in place
	// of the replica's.
	wrap func(*Queue) webhook.Queue
}

// newProofReplica starts a replica on the database of cfg, closed when t
// ends. It logs errors only, to t's output: the proof fails attempts on
// purpose, each a warning.
func newProofReplica(t *testing.T, cfg *pgxpool.Config, pc proofConfig) *replica {
	t.Helper()
	ctx := context.Background()
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelError}))
	r := &replica{}
	var err error
	r.pool, err = pgxpool.NewWithConfig(ctx, cfg.Copy())
	require.NoError(t, err)
	r.store, err = NewStore(ctx, r.pool, StoreConfig{})
	require.NoError(t, err)
	r.queue, err = NewQueue(ctx, r.pool, QueueConfig{})
	require.NoError(t, err)
	r.reg, err = webhook.NewRegistry(ctx, webhook.RegistryConfig{Store: r.store, Addresses: loopback, Logger: logger})
	require.NoError(t, err)
	transport := webhook.NewHTTPTransport(webhook.HTTPConfig{AddressPolicy: loopback, Timeout: pc.timeout})
	var queue webhook.Queue = r.queue
	if pc.wrap != nil {
		queue = pc.wrap(r.queue)
	}
	r.disp, err = webhook.NewDispatcher(r.reg, webhook.Config{
		Queue:        queue,
		Transport:    taggedTransport{transport, pc.name},
		Logger:       logger,
		Observer:     pc.observe,
		Workers:      pc.workers,
		MaxInFlight:  pc.maxInFlight,
		Lease:        cmp.Or(pc.lease, 30*time.Second),
		PollInterval: cmp.Or(pc.poll, 200*time.Millisecond),
	})
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, r.disp.Close(ctx))
		transport.Close()
		require.NoError(t, r.reg.Close())
		r.queue.Close()
		r.store.Close()
		r.pool.Close()
	})
	return r
}

// proofReceiver is a receiver that reads what it gets: the items of every
// request, which the tests make carry their event's id as the record's
// id, by registration (the items' "webhook"). It counts an item received
// when it answers a 2xx to a sender that is still there.
type proofReceiver struct {
	*httptest.Server
	t *testing.T
	// hold is how long each request takes. answer, when set, is called
	// while the request is in flight and returns the status to answer,
	// 0 for 200; it may block. Both are set before the first request.
	hold   time.Duration
	answer func(r *http.Request, req *proofRequest) int

	mu         sync.Mutex            // guards the fields below
	hooks      map[string]*hookLog   // by registration id
	items      map[string]int        // times each item was received
	firstAt    map[[2]string]arrival // where each registration (id) received each item first
	deliveries map[string]int        // requests received of each delivery (webhook-id)
	senders    map[string]int        // requests, by headerReplica
	abandoned  int                   // requests whose sender went before the answer
	unanswered []string              // the items of those requests
	firstTime  map[string]time.Time  // when each item was received first
	arrivals   []time.Time           // of the requests whose items were received
	lastNew    time.Time             // when an item arrived for the first time, the last time
	news       chan struct{}         // receives, coalesced, at every arrival and answer
}

// arrival is where an item was received: the request's path, and the url
// its items carry as their registration's, which the replica that
// matched the event wrote.
type arrival struct{ path, url string }

// proofRequest is a request as a proofReceiver reads it.
type proofRequest struct {
	hook, url string   // the registration's id and url, as the items carry them
	items     []string // the items' record ids
}

// hookLog is what a registration got.
type hookLog struct {
	inFlight, maxInFlight int
	requests              int
	received              []string // items, in the order their requests were answered
}

func newProofReceiver(t *testing.T) *proofReceiver {
	rc := &proofReceiver{t: t, hooks: map[string]*hookLog{}, items: map[string]int{}, firstAt: map[[2]string]arrival{}, firstTime: map[string]time.Time{},
		deliveries: map[string]int{}, senders: map[string]int{}, news: make(chan struct{}, 1)}
	rc.Server = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *proofReceiver) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	var items []struct {
		Webhook struct{ ID, URL string }
		Entity  struct{ ID string }
	}
	if err == nil {
		err = json.Unmarshal(body, &items)
	}
	if err != nil || len(items) == 0 {
		rc.t.Errorf("a request the receiver cannot read (%v): %.200s", err, body)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	req := &proofRequest{hook: items[0].Webhook.ID, url: items[0].Webhook.URL}
	for _, it := range items {
		req.items = append(req.items, it.Entity.ID)
	}
	rc.mu.Lock()
	h := rc.hooks[req.hook]
	if h == nil {
		h = &hookLog{}
		rc.hooks[req.hook] = h
	}
	h.inFlight++
	h.maxInFlight = max(h.maxInFlight, h.inFlight)
	h.requests++
	rc.senders[r.Header.Get(headerReplica)]++
	rc.mu.Unlock()
	rc.notify()

	time.Sleep(rc.hold) // the receiver's work
	status := http.StatusOK
	if rc.answer != nil {
		status = cmp.Or(rc.answer(r, req), status)
	}

	now := time.Now()
	rc.mu.Lock()
	h.inFlight-- // before the answer: the sender's next request can only follow it
	switch {
	case r.Context().Err() != nil:
		rc.abandoned++
		rc.unanswered = append(rc.unanswered, req.items...)
	case status/100 != 2:
		// answered with a failure: not received
	default:
		rc.deliveries[r.Header.Get(webhook.HeaderID)]++
		rc.arrivals = append(rc.arrivals, now)
		for _, id := range req.items {
			if rc.items[id] == 0 {
				rc.lastNew = now
				rc.firstTime[id] = now
			}
			if _, ok := rc.firstAt[[2]string{req.hook, id}]; !ok {
				rc.firstAt[[2]string{req.hook, id}] = arrival{r.URL.Path, req.url}
			}
			rc.items[id]++
		}
		h.received = append(h.received, req.items...)
	}
	rc.mu.Unlock()
	rc.notify()
	w.WriteHeader(status)
}

func (rc *proofReceiver) notify() {
	select {
	case rc.news <- struct{}{}:
	default:
	}
}

// await waits until cond, called with rc.mu held, holds; it fails t with
// what and the message of diag, if given, once timeout has passed.
func (rc *proofReceiver) await(t *testing.T, timeout time.Duration, what string, cond func() bool, diag ...func() string) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	// The news of the receiver, and a tick for conditions that change
	// elsewhere (an answer func's state).
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		rc.mu.Lock()
		ok := cond()
		msg := ""
		if !ok && len(diag) > 0 {
			msg = diag[0]()
		}
		rc.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-rc.news:
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("%s: not within %v. %s", what, timeout, msg)
		}
	}
}

// awaitItems waits until every item of want has been received.
func (rc *proofReceiver) awaitItems(t *testing.T, timeout time.Duration, want []string) {
	t.Helper()
	rc.await(t, timeout, fmt.Sprintf("all %d items received", len(want)), func() bool {
		return len(rc.missingLocked(want)) == 0
	}, func() string {
		missing := rc.missingLocked(want)
		return fmt.Sprintf("%d missing, the first: %v", len(missing), missing[:min(len(missing), 10)])
	})
}

// missingLocked returns the items of want not received. It requires rc.mu
// held.
func (rc *proofReceiver) missingLocked(want []string) []string {
	var missing []string
	for _, id := range want {
		if rc.items[id] == 0 {
			missing = append(missing, id)
		}
	}
	return missing
}

// received returns how many distinct items were received.
func (rc *proofReceiver) received() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.items)
}

// duplicates returns how many items, and how many deliveries (by
// webhook-id), were received more than once, and the receptions past the
// first of each.
func (rc *proofReceiver) duplicates() (items, extraItems, deliveries int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, n := range rc.items {
		if n > 1 {
			items++
			extraItems += n - 1
		}
	}
	for _, n := range rc.deliveries {
		if n > 1 {
			deliveries++
		}
	}
	return items, extraItems, deliveries
}

// sent returns how many requests the replica name made.
func (rc *proofReceiver) sent(name string) int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.senders[name]
}

// hook returns a copy of what the registration id got.
func (rc *proofReceiver) hook(id string) hookLog {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if h := rc.hooks[id]; h != nil {
		c := *h
		c.received = slices.Clone(h.received)
		return c
	}
	return hookLog{}
}

// proofHook is a registration of the proof that one event name fires.
type proofHook struct {
	webhook.Webhook
	event string
}

// proofEventNames are the event names the fan-out registrations listen
// to, one each in every space.
var proofEventNames = []string{"Contact.Create", "Account.Create"}

// createFanOut creates through r, in each of spaces spaces, a
// registration for each of proofEventNames with opts, each at a path of
// its own at rc, in one Apply a space.
func createFanOut(t *testing.T, r *replica, rc *proofReceiver, spaces int, opts webhook.Options) []proofHook {
	t.Helper()
	var hooks []proofHook
	for s := range spaces {
		space := fmt.Sprint("space-", s)
		changes := make([]webhook.Change, len(proofEventNames))
		for i, name := range proofEventNames {
			url, events := rc.URL+"/"+space+"/"+name, []string{name}
			changes[i] = webhook.Change{Patch: webhook.Patch{URL: &url, Events: &events, Options: &opts}}
		}
		res, err := r.reg.Apply(t.Context(), space, changes, true)
		require.NoError(t, err)
		for i, name := range proofEventNames {
			hooks = append(hooks, proofHook{res[i].Webhook, name})
		}
	}
	return hooks
}

// catchUp has r's Registry apply every registration stored of hooks'
// spaces (List catches up with the Store first).
func catchUp(t *testing.T, r *replica, spaces ...string) {
	t.Helper()
	for _, space := range spaces {
		_, err := r.reg.List(t.Context(), space)
		require.NoError(t, err)
	}
}

func spacesOf(hooks []proofHook) []string {
	var spaces []string
	for _, h := range hooks {
		if !slices.Contains(spaces, h.Space) {
			spaces = append(spaces, h.Space)
		}
	}
	return spaces
}

// fanOutEvents returns n events whose ids are prefix and a number, the
// i-th firing hooks[i % len(hooks)] alone, and the ids each registration
// must receive, by its id, in the order of the events.
func fanOutEvents(prefix string, n int, hooks []proofHook) ([]webhook.Event, map[string][]string) {
	events := make([]webhook.Event, n)
	want := map[string][]string{}
	for i := range events {
		h := hooks[i%len(hooks)]
		id := fmt.Sprintf("%s%05d", prefix, i)
		events[i] = recordEvent(h.Space, h.event, id, "")
		want[h.ID] = append(want[h.ID], id)
	}
	return events, want
}

// recordEvent is an event whose record's id is the event's id, with more
// members (`"kind":"hot"`) if given.
func recordEvent(space, name, id, more string) webhook.Event {
	data := `{"id":"` + id + `"`
	if more != "" {
		data += "," + more
	}
	return webhook.Event{ID: id, Space: space, Name: name, Data: json.RawMessage(data + "}")}
}

// allOf returns every id of want.
func allOf(want ...map[string][]string) []string {
	var all []string
	for _, w := range want {
		for _, ids := range w {
			all = append(all, ids...)
		}
	}
	return all
}

// flushAll flushes the replicas' Dispatchers, each within timeout.
func flushAll(t *testing.T, timeout time.Duration, rs ...*replica) {
	t.Helper()
	for _, r := range rs {
		ctx, cancel := context.WithTimeout(t.Context(), timeout)
		err := r.disp.Flush(ctx)
		cancel()
		require.NoError(t, err, "Flush")
	}
}

// deliveryRows returns the rows of webhook_deliveries (pending, leased
// and dead), or -1 when it cannot tell.
func deliveryRows(ctx context.Context, pool *pgxpool.Pool) int {
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM webhook_deliveries`).Scan(&n); err != nil {
		return -1
	}
	return n
}

// requireQueueEmpty waits until the database holds no delivery: every one
// was delivered and settled. The last Settles may follow the last answers.
func requireQueueEmpty(t *testing.T, pool *pgxpool.Pool, within time.Duration) {
	t.Helper()
	require.Eventually(t, func() bool { return deliveryRows(t.Context(), pool) == 0 }, within, 20*time.Millisecond,
		"rows left in webhook_deliveries")
	requireConsistent(t, pool, "once every delivery is settled")
}

// holdGate holds, once it is armed, the next request of each
// registration until release, as a receiver that is slow to answer.
type holdGate struct {
	mu       sync.Mutex      // guards armed and held
	armed    bool            // hold the next request of each registration
	held     map[string]bool // registrations whose request is held
	holding  sync.WaitGroup  // the held requests, until they are answered
	released chan struct{}
}

func newHoldGate() *holdGate {
	return &holdGate{held: map[string]bool{}, released: make(chan struct{})}
}

// answer is a proofReceiver's answer func.
func (g *holdGate) answer(_ *http.Request, req *proofRequest) int {
	g.mu.Lock()
	hold := g.armed && !g.held[req.hook]
	if hold {
		g.held[req.hook] = true
		g.holding.Add(1)
	}
	g.mu.Unlock()
	if hold {
		defer g.holding.Done()
		<-g.released
	}
	return 0
}

func (g *holdGate) arm() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.armed = true
}

// holds returns how many requests it holds or held.
func (g *holdGate) holds() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.held)
}

// release answers the held requests, and returns once they are answered.
func (g *holdGate) release() {
	close(g.released)
	g.holding.Wait()
}

// steadyCalls are Dispatch calls made one every 10 ms, through replicas
// in turn, until stop.
type steadyCalls struct {
	done chan struct{}
	wg   sync.WaitGroup
	mu   sync.Mutex // guards ids and refused
	ids  []string   // of the events of the calls that returned nil
	// refused counts the calls that returned an error; read it after stop.
	refused int
}

// dispatchSteadily dispatches events, size at a time, through rs in turn
// until stop is called or they run out.
func dispatchSteadily(t *testing.T, events []webhook.Event, size int, rs ...*replica) *steadyCalls {
	c := &steadyCalls{done: make(chan struct{})}
	c.wg.Go(func() {
		for i := 0; (i+1)*size <= len(events); i++ {
			select {
			case <-c.done:
				return
			case <-time.After(10 * time.Millisecond):
			}
			call := events[i*size : (i+1)*size]
			err := rs[i%len(rs)].disp.Dispatch(t.Context(), call...)
			c.mu.Lock()
			if err == nil {
				for _, e := range call {
					c.ids = append(c.ids, e.ID)
				}
			} else {
				c.refused++
			}
			c.mu.Unlock()
		}
	})
	return c
}

// accepted returns the ids of the events of the calls that returned nil.
func (c *steadyCalls) accepted() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.ids)
}

// stop ends the calls, and returns once the last has returned.
func (c *steadyCalls) stop() {
	close(c.done)
	c.wg.Wait()
}

// attemptLog keeps what the Observers of the replicas saw.
type attemptLog struct {
	mu       sync.Mutex // guards attempts
	attempts []seenAttempt
}

type seenAttempt struct {
	replica string
	at      time.Time
	webhook.Attempt
}

// observer returns the Observer of the replica name.
func (l *attemptLog) observer(name string) func(webhook.Attempt) {
	return func(a webhook.Attempt) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.attempts = append(l.attempts, seenAttempt{name, time.Now(), a})
	}
}

// find returns the attempts for which f holds.
func (l *attemptLog) find(f func(seenAttempt) bool) []seenAttempt {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []seenAttempt
	for _, a := range l.attempts {
		if f(a) {
			out = append(out, a)
		}
	}
	return out
}

// forEvent returns the attempts that carried the event id.
func (l *attemptLog) forEvent(id string) []seenAttempt {
	return l.find(func(a seenAttempt) bool { return slices.Contains(a.EventIDs, id) })
}

// propagation waits until cond, which reads only a replica's memory,
// holds, and returns how long after since it did; it fails t if that is
// more than a second, the time the issue allows a change to take effect
// on every replica.
func propagation(t *testing.T, since time.Time, what string, cond func() bool) time.Duration {
	t.Helper()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Since(since) > time.Second {
			t.Fatalf("%s: not in effect on replica B within a second", what)
		}
		<-tick.C
	}
	took := time.Since(since)
	require.LessOrEqual(t, took, time.Second, "%s: not in effect on replica B within a second", what)
	return took
}

// claimSwitch is a Queue whose Claim returns nothing while off is set: a
// replica whose workers are all busy elsewhere.
type claimSwitch struct {
	*Queue
	off atomic.Bool
}

func (q *claimSwitch) Claim(ctx context.Context, now time.Time, max int, lease time.Duration, perTarget int) ([]*webhook.Delivery, error) {
	if q.off.Load() {
		return nil, nil
	}
	return q.Queue.Claim(ctx, now, max, lease, perTarget)
}

// failingSettle is a Queue whose Settle fails while fail is set, without
// recording anything, as a Settle does when the server goes away (see
// TestProofServerRestartInTheMiddleOfARun); once a Settle failed, its
// Claim returns nothing, so that only another replica takes what it
// leaves.
type failingSettle struct {
	*Queue
	fail   atomic.Bool   // Settle fails while it is set
	once   sync.Once     // closes failed
	failed chan struct{} // closed once it failed
}

func (q *failingSettle) Claim(ctx context.Context, now time.Time, max int, lease time.Duration, perTarget int) ([]*webhook.Delivery, error) {
	select {
	case <-q.failed:
		return nil, nil
	default:
		return q.Queue.Claim(ctx, now, max, lease, perTarget)
	}
}

func (q *failingSettle) Settle(ctx context.Context, now time.Time, outcomes ...webhook.Outcome) ([]webhook.Health, error) {
	if q.fail.Load() {
		q.once.Do(func() { close(q.failed) })
		return nil, errors.New("settle: the server went away")
	}
	return q.Queue.Settle(ctx, now, outcomes...)
}
