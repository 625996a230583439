package webhook

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Dispatcher matches events against a Registry and delivers them: it
// projects, signs and chunks the items of every registration an event
// fires, keeps them in its Queue, and sends them through its Transport in
// the background, retrying failures on the RetrySchedule. Each
// registration has its own limit on requests in flight and its own pace,
// kept in the Queue, so that a slow or dead receiver holds up only its own
// deliveries, and the Queue shares the workers fairly between spaces.
// Replicas of a service run a Dispatcher each over one durable Queue.
//
// A Dispatcher is safe for simultaneous use by multiple goroutines. Use
// NewDispatcher; the zero value is not usable.
type Dispatcher struct {
	reg       *Registry
	matcher   *Matcher
	queue     Queue
	transport Transport
	own       *HTTPTransport // the default transport, closed by Close
	expander  Expander
	clock     Clock
	log       *slog.Logger
	observe   func(Attempt)
	format    SignatureFormat
	policy    policy
	workers   int
	perTarget int // Config.MaxInFlight
	maxBody   int
	lease     time.Duration
	poll      time.Duration
	// attemptTimeout bounds an attempt, when the Transport's own bound
	// may be longer: half the lease, so that it cannot run out in flight.
	attemptTimeout time.Duration

	ctx    context.Context // of every attempt; cancelled when Close gives up
	cancel context.CancelFunc
	bg     context.Context // ctx without its cancellation, for the Queue's bookkeeping
	// The values of the headers every request has, shared by all of them:
	// a Transport must not modify a Request.
	contentType, agent []string
	scratch            sync.Pool      // of *scratch, what Dispatch builds in
	settled            []Outcome      // what settle hands the Queue; only the one recording uses it
	wake               chan struct{}  // tells the scheduler to look at the Queue again
	stop               chan struct{}  // closed by Close: the scheduler and the workers end
	jobs               chan *Delivery // to the idle workers; buffered, so that a claimer never waits for one
	more               chan struct{}  // hands the recording over to the recorder; closed once the workers end
	unwatch            func()         // stops hearing of the Registry's deletions
	intake             sync.WaitGroup
	work               sync.WaitGroup // the scheduler and the workers
	recorder           sync.WaitGroup

	mu        sync.Mutex // guards the fields below
	closed    bool
	started   int                  // workers started, at most Config.Workers
	idle      int                  // workers done with their attempts, not handed a job yet
	outcomes  []finished           // of attempts, to be recorded
	spare     []finished           // the array outcomes had before it was taken to be recorded
	recording bool                 // a worker, or the recorder, records outcomes
	claiming  bool                 // a Claim for the free workers is under way
	reclaim   bool                 // another is asked for once it is done
	calls     map[string]tracked   // deliveries of Dispatch calls not done, by id
	busy      map[string]time.Time // when the deliveries in flight here, whose outcome is not recorded yet, were claimed
	purges    []string             // targets whose registrations were deleted, to purge
	reviving  int                  // Redeliver calls waiting for the Queue
	early     map[string]bool      // deliveries done while reviving > 0, which a revival may claim
}

// call counts the deliveries of one Dispatch call, for Flush.
type call struct {
	pending int
	done    chan struct{}
}

// tracked is a delivery of a call that is not done.
type tracked struct {
	call   *call
	target string // for a purge, which says which deliveries it removed by their target
	// queued says that the Queue has the delivery: until then, that the
	// Queue does not hold it as pending means nothing (see askQueue).
	queued bool
}

