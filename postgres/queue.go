package postgres

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/crmhook/webhook"
)

// countShards is how many rows of webhook_queue_counts share the count of
// pending deliveries in all; each transaction adds to the row of its
// connection's backend.
const countShards = 16

// QueueConfig configures a Queue. The zero value is the default
// configuration.
type QueueConfig struct {
	// Limits bound what the Queue holds; each zero field means its
	// default (webhook.QueueLimits.WithDefaults).
	Limits webhook.QueueLimits
}

// Queue is a webhook.Queue in PostgreSQL, shared by every process whose
// pool reaches the same database: a delivery one replica enqueues may be
// claimed by any, the perTarget limit, the order of a target's
// deliveries, pauses and Health hold across all of them, and a delivery
// survives the crash of the replica that claimed it (it is claimed again
// once its lease ends). Queue is also a webhook.Waker: Enqueue, Revive,
// and a Settle that makes a delivery due again, NOTIFY, and Wake listens
// on a connection of the Queue's own that reconnects by itself. Every
// Enqueue waits for a flush to disk, so that a host that dispatches one
// event at a time is bound by the disk's flushes a second; PostgreSQL
// flushes the commits of concurrent Enqueues together, and batches
// (several events a Dispatch) are how one caller goes past it.
//
// Claim does not scan the deliveries: it walks a table of targets (one
// row per registration), ordered by each one's earliest ready delivery,
// one space at a time, so that its cost grows with what it returns and
// with the number of spaces that have work, not with what is waiting.
// Claims and Settles commit without waiting for the disk
// (synchronous_commit off): a crash of the server may undo the last
// fraction of a second of them, which makes their deliveries claimable
// again, sent twice at worst, as the Queue contract allows; never lost.
// Enqueue, Revive and Purge are durable when they return.
//
// Two replicas claiming at the same instant each see the other's leases
// only once it commits: the perTarget limit and a target's order still
// hold (a target is claimed by one transaction at a time), but the
// fairness between spaces is that of each Claim on its own. The bound
// MaxPendingPerTarget is exact; MaxPending may be passed by what
// concurrent Enqueues add at the same instant, as each counts only what
// others committed.
//
// Times are stored to the microsecond and returned in UTC.
//
// The zero value is not usable: use NewQueue. A Queue is safe for
// simultaneous use by multiple goroutines.
type Queue struct {
	pool   *pgxpool.Pool
	limits webhook.QueueLimits // with defaults
	listen *listener
}

var (
	_ webhook.Queue = (*Queue)(nil)
	_ webhook.Waker = (*Queue)(nil)
)

// NewQueue returns a Queue on the database of pool, whose schema must be
// migrated (see Migrate). The pool stays the caller's: Close does not
// close it.
func NewQueue(ctx context.Context, pool *pgxpool.Pool, cfg QueueConfig) (*Queue, error) {
	if err := checkSchema(ctx, pool); err != nil {
		return nil, err
	}
	return &Queue{pool: pool, limits: cfg.Limits.WithDefaults(), listen: newListener(pool, queueChannel)}, nil
}

// Close stops the listening connection of Wake. The other methods work
// on after Close; the channels Wake returned receive nothing more.
func (q *Queue) Close() error {
	q.listen.close()
	return nil
}

// Wake returns a channel that receives, coalesced, whenever a process,
// this one included, enqueued or revived deliveries or made one due again
// (Settle), and whenever the listening connection (re)connects, after
// which a notification may have been missed. It stays valid until ctx
// ends or the Queue is closed. The listening connection opens at the
// first Wake; it is the pool's config's, not one of the pool's.
func (q *Queue) Wake(ctx context.Context) <-chan struct{} {
	return q.listen.wake(ctx)
}

