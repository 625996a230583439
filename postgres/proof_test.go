package postgres

// The proof that issue 11 asks for, against a real server, checked as a
// user of several replicas would check it: by the bytes that reach a
// receiver (the items of each request, by event id) and by the rows left
// in the database.
//
//   - TestProofTwoReplicasDeliverEveryItem: two replicas deliver 10,000
//     items, every one, within MaxInFlight, in order when it is 1.
//   - TestProofKilledReplicaLosesNothing: a replica process killed with
//     SIGKILL in the middle of a run of 3,000 items loses none.
//   - TestProofServerRestartInTheMiddleOfARun: Dispatchers go on by
//     themselves after the server restarts, within Lease + PollInterval.
//   - TestProofRegistrationChangesReachTheOtherReplica: create, update
//     (url, filter), disable (410) and delete take effect on the other
//     replica within a second.
//   - TestProofRolledBackTransactionSendsNothing: the outbox through the
//     Dispatchers of two replicas.
//   - TestProofOneSpaceDoesNotStarveAnother: issue 11's starvation case
//     through Dispatchers.
//   - TestProofFlushAfterAFailedSettle: Flush returns after a Settle
//     failed, once the Queue says the delivery is done (a bug this proof
//     found).
//
// What they are made of is in proofkit_test.go.

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/crmhook/webhook"
)

// TestProofTwoReplicasDeliverEveryItem has two replicas, each with its own
// pool, Registry and Dispatcher, on one database, deliver 10,000 items to
// eight registrations in four spaces, dispatched in calls of 100 through
// the one and the other in turn. Every item arrives; no delivery is sent
// twice; the receiver never has more requests of a registration in
// flight than MaxInFlight, whichever replica sent them; and with
// MaxInFlight 1 each registration gets its items in the order they were
// dispatched.
func TestProofTwoReplicasDeliverEveryItem(t *testing.T) {
	t.Parallel()
	for _, limit := range []int{1, 4} {
		t.Run(fmt.Sprintf("MaxInFlight %d", limit), func(t *testing.T) {
			t.Parallel()
			const items, perCall = 10_000, 100
			pool, cfg := newTestDatabase(t)
			rc := newProofReceiver(t)
			rc.hold = time.Millisecond // long enough for requests to overlap, were the limit broken
			a := newProofReplica(t, cfg, proofConfig{name: "a", maxInFlight: limit})
			b := newProofReplica(t, cfg, proofConfig{name: "b", maxInFlight: limit})
			// Chunks of 20: a request to each registration a call, 800 for
			// the 10,000 items.
			hooks := createFanOut(t, a, rc, 4, webhook.Options{ChunkSize: 20})
			catchUp(t, b, spacesOf(hooks)...)
			events, want := fanOutEvents("e", items, hooks)

			start := time.Now()
			for c := range items / perCall {
				via := []*replica{a, b}[c%2]
				require.NoError(t, via.disp.Dispatch(t.Context(), events[c*perCall:(c+1)*perCall]...))
			}
			flushAll(t, time.Minute, a, b)
			elapsed := time.Since(start)

			rc.awaitItems(t, 5*time.Second, allOf(want)) // Flush returned: they are all there
			dupItems, extra, dupDeliveries := rc.duplicates()
			most := 0
			for _, h := range hooks {
				got := rc.hook(h.ID)
				most = max(most, got.maxInFlight)
				require.LessOrEqual(t, got.maxInFlight, limit, "requests of registration %s in flight at once", h.ID)
				if limit == 1 {
					require.Equal(t, want[h.ID], got.received, "the order of registration %s's items, each once", h.ID)
				}
			}
			sentA, sentB := rc.sent("a"), rc.sent("b")
			require.Positive(t, sentA, "replica A sent nothing: the run proves no limit across replicas")
			require.Positive(t, sentB, "replica B sent nothing: the run proves no limit across replicas")
			t.Logf("%d items in %d requests (A %d, B %d) in %v; duplicates: %d items (%d extra), %d deliveries; most in flight to one registration: %d",
				items, sentA+sentB, sentA, sentB, elapsed.Round(time.Millisecond), dupItems, extra, dupDeliveries, most)
			// Both replicas are healthy and their leases (30 s) outlast the
			// run: no delivery is claimed twice.
			require.Zero(t, dupDeliveries, "deliveries sent twice while both replicas were healthy")
			require.Zero(t, dupItems, "items sent twice while both replicas were healthy")
			require.Zero(t, deliveryRows(t.Context(), pool), "rows left in webhook_deliveries after Flush")
			requireConsistent(t, pool, "after Flush")
		})
	}
}