// NewDispatcher returns a Dispatcher that delivers the events of r's
// registrations as cfg says.
func NewDispatcher(r *Registry, cfg Config) (*Dispatcher, error) {
	if r == nil {
		return nil, invalid("registry", "nil")
	}
	var errs FieldErrors
	for i, delay := range cfg.RetrySchedule {
		if delay < 0 {
			errs = append(errs, invalid(fmt.Sprintf("retry_schedule[%d]", i), "%v is negative", delay))
		}
	}
	if cfg.Signature != PipelinerSignature && cfg.Signature != StandardSignature {
		errs = append(errs, invalid("signature", "unknown format %d", cfg.Signature))
	}
	if len(errs) > 0 {
		return nil, errs
	}
	d := &Dispatcher{reg: r, matcher: NewMatcher(r), queue: cfg.Queue, transport: cfg.Transport,
		expander: cfg.Expander, clock: cfg.Clock, log: cfg.Logger, observe: cfg.Observer,
		format: cfg.Signature,
		policy: policy{schedule: cfg.RetrySchedule, jitter: defaultJitter,
			maxRetryAfter:   orDefault(cfg.MaxRetryAfter, DefaultMaxRetryAfter),
			disableAfter:    orDefault(cfg.DisableAfter, DefaultDisableAfter),
			disableAttempts: orDefault(cfg.DisableAttempts, DefaultDisableAttempts)},
		workers:   orDefault(cfg.Workers, DefaultWorkers),
		perTarget: orDefault(cfg.MaxInFlight, DefaultMaxInFlight),
		maxBody:   orDefault(cfg.MaxBody, DefaultMaxBody),
		lease:     orDefault(cfg.Lease, DefaultLease),
		poll:      orDefault(cfg.PollInterval, DefaultPollInterval),
		wake:      make(chan struct{}, 1), stop: make(chan struct{}),
		calls: map[string]tracked{}, busy: map[string]time.Time{}}
	if d.policy.schedule == nil {
		d.policy.schedule = defaultRetrySchedule
	}
	if d.queue == nil {
		d.queue = NewMemoryQueue(QueueLimits{})
	}
	if d.transport == nil {
		d.own = NewHTTPTransport(HTTPConfig{AddressPolicy: r.addresses})
		d.transport = d.own
	}
	if d.clock == nil {
		d.clock = systemClock{}
	}
	if d.log == nil {
		d.log = slog.Default()
	}
	d.attemptTimeout = d.lease / 2
	if ht, ok := d.transport.(*HTTPTransport); ok && ht.timeout <= d.attemptTimeout {
		d.attemptTimeout = 0
	}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	d.bg = context.WithoutCancel(d.ctx)
	d.contentType, d.agent = []string{"application/json"}, []string{userAgent}
	d.jobs = make(chan *Delivery, d.workers)
	d.more = make(chan struct{}, 1)
	d.unwatch = r.watchDeletes(d.purge)
	d.work.Add(1)
	go d.run()
	d.recorder.Add(1)
	go d.recordRest()
	return d, nil
}