// Enqueue stores ds as pending, all of them or none, in one round trip,
// as the Queue contract says. It also refuses, with an error that wraps
// webhook.ErrInvalid, a nil delivery, one without ID or Target, or two
// with the same ID.
//
// What it accepts is on disk when it returns, but its transaction does
// not wait for the disk itself: it holds the locks of its targets, which
// every Claim skips and every Settle of theirs waits for, and so commits
// without the flush (synchronous_commit off), and a transaction that
// waits for it follows in the same round trip; its flush takes the first
// commit to disk with it, and Enqueue returns only after it. Meanwhile
// other replicas may claim and send the deliveries: should the server
// crash in between, such a delivery, sent, is lost and Enqueue fails, as
// it fails when the answer to a commit is lost.
func (q *Queue) Enqueue(ctx context.Context, ds ...*webhook.Delivery) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	batch, err := newEnqueueBatch(ds)
	if err != nil || batch == nil {
		return err
	}
	err = pipelined(ctx, q.pool, func(conn *pgx.Conn) error {
		b := &pgx.Batch{}
		b.Queue(`BEGIN`)
		b.Queue(`SET LOCAL synchronous_commit = off`)
		q.queueEnqueue(b, batch)
		b.Queue(`COMMIT`)
		queueFlush(b)
		flushed := b.Len() - 1
		queueNotify(b)
		return execBatch(conn.SendBatch(ctx, b), b.Len(), flushed)
	})
	if err != nil {
		return ctxErr(ctx, enqueueError(err))
	}
	return nil
}

// queueFlush adds to b a transaction that waits for the disk
// (synchronous_commit on, whatever the session's setting). It takes an
// id, so that its commit writes a record, whose flush takes every commit
// of the session before it to disk.
func queueFlush(b *pgx.Batch) {
	b.Queue(`BEGIN`)
	b.Queue(`SELECT set_config('synchronous_commit', 'on', true), pg_current_xact_id()`)
	b.Queue(`COMMIT`)
}

// execBatch reads the results of the n statements of a batch that has no
// rows to return. Past the one at last, what fails fails nothing: a
// notification, which the claimers' poll makes up for.
func execBatch(br pgx.BatchResults, n, last int) error {
	defer br.Close()
	for i := range n {
		if _, err := br.Exec(); err != nil {
			if i > last {
				return nil
			}
			return err
		}
	}
	return nil
}

// asyncSettings begins the transactions of Claim and Settle. They commit
// without waiting for the disk (see Claim and Settle). Their statements
// use generic plans, made once a session rather than at every call, with
// sequential scans and hash and merge joins off, and no JIT compilation:
// each of them starts from the few rows it names and reaches the tables
// through indexes that fit, one lookup a row, whatever the planner would
// estimate, since a queue's tables swing from empty to millions of rows
// faster than their statistics follow; a plan made for a small table (a
// scan of it) must not stick once it has grown, nor a generic plan's wide
// estimates make a millisecond statement compile.
const asyncSettings = `SELECT set_config('synchronous_commit', 'off', true),
	set_config('plan_cache_mode', 'force_generic_plan', true), set_config('jit', 'off', true),
	set_config('enable_seqscan', 'off', true), set_config('enable_hashjoin', 'off', true),
	set_config('enable_mergejoin', 'off', true)`

// queueNotify adds to b, after the transaction whose news it tells, a
// NOTIFY in a transaction of its own that does not wait for the disk (see
// notify): a round trip fewer than notify.
func queueNotify(b *pgx.Batch) {
	b.Queue(`BEGIN`)
	b.Queue(notifySQL, queueChannel)
	b.Queue(`COMMIT`)
}

// notifySQL notifies the listeners in a transaction that does not wait
// for the disk.
const notifySQL = `SELECT set_config('synchronous_commit', 'off', true), pg_notify($1, '')`

// notify tells the listeners of every replica that deliveries may have
// become claimable. It runs after the commit, in a transaction of its
// own that does not wait for the disk: PostgreSQL commits notifying
// transactions one at a time, holding a lock across their flush to disk,
// so that a NOTIFY inside the transaction that stores the deliveries
// would make every Enqueue and Settle of the database wait its turn. A
// notification lost in a crash between the two is made up for by the
// claimers' poll.
func (q *Queue) notify(ctx context.Context) {
	// An error is no reason to fail what was stored; the poll heals it.
	q.pool.Exec(ctx, notifySQL, queueChannel)
}

// Tx returns an Enqueuer that enqueues into tx, a transaction of the
// host's on the Queue's database: the transactional outbox. The
// deliveries commit with the host's change or not at all, and other
// replicas hear of them (NOTIFY) only when tx commits:
//
//	tx, err := pool.Begin(ctx)
//	...
//	// the host's change, then:
//	if err := dispatcher.DispatchTo(ctx, queue.Tx(tx), events...); err != nil { ... }
//	err = tx.Commit(ctx)
//
// Enqueue on it is bound by the Queue's limits too. It runs in a
// savepoint, so that a refused call (webhook.ErrQueueFull,
// webhook.ErrInvalid) leaves tx usable and holding none of the call. It
// makes tx's commit wait for the disk (synchronous_commit on), whatever
// the session's setting: a committed delivery is one the Queue accepted.
func (q *Queue) Tx(tx pgx.Tx) webhook.Enqueuer {
	return txEnqueuer{q: q, tx: tx}
}

