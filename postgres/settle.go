package postgres

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/crmhook/webhook"
)

// Settle records outcomes, in order, as the Queue contract says, in one
// transaction of two round trips however many there are: one begins it,
// locks their targets and reads where their deliveries stand, the other
// writes them all and commits.
//
// Like a Claim, and unlike an Enqueue, a Settle commits without waiting
// for the disk (synchronous_commit off): a crash of the server, not of
// this process, may undo the Settles of its last fraction of a second,
// whose deliveries are then attempted again (a Delivered one sent twice,
// as the Queue contract allows) and whose failures are not counted. In
// exchange a Settle holds its targets' locks, which Enqueue and Claim
// wait for or skip, for a round trip rather than a flush to disk. A delivery's Target must be the one it was enqueued with. It
// NOTIFYs (see Wake) when it makes a delivery pending that is due by now.
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
	var health []webhook.Health
	var readyNow bool
	err := pipelined(ctx, q.pool, func(conn *pgx.Conn) error {
		s := newSettlement(now, outcomes)
		if err := s.read(ctx, conn); err != nil {
			return err
		}
		health = s.apply()
		readyNow = s.readyNow()
		return s.write(ctx, conn, q.limits.MaxDead)
	})
	if err != nil {
		return nil, ctxErr(ctx, fmt.Errorf("postgres: settle: %w", err))
	}
	if readyNow {
		q.notify(ctx)
	}
	return health, nil
}

// rowState is where a delivery stands in the table.
type rowState uint8

const (
	absent rowState = iota
	ready
	leased
	dead
)

// held reports whether the state counts among a target's pending
// deliveries.
func (s rowState) held() int32 {
	if s == ready || s == leased {
		return 1
	}
	return 0
}

// settlement is one Settle at work.
type settlement struct {
	now      time.Time
	outcomes []webhook.Outcome
	targets  []string // distinct, in key order: the order they are locked in
	spaces   []string // of targets
	// Per target: what the table holds, then what the outcomes make of it.
	state map[string]*targetState
	// Per delivery id: where it stood, and the last outcome for it.
	before map[string]rowState
	last   map[string]int // index in outcomes
	// deaths holds, by index in outcomes, the order in which each Died
	// outcome's delivery dies: numbers of webhook_delivery_death taken in
	// the order of the outcomes.
	deaths map[int]int64
}

// targetState is a target's Health, pause and the changes of its counts.
type targetState struct {
	health       webhook.Health
	pause        time.Time
	held, leased int32
}

func newSettlement(now time.Time, outcomes []webhook.Outcome) *settlement {
	s := &settlement{now: now.Truncate(time.Microsecond).UTC(), outcomes: outcomes,
		state: map[string]*targetState{}, before: map[string]rowState{}, last: map[string]int{},
		deaths: map[int]int64{}}
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
		s.state[t] = &targetState{}
	}
	return s
}

// died returns the indexes of the Died outcomes, in order.
func (s *settlement) died() []int {
	var idx []int
	for i, o := range s.outcomes {
		if o.Kind == webhook.Died {
			idx = append(idx, i)
		}
	}
	return idx
}

// readTargetsSQL locks targets, in key order, and reads their Health
// and pause.
const readTargetsSQL = `SELECT target, failures, failing_since, paused_until FROM webhook_targets
WHERE target = ANY($1) ORDER BY target FOR UPDATE`

// read begins the transaction, locks the targets in key order and then
// the deliveries, and reads their state, in one round trip; targets the
// Queue has no row of yet take one more, to make their rows, which nobody
// else can hold but one making them too.
func (s *settlement) read(ctx context.Context, conn *pgx.Conn) error {
	ids := make([]string, 0, len(s.last))
	for id := range s.last {
		ids = append(ids, id)
	}
	b := &pgx.Batch{}
	b.Queue(`BEGIN`)
	b.Queue(`SET LOCAL synchronous_commit = off`) // see Settle
	b.Queue(readTargetsSQL, s.targets)
	b.Queue(`SELECT id, lease_until IS NOT NULL, died IS NOT NULL FROM webhook_deliveries
		WHERE id = ANY($1) FOR UPDATE`, ids)
	died := s.died()
	if len(died) > 0 {
		b.Queue(`SELECT nextval('webhook_delivery_death') FROM generate_series(1, $1)`, len(died))
	}
	br := conn.SendBatch(ctx, b)
	defer br.Close()
	for range 2 {
		if _, err := br.Exec(); err != nil {
			return err
		}
	}
	found, err := s.readTargets(br.Query())
	if err != nil {
		return err
	}
	if err := s.readDeliveries(br.Query()); err != nil {
		return err
	}
	if len(died) > 0 {
		rows, _ := br.Query()
		numbers, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			return err
		}
		for k, i := range died {
			s.deaths[i] = numbers[k]
		}
	}
	if err := br.Close(); err != nil || found == len(s.targets) {
		return err
	}
	return s.makeTargets(ctx, conn)
}

