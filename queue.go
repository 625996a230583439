package webhook

import (
	"context"
	"time"
)

// Delivery is one request body on its way to one registration, with what
// its retries need. Its ID is sent as the webhook-id header and stays the
// same across retries, so that receivers can drop duplicates. A Delivery is
// a plain value; the Queue and the Dispatcher pass copies, and nobody
// modifies the elements of EventIDs or Body once it is built.
type Delivery struct {
	ID        string
	Space     string // the registration's team space, for fairness between spaces
	WebhookID string // the registration's ID, for reports
	// Target is the key of the registration the delivery was built for
	// (see Stored.Key): a Queue keeps the limits, pauses, failures and
	// dead deliveries of each target, and no other registration, not even
	// a later one with the same ID, can receive it.
	Target   string
	EventIDs []string // the events its items carry, in order
	Body     []byte   // the JSON array, final: every attempt sends these bytes
	Created  time.Time
	// Attempts counts the attempts made so far.
	Attempts int
	// Due is when the next attempt may be made.
	Due time.Time
	// LastStatus and LastError describe the last failed attempt: the
	// receiver's status (0 when it gave none) and why it failed.
	LastStatus int
	LastError  string
}

// OutcomeKind says what became of a claimed delivery.
type OutcomeKind uint8

const (
	// Delivered removes the delivery for good and resets its target's
	// failures.
	Delivered OutcomeKind = iota + 1
	// Retried makes the delivery pending again, due at its Due, with its
	// Attempts, LastStatus and LastError.
	Retried
	// Died keeps the delivery, as given, among the dead of its target.
	Died
	// Released makes the delivery pending again, due at its Due, and
	// changes nothing else: the attempt did not happen or does not count.
	Released
	// Dropped removes the delivery for good: its registration is gone.
	Dropped
)

// Outcome is what one attempt at a claimed delivery came to, for
// Queue.Settle.
type Outcome struct {
	// Delivery has its Attempts, Due, LastStatus and LastError as they
	// stand after the attempt.
	Delivery *Delivery
	Kind     OutcomeKind
	// Failed counts a failed attempt against the target's Health.
	Failed bool
	// PauseUntil, when later than the target's current pause, holds back
	// every delivery of the target until then: the receiver asked for
	// less (429, 502, 504).
	PauseUntil time.Time
}

// Health is a target's record of failed attempts, which a Queue keeps
// where every process that shares it sees it, so that a registration is
// disabled after the same days of failure whichever replica made the
// attempts, and whatever restarted meanwhile.
type Health struct {
	Failures     int       // attempts failed since the target's last success
	FailingSince time.Time // when the first of them failed; zero when Failures is 0
}

// Defaults of QueueLimits, used where a field is zero.
const (
	// DefaultMaxPending bounds the pending deliveries of a Queue in all.
	DefaultMaxPending = 100_000
	// DefaultMaxPendingPerTarget bounds those of one registration.
	DefaultMaxPendingPerTarget = 10_000
	// DefaultMaxDead bounds the dead deliveries a Queue keeps per
	// registration: enough to see what went wrong and revive it, few
	// enough that a receiver that is down for days does not fill the
	// memory or the disk.
	DefaultMaxDead = 1000
)

// QueueLimits bound what a Queue holds. The zero value means the
// defaults.
type QueueLimits struct {
	// MaxPending bounds the pending deliveries, leased ones included, in
	// all; 0 means DefaultMaxPending.
	MaxPending int
	// MaxPendingPerTarget bounds the pending deliveries of one target; 0
	// means DefaultMaxPendingPerTarget.
	MaxPendingPerTarget int
	// MaxDead bounds the dead deliveries kept per target, the oldest
	// dropped first; 0 means DefaultMaxDead.
	MaxDead int
}

// WithDefaults returns l with every zero field set to its default.
func (l QueueLimits) WithDefaults() QueueLimits {
	l.MaxPending = orDefault(l.MaxPending, DefaultMaxPending)
	l.MaxPendingPerTarget = orDefault(l.MaxPendingPerTarget, DefaultMaxPendingPerTarget)
	l.MaxDead = orDefault(l.MaxDead, DefaultMaxDead)
	return l
}

// Enqueuer takes deliveries: a Queue is one, and so is a durable Queue's
// view of a transaction of the host's (Dispatcher.DispatchTo).
type Enqueuer interface {
	// Enqueue stores ds as pending, all of them or none; see Queue.
	Enqueue(ctx context.Context, ds ...*Delivery) error
}