type txEnqueuer struct {
	q  *Queue
	tx pgx.Tx
}

func (e txEnqueuer) Enqueue(ctx context.Context, ds ...*webhook.Delivery) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	batch, err := newEnqueueBatch(ds)
	if err != nil || batch == nil {
		return err
	}
	b := &pgx.Batch{}
	b.Queue(`SAVEPOINT webhook_enqueue`)
	// Accepted means on disk, whatever the session's setting.
	b.Queue(`SET LOCAL synchronous_commit = on`)
	e.q.queueEnqueue(b, batch)
	b.Queue(`SELECT pg_notify($1, '')`, queueChannel) // sent when, and if, tx commits
	b.Queue(`RELEASE SAVEPOINT webhook_enqueue`)
	if err := e.tx.SendBatch(ctx, b).Close(); err != nil {
		if _, rerr := e.tx.Exec(ctx, `ROLLBACK TO SAVEPOINT webhook_enqueue; RELEASE SAVEPOINT webhook_enqueue`); rerr != nil {
			return ctxErr(ctx, fmt.Errorf("%w (and the savepoint could not be rolled back: %v)", enqueueError(err), rerr))
		}
		return ctxErr(ctx, enqueueError(err))
	}
	return nil
}

// enqueueBatch is deliveries as the columns of Enqueue's statement.
type enqueueBatch struct {
	ids, targets, spaces, webhookIDs []string
	eventIDs                         []string // JSON arrays
	bodies                           [][]byte
	created, due                     []time.Time
	attempts, lastStatus             []int32
	lastError                        []string
}

// newEnqueueBatch checks ds and lays them out for the statement; nil when
// there are none.
func newEnqueueBatch(ds []*webhook.Delivery) (*enqueueBatch, error) {
	if len(ds) == 0 {
		return nil, nil
	}
	b := &enqueueBatch{}
	for i, d := range ds {
		if err := checkDelivery(d); err != nil {
			return nil, fmt.Errorf("postgres: enqueue delivery %d of %d: %w", i+1, len(ds), err)
		}
		events, err := json.Marshal(nonNil(d.EventIDs))
		if err != nil {
			return nil, err
		}
		b.ids = append(b.ids, d.ID)
		b.targets = append(b.targets, d.Target)
		b.spaces = append(b.spaces, d.Space)
		b.webhookIDs = append(b.webhookIDs, d.WebhookID)
		b.eventIDs = append(b.eventIDs, string(events))
		b.bodies = append(b.bodies, nonNil(d.Body))
		b.created = append(b.created, d.Created)
		b.due = append(b.due, d.Due)
		b.attempts = append(b.attempts, int32(d.Attempts))
		b.lastStatus = append(b.lastStatus, int32(d.LastStatus))
		b.lastError = append(b.lastError, d.LastError)
	}
	return b, nil
}