// makeTargets makes the rows of the targets the Queue has none of, and
// locks and reads them.
func (s *settlement) makeTargets(ctx context.Context, conn *pgx.Conn) error {
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO webhook_targets (target, space) SELECT * FROM unnest($1::text[], $2::text[])
		ORDER BY 1 ON CONFLICT DO NOTHING`, s.targets, s.spaces)
	b.Queue(readTargetsSQL, s.targets)
	br := conn.SendBatch(ctx, b)
	defer br.Close()
	if _, err := br.Exec(); err != nil {
		return err
	}
	_, err := s.readTargets(br.Query())
	return err
}

// readTargets reads the rows of readTargetsSQL and returns how many there
// were.
func (s *settlement) readTargets(rows pgx.Rows, err error) (int, error) {
	if err != nil {
		return 0, err
	}
	var target string
	var failures int
	var since, pause pgtype.Timestamptz
	ct, err := pgx.ForEachRow(rows, []any{&target, &failures, &since, &pause}, func() error {
		st := s.state[target]
		st.health = webhook.Health{Failures: failures, FailingSince: utcOrZero(since)}
		st.pause = utcOrZero(pause)
		return nil
	})
	return int(ct.RowsAffected()), err
}

// readDeliveries reads where the deliveries stand.
func (s *settlement) readDeliveries(rows pgx.Rows, err error) error {
	if err != nil {
		return err
	}
	var id string
	var isLeased, isDead bool
	_, err = pgx.ForEachRow(rows, []any{&id, &isLeased, &isDead}, func() error {
		switch {
		case isDead:
			s.before[id] = dead
		case isLeased:
			s.before[id] = leased
		default:
			s.before[id] = ready
		}
		return nil
	})
	return err
}

// apply works out, in order, each outcome's effect on its target's Health
// and pause, and returns the Health after each. It also counts what the
// deliveries' moves change in their targets' counts.
func (s *settlement) apply() []webhook.Health {
	health := make([]webhook.Health, len(s.outcomes))
	for i, o := range s.outcomes {
		st := s.state[o.Delivery.Target]
		switch {
		case o.Kind == webhook.Delivered:
			st.health = webhook.Health{}
		case o.Failed:
			if st.health.Failures == 0 {
				st.health.FailingSince = s.now
			}
			st.health.Failures++
			if until := o.PauseUntil.Truncate(time.Microsecond).UTC(); until.After(st.pause) {
				st.pause = until
			}
		}
		health[i] = st.health
	}
	for id, i := range s.last {
		o := s.outcomes[i]
		st := s.state[o.Delivery.Target]
		from, to := s.before[id], afterOutcome(o.Kind)
		st.held += to.held() - from.held()
		if from == leased {
			st.leased--
		}
	}
	return health
}

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

// write applies the outcomes and commits, in one round trip: the
// deliveries removed, made pending and made dead, the dead beyond maxDead
// dropped, the targets' counts, Health, pause and earliest ready
// delivery, targets left with nothing forgotten, and the count in all.
// The outcomes are applied in rounds, each of which holds a delivery at
// most once, so that those of one delivery apply one after the other.
func (s *settlement) write(ctx context.Context, conn *pgx.Conn, maxDead int) error {
	b := &pgx.Batch{}
	at := maps.Clone(s.before)
	var diedTargets []string
	for _, round := range s.rounds() {
		if err := s.queueRound(b, round, at); err != nil {
			return err
		}
	}
	var fresh []string
	for id, i := range s.last {
		o := s.outcomes[i]
		switch afterOutcome(o.Kind) {
		case ready:
			fresh = append(fresh, id)
		case dead:
			if !slices.Contains(diedTargets, o.Delivery.Target) {
				diedTargets = append(diedTargets, o.Delivery.Target)
			}
		}
	}
	if len(diedTargets) > 0 {
		b.Queue(trimDeadSQL, diedTargets, maxDead)
	}
	var total int64
	cols := s.targetColumns()
	for _, n := range cols.held {
		total += int64(n)
	}
	b.Queue(settleTargetsSQL, fresh, s.targets, cols.held, cols.leased, cols.failures, cols.since, cols.pause, s.now)
	b.Queue(forgetTargetsSQL, s.targets, s.now)
	if total != 0 {
		b.Queue(countSQL, countShards, total)
	}
	b.Queue(`COMMIT`)
	return conn.SendBatch(ctx, b).Close()
}

// rounds returns the indexes of the outcomes in rounds: the first
// outcome of each delivery, in order, then the second of those that have
// two, and so on.
func (s *settlement) rounds() [][]int {
	var rounds [][]int
	seen := map[string]int{}
	for i, o := range s.outcomes {
		k := seen[o.Delivery.ID]
		seen[o.Delivery.ID]++
		if k == len(rounds) {
			rounds = append(rounds, nil)
		}
		rounds[k] = append(rounds[k], i)
	}
	return rounds
}

// queueRound adds to b the statements of one round of outcomes, given
// where their deliveries stand, which it updates.
func (s *settlement) queueRound(b *pgx.Batch, round []int, at map[string]rowState) error {
	var removed []string
	var retried, released, died []*webhook.Delivery
	var deaths []int64
	for _, i := range round {
		o := s.outcomes[i]
		d := o.Delivery
		switch o.Kind {
		case webhook.Delivered, webhook.Dropped:
			if at[d.ID] != absent {
				removed = append(removed, d.ID)
			}
		case webhook.Retried:
			retried = append(retried, d)
		case webhook.Released:
			released = append(released, d)
		case webhook.Died:
			died = append(died, d)
			deaths = append(deaths, s.deaths[i])
		}
		at[d.ID] = afterOutcome(o.Kind)
	}
	if len(removed) > 0 {
		b.Queue(`DELETE FROM webhook_deliveries WHERE id = ANY($1)`, removed)
	}
	for _, ds := range []struct {
		list []*webhook.Delivery
		sql  string
	}{{retried, pendingSQL}, {released, releasedSQL}, {died, deadSQL}} {
		if len(ds.list) == 0 {
			continue
		}
		p, err := newEnqueueBatch(ds.list)
		if err != nil {
			return err
		}
		args := p.args()
		if ds.sql == deadSQL {
			args = append(args, deaths)
		}
		b.Queue(ds.sql, args...)
	}
	return nil
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

// targetCols are the targets' new state as the columns of
// settleTargetsSQL, in the order of settlement.targets.
type targetCols struct {
	held, leased, failures []int32
	since, pause           []pgtype.Timestamptz
}

func (s *settlement) targetColumns() targetCols {
	var c targetCols
	for _, t := range s.targets {
		st := s.state[t]
		c.held = append(c.held, st.held)
		c.leased = append(c.leased, st.leased)
		c.failures = append(c.failures, int32(st.health.Failures))
		c.since = append(c.since, nullTime(st.health.FailingSince))
		c.pause = append(c.pause, nullTime(st.pause))
	}
	return c
}

// The statements of write.
const (
	// pendingSQL stores deliveries as pending (Retried), keeping the
	// enqueue order of those it holds.
	pendingSQL = `
INSERT INTO webhook_deliveries AS d (id, seq, target, space, webhook_id, event_ids, body, created,
	attempts, due, last_status, last_error)
SELECT u.id, nextval('webhook_delivery_seq'), u.target, u.space, u.webhook_id, u.event_ids, u.body,
	u.created, u.attempts, u.due, u.last_status, u.last_error
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::json[], $6::bytea[],
	$7::timestamptz[], $8::int[], $9::timestamptz[], $10::int[], $11::text[])
	WITH ORDINALITY AS u(id, target, space, webhook_id, event_ids, body, created, attempts,
		due, last_status, last_error, ord)
