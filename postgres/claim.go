package postgres

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/crmhook/webhook"
)

// claimRounds bounds the times one Claim goes back to the database for
// more targets of a space (see claim.pick); past it, it takes what it has.
const claimRounds = 8

// Claim leases until now+lease, and returns, up to limit due deliveries,
// as the Queue contract says (limit is the contract's max).
//
// It works in one transaction: it returns to pending the deliveries whose
// lease ended, counts the leased deliveries of every space that has ready
// work, locks (FOR UPDATE SKIP LOCKED) the first ready targets of the
// spaces that may get some of limit, reads their earliest ready
// deliveries, and takes them one at a time as the fairness between spaces
// says. A target locked by another claimer is skipped: that one claims
// from it.
func (q *Queue) Claim(ctx context.Context, now time.Time, limit int, lease time.Duration, perTarget int) ([]*webhook.Delivery, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, nil
	}
	var out []*webhook.Delivery
	err := pipelined(ctx, q.pool, func(conn *pgx.Conn) error {
		c := &claim{ctx: ctx, conn: conn, now: now, leaseEnd: ceilMicro(now.Add(lease)),
			limit: limit, perTarget: max(perTarget, 1)}
		var err error
		out, err = c.run()
		return err
	})
	if err != nil {
		return nil, ctxErr(ctx, fmt.Errorf("postgres: claim: %w", err))
	}
	return out, nil
}

// claim is one Claim at work.
type claim struct {
	ctx              context.Context
	conn             *pgx.Conn
	now, leaseEnd    time.Time
	limit, perTarget int

	spaces  []*claimSpace // those with ready work, as the sweep left them
	targets []string      // targets locked so far
	picked  []candidate   // what it takes, in order
}

// claimSpace is what a claim knows of a space.
type claimSpace struct {
	name   string
	leased int // leased deliveries, those this claim took included
	// cands are the ready deliveries read of its locked targets and not
	// taken, in (due, seq) order. The first of a space's deliveries in
	// that order are all among them, as many as it has targets that gave
	// one (nonEmpty), since a target's earliest delivery is never earlier
	// than that of the targets before it: that many may be taken before
	// the space needs more targets.
	cands    []candidate
	nonEmpty int
	taken    int
	complete bool // every ready target of the space is locked
}

// candidate is a ready delivery, by its place in the claim order.
type candidate struct {
	id, target string
	due        time.Time
	seq        int64
}

func (a candidate) before(b candidate) bool {
	if c := a.due.Compare(b.due); c != 0 {
		return c < 0
	}
	return a.seq < b.seq
}

// certain reports whether s's next candidate is surely its next delivery
// in the claim order.
func (s *claimSpace) certain() bool {
	return len(s.cands) > 0 && (s.complete || s.taken < s.nonEmpty)
}

// before orders spaces as Claim takes from them: fewest leased first,
// then the earliest next delivery. Both must be certain.
func (s *claimSpace) before(o *claimSpace) bool {
	if s.leased != o.leased {
		return s.leased < o.leased
	}
	return s.cands[0].before(o.cands[0])
}

func (c *claim) run() ([]*webhook.Delivery, error) {
	if err := c.sweep(); err != nil {
		return nil, err
	}
	if len(c.spaces) == 0 {
		_, err := c.conn.Exec(c.ctx, "COMMIT") // the sweep's
		return nil, err
	}
	leased := make([]int, len(c.spaces))
	for i, s := range c.spaces {
		leased[i] = s.leased
	}
	want := map[*claimSpace]int{}
	for i, n := range quotas(leased, c.limit) {
		if n > 0 {
			want[c.spaces[i]] = n
		}
	}
	if err := c.fetch(want); err != nil {
		return nil, err
	}
	if err := c.pick(); err != nil {
		return nil, err
	}
	return c.lease()
}