// enqueueSQL stores a batch in one statement: the deliveries, in the
// order given (their enqueue order), and their targets' counts and
// earliest ready deliveries, or, past a bound ($12 MaxPending, $13
// MaxPendingPerTarget) or with an id held already, nothing: it fails
// (webhook_refuse), in the order of the MemoryQueue's checks. The targets
// are locked in the order of their keys, as every transaction of the
// Queue locks them, so that two never wait on each other in a cycle.
var enqueueSQL = `
WITH new AS (
	SELECT u.*, nextval('webhook_delivery_seq') AS seq
	FROM ` + unnestDeliveries(1) + `
	ORDER BY u.ord
), ins AS (
	INSERT INTO webhook_deliveries (id, seq, target, space, webhook_id, event_ids, body, created,
		attempts, due, last_status, last_error)
	SELECT id, seq, target, space, webhook_id, event_ids, body, created, attempts, due, last_status, last_error
	FROM new
	ON CONFLICT (id) DO NOTHING
	RETURNING 1
), first AS (
	SELECT DISTINCT ON (target) target, space, due, seq, count(*) OVER (PARTITION BY target) AS n
	FROM new ORDER BY target, due, seq
), tgt AS (
	INSERT INTO webhook_targets AS t (target, space, held, next_due, next_seq)
	SELECT target, space, n, due, seq FROM first ORDER BY target
	ON CONFLICT (target) DO UPDATE SET
		held = t.held + excluded.held,
		next_due = CASE WHEN t.next_due IS NULL OR (excluded.next_due, excluded.next_seq) < (t.next_due, t.next_seq)
			THEN excluded.next_due ELSE t.next_due END,
		next_seq = CASE WHEN t.next_due IS NULL OR (excluded.next_due, excluded.next_seq) < (t.next_due, t.next_seq)
			THEN excluded.next_seq ELSE t.next_seq END
	RETURNING t.target, t.held
), checks AS (
	SELECT cardinality($1::text[]) AS n,
		(SELECT coalesce(sum(held), 0) FROM webhook_queue_counts) AS total,
		(SELECT count(*) FROM ins) AS inserted,
		(SELECT target FROM tgt ORDER BY held DESC LIMIT 1) AS fullest,
		(SELECT max(held) FROM tgt) AS most
)
SELECT CASE
	WHEN total + n > $12 THEN webhook_refuse('WH001', format(
		'%s pending deliveries, %s more would pass the bound of %s', total, n, $12))
	WHEN inserted < n THEN webhook_refuse('WH002', format(
		'%s of the %s deliveries have the id of one queued already', n - inserted, n))
	WHEN most > $13 THEN webhook_refuse('WH001', format(
		'target %s would hold %s pending deliveries, past the bound of %s', fullest, most, $13))
	ELSE true END
FROM checks`

// SQLSTATE codes of enqueueSQL's refusals.
const (
	codeQueueFull   = "WH001"
	codeDuplicateID = "WH002"
)

// countSQL adds $2 to the count of pending deliveries in all. Every
// transaction that changes the count does it last, once it holds its
// targets, so that the one row it locks is never part of a cycle of
// waits.
const countSQL = `
INSERT INTO webhook_queue_counts AS c (shard, held) VALUES (pg_backend_pid() % $1, $2)
ON CONFLICT (shard) DO UPDATE SET held = c.held + excluded.held`

// queueEnqueue adds Enqueue's statements to b: inside a transaction, they
// store the deliveries of eb, or fail.
func (q *Queue) queueEnqueue(b *pgx.Batch, eb *enqueueBatch) {
	b.Queue(enqueueSQL, append(eb.args(), q.limits.MaxPending, q.limits.MaxPendingPerTarget)...)
	b.Queue(countSQL, countShards, len(eb.ids))
}

// enqueueError returns err, a refusal of enqueueSQL's, as the error the
// Queue contract names.
func enqueueError(err error) error {
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok {
		switch pgErr.Code {
		case codeQueueFull:
			return fmt.Errorf("postgres: enqueue: %w: %s", webhook.ErrQueueFull, pgErr.Message)
		case codeDuplicateID:
			return fmt.Errorf("postgres: enqueue: %w: %s", webhook.ErrInvalid, pgErr.Message)
		}
	}
	return fmt.Errorf("postgres: enqueue: %w", err)
}

// checkDelivery reports a delivery that no Queue method can store.
func checkDelivery(d *webhook.Delivery) error {
	switch {
	case d == nil:
		return fmt.Errorf("%w: nil delivery", webhook.ErrInvalid)
	case d.ID == "":
		return fmt.Errorf("%w: delivery of webhook %s has no id", webhook.ErrInvalid, d.WebhookID)
	case d.Target == "":
		return fmt.Errorf("%w: delivery %s has no target", webhook.ErrInvalid, d.ID)
	}
	return nil
}

// Dead returns the dead deliveries of target in the order they died.
func (q *Queue) Dead(ctx context.Context, target string) ([]*webhook.Delivery, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rows, err := q.pool.Query(ctx, `SELECT `+deliveryColumns+` FROM webhook_deliveries
		WHERE target = $1 AND died IS NOT NULL ORDER BY died`, target)
	if err != nil {
		return nil, ctxErr(ctx, fmt.Errorf("postgres: dead: %w", err))
	}
	ds, err := scanDeliveries(rows)
	if err != nil {
		return nil, ctxErr(ctx, fmt.Errorf("postgres: dead: %w", err))
	}
	return ds, nil
}

