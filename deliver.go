package webhook

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Version is this library's version, sent in the User-Agent header.
const Version = "0.3.0"

const userAgent = "crmhook-webhook/" + Version + " (+https://github.com/crmhook/webhook)"

// defaultRetrySchedule is Standard Webhooks' schedule: after the first
// attempt, made at once, a failed delivery is retried after 5 s, 5 min,
// 30 min, 2 h, 5 h, 10 h, 14 h, 20 h and 24 h, ten attempts in all over
// about three days.
var defaultRetrySchedule = []time.Duration{5 * time.Second, 5 * time.Minute, 30 * time.Minute,
	2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 14 * time.Hour, 20 * time.Hour, 24 * time.Hour}

// Defaults of Config, used where a field is zero.
const (
	// DefaultMaxRetryAfter caps a receiver's Retry-After.
	DefaultMaxRetryAfter = time.Hour
	// DefaultWorkers bounds the requests in flight in all.
	DefaultWorkers = 64
	// DefaultMaxInFlight bounds the requests in flight to one registration.
	DefaultMaxInFlight = 1
	// DefaultDisableAfter is how long a registration may fail without a
	// success before it is disabled, as Standard Webhooks' senders do.
	DefaultDisableAfter = 5 * 24 * time.Hour
	// DefaultDisableAttempts is how many attempts must have failed in that
	// time: a registration that got one event five days ago is not judged
	// on one failure.
	DefaultDisableAttempts = 10
	// DefaultMaxBody bounds a request body, in bytes.
	DefaultMaxBody = 5 << 20
)

// lease is how long a claimed delivery is the Dispatcher's alone: longer
// than any attempt (attemptTimeout), so that only a crash lets it run out.
const (
	lease          = 5 * time.Minute
	attemptTimeout = 2 * time.Minute
)

// responseExcerpt is how much of an answer the Observer sees.
const responseExcerpt = 1 << 10

// SignatureFormat says how a Dispatcher signs requests of registrations
// that have a signature. Header names are case-insensitive, so Pipeliner's
// WebHook-Signature and Standard Webhooks' webhook-signature are one and
// the same header: a request can carry only one of the two formats, and
// the receiver has to expect it.
type SignatureFormat int

const (
	// PipelinerSignature is the default: WebHook-Signature carries the hex
	// HMAC-SHA256 of the body (see Sign and VerifySignature), as Pipeliner
	// sends it.
	PipelinerSignature SignatureFormat = iota
	// StandardSignature is Standard Webhooks' format: webhook-signature
	// carries "v1," and the base64 HMAC-SHA256 of the webhook-id, the
	// webhook-timestamp and the body (see SignStandard and VerifyStandard).
	StandardSignature
)

// Clock is a Dispatcher's time source: tests give a fake one, so that chunk
// delays and retries run on fake time. The Dispatcher calls it from
// several goroutines at once, so implementations must be safe for
// simultaneous use.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f once d has passed, as time.AfterFunc does, unless
	// stop, called first, returns true. It must not call f itself: f may run
	// from any other goroutine, a fake clock's Advance for one.
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

func (systemClock) AfterFunc(d time.Duration, f func()) func() bool {
	return time.AfterFunc(d, f).Stop
}