// sweepLockSQL locks, in key order, the targets of deliveries whose lease
// has ended ($1 now) and those whose pause has; sweepSQL makes those
// deliveries ready again and fixes their targets' counts and earliest
// ready delivery; unpauseSQL ends the pauses, so that the targets come
// back into the index Claim walks.
//
// A lease rarely ends (a replica crashed, or gave up on an attempt), so
// both statements look first for one that has (leaseEnded), through the
// index of leases: left to itself, the planner may read the whole table
// for lease_until <= $1, which it takes to match a third of it.
const (
	leaseEnded = `(SELECT lease_until FROM webhook_deliveries
	WHERE lease_until <= $1 ORDER BY lease_until LIMIT 1) IS NOT NULL`
	sweepLockSQL = `
SELECT FROM webhook_targets
WHERE target IN (
	SELECT target FROM webhook_deliveries WHERE lease_until <= $1 AND ` + leaseEnded + `
	UNION
	SELECT target FROM webhook_targets WHERE paused AND paused_until <= $1)
ORDER BY target FOR UPDATE`
	sweepSQL = `
WITH freed AS (
	UPDATE webhook_deliveries SET lease_until = NULL WHERE lease_until <= $1 AND ` + leaseEnded + `
	RETURNING target, due, seq
), first AS (
	SELECT DISTINCT ON (target) target, due, seq, count(*) OVER (PARTITION BY target) AS n
	FROM freed ORDER BY target, due, seq
)
UPDATE webhook_targets t SET leased = t.leased - f.n,
	next_due = CASE WHEN t.next_due IS NULL OR (f.due, f.seq) < (t.next_due, t.next_seq) THEN f.due ELSE t.next_due END,
	next_seq = CASE WHEN t.next_due IS NULL OR (f.due, f.seq) < (t.next_due, t.next_seq) THEN f.seq ELSE t.next_seq END
FROM first f WHERE t.target = f.target`
	unpauseSQL = `UPDATE webhook_targets SET paused = false WHERE paused AND paused_until <= $1`
)

// spacesSQL lists the spaces that have a target ready to claim from ($1
// now, $2 perTarget), with the deliveries they have leased. It walks the
// distinct spaces of targets with ready deliveries through the index
// (one probe a space), not the targets.
const spacesSQL = `
WITH RECURSIVE s(space) AS (
	SELECT min(space) FROM webhook_targets WHERE next_due IS NOT NULL AND NOT paused
	UNION ALL
	SELECT (SELECT min(t.space) FROM webhook_targets t
		WHERE t.next_due IS NOT NULL AND NOT t.paused AND t.space > s.space)
	FROM s WHERE s.space IS NOT NULL
)
SELECT s.space, (SELECT coalesce(sum(l.leased), 0) FROM webhook_targets l WHERE l.space = s.space AND l.leased > 0)
FROM s
WHERE s.space IS NOT NULL AND EXISTS (
	SELECT FROM webhook_targets t
	WHERE t.space = s.space AND t.next_due <= $1 AND NOT t.paused AND t.ready_at <= $1 AND t.leased < $2)`

// sweep begins the transaction, returns ended leases to pending, ends
// passed pauses and reads the spaces with ready work, in one round trip. Claims need not be
// durable: a lease lost in a crash of the server only makes its delivery
// claimable again.
func (c *claim) sweep() error {
	b := &pgx.Batch{}
	b.Queue(`BEGIN`)
	b.Queue(`SET LOCAL synchronous_commit = off`)
	b.Queue(sweepLockSQL, c.now)
	b.Queue(sweepSQL, c.now)
	b.Queue(unpauseSQL, c.now)
	b.Queue(spacesSQL, c.now, c.perTarget)
	br := c.conn.SendBatch(c.ctx, b)
	defer br.Close()
	for range 5 {
		if _, err := br.Exec(); err != nil {
			return err
		}
	}
	rows, _ := br.Query()
	spaces, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*claimSpace, error) {
		s := &claimSpace{}
		return s, r.Scan(&s.name, &s.leased)
	})
	c.spaces = spaces
	return err
}

