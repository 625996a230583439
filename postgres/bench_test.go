package postgres

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/crmhook/webhook"
)

// The benchmarks run against the tests' server (fsync and
// synchronous_commit on): durable commits, on this machine's disk.
//
//	go test -run '^$' -bench . -benchtime 2s ./postgres/

// benchLimits lift the bounds out of the benchmarks' way.
var benchLimits = webhook.QueueLimits{MaxPending: 1 << 30, MaxPendingPerTarget: 1 << 30}

// benchBase is the fake time the benchmarks' deliveries are due at.
var benchBase = time.Unix(1_700_000_000, 0).UTC()

// fillQueue adds pending deliveries, due one a millisecond from benchBase
// in rotation, spread over targets in spaces, straight in SQL: a million
// rows take seconds this way, minutes through Enqueue.
func fillQueue(b *testing.B, pool *pgxpool.Pool, pending, targets, spaces int) {
	b.Helper()
	ctx := context.Background()
	stmts := []string{
		`INSERT INTO webhook_deliveries (id, seq, target, space, webhook_id, event_ids, body, created,
			attempts, due, last_status, last_error)
		SELECT 'd' || g, nextval('webhook_delivery_seq'), 't' || (g % $2), 's' || (g % $2 % $3), 'w' || (g % $2),
			json_build_array('ev-' || g), convert_to(repeat('x', 300), 'UTF8'), $4, 0,
			$4::timestamptz + (g % 1000) * interval '1 ms', 0, ''
		FROM generate_series(1, $1) AS g`,
		`INSERT INTO webhook_targets (target, space, held)
		SELECT target, min(space), count(*) FROM webhook_deliveries GROUP BY target`,
		`UPDATE webhook_targets t SET (next_due, next_seq) = (SELECT d.due, d.seq FROM webhook_deliveries d
			WHERE d.target = t.target AND d.lease_until IS NULL AND d.died IS NULL ORDER BY d.due, d.seq LIMIT 1)`,
		`INSERT INTO webhook_queue_counts (shard, held) VALUES (0, $1)`,
	}
	args := [][]any{{pending, targets, spaces, benchBase}, nil, nil, {pending}}
	for i, stmt := range stmts {
		if _, err := pool.Exec(ctx, stmt, args[i]...); err != nil {
			b.Fatalf("fill: %v", err)
		}
	}
	// Vacuumed, and checkpointed so that the filling's checkpoint does not
	// run during the timing.
	for _, stmt := range []string{`VACUUM ANALYZE`, `CHECKPOINT`} {
		if _, err := pool.Exec(ctx, stmt); err != nil {
			b.Fatalf("fill: %v", err)
		}
	}
}

// BenchmarkClaim claims with 1,000 and with 1,000,000 deliveries pending,
// in one target and over 1,000 targets in 10 spaces: its cost should not
// grow with what is pending (the target is 1M within 2x of 1k). Outside
// the timing, each claimed delivery is settled as delivered and replaced
// by a new one at the end of its target's queue, so that the number
// pending stays, and the index entries of delivered deliveries pile up
// behind the targets' heads as they do in a queue at work.
func BenchmarkClaim(b *testing.B) {
	for _, shape := range []struct {
		name            string
		targets, spaces int
		limit           int
	}{
		{"one target", 1, 1, 1},
		{"1000 targets in 10 spaces", 1000, 10, 10},
	} {
		for _, pending := range []int{1_000, 1_000_000} {
			pool := newTestPool(b)
			fillQueue(b, pool, pending, shape.targets, shape.spaces)
			q, err := NewQueue(context.Background(), pool, QueueConfig{Limits: benchLimits})
			if err != nil {
				b.Fatal(err)
			}
			b.Run(fmt.Sprintf("%s/pending=%d/max=%d", shape.name, pending, shape.limit), func(b *testing.B) {
				benchmarkClaim(b, q, shape.limit)
			})
		}
	}
}

