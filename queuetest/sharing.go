package queuetest

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/crmhook/webhook"
)

// sharingChecks are the clauses of what a Queue shares with its callers
// and between them: ownership of the values passed and returned,
// simultaneous use, and a done context.
var sharingChecks = []check{
	{"the caller owns what it passes to Enqueue and Settle and what Claim and Dead return", func(t *testing.T, open opener) {
		c := open(t, none)
		d := delivery("target-a", "a", base)
		want := clones(d)
		c.enqueue(d)
		// A caller may reuse the struct and its slices' spare room: change
		// every field and enqueue it again as another delivery. It does
		// not write into the elements, which the Queue may share.
		d.ID, d.WebhookID, d.Target, d.Attempts, d.Due, d.LastError = "b", "hook-b", "target-b", 9, at(time.Second), "reused"
		d.EventIDs = append(d.EventIDs[:1:1], "ev-b")
		d.Body = []byte("[]")
		want = append(want, clone(d))
		c.enqueue(d)

		got := c.claim(at(time.Second), 10, 10)
		requireSameDeliveries(t, want, got, "Claim")
		for _, g := range got {
			g.ID, g.Attempts, g.Due, g.LastStatus, g.LastError = "changed", 7, at(time.Hour), 418, "mine"
			g.EventIDs = append(g.EventIDs, "appended")
			g.Body = append(g.Body, '!')
		}
		requireSameDeliveries(t, want, c.claim(at(time.Second+lease), 10, 10), "Claim after the callers changed what they got")

		now := at(time.Second + lease)
		r := failed(want[0], now.Add(time.Hour), 500)
		retried := clone(r)
		c.settle(now, failure(webhook.Retried, r, time.Time{}), outcome(webhook.Delivered, want[1]))
		r.Attempts, r.Due, r.LastError = 99, base, "changed after Settle"
		got = c.claim(retried.Due, 10, 10)
		requireDeliveries(t, []*webhook.Delivery{retried}, got, "Claim after Settle")
		c.settle(retried.Due, outcome(webhook.Delivered, got[0]))

		dead := c.kill(later, delivery("target-c", "c", later))
		for _, g := range c.dead("target-c") {
			g.ID, g.Attempts, g.LastError = "changed", 0, "mine"
			g.EventIDs = append(g.EventIDs, "appended")
		}
		c.requireDead("target-c", dead...)
	}},

	{"concurrent Claims lease each delivery to one claimer, and perTarget holds across them", func(t *testing.T, open opener) {
		const targets, perTargetN, workers, perTarget = 20, 10, 8, 2
		c := open(t, none)
		var all []*webhook.Delivery
		for i := range targets * perTargetN {
			s := fmt.Sprintf("space-%d", i%3)
			all = append(all, spaceDelivery(s, fmt.Sprintf("target-%d", i%targets), fmt.Sprintf("d%d", i),
				at(time.Duration(i)*time.Millisecond)))
		}
		c.enqueue(all...)
		now := at(time.Hour) // every delivery is due, and no lease ends
		var (
			mu       sync.Mutex
			seen     = map[string]int{}
			inFlight = map[string]int{}
			wg       sync.WaitGroup
		)
		for range workers {
			wg.Go(func() {
				for {
					ds, err := c.q.Claim(c.ctx, now, 3, 2*time.Hour, perTarget)
					if err != nil {
						t.Errorf("Claim: %v", err) // not require: FailNow belongs to the test's goroutine
						return
					}
					if len(ds) == 0 {
						// Nothing claimable: done if nothing is in flight
						// either, or wait for the others to settle.
						mu.Lock()
						idle := len(seen) == len(all) || total(inFlight) == 0
						mu.Unlock()
						if idle {
							return
						}
						runtime.Gosched()
						continue
					}
					mu.Lock()
					for _, d := range ds {
						seen[d.ID]++
						if inFlight[d.Target]++; inFlight[d.Target] > perTarget {
							t.Errorf("%s has %d deliveries leased at once", d.Target, inFlight[d.Target])
						}
					}
					mu.Unlock()
					outcomes := make([]webhook.Outcome, len(ds))
					mu.Lock()
					for i, d := range ds {
						inFlight[d.Target]-- // before Settle, which may let another claimer take its place
						outcomes[i] = outcome(webhook.Delivered, d)
					}
					mu.Unlock()
					if _, err := c.q.Settle(c.ctx, now, outcomes...); err != nil {
						t.Errorf("Settle: %v", err)
						return
					}
				}
			})
		}
		wg.Wait()
		for _, d := range all {
			require.Equal(t, 1, seen[d.ID], "times %s was claimed", d.ID)
		}
		require.Len(t, seen, len(all))
		c.requireNothingDue()
	}},

	{"a method whose ctx is done returns ctx's error and changes nothing", func(t *testing.T, open opener) {
		canceled, cancel := context.WithCancel(t.Context())
		cancel()
		expired, cancel2 := context.WithDeadline(t.Context(), time.Now().Add(-time.Second))
		defer cancel2()
		for _, ctx := range []context.Context{canceled, expired} {
			t.Run(ctx.Err().Error(), func(t *testing.T) {
				c := open(t, none)
				dead := c.kill(base, delivery("target-a", "a1", base))
				c.enqueue(delivery("target-a", "a2", base), delivery("target-b", "b1", base))
				c.requireClaim(base, 1, 1, "a2")
				a2 := delivery("target-a", "a2", at(time.Second))
				calls := map[string]func() error{
					"Enqueue": func() error { return c.q.Enqueue(ctx, delivery("target-c", "c1", base)) },
					"Claim": func() error {
						_, err := c.q.Claim(ctx, base, 10, lease, 10)
						return err
					},
					"Settle": func() error {
						_, err := c.q.Settle(ctx, base, failure(webhook.Retried, a2, at(time.Hour)))
						return err
					},
					"Dead": func() error {
						_, err := c.q.Dead(ctx, "target-a")
						return err
					},
					"Revive": func() error {
						_, err := c.q.Revive(ctx, "target-a", "", base)
						return err
					},
					"Purge": func() error { return c.q.Purge(ctx, "target-b") },
					"Pending": func() error {
						_, err := c.q.Pending(ctx, "a2", "b1")
						return err
					},
					"NextDue": func() error {
						_, _, err := c.q.NextDue(ctx)
						return err
					},
				}
				for name, call := range calls {
					require.ErrorIs(t, call(), ctx.Err(), name)
				}
				c.requireDead("target-a", dead...)
				c.requireNextDue(base) // b1
				c.requireClaim(base, 10, 10, "b1")
				c.requireClaim(at(lease), 10, 10, "a2", "b1") // their leases ended
				requireHealth(t, []webhook.Health{{}}, c.settle(at(lease), outcome(webhook.Dropped, a2)), "Health")
			})
		}
	}},
}

// total returns the sum of m's values.
func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
