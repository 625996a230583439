package webhook

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"
)

// run is the Dispatcher's scheduler: it claims due deliveries for the
// idle workers and hands them out, then sleeps until the next due time,
// a finished attempt, a new Dispatch, the Queue's news of other
// processes, or the poll interval, whichever comes first. Pending
// deliveries cost no goroutine.
func (d *Dispatcher) run() {
	defer d.work.Done()
	var news <-chan struct{}
	if w, ok := d.queue.(Waker); ok {
		news = w.Wake(d.ctx)
	}
	// The timer that pokes at the next due time stays armed from one
	// round to the next while it would fire no later than needed: a
	// round that ends early (an attempt finished) arms none, so that a
	// busy scheduler does not allocate a timer a delivery. An early
	// poke only makes a round more.
	var stopTimer func() bool
	var armed time.Time // when stopTimer's timer fires
	poke := d.poke
	defer func() {
		if stopTimer != nil {
			stopTimer()
		}
	}()
	for {
		select {
		case <-d.stop:
			return
		default:
		}
		d.purgeDeleted()
		now := d.clock.Now()
		// A Claim that filled every free worker may have left more for
		// those that freed meanwhile; one that did not found all there
		// was, and a recorded outcome, a Dispatch or the Queue's news
		// pokes when there may be more. Claiming again at once would only
		// come back empty (a round trip to a database Queue), which with
		// MaxInFlight 1 is every other Claim.
		filled, err := d.claim(now)
		if filled {
			continue
		}
		next := now.Add(d.poll)
		if err == nil {
			var due time.Time
			var ok bool
			due, ok, err = d.queue.NextDue(d.ctx)
			// A due time that has passed waits for a free slot or a
			// registration below its limit: a recorded outcome pokes.
			if ok && due.After(now) && due.Before(next) {
				next = due
			}
		}
		if err != nil && d.ctx.Err() == nil {
			// Tried again at the next poll; a Queue that fails is the
			// host's to mend.
			d.log.LogAttrs(d.ctx, slog.LevelError, "webhook: reading the queue", slog.String("error", err.Error()))
		}
		// Measured from a fresh reading: time may have moved since the
		// Claim, and a fake clock's timer only fires when it moves again.
		wait := next.Sub(d.clock.Now())
		if wait <= 0 {
			continue
		}
		if stopTimer == nil || !armed.After(now) || armed.After(next) {
			if stopTimer != nil {
				stopTimer()
			}
			stopTimer, armed = d.clock.AfterFunc(wait, poke), next
			if !d.clock.Now().Before(next) {
				// The clock moved while the timer was armed from an
				// older reading, so it may fire late: look again now.
				continue
			}
		}
		select {
		case <-d.wake:
		case <-news:
		case <-d.stop:
			return
		}
	}
}

// purgeDeleted removes the deliveries of deleted registrations from the
// Queue.
func (d *Dispatcher) purgeDeleted() {
	d.mu.Lock()
	keys := d.purges
	d.purges = nil
	d.mu.Unlock()
	for _, key := range keys {
		if err := d.queue.Purge(d.bg, key); err != nil {
			// What is left is dropped, and reported, when it comes due.
			d.log.LogAttrs(d.bg, slog.LevelError, "webhook: purging a deleted registration's deliveries",
				slog.String("error", err.Error()))
			continue
		}
		d.mu.Lock()
		for id, tr := range d.calls {
			if _, busy := d.busy[id]; tr.target == key && !busy {
				d.doneLocked(id) // dropped: Flush waits no more for it
			}
		}
		d.mu.Unlock()
	}
}

