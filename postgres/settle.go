package postgres

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/crmhook/webhook"
)

// Settle records outcomes, in order, as the Queue contract says, in one
// transaction of one round trip however many there are: its statements
// go to the server together, and what they need of the rows (where each
// delivery stood, its target's Health and pause) they read there, so
// that nothing waits for this process between them and the targets stay
// locked for no longer than the server takes.
//
// Like a Claim, and unlike an Enqueue, a Settle commits without waiting
// for the disk (synchronous_commit off): a crash of the server, not of
// this process, may undo the Settles of its last fraction of a second,
// whose deliveries are then attempted again (a Delivered one sent twice,
// as the Queue contract allows) and whose failures are not counted. In
// exchange a Settle holds its targets' locks, which Enqueue and Claim
// wait for or skip, for no flush to disk. A delivery's Target must be
// the one it was enqueued with. It NOTIFYs (see Wake) when it makes a
// delivery pending that is due by now.
func (q *Queue) Settle(ctx context.Context, now time.Time, outcomes ...webhook.Outcome) ([]webhook.Health, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for i, o := range outcomes {
		if err := checkDelivery(o.Delivery); err != nil {
			return nil, fmt.Errorf("postgres: settle outcome %d of %d: %w", i+1, len(outcomes), err)
		}
		if o.Kind < webhook.Delivered || o.Kind > webhook.Dropped {
			return nil, fmt.Errorf("postgres: settle outcome %d of %d: %w: kind %d", i+1, len(outcomes), webhook.ErrInvalid, o.Kind)
		}
	}
	if len(outcomes) == 0 {
		return []webhook.Health{}, nil
	}
	s := newSettlement(now, outcomes)
	var health []webhook.Health
	err := pipelined(ctx, q.pool, func(conn *pgx.Conn) error {
		b, err := s.batch(q.limits.MaxDead)
		if err != nil {
			return err
		}
		health, err = s.run(conn.SendBatch(ctx, b), b)
		return err
	})
	if err != nil {
		return nil, ctxErr(ctx, fmt.Errorf("postgres: settle: %w", err))
	}
	return health, nil
}

// rowState is where a delivery stands after an outcome.
type rowState uint8

const (
	absent rowState = iota
	ready
	dead
)

// afterOutcome returns where a delivery stands after an outcome of kind.
func afterOutcome(kind webhook.OutcomeKind) rowState {
	switch kind {
	case webhook.Retried, webhook.Released:
		return ready
	case webhook.Died:
		return dead
	}
	return absent
}

// settlement is one Settle at work.
type settlement struct {
	now      time.Time
	outcomes []webhook.Outcome
	targets  []string // distinct, in key order: the order they are locked in
	spaces   []string // of targets
	// last is, by delivery id, the index of the last outcome for it: the
	// one that says where it stands after the Settle.
	last map[string]int
	// lockAt and commitAt are the places in the batch of lockTargetsSQL
	// and of the COMMIT.
	lockAt, commitAt int
}

func newSettlement(now time.Time, outcomes []webhook.Outcome) *settlement {
	s := &settlement{now: now.Truncate(time.Microsecond).UTC(), outcomes: outcomes, last: map[string]int{}}
	spaceOf := map[string]string{}
	for i, o := range outcomes {
		if _, ok := spaceOf[o.Delivery.Target]; !ok {
			spaceOf[o.Delivery.Target] = o.Delivery.Space
			s.targets = append(s.targets, o.Delivery.Target)
		}
		s.last[o.Delivery.ID] = i
	}
	slices.Sort(s.targets)
	for _, t := range s.targets {
		s.spaces = append(s.spaces, spaceOf[t])
	}
	return s
}