ORDER BY u.ord
ON CONFLICT (id) DO UPDATE SET attempts = excluded.attempts, due = excluded.due,
	last_status = excluded.last_status, last_error = excluded.last_error, lease_until = NULL, died = NULL`
	// releasedSQL is pendingSQL for Released: a delivery the Queue holds
	// keeps its Attempts, LastStatus and LastError; only its Due changes.
	releasedSQL = `
INSERT INTO webhook_deliveries AS d (id, seq, target, space, webhook_id, event_ids, body, created,
	attempts, due, last_status, last_error)
SELECT u.id, nextval('webhook_delivery_seq'), u.target, u.space, u.webhook_id, u.event_ids, u.body,
	u.created, u.attempts, u.due, u.last_status, u.last_error
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::json[], $6::bytea[],
	$7::timestamptz[], $8::int[], $9::timestamptz[], $10::int[], $11::text[])
	WITH ORDINALITY AS u(id, target, space, webhook_id, event_ids, body, created, attempts,
		due, last_status, last_error, ord)
ORDER BY u.ord
ON CONFLICT (id) DO UPDATE SET due = excluded.due, lease_until = NULL, died = NULL`
	// deadSQL stores deliveries, as given, as dead, in the order $12 gives.
	deadSQL = `
INSERT INTO webhook_deliveries AS d (id, seq, target, space, webhook_id, event_ids, body, created,
	attempts, due, last_status, last_error, died)
