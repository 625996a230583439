package webhook

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"time"
)

// policy is the outcome policy of a Dispatcher: what becomes of a
// delivery after an attempt, and when a registration that keeps failing
// is disabled. Its methods are pure functions of their arguments, so that
// a table of cases says all it does.
type policy struct {
	schedule        []time.Duration // the delay before each retry
	maxRetryAfter   time.Duration   // the most a receiver's Retry-After holds a retry back
	disableAfter    time.Duration   // failing this long without a success ...
	disableAttempts int             // ... and at least this often disables
	// jitter returns a number in [0, n), for the ±10% of every delay;
	// rand.Int64N unless a test fixes it.
	jitter func(n int64) int64
}

// verdict is what an attempt comes to.
type verdict struct {
	kind  OutcomeKind // Delivered, Retried or Died
	due   time.Time   // when Retried: the next attempt
	pause time.Time   // non-zero: hold back the registration's deliveries until then
	// disable, when set, is why the registration is to be disabled at
	// once: the receiver answered 410 Gone.
	disable string
}

// decide judges an attempt: the n-th (1 for the first) at now, whose
// receiver answered status (0 for none) with header, or failed with err.
// Only a 2xx answer delivers. A 410 Gone disables the registration. A
// failure is retried on the schedule, with ±10% jitter, or later when the
// receiver's Retry-After (up to maxRetryAfter) says so, until the schedule
// runs out; a 429, 502 or 504 also pauses the registration for as long.
func (p *policy) decide(n, status int, header http.Header, failed bool, now time.Time) verdict {
	if !failed {
		return verdict{kind: Delivered}
	}
	if status == http.StatusGone {
		return verdict{kind: Died, disable: "the receiver answered 410 Gone"}
	}
	delay := p.delay(n, header, now)
	v := verdict{kind: Died}
	if n <= len(p.schedule) {
		v = verdict{kind: Retried, due: now.Add(delay)}
	}
	switch status {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusGatewayTimeout:
		// The receiver asks for less: hold all its deliveries back.
		v.pause = now.Add(delay)
	}
	return v
}

// delay is how long a delivery waits after failing its n-th attempt: the
// schedule's delay with jitter, or the receiver's Retry-After when that is
// later, up to maxRetryAfter.
func (p *policy) delay(n int, header http.Header, now time.Time) time.Duration {
	var delay time.Duration
	if n <= len(p.schedule) {
		delay = p.schedule[n-1]
		if j := int64(delay / 5); j > 0 {
			// ±10%, so that receivers that failed together are not all
			// retried at the same instant.
			delay += time.Duration(p.jitter(j)) - delay/10
		}
	}
	if ra, ok := retryAfter(header.Get("Retry-After"), now); ok {
		delay = max(delay, min(ra, p.maxRetryAfter))
	}
	return delay
}

// disableFor says why a registration whose Health, after a failed
// attempt at now, is h must be disabled, or "" when it need not: it has
// failed for disableAfter without a success, and at least disableAttempts
// times, so that a registration that got one event days ago is not judged
// on one failure.
func (p *policy) disableFor(h Health, now time.Time) string {
	if h.Failures < p.disableAttempts || h.FailingSince.IsZero() {
		return ""
	}
	if since := now.Sub(h.FailingSince); since >= p.disableAfter {
		return fmt.Sprintf("%d attempts failed over %v without a success", h.Failures, since.Round(time.Second))
	}
	return ""
}

// defaultJitter is the jitter of a Dispatcher's policy.
func defaultJitter(n int64) int64 { return rand.Int64N(n) }
