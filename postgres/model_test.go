package postgres

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/crmhook/webhook"
)

// TestQueueActsAsTheMemoryQueue runs random operations on fake time
// against a Queue and the core's MemoryQueue side by side, and requires
// the same answers: deliveries with every field, in order, Health, dead
// lists, revived ids, errors (bounds included) and, loosely, NextDue. The
// MemoryQueue is the reference the Queue contract is written from.
func TestQueueActsAsTheMemoryQueue(t *testing.T) {
	t.Parallel()
	for seed := range uint64(4) {
		t.Run(fmt.Sprintf("seed %d", seed), func(t *testing.T) {
			t.Parallel()
			limits := webhook.QueueLimits{MaxPending: 24, MaxPendingPerTarget: 9, MaxDead: 3}
			pool := newTestPool(t)
			pq, err := NewQueue(t.Context(), pool, QueueConfig{Limits: limits})
			require.NoError(t, err)
			m := &modelRun{t: t, rnd: rand.New(rand.NewPCG(seed, 42)), pg: pq,
				mem: webhook.NewMemoryQueue(limits), now: time.Unix(1_700_000_000, 0).UTC()}
			for step := range 300 {
				m.step = step
				m.randomOp()
				requireConsistent(t, pool, fmt.Sprintf("step %d", step))
			}
		})
	}
}

// modelRun is one random run of TestQueueActsAsTheMemoryQueue.
type modelRun struct {
	t       *testing.T
	rnd     *rand.Rand
	pg      *Queue
	mem     *webhook.MemoryQueue
	now     time.Time
	step    int
	nextID  int
	made    []*webhook.Delivery // every delivery made, as made
	claimed []*webhook.Delivery // claimed and not settled, as the MemoryQueue returned them
	settled []*webhook.Delivery // settled, kept to settle once more: an outcome after its lease
}

var modelTargets = []struct{ target, space string }{
	{"t1", "s1"}, {"t2", "s1"}, {"t3", "s1"}, {"t4", "s2"}, {"t5", "s2"}, {"t6", "s3"},
}

func (m *modelRun) randomOp() {
	switch r := m.rnd.IntN(100); {
	case r < 25:
		m.enqueue()
	case r < 50:
		m.claim()
	case r < 70:
		m.settle()
	case r < 75:
		m.revive()
	case r < 77:
		m.purge()
	case r < 85:
		m.dead()
	case r < 90:
		m.pending()
	default:
		m.nextDue()
	}
	m.now = m.now.Add(time.Duration(m.rnd.IntN(1500)) * time.Millisecond)
}

func (m *modelRun) delivery() *webhook.Delivery {
	m.nextID++
	tg := modelTargets[m.rnd.IntN(len(modelTargets))]
	id := fmt.Sprintf("d%03d", m.nextID)
	d := &webhook.Delivery{
		ID: id, Space: tg.space, WebhookID: "w-" + tg.target, Target: tg.target,
		EventIDs: []string{"ev-" + id}, Body: []byte(`[{"id":"` + id + `"}]`),
		Created: m.now, Attempts: m.rnd.IntN(3),
		Due:        m.now.Add(time.Duration(m.rnd.IntN(6000)-2000) * time.Millisecond),
		LastStatus: 500, LastError: "500 Internal Server Error",
	}
	m.made = append(m.made, d)
	return d
}

func (m *modelRun) enqueue() {
	var ds []*webhook.Delivery
	for range 1 + m.rnd.IntN(4) {
		ds = append(ds, m.delivery())
	}
	if m.rnd.IntN(10) == 0 && len(m.made) > 5 {
		// A delivery enqueued again: an id is never reused for another
		// delivery (another target), as a Dispatcher's are UUIDs.
		ds = append(ds, m.made[m.rnd.IntN(len(m.made)-len(ds))])
	}
	errMem := m.mem.Enqueue(m.t.Context(), cloneAll(ds)...)
	errPG := m.pg.Enqueue(m.t.Context(), cloneAll(ds)...)
	m.requireSameError("Enqueue", errMem, errPG)
}