// TestProofKilledReplicaLosesNothing runs a replica in a process of its
// own beside one in this process, on 3,000 items (1,500 dispatched by
// each) to four registrations, and kills the process with SIGKILL a third
// of the way, while it has requests in flight (the receiver holds them):
// every item arrives, those it had claimed once their lease ends (it logs
// how long after its death: within Lease + PollInterval, and the time of a
// claim and a request).
func TestProofKilledReplicaLosesNothing(t *testing.T) {
	t.Parallel()
	const perReplica, perCall, lease, poll = 1500, 50, 2 * time.Second, 250 * time.Millisecond
	pool, cfg := newTestDatabase(t)
	rc := newProofReceiver(t)
	rc.hold = 2 * time.Millisecond
	var doomed atomic.Bool
	held := make(chan struct{}, 64)
	rc.answer = func(r *http.Request, _ *proofRequest) int {
		if doomed.Load() && r.Header.Get(headerReplica) == "child" {
			held <- struct{}{}
			<-r.Context().Done() // the child dies before it gets an answer
		}
		return 0
	}
	a := newProofReplica(t, cfg, proofConfig{name: "a", workers: 8, maxInFlight: 4, lease: lease, poll: poll})
	hooks := createFanOut(t, a, rc, 2, webhook.Options{ChunkSize: 5})
	childEvents, wantChild := fanOutEvents("c", perReplica, hooks)
	ownEvents, wantOwn := fanOutEvents("a", perReplica, hooks)
	var calls [][]webhook.Event
	for c := range perReplica / perCall {
		calls = append(calls, childEvents[c*perCall:(c+1)*perCall])
	}
	file := filepath.Join(t.TempDir(), "dispatch.json")
	b, err := json.Marshal(calls)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(file, b, 0o644))

	// Its Dispatch calls have returned when it says it is ready.
	child := startReplica(t, cfg, replicaConfig{Lease: lease, PollInterval: poll,
		Workers: 8, MaxInFlight: 4, Name: "child", DispatchFile: file})
	var wg sync.WaitGroup
	var dispatchErr error
	wg.Go(func() {
		for c := range perReplica / perCall {
			if dispatchErr = a.disp.Dispatch(t.Context(), ownEvents[c*perCall:(c+1)*perCall]...); dispatchErr != nil {
				return
			}
		}
	})
	all := allOf(wantChild, wantOwn)
	rc.await(t, 30*time.Second, "a third of the items", func() bool { return len(rc.items) >= len(all)/3 })
	doomed.Store(true)
	for range 2 {
		select {
		case <-held:
		case <-time.After(20 * time.Second):
			t.Fatal("the child has no request in flight within 20 s")
		}
	}
	sentByChild := rc.sent("child")
	receivedAtKill := rc.received()
	child.kill(t)
	killed := time.Now()
	wg.Wait()
	require.NoError(t, dispatchErr)

	rc.awaitItems(t, 30*time.Second, all)
	rc.mu.Lock()
	lastNew, abandoned := rc.lastNew, rc.abandoned
	var stranded time.Time // when the last item the child left unanswered arrived
	for _, id := range rc.unanswered {
		if at := rc.firstTime[id]; at.After(stranded) {
			stranded = at
		}
	}
	rc.mu.Unlock()
	dupItems, extra, dupDeliveries := rc.duplicates()
	t.Logf("the child sent %d requests, %d of them left unanswered by its death, with %d of %d items received; their items arrived %v after SIGKILL (Lease %v + PollInterval %v), every item %v after it; duplicates: %d items (%d extra), %d deliveries",
		sentByChild, abandoned, receivedAtKill, len(all), stranded.Sub(killed).Round(time.Millisecond), lease, poll,
		lastNew.Sub(killed).Round(time.Millisecond), dupItems, extra, dupDeliveries)
	requireQueueEmpty(t, pool, 10*time.Second)
}