// Queue holds the deliveries a Dispatcher has accepted and not finished,
// and what it keeps per target (registration): limits, pauses, Health and
// dead deliveries. Several Dispatchers, in one process or in several, may
// share one Queue: it is where they agree on each registration's limits,
// order, pauses and failures. NewMemoryQueue is the default; a durable
// implementation (the module github.com/crmhook/webhook/postgres has one)
// lets accepted deliveries survive a crash and be shared by replicas.
// Every implementation must pass queuetest.Run.
//
// A delivery is pending from Enqueue until it is delivered, dropped or
// dead, and may be leased meanwhile; a Queue holds each id once. EventIDs
// and Body are read-only once enqueued: a Queue may share their arrays
// with the deliveries it returns. Every method may be called from several
// goroutines at once, and a method whose ctx is done returns ctx's error.
type Queue interface {
	// Enqueue stores ds as pending, all of them or none. Once it returns
	// nil they are accepted: a durable Queue has them on stable storage.
	// An id the Queue holds is an error that wraps ErrInvalid. A call that
	// would take the pending deliveries (leased ones included, dead ones
	// not) past a bound of its QueueLimits, in all or for one target,
	// counting its own, is an error that wraps ErrQueueFull.
	Enqueue(ctx context.Context, ds ...*Delivery) error

	// Claim leases until now+lease, and returns, up to max pending
	// deliveries that are not leased, whose Due is not after now and
	// whose target is not paused at now, such that no target has more
	// than perTarget leased at once (counting every claimer; perTarget
	// < 1 means 1). A target's deliveries are claimed in the order of
	// their Due, and of Enqueue among equals: one is never claimed while
	// an earlier due one of its target is pending and not leased.
	//
	// Between spaces Claim is fair: it takes the deliveries one at a time,
	// each from the space that has the fewest leased deliveries at that
	// moment (counting those it took), and among equals the earliest in
	// (Due, enqueue order). A lease that has ended, at that instant or
	// later, counts no more, and its delivery is pending again, unchanged,
	// so that what a process that crashed had claimed is attempted again.
	// max <= 0 claims nothing. The caller owns what it gets.
	Claim(ctx context.Context, now time.Time, max int, lease time.Duration, perTarget int) ([]*Delivery, error)

	// Settle records outcomes, in order (see OutcomeKind and Outcome),
	// and returns the Health of each outcome's target after it. Its lease
	// ends. An outcome for an id the Queue does not hold still counts:
	// Retried and Released store the delivery as pending and Died among
	// the dead, so that an outcome recorded after its lease ran out never
	// loses a delivery (at worst it is sent twice); Delivered and Dropped
	// do nothing to deliveries. Settle must not keep outcomes once it
	// returns: the Dispatcher reuses the slice.
	Settle(ctx context.Context, now time.Time, outcomes ...Outcome) ([]Health, error)

	// Dead lists the dead deliveries of target in the order they died.
	Dead(ctx context.Context, target string) ([]*Delivery, error)

	// Revive makes dead deliveries of target pending again, due at now,
	// with Attempts reset to 0 (LastStatus and LastError are kept): the
	// one with id, or all of them when id is "". It returns their ids; an
	// id that names no dead delivery of target is an error that wraps
	// ErrNotFound. Revive is not bound by QueueLimits.
	Revive(ctx context.Context, target, id string, now time.Time) ([]string, error)

	// Purge removes every delivery of target, pending, leased or dead,
	// and its Health and pause: its registration was deleted.
	Purge(ctx context.Context, target string) error

	// Pending returns those of ids that the Queue holds as pending,
	// leased or not, in any order: a Dispatcher's Flush learns from it
	// which of its deliveries other processes finished.
	Pending(ctx context.Context, ids ...string) ([]string, error)

	// NextDue reports when Claim may next return something were no
	// target at its perTarget limit: the earliest of the later of Due and
	// the end of the target's pause, over the pending deliveries not
	// leased, and of the ends of leases. ok is false when the Queue holds
	// no pending delivery, leased or not.
	NextDue(ctx context.Context) (t time.Time, ok bool, err error)
}

// Waker is implemented by a Queue that other processes write to, so that
// a Dispatcher hears of their deliveries at once rather than at its next
// poll (Config.PollInterval).
type Waker interface {
	// Wake returns a channel that receives, coalesced, whenever another
	// process may have made deliveries claimable; it stays valid until ctx
	// ends.
	Wake(ctx context.Context) <-chan struct{}
}
