package queuetest

import (
	"testing"
	"time"

	"github.com/crmhook/webhook"
)

// settleChecks are the clauses of Queue.Settle: what each OutcomeKind does
// to a delivery, leased or not held, and the Health it returns.
var settleChecks = []check{
	{"Settle of a leased delivery: each kind ends the lease and does what it says", func(t *testing.T, open opener) {
		d := delivery("target-a", "d", base)
		retried := failed(d, at(10*time.Second), 500)
		// Released changes nothing but Due, whatever else the outcome's
		// delivery says.
		released, releasedWant := clone(retried), clone(d)
		releasedWant.Due = retried.Due
		dead := failed(d, later, 410)
		for _, tt := range []struct {
			name    string
			outcome webhook.Outcome
			pending *webhook.Delivery // what Claim returns at its Due, if anything
			dead    []*webhook.Delivery
		}{
			{"Delivered removes it", outcome(webhook.Delivered, clone(d)), nil, nil},
			{"Dropped removes it", outcome(webhook.Dropped, clone(d)), nil, nil},
			{"Retried makes it pending at its Due with its Attempts, LastStatus and LastError",
				failure(webhook.Retried, clone(retried), time.Time{}), retried, nil},
			{"Retried due at once makes it claimable at once", failure(webhook.Retried, failed(d, base, 500), time.Time{}), failed(d, base, 500), nil},
			{"Released makes it pending at its Due and changes nothing else", outcome(webhook.Released, released), releasedWant, nil},
			{"Released due at once makes it claimable at once", outcome(webhook.Released, clone(d)), d, nil},
			{"Died keeps it among the dead as given", failure(webhook.Died, clone(dead), time.Time{}), nil, []*webhook.Delivery{dead}},
		} {
			t.Run(tt.name, func(t *testing.T) {
				c := open(t, none)
				c.enqueue(clone(d))
				c.requireClaim(base, 1, 1, "d")
				c.settle(base, tt.outcome)
				c.requireDead("target-a", tt.dead...)
				if tt.pending == nil {
					c.requireNothingDue()
					c.requireClaim(later, 10, 1)
					return
				}
				c.requireNextDue(tt.pending.Due)
				if tt.pending.Due.After(base) {
					c.requireClaim(tt.pending.Due.Add(-time.Microsecond), 10, 1)
				}
				requireDeliveries(t, []*webhook.Delivery{tt.pending}, c.claim(tt.pending.Due, 10, 1), "Claim at its Due")
			})
		}
	}},

	{"Settle of an id the Queue does not hold: Retried and Released store it pending, Died dead, Delivered and Dropped nothing", func(t *testing.T, open opener) {
		d := failed(delivery("target-a", "d", base), at(time.Second), 500)
		for _, tt := range []struct {
			kind    webhook.OutcomeKind
			pending bool
			dead    []*webhook.Delivery
		}{
			{webhook.Delivered, false, nil},
			{webhook.Dropped, false, nil},
			{webhook.Retried, true, nil},
			{webhook.Released, true, nil},
			{webhook.Died, false, []*webhook.Delivery{d}},
		} {
			t.Run(kindName(tt.kind), func(t *testing.T) {
				c := open(t, none)
				c.settle(base, outcome(tt.kind, clone(d)))
				c.requireDead("target-a", tt.dead...)
				if !tt.pending {
					c.requireNothingDue()
					c.requireClaim(later, 10, 1)
					return
				}
				c.requireNextDue(d.Due)
				requireDeliveries(t, []*webhook.Delivery{d}, c.claim(d.Due, 10, 1), "Claim at its Due")
			})
		}
	}},

	{"Settle records outcomes in order and returns each one's target Health after it", func(t *testing.T, open opener) {
		c := open(t, none)
		var as []*webhook.Delivery
		for _, id := range []string{"a1", "a2", "a3", "a4", "a5", "a6"} {
			as = append(as, delivery("target-a", id, base))
		}
		b1 := delivery("target-b", "b1", base)
		c.enqueue(append(as, b1)...)
		c.claim(base, 10, 10)
		now := at(time.Second)
		got := c.settle(now,
			failure(webhook.Retried, failed(as[0], later, 500), time.Time{}),
			outcome(webhook.Died, failed(b1, later, 410)), // not counted: no Failed
			failure(webhook.Died, failed(as[1], later, 500), time.Time{}),
			outcome(webhook.Released, as[2]),
			outcome(webhook.Dropped, as[3]),
			outcome(webhook.Delivered, as[4]),
			failure(webhook.Retried, failed(as[5], later, 503), time.Time{}),
		)
		requireHealth(t, []webhook.Health{
			{Failures: 1, FailingSince: now},
			{},
			{Failures: 2, FailingSince: now},
			{Failures: 2, FailingSince: now},
			{Failures: 2, FailingSince: now},
			{}, // Delivered resets
			{Failures: 1, FailingSince: now},
		}, got, "Settle")
	}},

	{"a target's Health counts the failures since its last success, across Settles, from the time of the first", func(t *testing.T, open opener) {
		c := open(t, none)
		for _, id := range []string{"a1", "a2", "a3", "a4", "a5", "b1"} {
			c.enqueue(delivery("target-"+id[:1], id, base))
		}
		byID := map[string]*webhook.Delivery{}
		for _, d := range c.claim(base, 10, 10) {
			byID[d.ID] = d
		}
		step := func(now time.Time, o webhook.Outcome, want webhook.Health) {
			t.Helper()
			requireHealth(t, []webhook.Health{want}, c.settle(now, o), "Settle of %s at %s", o.Delivery.ID, since(now))
		}
		t1, t2, t3, t4 := at(time.Second), at(time.Minute), at(time.Hour), at(2*time.Hour)
		step(t1, failure(webhook.Retried, failed(byID["a1"], later, 500), time.Time{}), webhook.Health{Failures: 1, FailingSince: t1})
		step(t2, failure(webhook.Retried, failed(byID["a2"], later, 503), time.Time{}), webhook.Health{Failures: 2, FailingSince: t1})
		// Another target's failures and success are its own.
		step(t2, failure(webhook.Retried, failed(byID["b1"], later, 503), time.Time{}), webhook.Health{Failures: 1, FailingSince: t2})
		step(t2, outcome(webhook.Delivered, byID["b1"]), webhook.Health{})
		step(t3, failure(webhook.Died, failed(byID["a3"], later, 410), time.Time{}), webhook.Health{Failures: 3, FailingSince: t1})
		step(t3, outcome(webhook.Delivered, byID["a4"]), webhook.Health{})
		step(t4, failure(webhook.Retried, failed(byID["a5"], later, 500), time.Time{}), webhook.Health{Failures: 1, FailingSince: t4})
		// An outcome of an id the Queue does not hold counts too.
		step(t4, failure(webhook.Died, failed(delivery("target-a", "gone", base), later, 500), time.Time{}),
			webhook.Health{Failures: 2, FailingSince: t4})
		// A target the Queue knows nothing of is healthy.
		step(t4, outcome(webhook.Dropped, delivery("target-new", "new", base)), webhook.Health{})
	}},
}

// kindName names an OutcomeKind for a subtest.
func kindName(k webhook.OutcomeKind) string {
	switch k {
	case webhook.Delivered:
		return "Delivered"
	case webhook.Retried:
		return "Retried"
	case webhook.Died:
		return "Died"
	case webhook.Released:
		return "Released"
	case webhook.Dropped:
		return "Dropped"
	}
	return "unknown"
}