SELECT u.id, nextval('webhook_delivery_seq'), u.target, u.space, u.webhook_id, u.event_ids, u.body,
	u.created, u.attempts, u.due, u.last_status, u.last_error, u.died
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::json[], $6::bytea[],
	$7::timestamptz[], $8::int[], $9::timestamptz[], $10::int[], $11::text[], $12::bigint[])
	WITH ORDINALITY AS u(id, target, space, webhook_id, event_ids, body, created, attempts,
		due, last_status, last_error, died, ord)
ORDER BY u.ord
ON CONFLICT (id) DO UPDATE SET target = excluded.target, space = excluded.space,
	webhook_id = excluded.webhook_id, event_ids = excluded.event_ids, body = excluded.body,
	created = excluded.created, attempts = excluded.attempts, due = excluded.due,
	last_status = excluded.last_status, last_error = excluded.last_error,
	lease_until = NULL, died = excluded.died`
	// trimDeadSQL drops the oldest dead of targets $1 beyond $2.
	trimDeadSQL = `
DELETE FROM webhook_deliveries d USING (
	SELECT id FROM (
		SELECT id, row_number() OVER (PARTITION BY target ORDER BY died DESC) AS rn
		FROM webhook_deliveries WHERE target = ANY($1) AND died IS NOT NULL) AS r
	WHERE r.rn > $2) AS x
WHERE d.id = x.id`
	// settleTargetsSQL sets the targets' counts, Health and pause, and
	// their earliest ready delivery ($1 the ids of the deliveries made
	// pending, $8 now).
	settleTargetsSQL = `WITH ` + freshHeads + `
UPDATE webhook_targets t SET held = t.held + u.held, leased = t.leased + u.leased,
	failures = u.failures, failing_since = u.failing_since, paused_until = u.paused_until,
	paused = coalesce(u.paused_until > $8, false),
	(next_due, next_seq) = ` + nextHead + `
FROM unnest($2::text[], $3::int[], $4::int[], $5::int[], $6::timestamptz[], $7::timestamptz[])
	AS u(target, held, leased, failures, failing_since, paused_until)
LEFT JOIN fresh AS f ON f.target = u.target
WHERE t.target = u.target`
	// forgetTargetsSQL drops the rows of targets $1 that keep nothing: no
	// delivery, failure or pause that lasts past $2.
	forgetTargetsSQL = `
DELETE FROM webhook_targets t
WHERE t.target = ANY($1) AND t.held = 0 AND t.leased = 0 AND t.failures = 0
	AND NOT t.paused AND (t.paused_until IS NULL OR t.paused_until <= $2)
	AND NOT EXISTS (SELECT FROM webhook_deliveries d WHERE d.target = t.target AND d.died IS NOT NULL)`
)

// args returns b as the arguments of pendingSQL and deadSQL.
func (b *enqueueBatch) args() []any {
	return []any{b.ids, b.targets, b.spaces, b.webhookIDs, b.eventIDs, b.bodies,
		b.created, b.attempts, b.due, b.lastStatus, b.lastError}
}

// idsOf returns the ids of ds.
func idsOf(ds []*webhook.Delivery) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.ID
	}
	return out
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