// quotas returns, for spaces that have leased deliveries each, how many
// of limit more each may get when they are taken one at a time from the
// space with the fewest: the level that limit more fill up to, less what
// each has, which is what it gets if every space has enough and ties go
// its way.
func quotas(leased []int, limit int) []int {
	fill := func(level int) int {
		n := 0
		for _, l := range leased {
			n += max(0, level-l)
		}
		return n
	}
	lo, hi := slices.Min(leased), slices.Min(leased)+limit // fill(hi) >= limit
	for lo < hi {
		mid := lo + (hi-lo)/2
		if fill(mid) >= limit {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	out := make([]int, len(leased))
	for i, l := range leased {
		out[i] = min(limit, max(0, lo-l))
	}
	return out
}

// fetch locks up to want[s] more ready targets of each space s and reads
// the deliveries they may give (webhook_claim_targets).
func (c *claim) fetch(want map[*claimSpace]int) error {
	if len(want) == 0 {
		return nil
	}
	names := make([]string, 0, len(want))
	quotas := make([]int32, 0, len(want))
	byName := make(map[string]*claimSpace, len(want))
	for s, n := range want {
		names = append(names, s.name)
		quotas = append(quotas, int32(n))
		byName[s.name] = s
	}
	rows, _ := c.conn.Query(c.ctx, `SELECT * FROM webhook_claim_targets($1, $2, $3, $4, $5, $6)`,
		c.now, c.perTarget, c.limit, names, quotas, nonNil(c.targets))
	locked := map[*claimSpace]int{}
	added := map[*claimSpace]bool{}
	var cand candidate
	var space string
	var id *string
	var due *time.Time
	var seq *int64
	_, err := pgx.ForEachRow(rows, []any{&cand.target, &space, &id, &due, &seq}, func() error {
		s := byName[space]
		if n := len(c.targets); n == 0 || c.targets[n-1] != cand.target {
			// A target's rows come together.
			c.targets = append(c.targets, cand.target)
			locked[s]++
			if id != nil {
				s.nonEmpty++
			}
		}
		if id != nil {
			cand.id, cand.due, cand.seq = *id, *due, *seq
			s.cands = append(s.cands, cand)
			added[s] = true
		}
		return nil
	})
	if err != nil {
		return err
	}
	for s, n := range want {
		s.complete = locked[s] < n
	}
	for s := range added {
		slices.SortFunc(s.cands, func(a, b candidate) int {
			if a.before(b) {
				return -1
			}
			return 1
		})
	}
	return nil
}

// pick takes the deliveries one at a time from the space with the fewest
// leased, among equals the one with the earliest delivery, and goes back
// for more targets of a space that might come next but has no delivery it
// is sure of.
func (c *claim) pick() error {
	for round := 0; len(c.picked) < c.limit; {
		var best *claimSpace
		for _, s := range c.spaces {
			if s.certain() && (best == nil || s.before(best)) {
				best = s
			}
		}
		want := map[*claimSpace]int{}
		for _, s := range c.spaces {
			if !s.certain() && !s.complete && (best == nil || s.leased <= best.leased) {
				want[s] = c.limit - len(c.picked)
			}
		}
		if len(want) > 0 && round < claimRounds {
			round++
			if err := c.fetch(want); err != nil {
				return err
			}
			continue
		}
		if best == nil {
			return nil
		}
		c.picked = append(c.picked, best.cands[0])
		best.cands = best.cands[1:]
		best.taken++
		best.leased++
	}
	return nil
}

// leaseSQL leases deliveries until $1 ($2 ids) and returns them.
const leaseSQL = `UPDATE webhook_deliveries SET lease_until = $1 WHERE id = ANY($2) RETURNING ` + deliveryColumns

// lease leases what pick took, fixes its targets and commits, in one
// round trip, and returns the deliveries in the order taken.
func (c *claim) lease() ([]*webhook.Delivery, error) {
	if len(c.picked) == 0 {
		_, err := c.conn.Exec(c.ctx, "COMMIT")
		return nil, err
	}
	ids := make([]string, len(c.picked))
	order := make(map[string]int, len(c.picked))
	perTarget := map[string]int32{}
	for i, p := range c.picked {
		ids[i] = p.id
		order[p.id] = i
		perTarget[p.target]++
	}
	targets := make([]string, 0, len(perTarget))
	leased := make([]int32, 0, len(perTarget))
	for t, n := range perTarget {
		targets = append(targets, t)
		leased = append(leased, n)
	}
	b := &pgx.Batch{}
	b.Queue(leaseSQL, c.leaseEnd, ids)
	b.Queue(adjustTargetsSQL, []string{}, targets, make([]int32, len(targets)), leased)
	b.Queue(`COMMIT`)
	br := c.conn.SendBatch(c.ctx, b)
	defer br.Close()
	rows, _ := br.Query()
	ds, err := scanDeliveries(rows)
	if err != nil {
		return nil, err
	}
	for range 2 {
		if _, err := br.Exec(); err != nil {
			return nil, err
		}
	}
	slices.SortFunc(ds, func(a, b *webhook.Delivery) int { return order[a.ID] - order[b.ID] })
	return ds, nil
}

// ceilMicro rounds t up to the microsecond, as a lease end is stored: a
// lease never ends before now+lease.
func ceilMicro(t time.Time) time.Time {
	if f := t.Truncate(time.Microsecond); !f.Equal(t) {
		return f.Add(time.Microsecond)
	}
	return t
}
