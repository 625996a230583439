package webhook

import (
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// maxRetryAfter is what a Retry-After too large for a time.Duration means:
// about 292 years, which any caller's cap on waiting cuts down to size.
const maxRetryAfter = time.Duration(math.MaxInt64)

// retryAfter parses a Retry-After header value (RFC 9110, section 10.2.3):
// delay-seconds (a non-negative integer) or an HTTP-date (http.ParseTime's
// three formats), relative to now. ok is false when v is empty or
// malformed, and d is then 0. A date in the past is 0: the receiver asked
// for no wait. A second count too large for a Duration is clamped to
// math.MaxInt64 nanoseconds rather than overflowing into a negative wait;
// callers cap the result. Leading and trailing spaces are tolerated, as
// some servers pad the value.
func retryAfter(v string, now time.Time) (d time.Duration, ok bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if allASCIIDigits(v) {
		n, err := strconv.ParseInt(v, 10, 64)
		// Only digits reach ParseInt, so its one possible error is the
		// range error of a count beyond int64.
		if err != nil || n > int64(maxRetryAfter/time.Second) {
			return maxRetryAfter, true
		}
		return time.Duration(n) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	// Time.Sub saturates, so a date centuries away cannot overflow either.
	return max(t.Sub(now), 0), true
}

// allASCIIDigits reports whether s is ASCII decimal digits only, the shape
// of Retry-After's delay-seconds and of webhook-timestamp. strconv.ParseInt
// alone would also take a sign, and "-1" is neither.
func allASCIIDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
