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
	WebhookID string   // the registration it goes to
	EventIDs  []string // the events its items carry, in order
	Body      []byte   // the JSON array, final: every attempt sends these bytes
	Created   time.Time
	// Attempts counts the attempts made so far.
	Attempts int
	// Due is when the next attempt may be made.
	Due time.Time
	// LastStatus and LastError describe the last failed attempt: the
	// receiver's status (0 when it gave none) and why it failed.
	LastStatus int
	LastError  string
}

// Queue holds the deliveries a Dispatcher has accepted and not finished:
// pending ones, each due at a time, and dead ones, which exhausted their
// retries. The Dispatcher claims due deliveries with a lease, attempts
// them, and then acks, retries or dead-letters each. NewMemoryQueue is the
// default; a durable implementation (a database table) lets accepted
// deliveries survive a crash of the process. Every implementation must
// pass queuetest.Run.
//
// The contract. A delivery is pending from Enqueue until Ack or
// DeadLetter, and may be leased meanwhile; a Queue holds each id once.
// EventIDs and Body are read-only once enqueued: a Queue may share their
// arrays with the deliveries it returns.
//
//   - Enqueue stores the deliveries as pending. Once it returns nil they are
//     accepted: a durable Queue has them on stable storage. An id the Queue
//     holds already is an error that wraps ErrInvalid, and then none of ds
//     is stored.
//   - Claim returns up to max pending deliveries that are not leased and
//     whose Due is not after now, earliest Due first (enqueue order among
//     equals, kept through Retry and Revive), at most one per WebhookID and
//     none whose WebhookID is in skip, and leases them until now+lease. A
//     lease that has ended, at that instant or later, returns the delivery
//     to Claim, so that deliveries claimed by a process that crashed are
//     attempted again. max <= 0 claims nothing. The caller owns the
//     returned values.
//   - Ack removes a delivery for good, pending or dead: delivered, or no
//     longer wanted. Acking an id that is not there is not an error.
//   - Retry ends the lease of d and stores d's Attempts, Due, LastStatus and
//     LastError: d is pending again, due at d.Due. An id the Queue does not
//     hold is stored as pending, so that an outcome recorded after the lease
//     ran out never loses a delivery (at worst it is sent twice).
//   - DeadLetter ends the lease of d and keeps it, with the fields as given,
//     among the dead of d.WebhookID; an id not held is stored so too. An
//     implementation may bound how many it keeps per WebhookID, dropping
//     the oldest first.
//   - Dead lists the dead of webhookID in the order they died.
//   - Revive makes dead deliveries of webhookID pending again, due at now,
//     with Attempts reset to 0 (LastStatus and LastError are kept): the one
//     with id, or all of them when id is "". It returns their ids; an id
//     that names no dead delivery of webhookID is an error that wraps
//     ErrNotFound.
//   - NextDue reports when Claim may next return something: the earliest
//     Due of the pending deliveries not leased, or the earliest end of a
//     lease, whichever comes first; ok is false when the Queue holds no
//     pending delivery, leased or not.
//   - A method whose ctx is done returns ctx's error.
//
// Every method may be called from several goroutines at once.
type Queue interface {
	Enqueue(ctx context.Context, ds ...*Delivery) error
	Claim(ctx context.Context, now time.Time, max int, lease time.Duration, skip []string) ([]*Delivery, error)
	Ack(ctx context.Context, id string) error
	Retry(ctx context.Context, d *Delivery) error
	DeadLetter(ctx context.Context, d *Delivery) error
	Dead(ctx context.Context, webhookID string) ([]*Delivery, error)
	Revive(ctx context.Context, webhookID, id string, now time.Time) ([]string, error)
	NextDue(ctx context.Context) (t time.Time, ok bool, err error)
}