// orDefault returns v, or def when v is not positive: the zero value of a
// Config field means its default.
func orDefault[T int | int64 | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// Dispatch matches events, builds the requests of every registration they
// fire and hands them to the Queue, then returns; delivery is asynchronous
// (see Flush). It assigns an ID to every event without one, the current
// time to every event without one, and the skip key ctx carries (see
// ContextWithSkipKey) to every event without one. The Expander, if any,
// runs here, with ctx.
//
// It refuses, with an error that wraps ErrInvalid and names the event, an
// event whose name is not in the catalogue (or is a wildcard), whose Data
// is not a JSON object, whose Previous or Related is neither empty, null
// nor a JSON object, a record (these three, or an Expander's answer) that
// nests more than 62 levels or has a key twice in an object (see the
// README), or a CustomEntity event without CustomEntity; with an
// error that wraps ErrTooLarge, an event whose item alone exceeds
// Config.MaxBody; with an error that wraps ErrQueueFull, a call that would
// take the Queue past its bounds; and it returns the Expander's and the
// Queue's errors. A refused call delivers nothing, so the caller can fix
// it and call again without duplicates. After Close it returns ErrClosed.
//
// A registration receives its deliveries in the order the Queue accepted
// them (with MaxInFlight 1, while none fails), so a host dispatches the
// changes of a record in the order it made them: in the transaction of
// each write (DispatchTo), or under the lock that orders its writes. The
// Expander runs inside the call, under that lock too.
func (d *Dispatcher) Dispatch(ctx context.Context, events ...Event) error {
	return d.dispatch(ctx, d.queue, true, events)
}

// DispatchTo is Dispatch that hands the deliveries to `to` instead of the
// Dispatcher's Queue: a durable Queue's view of a transaction of the
// host's, so that the deliveries are stored with the host's change or not
// at all (a transactional outbox). `to` must write to the Queue of the
// Dispatcher, which sends the deliveries once the transaction commits;
// until then they are not the Dispatcher's, and Flush does not wait for
// them, so that a rollback leaves no trace.
func (d *Dispatcher) DispatchTo(ctx context.Context, to Enqueuer, events ...Event) error {
	return d.dispatch(ctx, to, false, events)
}

func (d *Dispatcher) dispatch(ctx context.Context, to Enqueuer, track bool, events []Event) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return ErrClosed
	}
	d.intake.Add(1)
	d.mu.Unlock()
	defer d.intake.Done()
	all, err := d.build(ctx, events)
	if err != nil || len(all) == 0 {
		return err
	}
	var c *call
	if track {
		// Tracked before the Queue has them, so that an attempt that ends
		// at once finds its call.
		c = &call{pending: len(all), done: make(chan struct{})}
		d.mu.Lock()
		for _, dl := range all {
			d.calls[dl.ID] = tracked{call: c, target: dl.Target}
		}
		d.mu.Unlock()
	}
	if err := to.Enqueue(ctx, all...); err != nil {
		if track {
			d.mu.Lock()
			for _, dl := range all {
				delete(d.calls, dl.ID)
			}
			d.mu.Unlock()
		}
		return fmt.Errorf("webhook: queueing %d deliveries: %w", len(all), err)
	}
	if track {
		d.mu.Lock()
		for _, dl := range all {
			if tr, ok := d.calls[dl.ID]; ok { // not done already
				tr.queued = true
				d.calls[dl.ID] = tr
			}
		}
		d.mu.Unlock()
	}
	d.poke()
	return nil
}

// build matches events and builds the deliveries of every registration
// they fire.
func (d *Dispatcher) build(ctx context.Context, events []Event) ([]*Delivery, error) {
	now := d.clock.Now()
	skipKey := SkipKeyFromContext(ctx)
	type group struct {
		reg    *registration
		events []*event
	}
	var groups []group
	pos := map[*registration]int{}
	var regs []*registration
	sc, _ := d.scratch.Get().(*scratch)
	if sc == nil {
		sc = new(scratch)
	}
	defer d.scratch.Put(sc)
	if cap(sc.events) < len(events) {
		sc.events = make([]event, len(events))
	}
	parsed := sc.events[:len(events)]
	defer clear(parsed) // nothing of the caller's is kept
	sc.spans = sc.spans[:0]
	rs := d.matcher.takeRecords() // of one event at a time
	defer d.matcher.records.Put(rs)
	for i, e := range events {
		// Read in place: every request body is built, a copy, before the
		// call returns, so nothing keeps the caller's buffers. Matching
		// has no effect, so an event refused later still refuses the call.
		ev := &parsed[i]
		if e.SkipKey == "" {
			e.SkipKey = skipKey
		}
		if err := d.reg.parseEvent(ev, i, e, &rs.data.m, &rs.prev.m); err != nil {
			return nil, err
		}
		if ev.ID == "" {
			ev.ID = newUUID()
		}
		if ev.Time.IsZero() {
			ev.Time = now
		}
		regs = d.matcher.match(ev, &rs.data, &rs.prev, regs[:0])
		if s := rs.data.m.spans(); len(regs) > 0 && s != nil {
			// Kept for its items: reading a field by its span costs much
			// less than scanning the record again.
			at := len(sc.spans)
			sc.spans = append(sc.spans, s...)
			ev.spans = sc.spans[at:]
		}
		for _, reg := range regs {
			i, ok := pos[reg]
			if !ok {
				i = len(groups)
				pos[reg] = i
				groups = append(groups, group{reg: reg})
			}
			groups[i].events = append(groups[i].events, ev)
		}
	}
	var all []*Delivery
	for _, g := range groups {
		ds, b, err := deliveries(ctx, d.expander, g.reg, g.events, now, d.maxBody, sc.body)
		sc.body = b
		if err != nil {
			return nil, err
		}
		all = append(all, ds...)
	}
	return all, nil
}