func benchmarkClaim(b *testing.B, q *Queue, limit int) {
	ctx := context.Background()
	now := benchBase.Add(time.Hour)
	outcomes := make([]webhook.Outcome, 0, limit)
	run, replaced := time.Now().UnixNano(), 0 // unique ids across -count runs
	b.ReportAllocs()
	for b.Loop() {
		ds, err := q.Claim(ctx, now, limit, time.Minute, 1)
		if err != nil {
			b.Fatal(err)
		}
		if len(ds) != limit {
			b.Fatalf("claimed %d, want %d", len(ds), limit)
		}
		b.StopTimer()
		outcomes = outcomes[:0]
		var fresh []*webhook.Delivery
		for _, d := range ds {
			outcomes = append(outcomes, webhook.Outcome{Delivery: d, Kind: webhook.Delivered})
			replaced++
			r := *d
			r.ID = fmt.Sprintf("r%d-%d", run, replaced)
			r.Due = benchBase.Add(time.Second + time.Duration(replaced)*time.Microsecond)
			fresh = append(fresh, &r)
		}
		if _, err := q.Settle(ctx, now, outcomes...); err != nil {
			b.Fatal(err)
		}
		if err := q.Enqueue(ctx, fresh...); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// BenchmarkEnqueue enqueues batches of deliveries of 300-byte bodies over
// 10 targets, one durable commit a batch.
func BenchmarkEnqueue(b *testing.B) {
	for _, size := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			pool := newTestPool(b)
			q, err := NewQueue(context.Background(), pool, QueueConfig{Limits: benchLimits})
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			n := 0
			b.ReportAllocs()
			for b.Loop() {
				ds := make([]*webhook.Delivery, size)
				for i := range ds {
					n++
					ds[i] = benchDelivery(n)
				}
				if err := q.Enqueue(ctx, ds...); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "deliveries/s")
		})
	}
}

// BenchmarkSettle settles batches of claimed deliveries as delivered,
// one transaction a batch, which does not wait for the disk (see
// Queue.Settle); the enqueueing and claiming are outside the timing.
func BenchmarkSettle(b *testing.B) {
	for _, size := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			pool := newTestPool(b)
			q, err := NewQueue(context.Background(), pool, QueueConfig{Limits: benchLimits})
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			n := 0
			outcomes := make([]webhook.Outcome, size)
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				ds := make([]*webhook.Delivery, size)
				for i := range ds {
					n++
					ds[i] = benchDelivery(n)
				}
				if err := q.Enqueue(ctx, ds...); err != nil {
					b.Fatal(err)
				}
				claimed, err := q.Claim(ctx, benchBase, size, time.Minute, size)
				if err != nil || len(claimed) != size {
					b.Fatalf("claim: %d, %v", len(claimed), err)
				}
				for i, d := range claimed {
					outcomes[i] = webhook.Outcome{Delivery: d, Kind: webhook.Delivered}
				}
				b.StartTimer()
				if _, err := q.Settle(ctx, benchBase, outcomes...); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "deliveries/s")
		})
	}
}

// benchDelivery returns the nth delivery of a benchmark: one of 10
// targets, a 300-byte body.
func benchDelivery(n int) *webhook.Delivery {
	id := fmt.Sprintf("bench-%d", n)
	target := fmt.Sprintf("t%d", n%10)
	return &webhook.Delivery{
		ID: id, Space: "s", WebhookID: "w-" + target, Target: target,
		EventIDs: []string{"ev-" + id}, Body: make([]byte, 300),
		Created: benchBase, Due: benchBase,
	}
}

// benchHooks is how many registrations the end-to-end benchmarks
// deliver to: as many as a Dispatcher has workers by default, one request
// in flight each (MaxInFlight 1).
const benchHooks = 64

// BenchmarkReplicaDeliveries measures durable deliveries a second end to
// end: Registries over a Store, Dispatchers over a Queue (the defaults:
// 64 workers, one request in flight a registration), and a local
// receiver that answers at once. There are 64 registrations, each event
// matches one of them (chunk_size 1), so that a delivery is one request
// of one event; each replica dispatches 64 events a call (64 deliveries a
// transaction), b.N calls in all, from a goroutine of its own, while its
// Dispatcher delivers. The clock runs from the first Dispatch to the last
// request's arrival.
//
// queue=memory is the baseline: the same workload on one Dispatcher over
// the MemoryQueue, with the registrations in memory. replicas=2 runs two
// Registries and Dispatchers, each with a pool of its own, on one
// database, as two processes would.
//
//	go test -run '^$' -bench ReplicaDeliveries -benchtime 100x -count 3 ./postgres/
func BenchmarkReplicaDeliveries(b *testing.B) {
	b.Run("queue=memory", func(b *testing.B) {
		benchmarkDeliveries(b, []*benchReplica{newMemoryReplica(b)})
	})
	for _, n := range []int{1, 2} {
		b.Run(fmt.Sprintf("queue=postgres/replicas=%d", n), func(b *testing.B) {
			_, cfg := newTestDatabase(b)
			var rs []*benchReplica
			for range n {
				rs = append(rs, newPostgresReplica(b, cfg))
			}
			benchmarkDeliveries(b, rs)
		})
	}
}

