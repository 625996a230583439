package webhook

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"
)

// Clock is a Dispatcher's time source: tests give a fake one, so that chunk
// delays run on fake time. The Dispatcher calls it from several goroutines
// at once, so implementations must be safe for simultaneous use.
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
	Transport Transport
	// Expander loads the relations that "expand" options name. nil means
	// records are sent as the host gave them.
	Expander Expander
	// Clock stamps events and times chunk delays. nil means the system clock.
	Clock Clock
	// Logger gets a warning for every failed delivery and debug lines for
	// the rest. nil means slog.Default().
	Logger *slog.Logger
	// OnFailure, when set, is called with every failed delivery, from the
	// delivery goroutines, possibly at the same time.
	OnFailure func(*DeliveryError)
}

// DeliveryError is a request that was not delivered: the Transport failed,
// the receiver answered other than 2xx, the Expander failed, or the
// Dispatcher closed first.
type DeliveryError struct {
	WebhookID  string
	URL        string
	EventIDs   []string // the events the request carried, in order
	StatusCode int      // the receiver's answer; 0 when there was none
	Err        error
}

// Error describes the failure.
func (e *DeliveryError) Error() string {
	return fmt.Sprintf("webhook: delivery of %d events to %s (webhook %s) failed: %v",
		len(e.EventIDs), e.URL, e.WebhookID, e.Err)
}

// Unwrap returns the cause.
func (e *DeliveryError) Unwrap() error { return e.Err }

// errClosedEarly is the cause of the chunks that Close gave up on.
var errClosedEarly = errors.New("dispatcher closed before delivery")

// Dispatcher matches events against a Registry and delivers them: it
// projects, signs and chunks the items of every registration an event
// fires, and sends them through its Transport in the background, one
// request at a time per registration, so that a slow receiver holds up
// only its own deliveries. A Dispatcher is safe for simultaneous use by
// multiple goroutines.
type Dispatcher struct {
	reg       *Registry
	matcher   *Matcher
	transport Transport
	own       *HTTPTransport // the default transport, closed by Close
	expander  Expander
	clock     Clock
	log       *slog.Logger
	onFailure func(*DeliveryError)

	ctx    context.Context // of every delivery; cancelled when Close gives up
	cancel context.CancelFunc

	mu     sync.Mutex
	closed bool
	calls  map[*call]struct{}     // Dispatch calls with chunks not yet done
	queues map[string]*queue      // by registration id
	timers map[*chunk]func() bool // delayed chunks and how to stop them
	wg     sync.WaitGroup         // pumps and armed timers
}

// call counts the chunks of one Dispatch call, for Flush.
type call struct {
	pending int
	done    chan struct{}
}

// queue holds the ready chunks of one registration, sent in order by one
// pump goroutine; the queue is in Dispatcher.queues exactly while its pump
// runs.
type queue struct {
	id     string
	chunks []*chunk
}

// NewDispatcher returns a Dispatcher that delivers the events of r's
// registrations as cfg says.
func NewDispatcher(r *Registry, cfg Config) (*Dispatcher, error) {
	if r == nil {
		return nil, invalid("registry", "nil")
	}
	d := &Dispatcher{reg: r, matcher: NewMatcher(r), transport: cfg.Transport, expander: cfg.Expander,
		clock: cfg.Clock, log: cfg.Logger, onFailure: cfg.OnFailure,
		calls: map[*call]struct{}{}, queues: map[string]*queue{}, timers: map[*chunk]func() bool{}}
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
	return d, nil
}

// Dispatch matches events and accepts their deliveries, then returns;
// delivery is asynchronous (see Flush). It assigns an ID to every event
// without one and the current time to every event without one.
//
// It refuses, with an error that wraps ErrInvalid and names the event, an
// event whose name is not in the catalogue (or is a wildcard), whose Data
// is not a JSON object, whose Previous or Related is neither empty, null
// nor a JSON object, or a CustomEntity event without CustomEntity. A
// refused call delivers nothing, so the caller can fix it and call again
// without duplicates. After Close it returns ErrClosed.
func (d *Dispatcher) Dispatch(ctx context.Context, events ...Event) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	evs := make([]*event, len(events))
	for i, e := range events {
		// The deliveries outlive the call: copy the records, so that the
		// caller may reuse its buffers.
		evs[i] = new(event)
		if err := d.reg.parseEvent(evs[i], i, e, bytesCopy); err != nil {
			return err
		}
	}
	now := d.clock.Now()
	type group struct {
		reg    *registration
		events []*event
	}
	var groups []group
	pos := map[*registration]int{}
	var regs []*registration
	for _, ev := range evs {
		if ev.ID == "" {
			ev.ID = newUUID()
		}
		if ev.Time.IsZero() {
			ev.Time = now
		}
		regs = d.matcher.match(ev, regs[:0])
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
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	if len(groups) == 0 {
		return nil
	}
	c := &call{done: make(chan struct{})}
	d.calls[c] = struct{}{}
	for _, g := range groups {
		for _, ch := range split(c, g.reg, g.events) {
			c.pending++
			if ch.due == 0 {
				d.enqueueLocked(ch)
				continue
			}
			d.wg.Add(1)
			d.timers[ch] = d.clock.AfterFunc(ch.due, func() { d.fire(ch) })
		}
	}
	return nil
}