// claim claims due deliveries for the free workers and hands them out:
// to the idle ones, and to new ones up to Config.Workers. Workers live
// until Close: a new goroutine for every attempt would grow its stack
// from scratch to the depth of an HTTP request each time. It reports
// whether the Claim filled every free worker. Once Close has stopped the
// workers it claims nothing.
//
// The scheduler and the workers claim, one at a time: a claim asked for
// while another is under way is made by that one once it is done, so
// that it sees what the Queue recorded meanwhile. d.work counts the
// caller, so Close waits for the workers it starts and the jobs it hands
// out.
func (d *Dispatcher) claim(now time.Time) (filled bool, err error) {
	select {
	case <-d.stop:
		return false, nil
	default:
	}
	d.mu.Lock()
	if d.claiming {
		d.reclaim = true
		d.mu.Unlock()
		return false, nil
	}
	d.claiming = true
	for {
		d.reclaim = false
		idle, fresh := d.idle, d.workers-d.started
		d.idle, d.started = 0, d.workers
		d.mu.Unlock()
		filled, err = d.claimFor(now, idle, fresh)
		d.mu.Lock()
		if !d.reclaim {
			d.claiming = false
			d.mu.Unlock()
			return filled, err
		}
		now = d.clock.Now()
	}
}

// claimFor claims due deliveries for idle workers and fresh ones to
// start, which claim has taken from the free ones, and gives back those
// it does not need.
func (d *Dispatcher) claimFor(now time.Time, idle, fresh int) (filled bool, err error) {
	n := idle + fresh
	if n == 0 {
		return false, nil
	}
	claimed, err := d.queue.Claim(d.ctx, now, n, d.lease, d.perTarget)
	handoffs := min(len(claimed), idle)
	d.mu.Lock()
	for _, dl := range claimed {
		d.busy[dl.ID] = now
	}
	d.idle += idle - handoffs
	d.started -= fresh - (len(claimed) - handoffs)
	d.mu.Unlock()
	for i, dl := range claimed {
		if i < handoffs {
			d.jobs <- dl // never blocks: d.jobs holds a job for every worker
		} else {
			d.work.Add(1)
			go d.worker(dl)
		}
	}
	return len(claimed) == n, err
}

// worker makes attempts, one at a time, until Close; it records each
// outcome (see record) and waits, idle, for the next job, which it may
// have claimed itself.
func (d *Dispatcher) worker(dl *Delivery) {
	defer d.work.Done()
	for {
		d.record(d.attempt(dl))
		select {
		case dl = <-d.jobs:
		case <-d.stop:
			return
		}
	}
}

// finished is an attempt that ended, to be recorded: its outcome for
// the Queue, and its report for the Observer once the outcome is recorded.
type finished struct {
	outcome Outcome
	// report is kept here rather than allocated for each attempt; it is
	// empty, no DeliveryID, for a delivery that Close releases unattempted.
	report Attempt
	// disable is why the registration is to be disabled, whatever its
	// Health: a 410 Gone.
	disable string
}

// attempt makes one attempt at dl and judges it, or says why none was
// made.
func (d *Dispatcher) attempt(dl *Delivery) finished {
	f := finished{outcome: Outcome{Delivery: dl},
		report: Attempt{DeliveryID: dl.ID, Space: dl.Space, WebhookID: dl.WebhookID, EventIDs: dl.EventIDs, Attempt: dl.Attempts}}
	a := &f.report
	reg, err := d.reg.byTarget(d.ctx, dl.Target)
	switch {
	case errors.Is(err, ErrNotFound):
		// Deleted: its deliveries are not wanted, and nobody else's are.
		a.Err, a.Dropped = fmt.Errorf("registration deleted: %w", ErrNotFound), true
		f.outcome.Kind = Dropped
		return f
	case err != nil:
		// Nobody can tell yet whether it exists: held back, not lost.
		dl.Due = d.clock.Now().Add(d.poll)
		a.Err, a.RetryAt = fmt.Errorf("registration not known here and the store did not answer: %w", err), dl.Due
		f.outcome.Kind = Released
		return f
	}
	hook := &reg.hook
	a.URL = redactURL(hook.URL)
	if hook.Disabled != nil {
		a.Err = fmt.Errorf("registration disabled at %s: %s", hook.Disabled.At.Format(time.RFC3339), hook.Disabled.Reason)
		dl.LastError, a.Dead = a.Err.Error(), true
		f.outcome.Kind = Died
		return f
	}
	a.Attempt++
	out := d.send(reg, dl)
	a.StatusCode, a.Err, a.Duration = out.status, out.err, out.duration
	a.Response = out.response[:min(len(out.response), responseExcerpt)]
	now := d.clock.Now()
	if out.err != nil && d.ctx.Err() != nil {
		// Close gave up waiting: the attempt does not count, and the
		// delivery stays pending for the next process.
		a.Err, a.RetryAt = fmt.Errorf("%w: attempt cancelled: %v", ErrClosed, out.err), now
		dl.Due = now
		f.outcome.Kind = Released
		return f
	}
	v := d.policy.decide(a.Attempt, out.status, out.header, out.err != nil, now)
	f.outcome.Kind, f.disable = v.kind, v.disable
	if v.kind == Delivered {
		return f
	}
	dl.Attempts++
	dl.LastStatus, dl.LastError = out.status, out.err.Error()
	dl.Due = v.due
	f.outcome.Failed, f.outcome.PauseUntil = true, v.pause
	a.RetryAt, a.Dead = v.due, v.kind == Died
	return f
}