// The statements of a Settle, in the order they run.
const (
	// makeTargetsSQL makes the rows of the targets $1 (of spaces $2) that
	// have none, in key order, for outcomes that keep something of them.
	makeTargetsSQL = `INSERT INTO webhook_targets (target, space)
SELECT * FROM unnest($1::text[], $2::text[]) ORDER BY 1 ON CONFLICT DO NOTHING`
	// lockTargetsSQL locks targets, in key order, and reads their Health
	// as it stands before the Settle.
	lockTargetsSQL = `SELECT target, failures, failing_since FROM webhook_targets
WHERE target = ANY($1) ORDER BY target FOR UPDATE`
	// forgetTargetsSQL drops the rows of targets $1 that keep nothing: no
	// delivery, failure or pause that lasts past $2.
	forgetTargetsSQL = `
DELETE FROM webhook_targets t
WHERE t.target = ANY($1) AND t.held = 0 AND t.leased = 0 AND t.failures = 0
	AND NOT t.paused AND (t.paused_until IS NULL OR t.paused_until <= $2)
	AND NOT EXISTS (SELECT FROM webhook_deliveries d WHERE d.target = t.target AND d.died IS NOT NULL)`
)

// batch returns the Settle's transaction, and a notification after it
// when it makes a delivery pending that is due by now.
func (s *settlement) batch(maxDead int) (*pgx.Batch, error) {
	b := &pgx.Batch{}
	b.Queue(`BEGIN`)
	b.Queue(asyncSettings) // see Settle
	if kept := s.keptTargets(); len(kept) > 0 {
		b.Queue(makeTargetsSQL, kept, s.spacesOf(kept))
	}
	s.lockAt = b.Len()
	b.Queue(lockTargetsSQL, s.targets)
	for _, seg := range s.segments() {
		if err := s.queueSegment(b, seg, maxDead); err != nil {
			return nil, err
		}
	}
	b.Queue(forgetTargetsSQL, s.targets, s.now)
	s.commitAt = b.Len()
	b.Queue(`COMMIT`)
	if s.readyNow() {
		queueNotify(b)
	}
	return b, nil
}

// run reads the results of batch b, and returns each outcome's Health. A
// notification that fails after the commit fails nothing: the claimers'
// poll makes up for it.
func (s *settlement) run(br pgx.BatchResults, b *pgx.Batch) ([]webhook.Health, error) {
	defer br.Close()
	var stored map[string]webhook.Health
	for i := range b.Len() {
		if i == s.lockAt {
			var err error
			if stored, err = readTargets(br.Query()); err != nil {
				return nil, err
			}
			continue
		}
		if _, err := br.Exec(); err != nil {
			if i > s.commitAt {
				break
			}
			return nil, err
		}
	}
	return s.apply(stored), nil
}

// keptTargets returns the targets, in key order, of which the outcomes
// keep something: a delivery pending or dead, a failure, a pause. They
// need a row; the others may have none (their Health is zero).
func (s *settlement) keptTargets() []string {
	kept := map[string]bool{}
	for _, o := range s.outcomes {
		if o.Failed || afterOutcome(o.Kind) != absent {
			kept[o.Delivery.Target] = true
		}
	}
	var out []string
	for _, t := range s.targets {
		if kept[t] {
			out = append(out, t)
		}
	}
	return out
}

// spacesOf returns the spaces of targets, which are among s.targets.
func (s *settlement) spacesOf(targets []string) []string {
	out := make([]string, len(targets))
	for i, t := range targets {
		k, _ := slices.BinarySearch(s.targets, t)
		out[i] = s.spaces[k]
	}
	return out
}

// readTargets reads the rows of lockTargetsSQL: the targets' Health.
func readTargets(rows pgx.Rows, err error) (map[string]webhook.Health, error) {
	if err != nil {
		return nil, err
	}
	stored := map[string]webhook.Health{}
	var target string
	var failures int
	var since pgtype.Timestamptz
	_, err = pgx.ForEachRow(rows, []any{&target, &failures, &since}, func() error {
		stored[target] = webhook.Health{Failures: failures, FailingSince: utcOrZero(since)}
		return nil
	})
	return stored, err
}

// apply works out, in order, each outcome's effect on its target's Health
// from what the target had stored (a target without a row has none), and
// returns the Health after each: what settleSQL stores, outcome by
// outcome.
func (s *settlement) apply(stored map[string]webhook.Health) []webhook.Health {
	health := make([]webhook.Health, len(s.outcomes))
	for i, o := range s.outcomes {
		h := stored[o.Delivery.Target]
		switch {
		case o.Kind == webhook.Delivered:
			h = webhook.Health{}
		case o.Failed:
			if h.Failures == 0 {
				h.FailingSince = s.now
			}
			h.Failures++
		}
		stored[o.Delivery.Target] = h
		health[i] = h
	}
	return health
}