// fire moves a delayed chunk to its queue, unless Close took it first.
func (d *Dispatcher) fire(ch *chunk) {
	defer d.wg.Done()
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.timers[ch]; ok {
		delete(d.timers, ch)
		d.enqueueLocked(ch)
	}
}

// enqueueLocked queues a ready chunk and starts its registration's pump if
// none runs. It requires d.mu held.
func (d *Dispatcher) enqueueLocked(ch *chunk) {
	id := ch.reg.hook.ID
	q := d.queues[id]
	if q == nil {
		q = &queue{id: id}
		d.queues[id] = q
		d.wg.Add(1)
		go d.pump(q)
	}
	q.chunks = append(q.chunks, ch)
}

func (d *Dispatcher) pump(q *queue) {
	defer d.wg.Done()
	for {
		d.mu.Lock()
		if len(q.chunks) == 0 {
			delete(d.queues, q.id)
			d.mu.Unlock()
			return
		}
		ch := q.chunks[0]
		q.chunks[0] = nil
		q.chunks = q.chunks[1:]
		d.mu.Unlock()

		if status, err := d.deliver(ch); err != nil {
			d.fail(ch.failure(status, err))
		}
		d.mu.Lock()
		d.doneLocked(ch)
		d.mu.Unlock()
	}
}

// doneLocked counts a chunk as delivered or failed. It requires d.mu held.
func (d *Dispatcher) doneLocked(ch *chunk) {
	c := ch.call
	if c.pending--; c.pending == 0 {
		close(c.done)
		delete(d.calls, c)
	}
}

// deliver builds, signs and sends one chunk; status is the receiver's
// answer, 0 when there was none.
func (d *Dispatcher) deliver(ch *chunk) (status int, err error) {
	// The Expander and the Transport are the host's code: a panic there is
	// one failed delivery, not the end of the host's process.
	defer func() {
		if p := recover(); p != nil {
			status, err = 0, fmt.Errorf("panic: %v", p)
		}
	}()
	reg := ch.reg
	if d.ctx.Err() != nil {
		return 0, errClosedEarly
	}
	if !d.reg.current(reg) {
		d.log.LogAttrs(d.ctx, slog.LevelDebug, "webhook: registration deleted; chunk dropped",
			slog.String("webhook_id", reg.hook.ID), slog.Int("events", len(ch.events)))
		return 0, nil
	}
	body, err := ch.body(d.ctx, d.expander, nil)
	if err != nil {
		return 0, err
	}
	req := &Request{URL: reg.hook.URL, Header: http.Header{"Content-Type": {"application/json"}},
		Body: body, InsecureSSL: reg.hook.InsecureSSL, WebhookID: reg.hook.ID, EventIDs: ch.eventIDs()}
	if reg.hook.Signature != "" {
		req.Header.Set(HeaderSignature, Sign(reg.hook.Signature, body))
	}
	resp, err := d.transport.Send(d.ctx, req)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode, fmt.Errorf("receiver answered %d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	d.log.LogAttrs(d.ctx, slog.LevelDebug, "webhook: delivered",
		slog.String("webhook_id", reg.hook.ID), slog.String("url", reg.hook.URL),
		slog.Int("events", len(ch.events)), slog.Int("status", resp.StatusCode))
	return resp.StatusCode, nil
}

func (d *Dispatcher) fail(err *DeliveryError) {
	d.log.LogAttrs(context.Background(), slog.LevelWarn, "webhook: delivery failed",
		slog.String("webhook_id", err.WebhookID), slog.String("url", err.URL),
		slog.Int("events", len(err.EventIDs)), slog.Int("status", err.StatusCode),
		slog.String("error", err.Err.Error()))
	if d.onFailure != nil {
		d.onFailure(err)
	}
}

// Flush waits until everything accepted before it was called is delivered
// or has failed, chunk delays included, or until ctx is done.
func (d *Dispatcher) Flush(ctx context.Context) error {
	d.mu.Lock()
	waits := make([]chan struct{}, 0, len(d.calls))
	for c := range d.calls {
		waits = append(waits, c.done)
	}
	d.mu.Unlock()
	for _, w := range waits {
		select {
		case <-w:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// Close stops accepting events and waits, like Flush, for what was
// accepted. If ctx ends first, it abandons the rest: requests in flight are
// cancelled, and every chunk not delivered is reported as failed. Either
// way no goroutine of the Dispatcher is left when it returns. It closes the
// default Transport, never one from Config.
func (d *Dispatcher) Close(ctx context.Context) error {
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	err := d.Flush(ctx)
	if err != nil {
		d.cancel()
		d.mu.Lock()
		var abandoned []*chunk
		for ch, stop := range d.timers {
			delete(d.timers, ch)
			if stop() {
				d.wg.Done() // its fire will never run
			}
			abandoned = append(abandoned, ch)
			d.doneLocked(ch)
		}
		d.mu.Unlock()
		for _, ch := range abandoned {
			d.fail(ch.failure(0, errClosedEarly))
		}
	}
	d.wg.Wait()
	d.cancel()
	if d.own != nil {
		d.own.Close()
	}
	return err
}
