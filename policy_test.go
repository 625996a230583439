package webhook

import (
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestPolicyDecide(t *testing.T) {
	now := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	p := policy{schedule: []time.Duration{5 * time.Second, 5 * time.Minute}, maxRetryAfter: time.Hour,
		jitter: func(n int64) int64 { return n / 2 }} // no jitter: the middle of ±10%
	retryAfter := func(v string) http.Header { return http.Header{"Retry-After": {v}} }
	tests := []struct {
		name   string
		n      int // the attempt
		status int
		header http.Header
		failed bool
		want   verdict
	}{
		{"a 2xx delivers", 1, 200, nil, false, verdict{kind: Delivered}},
		{"a 204 after retries delivers", 3, 204, nil, false, verdict{kind: Delivered}},
		{"a first failure is retried after the first delay", 1, 500, nil, true, verdict{kind: Retried, due: now.Add(5 * time.Second)}},
		{"a network error likewise", 1, 0, nil, true, verdict{kind: Retried, due: now.Add(5 * time.Second)}},
		{"the second after the second", 2, 503, nil, true, verdict{kind: Retried, due: now.Add(5 * time.Minute)}},
		{"past the schedule it dies", 3, 500, nil, true, verdict{kind: Died}},
		{"a 410 dies and disables at once", 1, 410, nil, true, verdict{kind: Died, disable: "the receiver answered 410 Gone"}},
		{"a later Retry-After holds the retry back", 1, 503, retryAfter("120"), true, verdict{kind: Retried, due: now.Add(2 * time.Minute)}},
		{"an earlier one does not bring it forward", 2, 503, retryAfter("1"), true, verdict{kind: Retried, due: now.Add(5 * time.Minute)}},
		{"Retry-After is capped", 1, 503, retryAfter("86400"), true, verdict{kind: Retried, due: now.Add(time.Hour)}},
		{"a 429 pauses the registration as long", 1, 429, retryAfter("60"), true,
			verdict{kind: Retried, due: now.Add(time.Minute), pause: now.Add(time.Minute)}},
		{"so do a 502 and a 504", 1, 502, nil, true, verdict{kind: Retried, due: now.Add(5 * time.Second), pause: now.Add(5 * time.Second)}},
		{"a 504", 2, 504, nil, true, verdict{kind: Retried, due: now.Add(5 * time.Minute), pause: now.Add(5 * time.Minute)}},
		{"a 429 past the schedule dies but still pauses", 3, 429, retryAfter("30"), true, verdict{kind: Died, pause: now.Add(30 * time.Second)}},
		{"a 3xx is a failure", 1, 307, nil, true, verdict{kind: Retried, due: now.Add(5 * time.Second)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := p.decide(tt.n, tt.status, tt.header, tt.failed, now)
			if d := cmp.Diff(tt.want, got, cmp.AllowUnexported(verdict{})); d != "" {
				t.Fatalf("verdict (-want +got):\n%s", d)
			}
		})
	}
}

func TestPolicyJitterIsTenPercentEitherWay(t *testing.T) {
	now := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		name   string
		jitter int64 // what the random source returns, of [0, delay/5)
		want   time.Duration
	}{
		{"the lowest", 0, 90 * time.Second},
		{"the middle", 10e9, 100 * time.Second},
		{"the highest", 20e9 - 1, 110*time.Second - 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := policy{schedule: []time.Duration{100 * time.Second}, jitter: func(n int64) int64 {
				if n != 20e9 {
					t.Fatalf("jitter of [0, %d), want [0, 20 s)", n)
				}
				return tt.jitter
			}}
			if got := p.decide(1, 500, nil, true, now).due.Sub(now); got != tt.want {
				t.Fatalf("delay %v, want %v", got, tt.want)
			}
		})
	}
}

func TestPolicyDisableFor(t *testing.T) {
	now := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	p := policy{disableAfter: 5 * 24 * time.Hour, disableAttempts: 10}
	tests := []struct {
		name   string
		health Health
		want   string
	}{
		{"no failures", Health{}, ""},
		{"many failures, recent", Health{Failures: 50, FailingSince: now.Add(-time.Hour)}, ""},
		{"old failures, too few", Health{Failures: 9, FailingSince: now.Add(-6 * 24 * time.Hour)}, ""},
		{"enough of them for long enough", Health{Failures: 10, FailingSince: now.Add(-5 * 24 * time.Hour)},
			"10 attempts failed over 120h0m0s without a success"},
		{"more, for longer", Health{Failures: 12, FailingSince: now.Add(-6 * 24 * time.Hour)},
			"12 attempts failed over 144h0m0s without a success"},
		{"failures without a start are not judged", Health{Failures: 12}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := p.disableFor(tt.health, now); got != tt.want {
				t.Fatalf("disableFor = %q, want %q", got, tt.want)
			}
		})
	}
}