// Config configures a Dispatcher. The zero value means the documented
// defaults. NewDispatcher reads it once; changing it later has no effect.
type Config struct {
	// Transport sends the requests. nil means NewHTTPTransport(HTTPConfig{}),
	// which Close closes; a Transport given here is the caller's to close.
	// An attempt that takes longer than two minutes is cancelled, whatever
	// the Transport, so that its delivery's lease (five minutes) cannot run
	// out while it is still in flight.
	Transport Transport
	// Queue holds accepted deliveries until they are delivered or dead.
	// nil means NewMemoryQueue(0), which loses them when the process ends.
	Queue Queue
	// Expander loads the relations that "expand" options name, during
	// Dispatch. nil means records are sent as the host gave them.
	Expander Expander
	// Clock stamps events and times chunk delays and retries. nil means the
	// system clock.
	Clock Clock
	// Logger gets a warning for every failed attempt and debug lines for
	// the rest. nil means slog.Default().
	Logger *slog.Logger
	// Observer, when set, sees every attempt as it ends. It is called from
	// the delivery goroutines, possibly at the same time, and holds up the
	// delivery slot it is called from, so it should be quick.
	Observer func(Attempt)
	// Signature is the format of the signature header; the zero value is
	// Pipeliner's.
	Signature SignatureFormat

	// RetrySchedule is the delay before each retry, after the first attempt
	// which is made at once; each delay gets ±10% of jitter. nil means
	// Standard Webhooks' schedule: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h,
	// 20 h and 24 h, ten attempts over about three days. An empty, non-nil
	// schedule means no retries.
	RetrySchedule []time.Duration
	// MaxRetryAfter caps how long a receiver's Retry-After header can hold
	// a retry back; 0 means DefaultMaxRetryAfter.
	MaxRetryAfter time.Duration
	// Workers bounds the requests in flight in all; 0 means DefaultWorkers.
	// The Dispatcher runs one goroutine to schedule the requests and at
	// most Workers to make them, however many deliveries wait; the workers
	// stay, idle, until Close.
	Workers int
	// MaxInFlight bounds the requests in flight to one registration; 0
	// means DefaultMaxInFlight, which keeps a registration's requests in
	// order as long as none fails.
	MaxInFlight int
	// A registration is disabled when its deliveries have failed for
	// DisableAfter without a success and at least DisableAttempts times; 0
	// means DefaultDisableAfter and DefaultDisableAttempts.
	DisableAfter    time.Duration
	DisableAttempts int
	// MaxBody bounds a request body in bytes: a chunk that would be larger
	// is split, and Dispatch refuses a record whose item alone is larger. 0
	// means DefaultMaxBody.
	MaxBody int
}

// Attempt is what an Observer learns of one attempt to deliver. It is the
// Observer's to keep, except that EventIDs and Response share memory with
// the delivery and must not be modified.
type Attempt struct {
	DeliveryID string   // the webhook-id header, the same across retries
	WebhookID  string   // the registration
	URL        string   // where it was sent
	EventIDs   []string // the events it carried, in order; read-only
	Attempt    int      // 1 for the first attempt
	StatusCode int      // the receiver's answer; 0 when there was none
	Err        error    // nil when delivered
	Duration   time.Duration
	Response   []byte    // the first bytes of the answer
	RetryAt    time.Time // when it will be tried again; zero when it will not
	// Dead is set when the delivery will not be tried again: it is kept in
	// the Queue, and Redeliver sends it again on demand.
	Dead bool
	// Disabled is set when this attempt disabled the registration.
	Disabled *Disabled
}

// Dispatcher matches events against a Registry and delivers them: it
// projects, signs and chunks the items of every registration an event
// fires, keeps them in its Queue, and sends them through its Transport in
// the background, retrying failures on the RetrySchedule. Each
// registration has its own limit on requests in flight and its own pace,
// so that a slow or dead receiver holds up only its own deliveries. A
// Dispatcher is safe for simultaneous use by multiple goroutines.
type Dispatcher struct {
	reg                                   *Registry
	matcher                               *Matcher
	queue                                 Queue
	transport                             Transport
	own                                   *HTTPTransport // the default transport, closed by Close
	expander                              Expander
	clock                                 Clock
	log                                   *slog.Logger
	observe                               func(Attempt)
	format                                SignatureFormat
	schedule                              []time.Duration
	maxRetryAfter, disableAfter           time.Duration
	workers, maxInFlight, disableAttempts int
	maxBody                               int

	ctx    context.Context // of every attempt; cancelled when Close gives up
	cancel context.CancelFunc
	bg     context.Context // ctx without its cancellation, for the Queue's bookkeeping
	// bound says whether attempts need attemptTimeout of their own: not
	// when the HTTPTransport's own timeout is shorter.
	bound bool
	// The values of the headers every request has, shared by all of them:
	// a Transport must not modify a Request.
	contentType, agent []string
	bufs               sync.Pool     // of *[]byte, where Dispatch builds request bodies
	wake               chan struct{} // tells the scheduler to look at the Queue again
	stop               chan struct{} // closed by Close: the scheduler and the workers end
	jobs               chan job      // from the scheduler to an idle worker
	intake             sync.WaitGroup
	wg                 sync.WaitGroup // the scheduler and the workers

	mu        sync.Mutex
	closed    bool
	inFlight  int
	idle      int                  // workers waiting on jobs, or about to
	endpoints map[string]*endpoint // registrations with requests in flight, a pause or failures
	limited   map[string]*endpoint // those of them that were full or paused, for the scheduler
	created   int                  // endpoints created since the last sweep
	sweepAt   int                  // how many call for the next
	calls     map[string]*call     // Dispatch calls with deliveries not done, by delivery id
}