// Revive makes the dead delivery id of target pending again, or all of
// them when id is "", as the Queue contract says. A revived delivery
// keeps its enqueue order.
func (q *Queue) Revive(ctx context.Context, target, id string, now time.Time) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var ids []string
	err := inTx(ctx, q.pool, pgx.TxOptions{}, func(tx pgx.Tx) error {
		ids = nil
		b := &pgx.Batch{}
		b.Queue(`SELECT FROM webhook_targets WHERE target = $1 FOR UPDATE`, target)
		b.Queue(reviveSQL, target, id, now)
		br := tx.SendBatch(ctx, b)
		if _, err := br.Exec(); err != nil {
			br.Close()
			return err
		}
		rows, _ := br.Query()
		type revived struct {
			id   string
			died int64
		}
		list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (revived, error) {
			var v revived
			return v, r.Scan(&v.id, &v.died)
		})
		if err := errors.Join(err, br.Close()); err != nil {
			return err
		}
		if len(list) == 0 {
			return nil
		}
		slices.SortFunc(list, func(a, b revived) int { return cmp.Compare(a.died, b.died) })
		for _, v := range list {
			ids = append(ids, v.id)
		}
		return q.adjust(ctx, tx, ids, target, len(list))
	})
	if err != nil {
		return nil, ctxErr(ctx, fmt.Errorf("postgres: revive: %w", err))
	}
	if len(ids) > 0 {
		q.notify(ctx)
	}
	if id != "" && len(ids) == 0 {
		return nil, fmt.Errorf("postgres: revive: %w: dead delivery %s of target %s", webhook.ErrNotFound, id, target)
	}
	if ids == nil {
		ids = []string{}
	}
	return ids, nil
}

// reviveSQL makes the dead deliveries of target $1 pending, due at $3:
// the one with id $2, or all when $2 is "". It returns their ids and the
// order they died in.
const reviveSQL = `
UPDATE webhook_deliveries d SET died = NULL, due = $3, attempts = 0
FROM (SELECT id, died FROM webhook_deliveries
	WHERE target = $1 AND died IS NOT NULL AND ($2::text = '' OR id = $2)) AS old
WHERE d.id = old.id
RETURNING d.id, old.died`

// adjust adds n to the count of target, which tx has locked, and to the
// count in all, and sets its earliest ready delivery, given the ids of
// the deliveries tx made ready.
func (q *Queue) adjust(ctx context.Context, tx pgx.Tx, fresh []string, target string, n int) error {
	b := &pgx.Batch{}
	b.Queue(adjustTargetSQL, fresh, target, n)
	b.Queue(countSQL, countShards, n)
	return tx.SendBatch(ctx, b).Close()
}

// freshHeads, a CTE, finds the earliest of the deliveries with ids $1
// that are ready, per target: those made ready by the statements before,
// which nextHead must take into account. It looks each id up by the
// primary key, in a subquery of its own that names nothing else: written
// as one scan with id = ANY($1), or with the conditions of the index of
// ready deliveries beside the id, the planner may walk that whole index
// in (target, due, seq) order, which spares it a sort and costs a read of
// every pending delivery.
const freshHeads = `
fresh AS (
	SELECT DISTINCT ON (d.target) d.target, d.due, d.seq
	FROM unnest($1::text[]) AS i(id)
	CROSS JOIN LATERAL (
		SELECT x.target, x.due, x.seq, x.lease_until, x.died FROM webhook_deliveries x
		WHERE x.id = i.id LIMIT 1) AS d
	WHERE d.lease_until IS NULL AND d.died IS NULL
	ORDER BY d.target, d.due, d.seq
)`

// nextHead is the earliest ready delivery of target t, given f, its row
// of freshHeads. Any ready delivery earlier than t's head as it stood
// before the transaction was made ready by it, and is in f; so the index
// of ready deliveries is read from that head on, rather than from the
// start of the target's range, where the entries of the deliveries
// claimed and deleted since the last vacuum lie. With a million
// deliveries of one target going out, this keeps the cost of Claim and
// Settle flat.
const nextHead = `(
	SELECT x.due, x.seq FROM (
		(SELECT d.due, d.seq FROM webhook_deliveries d
		WHERE t.next_due IS NOT NULL AND d.target = t.target AND d.lease_until IS NULL AND d.died IS NULL
			AND (d.due, d.seq) >= (t.next_due, t.next_seq)
		ORDER BY d.due, d.seq LIMIT 1)
		UNION ALL
		SELECT f.due, f.seq WHERE f.due IS NOT NULL
	) AS x
	ORDER BY x.due, x.seq LIMIT 1)`