func (m *modelRun) claim() {
	limit, lease, per := m.rnd.IntN(6), time.Duration(1+m.rnd.IntN(8))*time.Second, 1+m.rnd.IntN(3)
	mem, err := m.mem.Claim(m.t.Context(), m.now, limit, lease, per)
	require.NoError(m.t, err)
	pg, err := m.pg.Claim(m.t.Context(), m.now, limit, lease, per)
	require.NoError(m.t, err, "step %d", m.step)
	m.requireSame(fmt.Sprintf("Claim(max %d, perTarget %d)", limit, per), mem, pg)
	m.claimed = append(m.claimed, mem...)
}

func (m *modelRun) settle() {
	var outcomes []webhook.Outcome
	for range 1 + m.rnd.IntN(3) {
		var d *webhook.Delivery
		switch {
		case len(m.claimed) > 0 && m.rnd.IntN(5) > 0:
			i := m.rnd.IntN(len(m.claimed))
			d = m.claimed[i]
			m.claimed = slices.Delete(m.claimed, i, i+1)
		case len(m.settled) > 0:
			d = m.settled[m.rnd.IntN(len(m.settled))]
		default:
			d = m.delivery() // one the queues never held
		}
		d = cloneAll([]*webhook.Delivery{d})[0]
		o := webhook.Outcome{Delivery: d, Kind: webhook.OutcomeKind(1 + m.rnd.IntN(5))}
		if o.Kind == webhook.Retried || o.Kind == webhook.Died || o.Kind == webhook.Released {
			d.Attempts++
			d.Due = m.now.Add(time.Duration(m.rnd.IntN(4000)) * time.Millisecond)
			d.LastStatus, d.LastError = 429, "429 Too Many Requests"
			o.Failed = o.Kind != webhook.Released
			if m.rnd.IntN(3) == 0 {
				o.PauseUntil = m.now.Add(time.Duration(m.rnd.IntN(5000)) * time.Millisecond)
			}
		}
		outcomes = append(outcomes, o)
		m.settled = append(m.settled, d)
	}
	mem, err := m.mem.Settle(m.t.Context(), m.now, cloneOutcomes(outcomes)...)
	require.NoError(m.t, err)
	pg, err := m.pg.Settle(m.t.Context(), m.now, cloneOutcomes(outcomes)...)
	require.NoError(m.t, err, "step %d", m.step)
	if d := cmp.Diff(mem, pg); d != "" {
		m.t.Fatalf("step %d: Settle Health (-memory +postgres):\n%s", m.step, d)
	}
}

func (m *modelRun) revive() {
	tg := modelTargets[m.rnd.IntN(len(modelTargets))].target
	id := ""
	if m.rnd.IntN(2) == 0 {
		dead, err := m.mem.Dead(m.t.Context(), tg)
		require.NoError(m.t, err)
		id = "nope"
		if len(dead) > 0 {
			id = dead[m.rnd.IntN(len(dead))].ID
		}
	}
	mem, errMem := m.mem.Revive(m.t.Context(), tg, id, m.now)
	pg, errPG := m.pg.Revive(m.t.Context(), tg, id, m.now)
	m.requireSameError("Revive", errMem, errPG)
	require.Equal(m.t, mem, pg, "step %d: Revive(%s, %q)", m.step, tg, id)
}

func (m *modelRun) purge() {
	tg := modelTargets[m.rnd.IntN(len(modelTargets))].target
	require.NoError(m.t, m.mem.Purge(m.t.Context(), tg))
	require.NoError(m.t, m.pg.Purge(m.t.Context(), tg))
}

func (m *modelRun) dead() {
	tg := modelTargets[m.rnd.IntN(len(modelTargets))].target
	mem, err := m.mem.Dead(m.t.Context(), tg)
	require.NoError(m.t, err)
	pg, err := m.pg.Dead(m.t.Context(), tg)
	require.NoError(m.t, err)
	m.requireSame("Dead("+tg+")", mem, pg)
}