// endpoint is the delivery state of one registration.
type endpoint struct {
	inFlight     int
	pausedUntil  time.Time // throttled by a 429, 502 or 504
	failingSince time.Time // the first failure since the last success
	failures     int       // attempts failed since the last success
}

// call counts the deliveries of one Dispatch call, for Flush.
type call struct {
	pending int
	done    chan struct{}
}

// NewDispatcher returns a Dispatcher that delivers the events of r's
// registrations as cfg says.
func NewDispatcher(r *Registry, cfg Config) (*Dispatcher, error) {
	if r == nil {
		return nil, invalid("registry", "nil")
	}
	for i, delay := range cfg.RetrySchedule {
		if delay < 0 {
			return nil, invalid(fmt.Sprintf("retry_schedule[%d]", i), "%v is negative", delay)
		}
	}
	if cfg.Signature != PipelinerSignature && cfg.Signature != StandardSignature {
		return nil, invalid("signature", "unknown format %d", cfg.Signature)
	}
	d := &Dispatcher{reg: r, matcher: NewMatcher(r), queue: cfg.Queue, transport: cfg.Transport,
		expander: cfg.Expander, clock: cfg.Clock, log: cfg.Logger, observe: cfg.Observer,
		format: cfg.Signature, schedule: cfg.RetrySchedule,
		maxRetryAfter:   orDefault(cfg.MaxRetryAfter, DefaultMaxRetryAfter),
		disableAfter:    orDefault(cfg.DisableAfter, DefaultDisableAfter),
		workers:         orDefault(cfg.Workers, DefaultWorkers),
		maxInFlight:     orDefault(cfg.MaxInFlight, DefaultMaxInFlight),
		disableAttempts: orDefault(cfg.DisableAttempts, DefaultDisableAttempts),
		maxBody:         orDefault(cfg.MaxBody, DefaultMaxBody),
		wake:            make(chan struct{}, 1), stop: make(chan struct{}), jobs: make(chan job),
		endpoints: map[string]*endpoint{}, limited: map[string]*endpoint{}, sweepAt: 64, calls: map[string]*call{}}
	if d.schedule == nil {
		d.schedule = defaultRetrySchedule
	}
	if d.queue == nil {
		d.queue = NewMemoryQueue(0)
	}
	if d.transport == nil {
		d.own = NewHTTPTransport(HTTPConfig{})
		d.transport = d.own
	}
	if d.clock == nil {
		d.clock = systemClock{}
	}
	if d.log == nil {
		d.log = slog.Default()
	}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	d.bg = context.WithoutCancel(d.ctx)
	d.bound = true
	if ht, ok := d.transport.(*HTTPTransport); ok && ht.timeout <= attemptTimeout {
		d.bound = false
	}
	d.contentType, d.agent = []string{"application/json"}, []string{userAgent}
	d.wg.Add(1)
	go d.run()
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
// (see Flush). It assigns an ID to every event without one and the current
// time to every event without one. The Expander, if any, runs here, with
// ctx.
//
// It refuses, with an error that wraps ErrInvalid and names the event, an
// event whose name is not in the catalogue (or is a wildcard), whose Data
// is not a JSON object, whose Previous or Related is neither empty, null
// nor a JSON object, a record (these three, or an Expander's answer) that
// nests more than 62 levels or has a key twice in an object (see the
// README), or a CustomEntity event without CustomEntity; with an
// error that wraps ErrTooLarge, an event whose item alone exceeds
// Config.MaxBody; and it returns the Expander's and the Queue's errors. A
// refused call delivers nothing, so the caller can fix it and call again
// without duplicates. After Close it returns ErrClosed.
func (d *Dispatcher) Dispatch(ctx context.Context, events ...Event) error {
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

	now := d.clock.Now()
	type group struct {
		reg    *registration
		events []*event
	}
	var groups []group
	pos := map[*registration]int{}
	var regs []*registration
	parsed := make([]event, len(events)) // one allocation for them all
	var data, prev fields                // of one event at a time
	for i, e := range events {
		// Read in place: every request body is built, a copy, before the
		// call returns, so nothing keeps the caller's buffers. Matching
		// has no effect, so an event refused later still refuses the call.
		ev := &parsed[i]
		if err := d.reg.parseEvent(ev, i, e, &data.m, &prev.m); err != nil {
			return err
		}
		if ev.ID == "" {
			ev.ID = newUUID()
		}
		if ev.Time.IsZero() {
			ev.Time = now
		}
		regs = d.matcher.match(ev, &data, &prev, regs[:0])
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
	buf, _ := d.bufs.Get().(*[]byte)
	if buf == nil {
		buf = new([]byte)
	}
	defer d.bufs.Put(buf)
	for _, g := range groups {
		ds, b, err := deliveries(ctx, d.expander, g.reg, g.events, recordSpans{&parsed[len(parsed)-1], &data.m}, now, d.maxBody, *buf)
		*buf = b
		if err != nil {
			return err
		}
		all = append(all, ds...)
	}
	if len(all) == 0 {
		return nil
	}
	// Tracked before the Queue has them, so that an attempt that ends at
	// once finds its call.
	c := &call{pending: len(all), done: make(chan struct{})}
	d.mu.Lock()
	for _, dl := range all {
		d.calls[dl.ID] = c
	}
	d.mu.Unlock()
	if err := d.queue.Enqueue(ctx, all...); err != nil {
		d.mu.Lock()
		for _, dl := range all {
			delete(d.calls, dl.ID)
		}
		d.mu.Unlock()
		return fmt.Errorf("webhook: queueing %d deliveries: %w", len(all), err)
	}
	d.poke()
	return nil
}

// poke wakes the scheduler, which may be waiting for the next due time.
func (d *Dispatcher) poke() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// run is the Dispatcher's one long-lived goroutine: it claims due
// deliveries for the free delivery slots and starts an attempt for each,
// then sleeps until the next due time, a finished attempt or a new
// Dispatch. Pending deliveries cost no goroutine.
func (d *Dispatcher) run() {
	defer d.wg.Done()
	for {
		select {
		case <-d.stop:
			return
		default:
		}
		now := d.clock.Now()
		d.mu.Lock()
		free := d.workers - d.inFlight
		skip, resume := d.limitedLocked(now)
		d.mu.Unlock()
		var claimed []*Delivery
		var err error
		if free > 0 {
			claimed, err = d.queue.Claim(d.ctx, now, free, lease, skip)
			for _, dl := range claimed {
				d.start(dl)
			}
		}
		if len(claimed) > 0 {
			continue
		}
		var next time.Time
		var ok bool
		if err == nil {
			next, ok, err = d.queue.NextDue(d.ctx)
		}
		if err != nil {
			d.log.LogAttrs(d.ctx, slog.LevelError, "webhook: reading the queue", slog.String("error", err.Error()))
			// Try again soon rather than never; a Queue that fails is the
			// host's to mend.
			next, ok = now.Add(time.Second), true
		}
		if ok && !next.After(now) {
			// What is due waits for a slot or a paused receiver: a finished
			// attempt pokes, and resume is when the first pause ends.
			ok = false
		}
		if !resume.IsZero() && (!ok || resume.Before(next)) {
			next, ok = resume, true
		}
		stopTimer := func() bool { return false }
		if ok {
			// Measured from a fresh reading: time may have moved since the
			// Claim, and a fake clock's timer only fires when it moves again.
			wait := next.Sub(d.clock.Now())
			if wait <= 0 {
				continue
			}
			stopTimer = d.clock.AfterFunc(wait, d.poke)
			if !d.clock.Now().Before(next) {
				// The clock moved while the timer was armed from an older
				// reading, so it may fire late: look again now.
				stopTimer()
				continue
			}
		}
		select {
		case <-d.wake:
			stopTimer()
		case <-d.stop:
			stopTimer()
			return
		}
	}
}

// limitedLocked lists the registrations that get no new attempt now: those
// at their limit of requests in flight and those paused. resume is when
// the first pause ends. It looks only at the endpoints that were limited,
// so that a thousand failing registrations cost the scheduler nothing
// between their retries. It requires d.mu held.
func (d *Dispatcher) limitedLocked(now time.Time) (skip []string, resume time.Time) {
	for id, ep := range d.limited {
		paused := ep.pausedUntil.After(now)
		if !paused && ep.inFlight < d.maxInFlight {
			delete(d.limited, id)
			continue
		}
		skip = append(skip, id)
		if paused && (resume.IsZero() || ep.pausedUntil.Before(resume)) {
			resume = ep.pausedUntil
		}
	}
	return skip, resume
}

func (d *Dispatcher) endpointLocked(id string) *endpoint {
	ep := d.endpoints[id]
	if ep == nil {
		if d.created++; d.created >= d.sweepAt {
			d.sweepLocked()
		}
		ep = &endpoint{}
		d.endpoints[id] = ep
	}
	return ep
}

// sweepLocked forgets the failures of deleted registrations, which no
// attempt will come to reset. It runs once twice as many endpoints have
// been created since the last sweep as the map then held (64 at least), so
// that its cost per new endpoint stays constant. It requires d.mu held.
func (d *Dispatcher) sweepLocked() {
	for id, ep := range d.endpoints {
		if ep.inFlight == 0 {
			if _, err := d.reg.lookup(id); err != nil {
				delete(d.endpoints, id)
				delete(d.limited, id)
			}
		}
	}
	d.created, d.sweepAt = 0, max(64, 2*len(d.endpoints))
}

// start runs one attempt of dl on an idle worker, or on a new one when
// none is idle. Workers live until Close, at most Workers of them: a new
// goroutine for every attempt would grow its stack from scratch to the
// depth of an HTTP request each time, which cost a tenth of the time of a
// delivery to a local receiver.
func (d *Dispatcher) start(dl *Delivery) {
	d.mu.Lock()
	d.inFlight++
	j := d.takeLocked(dl)
	handoff := d.idle > 0
	if handoff {
		d.idle--
	}
	d.mu.Unlock()
	if handoff {
		select {
		case d.jobs <- j:
			return
		case <-d.stop:
			// The idle worker may have ended; this attempt still needs one.
		}
	}
	d.wg.Add(1)
	go d.work(j)
}

// job is an attempt to make, with its registration's delivery state.
type job struct {
	dl *Delivery
	ep *endpoint
}

// takeLocked counts dl in flight to its registration; the caller counts
// it in d.inFlight. It requires d.mu held.
func (d *Dispatcher) takeLocked(dl *Delivery) job {
	ep := d.endpointLocked(dl.WebhookID)
	if ep.inFlight++; ep.inFlight >= d.maxInFlight {
		d.limited[dl.WebhookID] = ep
	}
	return job{dl, ep}
}

// work runs j's attempt, then the next due delivery while there is one,
// then waits for the scheduler to hand it another, until Close.
func (d *Dispatcher) work(j job) {
	defer d.wg.Done()
	for {
		d.attempt(j.dl)
		id, ep := j.dl.WebhookID, j.ep
		now := d.clock.Now()
		d.mu.Lock()
		// Forget an endpoint with nothing left to remember, so that the
		// map holds only registrations in flight, paused or failing.
		if ep.inFlight--; ep.inFlight == 0 && ep.failures == 0 && !ep.pausedUntil.After(now) {
			delete(d.endpoints, id)
			delete(d.limited, id)
		}
		skip, _ := d.limitedLocked(now)
		d.mu.Unlock()
		// The worker keeps its slot for what is due next: going through
		// the scheduler would cost a wake-up and a hand-off per request.
		var next []*Delivery
		select {
		case <-d.stop: // Close waits for what is in flight, not for the Queue
		default:
			// An error is the scheduler's to log, once it is poked below.
			next, _ = d.queue.Claim(d.ctx, now, 1, lease, skip)
		}
		d.mu.Lock()
		if len(next) == 1 {
			j = d.takeLocked(next[0])
			d.mu.Unlock()
			continue
		}
		d.inFlight--
		d.idle++
		d.mu.Unlock()
		d.poke()
		select {
		case j = <-d.jobs:
		case <-d.stop:
			return
		}
	}
}

// outcome is what one attempt came to.
type outcome struct {
	status   int
	header   http.Header
	response []byte
	err      error
	duration time.Duration
}

// attempt sends dl once and settles it with the Queue: acked, retried or
// dead-lettered.
func (d *Dispatcher) attempt(dl *Delivery) {
	// The Queue's bookkeeping must happen even when Close cancelled the
	// attempt: a delivery left leased would wait for its lease to run out.
	bg := d.bg
	reg, err := d.reg.lookup(dl.WebhookID)
	if err != nil {
		// The registration was deleted: its deliveries are not wanted.
		d.log.LogAttrs(bg, slog.LevelDebug, "webhook: registration deleted; delivery dropped",
			slog.String("webhook_id", dl.WebhookID), slog.String("delivery_id", dl.ID))
		d.mu.Lock()
		d.endpointLocked(dl.WebhookID).failures = 0 // nothing to disable any more
		d.mu.Unlock()
		d.settle(bg, dl, d.queue.Ack(bg, dl.ID))
		return
	}
	hook := &reg.hook
	a := Attempt{DeliveryID: dl.ID, WebhookID: hook.ID, URL: hook.URL, EventIDs: dl.EventIDs, Attempt: dl.Attempts + 1}
	if hook.Disabled != nil {
		a.Attempt--
		a.Err = fmt.Errorf("registration disabled at %s: %s", hook.Disabled.At.Format(time.RFC3339), hook.Disabled.Reason)
		dl.LastError, a.Dead = a.Err.Error(), true
		d.report(a)
		d.settle(bg, dl, d.queue.DeadLetter(bg, dl))
		return
	}
	out := d.send(reg, dl)
	a.StatusCode, a.Err, a.Duration = out.status, out.err, out.duration
	a.Response = out.response[:min(len(out.response), responseExcerpt)]
	now := d.clock.Now()
	if out.err == nil {
		d.mu.Lock()
		ep := d.endpointLocked(hook.ID)
		ep.failures, ep.failingSince = 0, time.Time{}
		d.mu.Unlock()
		d.report(a)
		d.settle(bg, dl, d.queue.Ack(bg, dl.ID))
		return
	}
	if d.ctx.Err() != nil {
		// Close gave up waiting: the attempt does not count, and the
		// delivery stays pending for the next process.
		a.Err, a.RetryAt = fmt.Errorf("%w: attempt cancelled: %v", ErrClosed, out.err), now
		dl.Due = now
		d.report(a)
		if err := d.queue.Retry(bg, dl); err != nil {
			d.settle(bg, dl, err)
		}
		return
	}
	dl.Attempts++
	dl.LastStatus, dl.LastError = out.status, out.err.Error()
	delay := d.retryDelay(dl.Attempts, out, now)
	d.mu.Lock()
	ep := d.endpointLocked(hook.ID)
	if ep.failures == 0 {
		ep.failingSince = now
	}
	ep.failures++
	var reason string
	switch {
	case out.status == http.StatusGone:
		reason = "the receiver answered 410 Gone"
	case ep.failures >= d.disableAttempts && now.Sub(ep.failingSince) >= d.disableAfter:
		reason = fmt.Sprintf("%d attempts failed over %v without a success", ep.failures, now.Sub(ep.failingSince).Round(time.Second))
	case out.status == http.StatusTooManyRequests || out.status == http.StatusBadGateway || out.status == http.StatusGatewayTimeout:
		// The receiver asks for less: hold all its deliveries back.
		ep.pausedUntil = now.Add(delay)
		d.limited[hook.ID] = ep
	}
	d.mu.Unlock()
	if reason != "" {
		a.Disabled = d.reg.disable(hook.ID, reason, now)
	}
	if reason != "" || dl.Attempts > len(d.schedule) {
		a.Dead = true
		d.report(a)
		d.settle(bg, dl, d.queue.DeadLetter(bg, dl))
		return
	}
	dl.Due = now.Add(delay)
	a.RetryAt = dl.Due
	d.report(a)
	if err := d.queue.Retry(bg, dl); err != nil {
		d.settle(bg, dl, err)
	}
}

// retryDelay is how long the delivery waits after failing its n-th
// attempt: the schedule's delay with jitter, or the receiver's Retry-After
// when that is later, up to MaxRetryAfter.
func (d *Dispatcher) retryDelay(n int, out outcome, now time.Time) time.Duration {
	var delay time.Duration
	if n <= len(d.schedule) {
		delay = d.schedule[n-1]
		if j := int64(delay / 5); j > 0 {
			// ±10%, so that receivers that failed together are not all
			// retried at the same instant.
			delay += time.Duration(rand.Int64N(j)) - delay/10
		}
	}
	if ra, ok := retryAfter(out.header.Get("Retry-After"), now); ok {
		delay = max(delay, min(ra, d.maxRetryAfter))
	}
	return delay
}

// settle finishes dl's part in a Dispatch call once the Queue took the
// outcome: delivered, dropped or dead. A Queue that failed is logged: the
// delivery stays leased there and is attempted again when the lease ends.
func (d *Dispatcher) settle(ctx context.Context, dl *Delivery, err error) {
	if err != nil {
		d.log.LogAttrs(ctx, slog.LevelError, "webhook: recording a delivery's outcome",
			slog.String("delivery_id", dl.ID), slog.String("error", err.Error()))
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if c := d.calls[dl.ID]; c != nil {
		delete(d.calls, dl.ID)
		if c.pending--; c.pending == 0 {
			close(c.done)
		}
	}
}

// The header names as http.Header keys them, written out so that no
// request computes them again.
const (
	canonicalID        = "Webhook-Id"
	canonicalTimestamp = "Webhook-Timestamp"
	canonicalSignature = "Webhook-Signature"
)

// send makes one attempt: headers, signature and the Transport's request.
func (d *Dispatcher) send(reg *registration, dl *Delivery) (out outcome) {
	hook := &reg.hook
	start := d.clock.Now()
	defer func() {
		// The Transport is the host's code: a panic there is one failed
		// attempt, not the end of the host's process.
		if p := recover(); p != nil {
			out = outcome{err: fmt.Errorf("panic: %v", p)}
		}
		out.duration = d.clock.Now().Sub(start)
	}()
	req := &Request{URL: hook.URL, Header: make(http.Header, 5), Body: dl.Body,
		InsecureSSL: hook.InsecureSSL, WebhookID: hook.ID, EventIDs: dl.EventIDs}
	// One array backs the three values that change per request.
	vals := [3]string{dl.ID, strconv.FormatInt(start.Unix(), 10)}
	h := req.Header
	h["Content-Type"] = d.contentType
	h["User-Agent"] = d.agent
	h[canonicalID] = vals[0:1:1]
	h[canonicalTimestamp] = vals[1:2:2]
	if hook.Signature != "" {
		m := reg.shared.macs.get(hook.Signature)
		switch d.format {
		case PipelinerSignature:
			vals[2] = signPipeliner(m, dl.Body)
		case StandardSignature:
			vals[2] = signStandard(m, dl.ID, start, dl.Body)
		}
		reg.shared.macs.put(m)
		h[canonicalSignature] = vals[2:3:3]
	}
	ctx := d.ctx
	if d.bound {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, attemptTimeout)
		defer cancel()
	}
	resp, err := d.transport.Send(ctx, req)
	switch {
	case err != nil:
		return outcome{err: err}
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		return outcome{status: resp.StatusCode, header: resp.Header, response: resp.Body,
			err: fmt.Errorf("receiver answered %d %s", resp.StatusCode, http.StatusText(resp.StatusCode))}
	}
	return outcome{status: resp.StatusCode, header: resp.Header, response: resp.Body}
}

// report tells the Logger and the Observer about an attempt.
func (d *Dispatcher) report(a Attempt) {
	level, msg := slog.LevelDebug, "webhook: delivered"
	attrs := []slog.Attr{slog.String("webhook_id", a.WebhookID), slog.String("delivery_id", a.DeliveryID),
		slog.String("url", a.URL), slog.Int("attempt", a.Attempt), slog.Int("status", a.StatusCode)}
	if a.Err != nil {
		level, msg = slog.LevelWarn, "webhook: delivery failed"
		attrs = append(attrs, slog.String("error", a.Err.Error()), slog.Bool("dead", a.Dead))
		if !a.RetryAt.IsZero() {
			attrs = append(attrs, slog.Time("retry_at", a.RetryAt))
		}
	}
	d.log.LogAttrs(context.Background(), level, msg, attrs...)
	if a.Disabled != nil {
		d.log.LogAttrs(context.Background(), slog.LevelWarn, "webhook: registration disabled",
			slog.String("webhook_id", a.WebhookID), slog.String("reason", a.Disabled.Reason))
	}
	if d.observe != nil {
		d.observe(a)
	}
}

// Flush waits until every delivery accepted (or redelivered) before it was
// called is delivered, dead or dropped (its registration deleted), chunk
// delays and retries included, or until ctx is done. After Close it returns
// ErrClosed if deliveries are still pending: nothing will send them.
func (d *Dispatcher) Flush(ctx context.Context) error {
	d.mu.Lock()
	seen := map[*call]bool{}
	var waits []chan struct{}
	for _, c := range d.calls {
		if !seen[c] {
			seen[c] = true
			waits = append(waits, c.done)
		}
	}
	closed := d.closed
	d.mu.Unlock()
	if closed && len(waits) > 0 {
		// Nothing will deliver them now: they stay in the Queue.
		return ErrClosed
	}
	for _, w := range waits {
		select {
		case <-w:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// Dead returns the deliveries to the registration webhookID that will not
// be tried again, oldest first, as the Queue keeps them. Like Redeliver it
// takes the id as it is: a host serving its tenants checks first that the
// registration is in the caller's space (Registry.Get).
func (d *Dispatcher) Dead(ctx context.Context, webhookID string) ([]*Delivery, error) {
	return d.queue.Dead(ctx, webhookID)
}

// Redeliver sends dead deliveries of the registration webhookID again,
// with a fresh retry schedule: the one with deliveryID, or all of them when
// deliveryID is "". It returns how many; a deliveryID that names no dead
// delivery of webhookID is an error that wraps ErrNotFound. A disabled
// registration gets nothing until an Update enables it: that is an error
// that wraps ErrInvalid.
func (d *Dispatcher) Redeliver(ctx context.Context, webhookID, deliveryID string) (int, error) {
	if reg, err := d.reg.lookup(webhookID); err == nil && reg.hook.Disabled != nil {
		return 0, fmt.Errorf("webhook: registration %s is disabled (%s); Update it before redelivering: %w",
			webhookID, reg.hook.Disabled.Reason, ErrInvalid)
	}
	// d.mu is held across Revive so that Flush counts the revived
	// deliveries before an attempt can finish one of them.
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return 0, ErrClosed
	}
	ids, err := d.queue.Revive(ctx, webhookID, deliveryID, d.clock.Now())
	if len(ids) > 0 {
		c := &call{pending: len(ids), done: make(chan struct{})}
		for _, id := range ids {
			d.calls[id] = c
		}
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
	d.intake.Wait()
	close(d.stop)
	done := make(chan struct{})
	go func() {
		d.wg.Wait()
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
	d.cancel()
	if d.own != nil {
		d.own.Close()
	}
	return err
}