// TestProofServerRestartInTheMiddleOfARun restarts the server while two
// replicas deliver 800 items and more are dispatched: requests are in
// flight at the restart (the receiver holds one of each registration and
// answers them while the server is down, so that their Settles fail and
// their leases run on), and Dispatch calls race the shutdown. Once the
// server is back, and with no call of the test's, every item of every
// Dispatch that returned nil arrives within Lease + PollInterval, and the
// database is left with no delivery. It does not run in parallel: the
// restart ends every session of the server.
func TestProofServerRestartInTheMiddleOfARun(t *testing.T) {
	srv := server(t)
	if srv.cluster == nil {
		t.Skipf("%s names a server of the user's, which the tests do not restart", urlEnv)
	}
	const items, perCall, lease, poll = 800, 40, 2 * time.Second, 250 * time.Millisecond
	pool, cfg := newTestDatabase(t)
	rc := newProofReceiver(t)
	rc.hold = 2 * time.Millisecond
	gate := newHoldGate()
	rc.answer = gate.answer
	pc := proofConfig{workers: 8, maxInFlight: 2, lease: lease, poll: poll}
	pc.name = "a"
	a := newProofReplica(t, cfg, pc)
	pc.name = "b"
	b := newProofReplica(t, cfg, pc)
	hooks := createFanOut(t, a, rc, 2, webhook.Options{ChunkSize: 5})
	catchUp(t, b, spacesOf(hooks)...)
	events, want := fanOutEvents("e", items, hooks)
	for c := range items / perCall {
		require.NoError(t, []*replica{a, b}[c%2].disp.Dispatch(t.Context(), events[c*perCall:(c+1)*perCall]...))
	}
	// Late in the run, so that what is left after the restart is little:
	// the registrations' stranded leases hold it back until they end.
	rc.await(t, 30*time.Second, "three quarters of the items", func() bool { return len(rc.items) >= items*3/4 })
	gate.arm()
	rc.await(t, 20*time.Second, "a request of each registration held", func() bool { return gate.holds() == len(hooks) })

	// Dispatch calls go on, 8 events each, until the server is down.
	late, _ := fanOutEvents("late", 4000, hooks)
	calls := dispatchSteadily(t, late, 8, a, b)
	rc.await(t, 20*time.Second, "late Dispatch calls accepted", func() bool { return len(calls.accepted()) >= 5*8 })
	stopping := time.Now()
	var down time.Time
	srv.restartAfter(t, func() {
		down = time.Now()
		calls.stop()
		// Answered while the server is down: the Settles of these
		// attempts fail, and their deliveries stay leased.
		gate.release()
	})
	back := time.Now()

	// Nothing of the test's pokes the Dispatchers from here on.
	accepted := calls.accepted()
	all := append(allOf(want), accepted...)
	nAccepted, nRefused := len(accepted), calls.refused
	rc.awaitItems(t, 30*time.Second, all)
	rc.mu.Lock()
	var lastNew time.Time // when the last of all arrived
	for _, id := range all {
		if at := rc.firstTime[id]; at.After(lastNew) {
			lastNew = at
		}
	}
	var resumed time.Duration = -1
	for _, at := range rc.arrivals {
		if at.After(back) {
			resumed = at.Sub(back)
			break
		}
	}
	rc.mu.Unlock()
	dupItems, extra, dupDeliveries := rc.duplicates()
	t.Logf("the restart took %v (stopped after %v); %d late items accepted, %d Dispatch calls refused meanwhile; after it came back the first request arrived in %v and every item in %v (Lease %v + PollInterval %v); duplicates: %d items (%d extra), %d deliveries",
		back.Sub(stopping).Round(time.Millisecond), down.Sub(stopping).Round(time.Millisecond), nAccepted, nRefused, resumed.Round(time.Millisecond),
		lastNew.Sub(back).Round(time.Millisecond), lease, poll, dupItems, extra, dupDeliveries)
	require.LessOrEqual(t, lastNew.Sub(back), lease+poll, "every accepted item within Lease + PollInterval of the server's return")

	requireQueueEmpty(t, pool, 10*time.Second)
	flushAll(t, 10*time.Second, a, b) // their Settles that failed in the outage included
}