// segments returns the indexes of the outcomes cut, in order, into runs
// that name each delivery at most once: the outcomes of a run are written
// together, by one statement, and the runs one after the other, so that
// two outcomes of a delivery apply in their order, and so do the deaths,
// which are numbered as written.
func (s *settlement) segments() [][]int {
	var segs [][]int
	seen := map[string]bool{}
	for i, o := range s.outcomes {
		if len(segs) == 0 || seen[o.Delivery.ID] {
			segs = append(segs, nil)
			clear(seen)
		}
		seen[o.Delivery.ID] = true
		segs[len(segs)-1] = append(segs[len(segs)-1], i)
	}
	return segs
}

// queueSegment adds to b the statements that record a run of outcomes
// (settleSQL), and drop the dead beyond maxDead of the targets that got
// some.
func (s *settlement) queueSegment(b *pgx.Batch, seg []int, maxDead int) error {
	var ids, targets, removed, diedTargets []string
	var after []int32
	var retried, released, died []*webhook.Delivery
	for _, i := range seg {
		o := s.outcomes[i]
		d := o.Delivery
		ids, targets = append(ids, d.ID), append(targets, d.Target)
		if afterOutcome(o.Kind) == ready {
			after = append(after, 1)
		} else {
			after = append(after, 0)
		}
		switch o.Kind {
		case webhook.Delivered, webhook.Dropped:
			removed = append(removed, d.ID)
		case webhook.Retried:
			retried = append(retried, d)
		case webhook.Released:
			released = append(released, d)
		case webhook.Died:
			died = append(died, d)
			if !slices.Contains(diedTargets, d.Target) {
				diedTargets = append(diedTargets, d.Target)
			}
		}
	}
	args := []any{ids, targets, after, removed}
	for _, ds := range [][]*webhook.Delivery{retried, released, died} {
		p, err := newEnqueueBatch(ds)
		if err != nil {
			return err
		}
		if p == nil {
			p = &enqueueBatch{}
		}
		args = append(args, p.args()...)
	}
	tc := s.targetColumns(seg)
	args = append(args, s.targets, tc.reset, tc.failed, tc.pause, s.now, countShards)
	b.Queue(settleSQL, args...)
	if len(diedTargets) > 0 {
		b.Queue(trimDeadSQL, diedTargets, maxDead)
	}
	return nil
}

// targetCols are what outcomes do to each target's Health and pause, as
// the columns of settleSQL, in the order of settlement.targets.
type targetCols struct {
	reset  []bool               // one was Delivered
	failed []int32              // attempts failed after the last Delivered, or in all
	pause  []pgtype.Timestamptz // the latest PauseUntil of a failed attempt
}

// targetColumns returns what the outcomes seg do to the targets.
func (s *settlement) targetColumns(seg []int) targetCols {
	c := targetCols{reset: make([]bool, len(s.targets)), failed: make([]int32, len(s.targets)),
		pause: make([]pgtype.Timestamptz, len(s.targets))}
	for _, i := range seg {
		o := s.outcomes[i]
		k, _ := slices.BinarySearch(s.targets, o.Delivery.Target)
		switch {
		case o.Kind == webhook.Delivered:
			c.reset[k], c.failed[k] = true, 0
		case o.Failed:
			c.failed[k]++
			if until := o.PauseUntil.Truncate(time.Microsecond).UTC(); !until.IsZero() &&
				(!c.pause[k].Valid || until.After(c.pause[k].Time)) {
				c.pause[k] = nullTime(until)
			}
		}
	}
	return c
}

// readyNow reports whether a delivery made pending is due already, and so
// worth a notification: another replica with idle workers may take it at
// once. A delivery due later, or a perTarget slot freed, is left to the
// claimers' NextDue and poll, and to this replica, which claims again.
func (s *settlement) readyNow() bool {
	for _, i := range s.last {
		o := s.outcomes[i]
		if afterOutcome(o.Kind) == ready && !o.Delivery.Due.After(s.now) {
			return true
		}
	}
	return false
}