// scratch is what one Dispatch builds in, kept from call to call.
type scratch struct {
	events []event      // the call's, parsed
	spans  []memberSpan // the members of the records of those that fire
	body   []byte       // where the request bodies are built
}

// poke wakes the scheduler, which may be waiting for the next due time.
func (d *Dispatcher) poke() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// purge has the deliveries of a deleted registration removed, by the
// scheduler: the Registry calls it, and no Queue call is made under a
// lock of the Registry's or the Dispatcher's.
func (d *Dispatcher) purge(key string) {
	d.mu.Lock()
	d.purges = append(d.purges, key)
	d.mu.Unlock()
	d.poke()
}

// doneLocked counts a delivery that is delivered, dead or dropped for
// Flush. It requires d.mu held.
func (d *Dispatcher) doneLocked(id string) {
	tr, ok := d.calls[id]
	if !ok {
		if d.reviving > 0 {
			d.early[id] = true // perhaps revived by a Redeliver whose ids are not known yet
		}
		return
	}
	delete(d.calls, id)
	if tr.call.pending--; tr.call.pending == 0 {
		close(tr.call.done)
	}
}

// Flush waits until every delivery accepted (or redelivered) by this
// Dispatcher before it was called is delivered, dead or dropped (its
// registration deleted), chunk delays and retries included, or until ctx
// is done, whichever replica sends them: those that others finish it
// learns from the Queue every PollInterval. Deliveries of DispatchTo, and
// those other replicas accepted, are not waited for. Once Close is called
// it returns ErrClosed if deliveries are still pending: nothing here will
// send them.
func (d *Dispatcher) Flush(ctx context.Context) error {
	d.mu.Lock()
	seen := map[*call]bool{}
	var waits []chan struct{}
	for _, tr := range d.calls {
		if !seen[tr.call] {
			seen[tr.call] = true
			waits = append(waits, tr.call.done)
		}
	}
	d.mu.Unlock()
	// Real time, whatever the Clock: how often to ask is not a matter of
	// the deliveries' schedule.
	tick := time.NewTicker(d.poll)
	defer tick.Stop()
	for _, w := range waits {
		for waiting := true; waiting; {
			select {
			case <-w:
				waiting = false
			case <-tick.C:
				if err := d.askQueue(ctx); err != nil {
					return err
				}
			case <-ctx.Done():
				return d.stillPending(ctx.Err())
			case <-d.stop:
				select {
				case <-w:
					waiting = false
				default:
					return ErrClosed // nothing here will deliver them now: they stay in the Queue
				}
			}
		}
	}
	return nil
}

// stillPending says how many deliveries Flush was still waiting for when
// it gave up with err.
func (d *Dispatcher) stillPending(err error) error {
	d.mu.Lock()
	n := len(d.calls)
	d.mu.Unlock()
	return fmt.Errorf("webhook: %d deliveries still pending: %w", n, err)
}