// TestProofRegistrationChangesReachTheOtherReplica makes a registration's
// changes on replica A (create, a new url, a new filter, disabling by a
// 410 from its receiver, delete) and checks that each takes effect on
// replica B within a second of it: B's Matcher, which is what B's
// Dispatch matches with, reflects it by then, and what B then dispatches
// reaches the receivers as the change says (B's matching builds the body,
// which carries the registration as B knows it), and B's Get agrees.
func TestProofRegistrationChangesReachTheOtherReplica(t *testing.T) {
	t.Parallel()
	_, cfg := newTestDatabase(t)
	ctx := t.Context()
	rc := newProofReceiver(t)
	var gone410 atomic.Int64 // unix nanoseconds of the 410 answer
	rc.answer = func(r *http.Request, _ *proofRequest) int {
		if r.URL.Path != "/gone" {
			return 0
		}
		if by := r.Header.Get(headerReplica); by != "a" {
			t.Errorf("replica %q sent the attempt that is to disable a registration on A", by)
		}
		gone410.CompareAndSwap(0, time.Now().UnixNano())
		return http.StatusGone
	}
	var seen attemptLog
	a := newProofReplica(t, cfg, proofConfig{name: "a", observe: seen.observer("a")})
	var claimsB *claimSwitch
	b := newProofReplica(t, cfg, proofConfig{name: "b", observe: seen.observer("b"), wrap: func(q *Queue) webhook.Queue {
		claimsB = &claimSwitch{Queue: q}
		return claimsB
	}})
	matcherB := webhook.NewMatcher(b.reg)
	// matchB returns the registration id as B matches ev, or nil.
	matchB := func(ev webhook.Event, id string) *webhook.Webhook {
		hooks, err := matcherB.Match(ev)
		if err != nil {
			t.Errorf("Match: %v", err)
			return nil
		}
		for _, w := range hooks {
			if w.ID == id {
				return w
			}
		}
		return nil
	}
	hot := func(id string) webhook.Event { return recordEvent("team", "Contact.Create", id, `"kind":"hot"`) }
	cold := func(id string) webhook.Event { return recordEvent("team", "Contact.Create", id, `"kind":"cold"`) }
	// dispatchB dispatches on B and waits until B's deliveries are done.
	dispatchB := func(events ...webhook.Event) {
		t.Helper()
		require.NoError(t, b.disp.Dispatch(ctx, events...))
		flushAll(t, 10*time.Second, b)
	}
	// A registration that stays as it is, so that every Dispatch of B
	// has a delivery to wait for.
	live, err := a.reg.Create(ctx, "team", webhook.Webhook{URL: rc.URL + "/live", Events: []string{"Contact.Create"}})
	require.NoError(t, err)

	// Created on A.
	hook, err := a.reg.Create(ctx, "team", webhook.Webhook{URL: rc.URL + "/first", Events: []string{"Contact.Create"}})
	require.NoError(t, err)
	createdTook := propagation(t, time.Now(), "a registration created on A", func() bool { return matchB(hot("probe"), hook.ID) != nil })
	dispatchB(hot("e1"))
	require.Equal(t, []string{"e1"}, rc.hook(hook.ID).received, "what B's Dispatch sent the new registration")

	// Its url changed on A.
	second := rc.URL + "/second"
	_, err = a.reg.Update(ctx, "team", hook.ID, webhook.Patch{URL: &second})
	require.NoError(t, err)
	urlTook := propagation(t, time.Now(), "a url changed on A", func() bool {
		w := matchB(hot("probe"), hook.ID)
		return w != nil && w.URL == second
	})
	before := rc.hook(hook.ID).requests
	dispatchB(hot("e2"))
	got := rc.hook(hook.ID)
	require.Equal(t, []string{"e1", "e2"}, got.received)
	require.Equal(t, before+1, got.requests)
	// The items carry the registration as B matched it, and the request
	// went to the new url.
	rc.mu.Lock()
	require.Equal(t, arrival{"/second", second}, rc.firstAt[[2]string{hook.ID, "e2"}])
	rc.mu.Unlock()

	// Its filter changed on A: hot records only.
	opts := webhook.Options{Entity: map[string]webhook.EntityOptions{"Contact": {Filter: map[string]json.RawMessage{"kind": json.RawMessage(`"hot"`)}}}}
	_, err = a.reg.Update(ctx, "team", hook.ID, webhook.Patch{Options: &opts})
	require.NoError(t, err)
	filterTook := propagation(t, time.Now(), "a filter changed on A", func() bool {
		return matchB(cold("probe"), hook.ID) == nil && matchB(hot("probe"), hook.ID) != nil
	})
	dispatchB(cold("e3"), hot("e4"))
	require.Equal(t, []string{"e1", "e2", "e4"}, rc.hook(hook.ID).received, "the filter as B matched it")
	require.Equal(t, []string{"e1", "e2", "e3", "e4"}, rc.hook(live.ID).received)

	// Disabled on A, whose attempt its receiver answers 410 Gone. B
	// claims nothing meanwhile, as when its workers are all busy, so that
	// the attempt is A's.
	goner, err := a.reg.Create(ctx, "team", webhook.Webhook{URL: rc.URL + "/gone", Events: []string{"Contact.Create"}})
	require.NoError(t, err)
	claimsB.off.Store(true)
	require.NoError(t, a.disp.Dispatch(ctx, hot("e5")))
	require.Eventually(t, func() bool {
		return len(seen.find(func(at seenAttempt) bool { return at.replica == "a" && at.Disabled != nil })) == 1
	}, 10*time.Second, time.Millisecond, "A did not disable the registration whose receiver answers 410")
	answered := time.Unix(0, gone410.Load())
	reported := seen.find(func(at seenAttempt) bool { return at.Disabled != nil })[0].at.Sub(answered)
	disabledTook := propagation(t, answered, "a registration disabled on A", func() bool { return matchB(hot("probe"), goner.ID) == nil })
	claimsB.off.Store(false)
	flushAll(t, 10*time.Second, a) // e5's other deliveries
	w, err := b.reg.Get(ctx, "team", goner.ID)
	require.NoError(t, err)
	require.NotNil(t, w.Disabled, "B's Get of the registration A disabled")
	requestsGone := rc.hook(goner.ID).requests
	dispatchB(hot("e6"))
	require.Equal(t, requestsGone, rc.hook(goner.ID).requests, "requests to the disabled registration")
	require.Empty(t, seen.find(func(at seenAttempt) bool { return at.WebhookID == goner.ID && slices.Contains(at.EventIDs, "e6") }),
		"B built a delivery for the disabled registration")
	dead, err := b.disp.Dead(ctx, "team", goner.ID)
	require.NoError(t, err)
	require.Len(t, dead, 1, "the disabled registration's dead deliveries: only the one its receiver refused")
	require.Equal(t, []string{"e5"}, dead[0].EventIDs)

	// Deleted on A.
	require.NoError(t, a.reg.Delete(ctx, "team", hook.ID))
	deletedTook := propagation(t, time.Now(), "a registration deleted on A", func() bool { return matchB(hot("probe"), hook.ID) == nil })
	_, err = b.reg.Get(ctx, "team", hook.ID)
	require.ErrorIs(t, err, webhook.ErrNotFound, "B's Get of the registration A deleted")
	dispatchB(hot("e7"))
	require.Equal(t, []string{"e1", "e2", "e4", "e5", "e6"}, rc.hook(hook.ID).received, "what the deleted registration got")
	e7 := seen.forEvent("e7")
	require.Len(t, e7, 1, "attempts with e7: only the live registration's")
	require.Equal(t, live.ID, e7[0].WebhookID)

	t.Logf("in effect on B after: create %v, url %v, filter %v, disable %v (from the 410 answer; A's Observer reported it disabled %v after the answer), delete %v",
		createdTook.Round(time.Microsecond), urlTook.Round(time.Microsecond), filterTook.Round(time.Microsecond),
		disabledTook.Round(time.Microsecond), reported.Round(time.Microsecond), deletedTook.Round(time.Microsecond))
}