// maxRecord is the most outcomes one Settle records.
const maxRecord = 256

// record has the outcome of a finished attempt recorded, and counts its
// worker idle. A worker that finds nobody recording records the outcomes
// waiting itself, in one Settle; then, when none has finished meanwhile,
// it claims for the idle workers, itself among them, so that a delivery
// costs no goroutine handoff while attempts finish one at a time. When
// more have finished, it hands the recording over to the recorder, as
// under load: one Settle after another in the recorder, while the
// scheduler claims, so that a database Queue's Claims and Settles overlap.
func (d *Dispatcher) record(f finished) {
	d.mu.Lock()
	d.outcomes = append(d.outcomes, f)
	if d.recording {
		d.idle++
		d.mu.Unlock()
		return
	}
	d.recording = true
	news := d.settleWaiting()
	// Idle only now: a job claimed for it while it recorded would wait,
	// its lease running, for as long as the Settle took.
	d.idle++
	if len(d.outcomes) > 0 {
		d.mu.Unlock()
		d.poke()             // to claim for the workers it freed meanwhile
		d.more <- struct{}{} // never blocks: the recorder has taken the last one
		return
	}
	d.recording = false
	d.mu.Unlock()
	if _, err := d.claim(d.clock.Now()); news || err != nil {
		// A Claim that failed is tried again, and logged, by the
		// scheduler.
		d.poke()
	}
}

// recordRest is the Dispatcher's recorder: it takes the recording over
// from a worker when outcomes wait, and records them, as many at a time
// as have finished meanwhile, until none is left, poking the scheduler
// after each Settle. It ends when Close closes d.more, once the workers
// have ended.
func (d *Dispatcher) recordRest() {
	defer d.recorder.Done()
	for range d.more {
		d.mu.Lock()
		for len(d.outcomes) > 0 {
			d.settleWaiting()
			d.poke()
		}
		d.recording = false
		d.mu.Unlock()
	}
}

// settleWaiting records the outcomes waiting, and reports whether the
// scheduler is to look at the Queue again (see settle). It requires d.mu
// held, and releases it meanwhile.
func (d *Dispatcher) settleWaiting() (news bool) {
	// Two arrays in turn: the attempts that finish meanwhile append to
	// the other.
	batch := d.outcomes
	d.outcomes = d.spare[:0]
	d.mu.Unlock()
	for i := 0; i < len(batch); i += maxRecord {
		news = d.settle(batch[i:min(i+maxRecord, len(batch))]) || news
	}
	clear(batch)
	d.mu.Lock()
	d.spare = batch
	return news
}