// adjustTargetSQL adds $3 to the count of target $2 and sets its earliest
// ready delivery ($1 the ids of the deliveries made ready).
const adjustTargetSQL = `WITH ` + freshHeads + `
UPDATE webhook_targets t SET held = t.held + $3, (next_due, next_seq) = ` + nextHead + `
FROM (SELECT $2::text AS target) AS u
LEFT JOIN fresh AS f ON f.target = u.target
WHERE t.target = u.target`

// Purge removes every delivery of target, pending, leased or dead, and
// what the Queue keeps of it: its Health and pause.
func (q *Queue) Purge(ctx context.Context, target string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := inTx(ctx, q.pool, pgx.TxOptions{}, func(tx pgx.Tx) error {
		var held int64
		err := tx.QueryRow(ctx, `SELECT held FROM webhook_targets WHERE target = $1 FOR UPDATE`, target).Scan(&held)
		if errors.Is(err, pgx.ErrNoRows) {
			held, err = 0, nil // no row, but dead deliveries may be left over
		}
		if err != nil {
			return err
		}
		b := &pgx.Batch{}
		// One statement for each partial index, so that each uses its own.
		b.Queue(`DELETE FROM webhook_deliveries WHERE target = $1 AND lease_until IS NULL AND died IS NULL`, target)
		b.Queue(`DELETE FROM webhook_deliveries WHERE target = $1 AND lease_until IS NOT NULL`, target)
		b.Queue(`DELETE FROM webhook_deliveries WHERE target = $1 AND died IS NOT NULL`, target)
		b.Queue(`DELETE FROM webhook_targets WHERE target = $1`, target)
		if held != 0 {
			b.Queue(countSQL, countShards, -held)
		}
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return ctxErr(ctx, fmt.Errorf("postgres: purge: %w", err))
	}
	return nil
}

// Pending returns those of ids that the Queue holds as pending, leased
// or not.
func (q *Queue) Pending(ctx context.Context, ids ...string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return nil, nil
	}
	rows, _ := q.pool.Query(ctx, `SELECT id FROM webhook_deliveries WHERE id = ANY($1) AND died IS NULL`, ids)
	held, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, ctxErr(ctx, fmt.Errorf("postgres: pending: %w", err))
	}
	return held, nil
}

// NextDue reports when Claim may next return something, as the Queue
// contract says: from the index of the targets' ready times (the later of
// their earliest ready delivery and their pause) and that of the leases.
func (q *Queue) NextDue(ctx context.Context) (t time.Time, ok bool, err error) {
	if err := ctx.Err(); err != nil {
		return time.Time{}, false, err
	}
	var at *time.Time
	err = q.pool.QueryRow(ctx, `SELECT least(
		(SELECT min(ready_at) FROM webhook_targets WHERE ready_at IS NOT NULL),
		(SELECT min(lease_until) FROM webhook_deliveries WHERE lease_until IS NOT NULL))`).Scan(&at)
	if err != nil {
		return time.Time{}, false, ctxErr(ctx, fmt.Errorf("postgres: next due: %w", err))
	}
	if at == nil {
		return time.Time{}, false, nil
	}
	return at.UTC(), true, nil
}

// deliveryColumns are the columns scanDeliveries reads, in its order.
const deliveryColumns = `id, space, webhook_id, target, event_ids, body, created, attempts, due, last_status, last_error`

// scanDeliveries reads rows of deliveryColumns into one array, two
// allocations a batch rather than one a delivery, and closes rows.
func scanDeliveries(rows pgx.Rows) ([]*webhook.Delivery, error) {
	defer rows.Close()
	var batch []webhook.Delivery
	for rows.Next() {
		batch = append(batch, webhook.Delivery{})
		d := &batch[len(batch)-1]
		if err := rows.Scan(&d.ID, &d.Space, &d.WebhookID, &d.Target, &d.EventIDs, &d.Body, &d.Created,
			&d.Attempts, &d.Due, &d.LastStatus, &d.LastError); err != nil {
			return nil, err
		}
		d.Created, d.Due = d.Created.UTC(), d.Due.UTC()
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(batch) == 0 {
		return nil, nil
	}
	out := make([]*webhook.Delivery, len(batch))
	for i := range batch {
		out[i] = &batch[i]
	}
	return out, nil
}

// nonNil returns s, or an empty slice for nil: the columns are NOT NULL.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