// TestProofRolledBackTransactionSendsNothing uses the outbox through the
// Dispatchers of two replicas: a transaction of the host's that rolls
// back, on either replica, sends nothing from any of them and leaves
// Flush working on both; committed ones are sent, whichever replica
// claims them, beside plain Dispatch calls that Flush waits for.
func TestProofRolledBackTransactionSendsNothing(t *testing.T) {
	t.Parallel()
	pool, cfg := newTestDatabase(t)
	ctx := t.Context()
	_, err := pool.Exec(ctx, `CREATE TABLE orders (id text PRIMARY KEY)`)
	require.NoError(t, err)
	rc := newProofReceiver(t)
	var seen attemptLog
	a := newProofReplica(t, cfg, proofConfig{name: "a", observe: seen.observer("a")})
	b := newProofReplica(t, cfg, proofConfig{name: "b", observe: seen.observer("b")})
	hook, err := a.reg.Create(ctx, "team", webhook.Webhook{URL: rc.URL + "/orders", Events: []string{"Contact.Create"}})
	require.NoError(t, err)
	catchUp(t, b, "team")

	errChangedMind := errors.New("the host changes its mind")
	// order writes an order of the host's and dispatches its event in
	// one transaction on r, which commits or rolls back.
	order := func(r *replica, id string, commit bool) error {
		return pgx.BeginFunc(ctx, r.pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `INSERT INTO orders VALUES ($1)`, id); err != nil {
				return err
			}
			if err := r.disp.DispatchTo(ctx, r.queue.Tx(tx), recordEvent("team", "Contact.Create", id, "")); err != nil {
				return err
			}
			if !commit {
				return errChangedMind
			}
			return nil
		})
	}
	require.ErrorIs(t, order(a, "rolled-back-a", false), errChangedMind)
	require.ErrorIs(t, order(b, "rolled-back-b", false), errChangedMind)
	start := time.Now()
	flushAll(t, 5*time.Second, a, b)
	flushed := time.Since(start)

	require.NoError(t, order(a, "committed-a", true))
	require.NoError(t, order(b, "committed-b", true))
	require.NoError(t, a.disp.Dispatch(ctx, recordEvent("team", "Contact.Create", "plain-a", "")))
	require.NoError(t, b.disp.Dispatch(ctx, recordEvent("team", "Contact.Create", "plain-b", "")))
	flushAll(t, 10*time.Second, a, b)
	rc.awaitItems(t, 10*time.Second, []string{"committed-a", "committed-b", "plain-a", "plain-b"})
	requireQueueEmpty(t, pool, 10*time.Second)

	// With MaxInFlight 1 the registration gets its deliveries in order:
	// a rolled-back one, were it sent, would have come first.
	require.Equal(t, []string{"committed-a", "committed-b", "plain-a", "plain-b"}, rc.hook(hook.ID).received)
	require.Empty(t, seen.forEvent("rolled-back-a"), "attempts of the rolled-back event on any replica")
	require.Empty(t, seen.forEvent("rolled-back-b"), "attempts of the rolled-back event on any replica")
	rows, err := pool.Query(ctx, `SELECT id FROM orders ORDER BY id`)
	require.NoError(t, err)
	orders, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Equal(t, []string{"committed-a", "committed-b"}, orders, "the host's rows")
	t.Logf("Flush after the rollbacks returned in %v on both replicas", flushed.Round(time.Microsecond))
}

