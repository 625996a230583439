package webhook

import (
	"log/slog"
	"time"
)

// Version is this library's version, sent in the User-Agent header.
const Version = "0.4.0"

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
	// DefaultLease is how long a claimed delivery is one Dispatcher's
	// alone: longer than any attempt, so that only a crash lets it run
	// out, and then another replica sends it.
	DefaultLease = 5 * time.Minute
	// DefaultPollInterval is how often a Dispatcher looks at its Queue
	// when nothing told it to: for what other processes added or left.
	DefaultPollInterval = time.Second
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

// Clock is the time source of a Dispatcher and of a Registry: tests give
// a fake one, so that chunk delays, retries and the times stamped on
// registrations run on fake time. It is called from several goroutines at
// once, so implementations must be safe for simultaneous use.
type Clock interface {
	// Now returns the current time.
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
	// Transport sends the requests. nil means an HTTPTransport with the
	// AddressPolicy of the Registry (RegistryConfig.Addresses), which
	// Close closes; a Transport given here is the caller's to close.
	// An attempt that takes longer than half the Lease is cancelled,
	// whatever the Transport, so that its lease cannot run out while it is
	// still in flight.
	Transport Transport
	// Queue holds accepted deliveries until they are delivered or dead,
	// and each registration's limits, pauses and failures. nil means
	// NewMemoryQueue(QueueLimits{}), which loses them when the process
	// ends. Replicas that share a durable Queue share the work.
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
	// Observer, when set, sees every attempt once its outcome is
	// recorded, and every delivery dropped or held back without one. It
	// is called from one goroutine at a time, the one recording the
	// outcomes of attempts, so it should be quick.
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
	// MaxInFlight bounds the requests in flight to one registration,
	// counted by the Queue across every Dispatcher that shares it; 0 means
	// DefaultMaxInFlight, which keeps a registration's requests in order
	// as long as none fails.
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
	// Lease is how long a claimed delivery is this Dispatcher's alone; a
	// process that dies leaves its deliveries to others once it ends. 0
	// means DefaultLease.
	Lease time.Duration
	// PollInterval is how often the Dispatcher looks at the Queue when
	// nothing told it to: a crashed replica's deliveries go out within
	// Lease + PollInterval. 0 means DefaultPollInterval.
	PollInterval time.Duration
}

// Attempt is what an Observer learns of one attempt to deliver. It is the
// Observer's to keep, except that EventIDs and Response share memory with
// the delivery and must not be modified.
type Attempt struct {
	DeliveryID string   // the webhook-id header, the same across retries
	Space      string   // the registration's team space
	WebhookID  string   // the registration
	URL        string   // where it was sent, without user-info (a secret)
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
	// Dropped is set when no attempt was made because the registration
	// was deleted: the delivery is gone.
	Dropped bool
	// Disabled is set when this attempt disabled the registration.
	Disabled *Disabled
}