// askQueue counts as done the deliveries of Dispatch calls that the Queue
// no longer holds as pending: another replica finished them.
func (d *Dispatcher) askQueue(ctx context.Context) error {
	d.mu.Lock()
	ids := make([]string, 0, len(d.calls))
	for id, tr := range d.calls {
		if _, busy := d.busy[id]; tr.queued && !busy {
			ids = append(ids, id)
		}
	}
	d.mu.Unlock()
	if len(ids) == 0 {
		return nil
	}
	pending, err := d.queue.Pending(ctx, ids...)
	if err != nil {
		if ctx.Err() != nil {
			return d.stillPending(err)
		}
		return fmt.Errorf("webhook: asking the queue what is pending: %w", err)
	}
	still := make(map[string]bool, len(pending))
	for _, id := range pending {
		still[id] = true
	}
	d.mu.Lock()
	for _, id := range ids {
		if _, busy := d.busy[id]; !still[id] && !busy {
			d.doneLocked(id)
		}
	}
	d.mu.Unlock()
	return nil
}

// Dead returns the deliveries to the registration webhookID of space that
// will not be tried again, oldest first, as the Queue keeps them. An id
// of another space is an error that wraps ErrNotFound.
func (d *Dispatcher) Dead(ctx context.Context, space, webhookID string) ([]*Delivery, error) {
	reg, err := d.reg.find(ctx, space, webhookID)
	if err != nil {
		return nil, err
	}
	return d.queue.Dead(ctx, reg.key)
}

// Redeliver sends dead deliveries of the registration webhookID of space
// again, with a fresh retry schedule: the one with deliveryID, or all of
// them when deliveryID is "". It returns how many; an id of another space,
// or a deliveryID that names no dead delivery of the registration, is an
// error that wraps ErrNotFound. A disabled registration gets nothing until
// an Update enables it: that is an error that wraps ErrInvalid.
func (d *Dispatcher) Redeliver(ctx context.Context, space, webhookID, deliveryID string) (int, error) {
	reg, err := d.reg.find(ctx, space, webhookID)
	if err != nil {
		return 0, err
	}
	if dis := reg.hook.Disabled; dis != nil {
		return 0, fmt.Errorf("webhook: registration %s is disabled (%s); Update it before redelivering: %w",
			webhookID, dis.Reason, ErrInvalid)
	}
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return 0, ErrClosed
	}
	if d.reviving++; d.reviving == 1 {
		d.early = map[string]bool{}
	}
	d.mu.Unlock()
	ids, err := d.queue.Revive(ctx, reg.key, deliveryID, d.clock.Now())
	d.mu.Lock()
	c := &call{done: make(chan struct{})}
	for _, id := range ids {
		if !d.early[id] {
			d.calls[id] = tracked{call: c, target: reg.key, queued: true}
			c.pending++
		}
	}
	if d.reviving--; d.reviving == 0 {
		d.early = nil
	}
	d.mu.Unlock()
	if len(ids) > 0 {
		d.poke()
	}
	return len(ids), err
}

// Close stops accepting events, lets the requests in flight finish until
// ctx ends, then cancels them; what is still pending stays in the Queue,
// for a durable Queue to deliver later (call Flush first to wait for it).
// Either way no goroutine of the Dispatcher is left when it returns. It
// closes the default Transport, never one from Config, and returns ctx's
// error if ctx ended first.
func (d *Dispatcher) Close(ctx context.Context) error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	d.mu.Unlock()
	d.unwatch()
	d.intake.Wait()
	close(d.stop)
	done := make(chan struct{})
	go func() {
		d.work.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
		d.cancel()
		<-done
	}
	// The workers have ended: the recorder records what they left, and
	// Close releases the jobs they did not take: another process, or this
	// one's next life, will send them.
	close(d.more)
	d.recorder.Wait()
	var left []finished
	for len(d.jobs) > 0 {
		left = append(left, finished{outcome: Outcome{Delivery: <-d.jobs, Kind: Released}})
	}
	if len(left) > 0 {
		d.settle(left)
	}
	d.cancel()
	if d.own != nil {
		d.own.Close()
	}
	return err
}