// TestProofOneSpaceDoesNotStarveAnother is issue 11's starvation case
// through the Dispatchers of two replicas (32 workers each, 64 in all):
// one space's 256 registrations have a receiver that hangs until the
// attempt's timeout (500 ms), and once every worker hangs (200 ms into
// the hang), another space's event is dispatched. Its delivery goes to the first worker freed, before
// the hung space's next ones: it arrives within one timeout of its
// Dispatch, where the earliest-due-first Claim of old sent it after every
// one of the 256, four timeouts later.
func TestProofOneSpaceDoesNotStarveAnother(t *testing.T) {
	t.Parallel()
	const hanging, workers, timeout, into = 256, 64, 500 * time.Millisecond, 200 * time.Millisecond
	_, cfg := newTestDatabase(t)
	ctx := t.Context()
	rc := newProofReceiver(t)
	var mu sync.Mutex // guards the fields below
	var (
		begun, ended   int       // requests of the hanging space
		firstEnd       time.Time // of a hanging request
		quietAt        time.Time // when the quiet space's request arrived
		begunAtQuiet   int
		endedAtQuiet   int
		begunAtDispach int
	)
	rc.answer = func(r *http.Request, _ *proofRequest) int {
		mu.Lock()
		defer mu.Unlock()
		if r.URL.Path == "/quiet" {
			if quietAt.IsZero() {
				quietAt, begunAtQuiet, endedAtQuiet = time.Now(), begun, ended
			}
			return 0
		}
		begun++
		mu.Unlock()
		<-r.Context().Done() // the attempt timed out
		mu.Lock()
		ended++
		if firstEnd.IsZero() {
			firstEnd = time.Now()
		}
		return 0
	}
	pc := proofConfig{workers: workers / 2, timeout: timeout}
	pc.name = "a"
	a := newProofReplica(t, cfg, pc)
	pc.name = "b"
	b := newProofReplica(t, cfg, pc)
	changes := make([]webhook.Change, hanging)
	for i := range changes {
		url, events := fmt.Sprintf("%s/hang/%03d", rc.URL, i), []string{"Contact.Create"}
		changes[i] = webhook.Change{Patch: webhook.Patch{URL: &url, Events: &events}}
	}
	_, err := a.reg.Apply(ctx, "busy", changes, true)
	require.NoError(t, err)
	_, err = a.reg.Create(ctx, "quiet", webhook.Webhook{URL: rc.URL + "/quiet", Events: []string{"Contact.Create"}})
	require.NoError(t, err)
	catchUp(t, b, "busy", "quiet")

	require.NoError(t, a.disp.Dispatch(ctx, recordEvent("busy", "Contact.Create", "busy", "")))
	start := time.Now()
	rc.await(t, 20*time.Second, "every worker on a hanging request", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return begun >= workers
	})
	ramp := time.Since(start)
	// Some time into the hang, so that the bound leaves the first freed
	// worker its Claim and its request (10 to 130 ms here, under load):
	// were the event dispatched as the last worker got stuck, the first
	// one freed would come a timeout later, and the delivery just after.
	// The Claim of old sent it after every one of the 256, three and a
	// half timeouts later still.
	time.Sleep(into)
	mu.Lock()
	begunAtDispach = begun
	require.Zero(t, ended, "a hanging request ended before the quiet event was dispatched: the test cannot tell")
	mu.Unlock()
	dispatched := time.Now()
	require.NoError(t, b.disp.Dispatch(ctx, recordEvent("quiet", "Contact.Create", "quiet", "")))
	rc.await(t, 10*time.Second, "the quiet space's delivery", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return !quietAt.IsZero()
	})
	mu.Lock()
	defer mu.Unlock()
	waited := quietAt.Sub(dispatched)
	t.Logf("%d workers hung within %v; the quiet event was dispatched %v later, and its delivery arrived %v after its Dispatch (timeout %v), %v after the first hung request ended; %d hanging requests had begun by then (%d at its Dispatch), %d ended",
		workers, ramp.Round(time.Millisecond), into, waited.Round(time.Millisecond), timeout, quietAt.Sub(firstEnd).Round(time.Millisecond),
		begunAtQuiet, begunAtDispach, endedAtQuiet)
	require.Equal(t, workers, begunAtDispach, "hanging requests when the quiet event was dispatched: one a worker")
	require.Less(t, begunAtQuiet, 2*workers, "the quiet delivery waited for a second round of the hanging space")
	require.LessOrEqual(t, waited, timeout, "the quiet delivery within one timeout of its Dispatch")
}