// settleSQL records a run of outcomes that names each delivery once, in
// one statement, once lockTargetsSQL holds their targets (so that its
// snapshot, taken after that statement's waits, sees every change of
// their deliveries). For the deliveries $1 (of targets $2, pending
// afterwards when $3 is 1) it reads where they stood, removes those of
// $4 (Delivered, Dropped), stores as pending those of $5 to $15
// (Retried: with their Attempts, LastStatus and LastError; an enqueue
// order is kept) and of $16 to $26 (Released: only their Due changes),
// and stores as given, as dead, those of $27 to $37, numbered in the
// order given (webhook_delivery_death, taken after the sort), which is
// the order they died in. It adds to the targets $38 (every target of the
// Settle) and to the count in all what the moves make of their counts
// (held: pending and leased), and sets their Health and pause as the
// outcomes say ($39 whether one was Delivered, $40 the attempts that
// failed after the last that was, $41 the latest pause asked for; $42
// now, $43 countShards), and their earliest ready delivery.
//
// Its parts see the rows as they were before it, not one another's
// changes: the head of a target is found past its old head among the
// deliveries it does not name (see nextHead), and among those it made
// pending, as their upserts return them. The count in all is changed last
// of what it locks, as every transaction changes it, once it holds its
// targets.
var settleSQL = `
WITH b AS (
	SELECT u.target, u.after - (x.id IS NOT NULL AND x.died IS NULL)::int AS held,
		-(x.lease_until IS NOT NULL)::int AS leased
	FROM unnest($1::text[], $2::text[], $3::int[]) AS u(id, target, after)
	LEFT JOIN LATERAL (SELECT d.id, d.died, d.lease_until FROM webhook_deliveries d WHERE d.id = u.id LIMIT 1) AS x ON true
), removed AS (
	DELETE FROM webhook_deliveries d WHERE d.id = ANY($4)
), retried AS (
	INSERT INTO webhook_deliveries AS d (id, seq, target, space, webhook_id, event_ids, body, created,
		attempts, due, last_status, last_error)
	SELECT u.id, nextval('webhook_delivery_seq'), u.target, u.space, u.webhook_id, u.event_ids, u.body,
		u.created, u.attempts, u.due, u.last_status, u.last_error
	FROM ` + unnestDeliveries(5) + `
	ORDER BY u.ord
	ON CONFLICT (id) DO UPDATE SET attempts = excluded.attempts, due = excluded.due,
		last_status = excluded.last_status, last_error = excluded.last_error, lease_until = NULL, died = NULL
	RETURNING d.target, d.due, d.seq
), released AS (
	INSERT INTO webhook_deliveries AS d (id, seq, target, space, webhook_id, event_ids, body, created,
		attempts, due, last_status, last_error)
	SELECT u.id, nextval('webhook_delivery_seq'), u.target, u.space, u.webhook_id, u.event_ids, u.body,
		u.created, u.attempts, u.due, u.last_status, u.last_error
	FROM ` + unnestDeliveries(16) + `
	ORDER BY u.ord
	ON CONFLICT (id) DO UPDATE SET due = excluded.due, lease_until = NULL, died = NULL
	RETURNING d.target, d.due, d.seq
), died AS (
	INSERT INTO webhook_deliveries AS d (id, seq, target, space, webhook_id, event_ids, body, created,
		attempts, due, last_status, last_error, died)
	SELECT u.id, nextval('webhook_delivery_seq'), u.target, u.space, u.webhook_id, u.event_ids, u.body,
		u.created, u.attempts, u.due, u.last_status, u.last_error, nextval('webhook_delivery_death')
	FROM ` + unnestDeliveries(27) + `
	ORDER BY u.ord
	ON CONFLICT (id) DO UPDATE SET target = excluded.target, space = excluded.space,
		webhook_id = excluded.webhook_id, event_ids = excluded.event_ids, body = excluded.body,
		created = excluded.created, attempts = excluded.attempts, due = excluded.due,
		last_status = excluded.last_status, last_error = excluded.last_error,
		lease_until = NULL, died = excluded.died
), fresh AS (
	SELECT DISTINCT ON (r.target) r.target, r.due, r.seq
	FROM (SELECT * FROM retried UNION ALL SELECT * FROM released) AS r
	ORDER BY r.target, r.due, r.seq
), delta AS (
	SELECT b.target, sum(b.held)::int AS held, sum(b.leased)::int AS leased FROM b GROUP BY b.target
), total AS (
	INSERT INTO webhook_queue_counts AS c (shard, held)
	SELECT pg_backend_pid() % $43, sum(delta.held) FROM delta HAVING sum(delta.held) <> 0
	ON CONFLICT (shard) DO UPDATE SET held = c.held + excluded.held
)
UPDATE webhook_targets t SET held = t.held + coalesce(dl.held, 0), leased = t.leased + coalesce(dl.leased, 0),
	failures = CASE WHEN o.reset THEN o.failed ELSE t.failures + o.failed END,
	failing_since = CASE WHEN (CASE WHEN o.reset THEN o.failed ELSE t.failures + o.failed END) = 0 THEN NULL
		WHEN o.reset OR t.failures = 0 THEN $42 ELSE t.failing_since END,
	paused_until = greatest(t.paused_until, o.pause),
	paused = coalesce(greatest(t.paused_until, o.pause) > $42, false),
	(next_due, next_seq) = (
		SELECT x.due, x.seq FROM (
			(SELECT d.due, d.seq FROM webhook_deliveries d
			WHERE t.next_due IS NOT NULL AND d.target = t.target AND d.lease_until IS NULL AND d.died IS NULL
				AND (d.due, d.seq) >= (t.next_due, t.next_seq) AND d.id <> ALL($1)
			ORDER BY d.due, d.seq LIMIT 1)
			UNION ALL
			SELECT f.due, f.seq WHERE f.due IS NOT NULL
		) AS x
		ORDER BY x.due, x.seq LIMIT 1)
FROM unnest($38::text[], $39::bool[], $40::int[], $41::timestamptz[]) AS o(target, reset, failed, pause)
LEFT JOIN delta AS dl ON dl.target = o.target
LEFT JOIN fresh AS f ON f.target = o.target
WHERE t.target = o.target`

