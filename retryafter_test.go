package webhook

import (
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// retryNow is the instant the Retry-After tests measure dates from.
var retryNow = time.Date(2026, time.November, 26, 12, 0, 0, 0, time.UTC)

func TestRetryAfter(t *testing.T) {
	tests := []struct {
		name string
		v    string
		want time.Duration
		ok   bool
	}{
		{"delay-seconds", "120", 2 * time.Minute, true},
		{"zero seconds", "0", 0, true},
		{"seconds with leading zeros", "007", 7 * time.Second, true},
		{"seconds padded with spaces", "  30 ", 30 * time.Second, true},
		{"seconds padded with a tab", "\t30", 30 * time.Second, true},
		{"the most seconds a Duration holds", "9223372036", 9223372036 * time.Second, true},
		{"a second more, clamped", "9223372037", time.Duration(math.MaxInt64), true},
		{"seconds beyond int64, clamped", "99999999999999999999999999", time.Duration(math.MaxInt64), true},
		{"an IMF-fixdate", "Thu, 26 Nov 2026 12:01:30 GMT", 90 * time.Second, true},
		{"an RFC 850 date", "Thursday, 26-Nov-26 12:01:30 GMT", 90 * time.Second, true},
		{"an ANSI C asctime date", "Thu Nov 26 12:01:30 2026", 90 * time.Second, true},
		{"a date padded with spaces", " Thu, 26 Nov 2026 12:01:30 GMT ", 90 * time.Second, true},
		{"a date of now", "Thu, 26 Nov 2026 12:00:00 GMT", 0, true},
		{"a date in the past", "Wed, 21 Oct 2015 07:28:00 GMT", 0, true},
		{"a date centuries ahead, saturated", "Fri, 31 Dec 9999 23:59:59 GMT", time.Duration(math.MaxInt64), true},
		{"empty", "", 0, false},
		{"only spaces", "   ", 0, false},
		{"negative seconds", "-1", 0, false},
		{"seconds with a plus sign", "+5", 0, false},
		{"fractional seconds", "1.5", 0, false},
		{"seconds with a unit", "5s", 0, false},
		{"two numbers", "1 2", 0, false},
		{"an RFC 3339 date", "2026-11-26T12:01:30Z", 0, false},
		{"a date in another zone", "Thu, 26 Nov 2026 12:01:30 CET", 0, false},
		{"garbage", "soon", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, ok := retryAfter(tt.v, retryNow)
			require.Equal(t, tt.ok, ok)
			require.Equal(t, tt.want, d)
		})
	}
}

func TestRetryAfterDateIsRelativeToNow(t *testing.T) {
	d, ok := retryAfter("Thu, 26 Nov 2026 12:01:30 GMT", retryNow.Add(500*time.Millisecond))
	require.True(t, ok)
	require.Equal(t, 89500*time.Millisecond, d)
}

// FuzzRetryAfter checks that retryAfter never panics, never returns a
// negative wait, ignores surrounding spaces, and reads delay-seconds
// exactly.
func FuzzRetryAfter(f *testing.F) {
	for _, v := range []string{
		"120", "0", "007", " 30 ", "9223372036", "9223372037", "99999999999999999999999999",
		"Thu, 26 Nov 2026 12:01:30 GMT", "Thursday, 26-Nov-26 12:01:30 GMT", "Thu Nov 26 12:01:30 2026",
		"Wed, 21 Oct 2015 07:28:00 GMT", "Fri, 31 Dec 9999 23:59:59 GMT",
		"", "-1", "+5", "1.5", "soon",
	} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v string) {
		d, ok := retryAfter(v, retryNow)
		if !ok {
			require.Zero(t, d, "not ok but d = %v", d)
		}
		require.GreaterOrEqual(t, d, time.Duration(0))

		pd, pok := retryAfter(" "+v+"\t", retryNow)
		require.Equal(t, ok, pok)
		require.Equal(t, d, pd)

		if v != "" && strings.Trim(v, "0123456789") == "" {
			require.True(t, ok)
			if n, err := strconv.ParseInt(v, 10, 64); err == nil && n <= 1<<31 {
				require.Equal(t, time.Duration(n)*time.Second, d)
			}
		}
	})
}