// settle records a batch of outcomes: their workers are free, and so are
// their registrations' limits unless the Queue failed to record them. It
// reports whether the scheduler is to look at the Queue again: an outcome
// was a retry, a release or a pause, which may be due before the
// scheduler's next round, or the Queue failed to record them.
func (d *Dispatcher) settle(batch []finished) (news bool) {
	now := d.clock.Now()
	// One records at a time (see record), and a Queue keeps no outcomes.
	outcomes := slices.Grow(d.settled[:0], len(batch))[:len(batch)]
	d.settled = outcomes
	defer clear(outcomes) // their deliveries are not kept either
	for i, f := range batch {
		if f.disable != "" {
			// Before its lease ends, so that no other of its deliveries
			// is claimed meanwhile.
			d.disable(&batch[i], now)
		}
		outcomes[i] = batch[i].outcome
		news = news || outcomes[i].Failed || outcomes[i].Kind == Released
	}
	health, err := d.recordOutcomes(now, outcomes)
	if err != nil {
		// The deliveries stay leased: they are attempted again, here or
		// elsewhere, when their leases end.
		d.mu.Lock()
		for _, o := range outcomes {
			delete(d.busy, o.Delivery.ID)
		}
		d.mu.Unlock()
		return true
	}
	var done []string
	for i := range batch {
		f := &batch[i]
		o := &f.outcome
		if f.disable == "" && o.Failed {
			if f.disable = d.policy.disableFor(health[i], now); f.disable != "" {
				d.disable(f, now)
			}
		}
		if f.report.DeliveryID != "" {
			d.report(f.report)
		}
		switch o.Kind {
		case Delivered, Died, Dropped:
			done = append(done, o.Delivery.ID)
		}
	}
	d.mu.Lock()
	for _, f := range batch {
		delete(d.busy, f.outcome.Delivery.ID)
	}
	for _, id := range done {
		d.doneLocked(id)
	}
	d.mu.Unlock()
	return news
}

// recordOutcomes settles outcomes with the Queue, trying again every poll
// interval while it fails, as long as the lease of the earliest claimed of
// their deliveries lasts with room to spare (half of it) and Close has not
// begun: past that, another process may have claimed them.
func (d *Dispatcher) recordOutcomes(now time.Time, outcomes []Outcome) ([]Health, error) {
	var give time.Time // half the lease of the earliest claimed, once a Settle failed
	for {
		health, err := d.queue.Settle(d.bg, now, outcomes...)
		if err == nil {
			return health, nil
		}
		d.log.LogAttrs(d.bg, slog.LevelError, "webhook: recording the outcomes of attempts",
			slog.Int("outcomes", len(outcomes)), slog.String("error", err.Error()))
		if give.IsZero() {
			give = d.claimedFirst(now, outcomes).Add(d.lease / 2)
		}
		if !d.clock.Now().Add(d.poll).Before(give) {
			return nil, err
		}
		again := make(chan struct{})
		stopTimer := d.clock.AfterFunc(d.poll, func() { close(again) })
		select {
		case <-again:
		case <-d.stop:
			stopTimer()
			return nil, err
		}
	}
}

// claimedFirst returns when the earliest claimed of the outcomes'
// deliveries was claimed here, or now.
func (d *Dispatcher) claimedFirst(now time.Time, outcomes []Outcome) time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	first := now
	for _, o := range outcomes {
		if at, ok := d.busy[o.Delivery.ID]; ok && at.Before(first) {
			first = at
		}
	}
	return first
}

// disable disables the registration of f's delivery, which then dies
// rather than waits for a retry.
func (d *Dispatcher) disable(f *finished, now time.Time) {
	dl := f.outcome.Delivery
	dis, err := d.reg.disable(d.bg, dl.Target, f.disable, now)
	if err != nil {
		d.log.LogAttrs(d.bg, slog.LevelError, "webhook: disabling a registration",
			slog.String("webhook_id", dl.WebhookID), slog.String("reason", f.disable), slog.String("error", err.Error()))
	}
	f.report.Disabled = dis
	if f.outcome.Kind != Retried {
		return
	}
	if _, err := d.queue.Settle(d.bg, now, Outcome{Delivery: dl, Kind: Died}); err != nil {
		d.log.LogAttrs(d.bg, slog.LevelError, "webhook: recording a delivery dead", slog.String("error", err.Error()))
		return
	}
	f.outcome.Kind = Died
	f.report.RetryAt, f.report.Dead = time.Time{}, true
}