// unnestDeliveries reads deliveries laid out as enqueueBatch.args from
// parameter $n on, as u, in their order (u.ord).
func unnestDeliveries(n int) string {
	return fmt.Sprintf(`unnest($%d::text[], $%d::text[], $%d::text[], $%d::text[], $%d::json[], $%d::bytea[],
		$%d::timestamptz[], $%d::int[], $%d::timestamptz[], $%d::int[], $%d::text[])
		WITH ORDINALITY AS u(id, target, space, webhook_id, event_ids, body, created, attempts,
			due, last_status, last_error, ord)`, n, n+1, n+2, n+3, n+4, n+5, n+6, n+7, n+8, n+9, n+10)
}

const (
	// trimDeadSQL drops the oldest dead of targets $1 beyond $2.
	trimDeadSQL = `
DELETE FROM webhook_deliveries d USING (
	SELECT id FROM (
		SELECT id, row_number() OVER (PARTITION BY target ORDER BY died DESC) AS rn
		FROM webhook_deliveries WHERE target = ANY($1) AND died IS NOT NULL) AS r
	WHERE r.rn > $2) AS x
WHERE d.id = x.id`
)

// args returns b as the arguments of enqueueSQL, and of the parts of
// settleSQL that store deliveries.
func (b *enqueueBatch) args() []any {
	return []any{b.ids, b.targets, b.spaces, b.webhookIDs, b.eventIDs, b.bodies,
		b.created, b.attempts, b.due, b.lastStatus, b.lastError}
}

// nullTime returns t as a column value, NULL when zero.
func nullTime(t time.Time) pgtype.Timestamptz {
	return pgtype.Timestamptz{Time: t, Valid: !t.IsZero()}
}

// utcOrZero returns a column's time in UTC, zero for NULL.
func utcOrZero(t pgtype.Timestamptz) time.Time {
	if !t.Valid {
		return time.Time{}
	}
	return t.Time.UTC()
}