func (m *modelRun) pending() {
	var ids []string
	for range 1 + m.rnd.IntN(6) {
		if len(m.made) > 0 {
			ids = append(ids, m.made[m.rnd.IntN(len(m.made))].ID)
		}
	}
	mem, err := m.mem.Pending(m.t.Context(), ids...)
	require.NoError(m.t, err)
	pg, err := m.pg.Pending(m.t.Context(), ids...)
	require.NoError(m.t, err)
	slices.Sort(mem)
	slices.Sort(pg)
	require.ElementsMatch(m.t, slices.Compact(mem), slices.Compact(pg), "step %d: Pending(%v)", m.step, ids)
}

// nextDue checks NextDue loosely: the MemoryQueue reports the end of a
// pause even when its target's earliest delivery is due later, where the
// Queue reports the later of the two, as the contract says; so the Queue's
// answer may be later, never earlier.
func (m *modelRun) nextDue() {
	memAt, memOK, err := m.mem.NextDue(m.t.Context())
	require.NoError(m.t, err)
	pgAt, pgOK, err := m.pg.NextDue(m.t.Context())
	require.NoError(m.t, err)
	require.Equal(m.t, memOK, pgOK, "step %d: NextDue ok", m.step)
	require.False(m.t, pgAt.Before(memAt), "step %d: NextDue %v, the MemoryQueue's %v", m.step, pgAt, memAt)
}

func (m *modelRun) requireSame(what string, mem, pg []*webhook.Delivery) {
	m.t.Helper()
	if d := cmp.Diff(mem, pg, cmpopts.EquateEmpty()); d != "" {
		m.t.Fatalf("step %d at %v: %s (-memory +postgres):\n%s", m.step, m.now, what, d)
	}
}

func (m *modelRun) requireSameError(what string, errMem, errPG error) {
	m.t.Helper()
	for _, sentinel := range []error{nil, webhook.ErrInvalid, webhook.ErrQueueFull, webhook.ErrNotFound} {
		if errors.Is(errMem, sentinel) {
			require.ErrorIs(m.t, errPG, sentinel, "step %d: %s: the MemoryQueue said %v", m.step, what, errMem)
			return
		}
	}
	m.t.Fatalf("step %d: %s: unexpected error %v", m.step, what, errMem)
}

func cloneAll(ds []*webhook.Delivery) []*webhook.Delivery {
	out := make([]*webhook.Delivery, len(ds))
	for i, d := range ds {
		c := *d
		c.EventIDs = slices.Clone(d.EventIDs)
		c.Body = slices.Clone(d.Body)
		out[i] = &c
	}
	return out
}

func cloneOutcomes(os []webhook.Outcome) []webhook.Outcome {
	out := slices.Clone(os)
	for i := range out {
		out[i].Delivery = cloneAll([]*webhook.Delivery{os[i].Delivery})[0]
	}
	return out
}

// requireConsistent checks the counts the Queue keeps against the rows
// they count.
func requireConsistent(t *testing.T, pool *pgxpool.Pool, what string) {
	t.Helper()
	var bad []string
	rows, err := pool.Query(t.Context(), `
SELECT 'target ' || t.target || ': held ' || t.held || ' leased ' || t.leased || ' next ' || coalesce(t.next_seq::text, '-')
	|| ', rows: held ' || coalesce(c.held, 0) || ' leased ' || coalesce(c.leased, 0) || ' next ' || coalesce(c.next::text, '-')
FROM webhook_targets t FULL JOIN (
	SELECT target, count(*) FILTER (WHERE died IS NULL) AS held, count(lease_until) AS leased,
		(array_agg(seq ORDER BY due, seq) FILTER (WHERE died IS NULL AND lease_until IS NULL))[1] AS next
	FROM webhook_deliveries GROUP BY target) c USING (target)
WHERE t.held IS DISTINCT FROM coalesce(c.held, 0) OR t.leased IS DISTINCT FROM coalesce(c.leased, 0)
	OR t.next_seq IS DISTINCT FROM c.next
UNION ALL
SELECT 'in all ' || (SELECT coalesce(sum(held), 0) FROM webhook_queue_counts) || ', rows ' || count(*)
FROM webhook_deliveries WHERE died IS NULL
HAVING count(*) <> (SELECT coalesce(sum(held), 0) FROM webhook_queue_counts)`)
	require.NoError(t, err)
	bad, err = pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Empty(t, bad, "%s: counts that do not match the rows", what)
}