func benchmarkDeliveries(b *testing.B, rs []*benchReplica) {
	ctx := context.Background()
	rcv := newBenchReceiver(b)
	rcv.createHooks(b, rs)
	n := b.N * benchHooks * len(rs)
	rcv.expect(n)
	b.ReportAllocs()
	b.ResetTimer()
	errs := make(chan error, len(rs))
	for k, r := range rs {
		go func() {
			events := make([]webhook.Event, benchHooks)
			for i := range b.N {
				for j := range events {
					events[j] = webhook.Event{Space: "team", Name: "Contact.Update",
						Data: json.RawMessage(fmt.Sprintf(`{"id":"c%d-%d-%d","n":%d}`, k, i, j, j))}
				}
				if err := r.disp.Dispatch(ctx, events...); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range rs {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-rcv.done:
	case <-time.After(5 * time.Minute):
		b.Fatalf("%d of %d delivered", rcv.count(), n)
	}
	b.StopTimer()
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "deliveries/s")
	b.ReportMetric(0, "ns/op") // an op is 64 deliveries a replica: deliveries/s says it
}

// BenchmarkCommitToDelivery measures the time from the return of a
// Dispatch (the Enqueue's commit) to the request's arrival at the
// receiver, while the replica is idle-ish: one event a Dispatch, 100 a
// second, b.N of them. It reports the median and the 99th percentile.
//
//	go test -run '^$' -bench CommitToDelivery -benchtime 2000x -count 3 ./postgres/
func BenchmarkCommitToDelivery(b *testing.B) {
	b.Run("queue=memory", func(b *testing.B) {
		benchmarkLatency(b, newMemoryReplica(b))
	})
	b.Run("queue=postgres", func(b *testing.B) {
		_, cfg := newTestDatabase(b)
		benchmarkLatency(b, newPostgresReplica(b, cfg))
	})
}

// latencyRate is how many events a second BenchmarkCommitToDelivery
// dispatches.
const latencyRate = 100

func benchmarkLatency(b *testing.B, r *benchReplica) {
	ctx := context.Background()
	rcv := newBenchReceiver(b)
	rcv.createHooks(b, []*benchReplica{r})
	committed := make([]time.Time, b.N)
	arrived := make([]time.Time, b.N)
	rcv.arrived = func(k int, at time.Time) {
		if k >= 0 && k < len(arrived) {
			arrived[k] = at
		}
	}
	rcv.expect(b.N)
	b.ReportAllocs()
	b.ResetTimer()
	tick := time.NewTicker(time.Second / latencyRate)
	defer tick.Stop()
	for k := range b.N {
		<-tick.C
		ev := webhook.Event{Space: "team", Name: "Contact.Update",
			Data: json.RawMessage(fmt.Sprintf(`{"id":"lat-%d","n":%d}`, k, k%benchHooks))}
		if err := r.disp.Dispatch(ctx, ev); err != nil {
			b.Fatal(err)
		}
		rcv.mu.Lock()
		committed[k] = time.Now()
		rcv.mu.Unlock()
	}
	select {
	case <-rcv.done:
	case <-time.After(time.Minute):
		b.Fatalf("%d of %d delivered", rcv.count(), b.N)
	}
	b.StopTimer()
	rcv.mu.Lock()
	lat := make([]time.Duration, b.N)
	for k := range lat {
		// A request may arrive before Dispatch has returned: its latency
		// counts as zero.
		lat[k] = max(0, arrived[k].Sub(committed[k]))
	}
	rcv.mu.Unlock()
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
	b.ReportMetric(ms(lat[len(lat)*99/100]), "p99-ms")
	b.ReportMetric(ms(lat[len(lat)-1]), "max-ms")
	b.ReportMetric(0, "ns/op") // paced: the time per Dispatch is the pace's
}

// benchReplica is one process's worth of the library for the end-to-end
// benchmarks.
type benchReplica struct {
	reg  *webhook.Registry
	disp *webhook.Dispatcher
}

// benchTransport returns the Transport of the end-to-end benchmarks: the
// default HTTPTransport over an http.Transport that keeps an idle
// connection for every worker. http.DefaultTransport, which the default
// clones, keeps two a host, so that 64 workers sending to one receiver
// would dial a connection for nearly every request, and the benchmarks
// would measure TCP handshakes rather than the Queue.
func benchTransport() *webhook.HTTPTransport {
	ht := http.DefaultTransport.(*http.Transport).Clone()
	ht.MaxIdleConnsPerHost = webhook.DefaultWorkers
	return webhook.NewHTTPTransport(webhook.HTTPConfig{Client: &http.Client{Transport: ht}, AddressPolicy: loopback})
}

// newMemoryReplica returns a replica whose registrations and deliveries
// live in memory: the baseline.
func newMemoryReplica(b *testing.B) *benchReplica {
	b.Helper()
	reg, err := webhook.NewRegistry(context.Background(), webhook.RegistryConfig{Addresses: loopback})
	if err != nil {
		b.Fatal(err)
	}
	return startBenchReplica(b, reg, nil, nil)
}

// newPostgresReplica returns a replica with a pool of its own on the
// database of cfg, as a process would have.
func newPostgresReplica(b *testing.B, cfg *pgxpool.Config) *benchReplica {
	b.Helper()
	ctx := context.Background()
	pool, err := pgxpool.NewWithConfig(ctx, cfg.Copy())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	store, err := NewStore(ctx, pool, StoreConfig{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { store.Close() })
	q, err := NewQueue(ctx, pool, QueueConfig{Limits: benchLimits})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { q.Close() })
	reg, err := webhook.NewRegistry(ctx, webhook.RegistryConfig{Store: store, Addresses: loopback})
	if err != nil {
		b.Fatal(err)
	}
	return startBenchReplica(b, reg, q, benchTransport())
}

func startBenchReplica(b *testing.B, reg *webhook.Registry, q webhook.Queue, tr *webhook.HTTPTransport) *benchReplica {
	b.Helper()
	if tr == nil {
		tr = benchTransport()
	}
	disp, err := webhook.NewDispatcher(reg, webhook.Config{Queue: q, Transport: tr,
		Lease: 30 * time.Second, PollInterval: 200 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := disp.Close(ctx); err != nil {
			b.Error(err)
		}
		reg.Close()
		tr.Close()
	})
	return &benchReplica{reg: reg, disp: disp}
}

// benchReceiver is the end-to-end benchmarks' receiver: it answers at
// once, counts the requests, and signals done when it has the number it
// expects.
type benchReceiver struct {
	*httptest.Server
	mu      sync.Mutex // guards the fields below
	got     int
	want    int
	done    chan struct{}
	arrived func(k int, at time.Time) // told of each "lat-k" record; nil: not
}

func newBenchReceiver(b *testing.B) *benchReceiver {
	r := &benchReceiver{done: make(chan struct{})}
	r.Server = httptest.NewServer(http.HandlerFunc(r.serve))
	b.Cleanup(r.Close)
	return r
}

func (r *benchReceiver) serve(w http.ResponseWriter, req *http.Request) {
	at := time.Now()
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.arrived != nil {
		if _, rest, ok := bytes.Cut(body, []byte(`"lat-`)); ok {
			digits, _, _ := bytes.Cut(rest, []byte(`"`))
			if k, err := strconv.Atoi(string(digits)); err == nil {
				r.arrived(k, at)
			}
		}
	}
	if r.got++; r.got == r.want {
		close(r.done)
	}
}

func (r *benchReceiver) expect(n int) {
	r.mu.Lock()
	r.want = n
	r.mu.Unlock()
}

func (r *benchReceiver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.got
}

// createHooks creates the benchmarks' registrations on the first replica,
// the n-th of them matching the events whose record has "n": n, and waits
// until every other replica knows them.
func (r *benchReceiver) createHooks(b *testing.B, rs []*benchReplica) {
	b.Helper()
	ctx := context.Background()
	for i := range benchHooks {
		_, err := rs[0].reg.Create(ctx, "team", webhook.Webhook{
			URL: r.URL, Events: []string{"Contact.Update"},
			Options: webhook.Options{ChunkSize: 1, Entity: map[string]webhook.EntityOptions{"Contact": {
				Filter: map[string]json.RawMessage{"n": json.RawMessage(strconv.Itoa(i))}}}},
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	for _, other := range rs[1:] {
		hooks, err := other.reg.List(ctx, "team") // catches up first
		if err != nil || len(hooks) != benchHooks {
			b.Fatalf("the other replica knows %d registrations (%v)", len(hooks), err)
		}
	}
}