// TestProofFlushAfterAFailedSettle: a delivery whose Settle failed stays
// leased, and another replica sends it once the lease ends; the Flush of
// the replica that accepted it must then learn from the Queue that it is
// done, as it does of every delivery another replica finishes (it once
// waited for ever: the failed batch's ids stayed among those in flight
// here, which Flush never asks the Queue about).
func TestProofFlushAfterAFailedSettle(t *testing.T) {
	t.Parallel()
	pool, cfg := newTestDatabase(t)
	ctx := t.Context()
	rc := newProofReceiver(t)
	var q *failingSettle
	// The recorder tries a failed Settle again while half the lease lasts,
	// then gives the delivery up to whoever claims it next.
	a := newProofReplica(t, cfg, proofConfig{name: "a", lease: time.Second, poll: 50 * time.Millisecond,
		wrap: func(queue *Queue) webhook.Queue {
			q = &failingSettle{Queue: queue, failed: make(chan struct{})}
			return q
		}})
	_, err := a.reg.Create(ctx, "team", webhook.Webhook{URL: rc.URL + "/hook", Events: []string{"Contact.Create"}})
	require.NoError(t, err)
	q.fail.Store(true)
	require.NoError(t, a.disp.Dispatch(ctx, recordEvent("team", "Contact.Create", "e1", "")))
	rc.awaitItems(t, 10*time.Second, []string{"e1"})
	select {
	case <-q.failed:
	case <-time.After(10 * time.Second):
		t.Fatal("no Settle within 10 s")
	}

	// Another replica, an hour on (the lease has ended), sends it again
	// and settles it.
	other := newTestQueue(t, pool, webhook.QueueLimits{})
	later := time.Now().Add(2 * time.Hour)
	got, err := other.Claim(ctx, later, 10, time.Minute, 1)
	require.NoError(t, err)
	require.Len(t, got, 1, "the stranded delivery")
	_, err = other.Settle(ctx, later, webhook.Outcome{Delivery: got[0], Kind: webhook.Delivered})
	require.NoError(t, err)
	require.Zero(t, deliveryRows(ctx, pool))

	flushAll(t, 5*time.Second, a)
}
