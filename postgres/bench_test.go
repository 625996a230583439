package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
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
// 10 targets, one transaction (one durable commit) a batch.
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
// one transaction (one durable commit) a batch; the enqueueing and
// claiming are outside the timing.
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

// BenchmarkReplicaDeliveries measures durable deliveries a second end to
// end with one replica (a Registry over a Store, a Dispatcher over a
// Queue, the defaults: 64 workers, one request in flight a registration)
// and a local receiver that answers at once: 64 registrations, each
// event matching one of them with chunk_size 1, so that a delivery is one
// request of one event; events are dispatched 64 a call (64 deliveries a
// transaction).
func BenchmarkReplicaDeliveries(b *testing.B) {
	_, cfg := newTestDatabase(b)
	var mu sync.Mutex // guards got
	got := 0
	done := make(chan struct{}, 1)
	want := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got++
		if got == want {
			done <- struct{}{}
		}
		mu.Unlock()
	}))
	defer srv.Close()
	r := newBenchReplica(b, cfg)
	const hooks = 64
	for i := range hooks {
		_, err := r.reg.Create(context.Background(), "team", webhook.Webhook{
			URL: srv.URL, Events: []string{"Contact.Update"},
			Options: webhook.Options{ChunkSize: 1, Entity: map[string]webhook.EntityOptions{"Contact": {
				Filter: map[string]json.RawMessage{"n": json.RawMessage(strconv.Itoa(i))}}}},
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	n := b.N * hooks
	mu.Lock()
	want = n
	mu.Unlock()
	b.ResetTimer()
	for i := 0; i < n; i += hooks {
		events := make([]webhook.Event, hooks)
		for j := range events {
			events[j] = webhook.Event{Space: "team", Name: "Contact.Update",
				Data: json.RawMessage(fmt.Sprintf(`{"id":"c%d","n":%d}`, i+j, j))}
		}
		if err := r.disp.Dispatch(context.Background(), events...); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-done:
	case <-time.After(5 * time.Minute):
		b.Fatal("not all delivered")
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "deliveries/s")
}
