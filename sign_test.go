package webhook

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/stretchr/testify/require"
)

// signedBody and its signature were computed with Python's hmac module,
// an implementation independent of this one.
const (
	signedBody = `[{"event":"Account.Create","entity":{"id":"a1"}}]`
	signedHex  = "773d4bb49d6c0378d3b45db6003867e1d13b17a63feeb6e5a7ce39ec4792fee0"
)

func TestSignIsLowercaseHexHMACSHA256OfTheBody(t *testing.T) {
	require.Equal(t, signedHex, Sign(testSignature, []byte(signedBody)))
}

func TestVerifySignature(t *testing.T) {
	tests := []struct {
		name   string
		key    string
		body   string
		header string
		ok     bool
	}{
		{"the signature of the body", testSignature, signedBody, signedHex, true},
		{"uppercase hex", testSignature, signedBody, strings.ToUpper(signedHex), true},
		{"surrounding spaces", testSignature, signedBody, " " + signedHex + " ", true},
		{"a body changed by one byte", testSignature, strings.Replace(signedBody, "a1", "a2", 1), signedHex, false},
		{"a body re-encoded with spaces", testSignature, `[{"event": "Account.Create","entity":{"id":"a1"}}]`, signedHex, false},
		{"another key", "11111111-abcd-dcba-ffff-000000000000", signedBody, signedHex, false},
		{"no header", testSignature, signedBody, "", false},
		{"a header that is not hex", testSignature, signedBody, "sha256=" + signedHex, false},
		{"a truncated signature", testSignature, signedBody, signedHex[:32], false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := VerifySignature(tt.key, []byte(tt.body), tt.header)
			if tt.ok {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, ErrSignature)
		})
	}
}

// The Standard Webhooks request the tests below sign and verify: now is a
// fixed instant so that VerifyStandard's tolerance is tested without a
// clock.
const (
	standardID   = "msg_2mYv1c9Rz5Gq8wTn0bXkLpHs3dE"
	standardNow  = 1_700_000_000
	standardBody = `[{"event":"Account.Create","entity":{"id":"a1"}}]`
)

// standardHeader returns the headers of a Standard Webhooks request; an
// empty value leaves its header out.
func standardHeader(id, timestamp, signature string) http.Header {
	h := http.Header{}
	for name, v := range map[string]string{HeaderID: id, HeaderTimestamp: timestamp, HeaderSignature: signature} {
		if v != "" {
			h.Set(name, v)
		}
	}
	return h
}

// TestSignStandardKnownAnswer uses the vector every Standard Webhooks
// library tests against. Its secret is base64 ("whsec_" form), so the
// decoded bytes are the key.
func TestSignStandardKnownAnswer(t *testing.T) {
	secret, err := base64.StdEncoding.DecodeString("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	require.NoError(t, err)
	got := SignStandard(string(secret), "msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0), []byte(`{"test": 2432232314}`))
	require.Equal(t, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", got)
}

func TestSignStandardSignsOnlyWholeSeconds(t *testing.T) {
	ts := time.Unix(standardNow, 0)
	require.Equal(t,
		SignStandard(testSignature, standardID, ts, []byte(standardBody)),
		SignStandard(testSignature, standardID, ts.Add(999*time.Millisecond), []byte(standardBody)))
}

// TestReferenceLibraryAcceptsSignStandard checks SignStandard against the
// Standard Webhooks Go library. That library reads the real clock, so the
// request is signed at time.Now().
func TestReferenceLibraryAcceptsSignStandard(t *testing.T) {
	ref, err := standardwebhooks.NewWebhookRaw([]byte(testSignature))
	require.NoError(t, err)
	now := time.Now()
	ts := strconv.FormatInt(now.Unix(), 10)
	sig := SignStandard(testSignature, standardID, now, []byte(standardBody))

	t.Run("the signed request", func(t *testing.T) {
		require.NoError(t, ref.Verify([]byte(standardBody), standardHeader(standardID, ts, sig)))
	})
	t.Run("the signature after a rotated-out one", func(t *testing.T) {
		old := SignStandard("11111111-abcd-dcba-ffff-000000000000", standardID, now, []byte(standardBody))
		require.NoError(t, ref.Verify([]byte(standardBody), standardHeader(standardID, ts, old+" "+sig)))
	})
	t.Run("a body changed by one byte", func(t *testing.T) {
		body := strings.Replace(standardBody, "a1", "a2", 1)
		require.ErrorIs(t, ref.Verify([]byte(body), standardHeader(standardID, ts, sig)), standardwebhooks.ErrNoMatchingSignature)
	})
	t.Run("another id", func(t *testing.T) {
		require.ErrorIs(t, ref.Verify([]byte(standardBody), standardHeader("msg_other", ts, sig)), standardwebhooks.ErrNoMatchingSignature)
	})
}

// TestVerifyStandardAcceptsTheReferenceLibrary is the other direction:
// what the Standard Webhooks Go library signs, VerifyStandard accepts.
func TestVerifyStandardAcceptsTheReferenceLibrary(t *testing.T) {
	ref, err := standardwebhooks.NewWebhookRaw([]byte(testSignature))
	require.NoError(t, err)
	for _, body := range []string{standardBody, "", "\x00\xff not JSON"} {
		t.Run(fmt.Sprintf("body %q", body), func(t *testing.T) {
			now := time.Unix(standardNow, 0)
			sig, err := ref.Sign(standardID, now, []byte(body))
			require.NoError(t, err)
			require.Equal(t, sig, SignStandard(testSignature, standardID, now, []byte(body)))
			h := standardHeader(standardID, strconv.FormatInt(standardNow, 10), sig)
			require.NoError(t, VerifyStandard(testSignature, h, []byte(body), now.Add(time.Minute), 5*time.Minute))
		})
	}
}

func TestVerifyStandard(t *testing.T) {
	const tolerance = 5 * time.Minute
	now := time.Unix(standardNow, 0)
	at := func(d time.Duration) string { return strconv.FormatInt(now.Add(d).Unix(), 10) }
	sign := func(ts string) string {
		unix, err := strconv.ParseInt(ts, 10, 64)
		require.NoError(t, err)
		return SignStandard(testSignature, standardID, time.Unix(unix, 0), []byte(standardBody))
	}
	good := sign(at(0))
	other := SignStandard("11111111-abcd-dcba-ffff-000000000000", standardID, now, []byte(standardBody))

	tests := []struct {
		name      string
		key       string
		id        string
		timestamp string
		signature string
		body      string
		now       time.Time     // zero means now
		tolerance time.Duration // zero means 5 minutes; set negative explicitly
		want      string        // "" for success, else part of the message
	}{
		{name: "the signed request", id: standardID, timestamp: at(0), signature: good},
		{name: "a request as old as the tolerance", id: standardID, timestamp: at(-tolerance), signature: sign(at(-tolerance))},
		{name: "a request as far ahead as the tolerance", id: standardID, timestamp: at(tolerance), signature: sign(at(tolerance))},
		{
			name: "a request a second older than the tolerance", id: standardID, timestamp: at(-tolerance - time.Second),
			signature: sign(at(-tolerance - time.Second)), want: "webhook-timestamp is too old",
		},
		{
			name: "a request a second further ahead than the tolerance", id: standardID, timestamp: at(tolerance + time.Second),
			signature: sign(at(tolerance + time.Second)), want: "webhook-timestamp is too new",
		},
		{
			name: "a whole-second timestamp just outside a tolerance ending mid-second", id: standardID,
			timestamp: at(-tolerance), signature: sign(at(-tolerance)), now: now.Add(time.Nanosecond), want: "too old",
		},
		{
			name: "a whole-second timestamp just inside a tolerance ending mid-second", id: standardID,
			timestamp: at(tolerance), signature: sign(at(tolerance)), now: now.Add(time.Nanosecond),
		},
		{name: "a negative tolerance read as 0 accepting the exact second", id: standardID, timestamp: at(0), signature: good, tolerance: -time.Hour},
		{
			name: "a negative tolerance read as 0 refusing a second ago", id: standardID, timestamp: at(-time.Second),
			signature: sign(at(-time.Second)), tolerance: -time.Hour, want: "too old: more than 0s before now",
		},
		{name: "the largest int64 timestamp", id: standardID, timestamp: "9223372036854775807", signature: good, want: "too new"},
		{name: "a timestamp beyond int64", id: standardID, timestamp: "9223372036854775808", signature: good, want: "webhook-timestamp is not unix seconds"},
		{name: "a timestamp with a plus sign", id: standardID, timestamp: "+" + at(0), signature: good, want: "webhook-timestamp is not unix seconds"},
		{name: "a negative timestamp", id: standardID, timestamp: "-1", signature: good, want: "webhook-timestamp is not unix seconds"},
		{name: "a timestamp in milliseconds with a fraction", id: standardID, timestamp: at(0) + ".5", signature: good, want: "webhook-timestamp is not unix seconds"},
		{name: "an RFC 3339 timestamp", id: standardID, timestamp: now.UTC().Format(time.RFC3339), signature: good, want: "webhook-timestamp is not unix seconds"},
		{name: "no webhook-id", timestamp: at(0), signature: good, want: "no webhook-id header"},
		{name: "no webhook-timestamp", id: standardID, signature: good, want: "no webhook-timestamp header"},
		{name: "no webhook-signature", id: standardID, timestamp: at(0), want: "no WebHook-Signature header"},
		{name: "a rotated-out key's signature before the current one", id: standardID, timestamp: at(0), signature: other + " " + good},
		{name: "a bad v1 entry before the good one", id: standardID, timestamp: at(0), signature: "v1,bad " + good},
		{name: "doubled and trailing spaces in the list", id: standardID, timestamp: at(0), signature: "v1,bad  " + good + " "},
		{name: "an unknown version before v1", id: standardID, timestamp: at(0), signature: "v1a,abc " + good},
		{name: "the right value under an unknown version", id: standardID, timestamp: at(0), signature: "v2" + strings.TrimPrefix(good, "v1"), want: "has no v1 signature"},
		{name: "a bare base64 signature", id: standardID, timestamp: at(0), signature: strings.TrimPrefix(good, "v1,"), want: "has no v1 signature"},
		{name: "a Pipeliner hex signature", id: standardID, timestamp: at(0), signature: signedHex, want: "has no v1 signature"},
		{name: "an empty v1 entry", id: standardID, timestamp: at(0), signature: "v1,", want: "no v1 signature in WebHook-Signature matches"},
		{name: "the signature with a trailing comma field", id: standardID, timestamp: at(0), signature: good + ",x", want: "matches"},
		{name: "the signature in lowercase", id: standardID, timestamp: at(0), signature: strings.ToLower(good), want: "matches"},
		{
			name: "a body changed by one byte", id: standardID, timestamp: at(0), signature: good,
			body: strings.Replace(standardBody, "a1", "a2", 1), want: "no v1 signature in WebHook-Signature matches the request",
		},
		{name: "another key", key: "11111111-abcd-dcba-ffff-000000000000", id: standardID, timestamp: at(0), signature: good, want: "matches"},
		{name: "another id", id: "msg_other", timestamp: at(0), signature: good, want: "matches"},
		{name: "another second within the tolerance", id: standardID, timestamp: at(time.Second), signature: good, want: "matches"},
		{name: "the same second with leading zeros", id: standardID, timestamp: "0" + at(0), signature: good},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := cmp.Or(tt.key, testSignature)
			body := cmp.Or(tt.body, standardBody)
			at := now
			if !tt.now.IsZero() {
				at = tt.now
			}
			err := VerifyStandard(key, standardHeader(tt.id, tt.timestamp, tt.signature), []byte(body), at, cmp.Or(tt.tolerance, tolerance))
			if tt.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, ErrSignature)
			require.ErrorContains(t, err, tt.want)
		})
	}
}

// FuzzVerifyStandard checks that VerifyStandard never panics and accepts
// only what it should: a request it accepts carries SignStandard's value
// and passes the reference library too, and the true signature added to
// any list is accepted while the timestamp is within the tolerance.
func FuzzVerifyStandard(f *testing.F) {
	const tolerance = 5 * time.Minute
	now := time.Unix(standardNow, 0)
	ts := strconv.FormatInt(standardNow, 10)
	good := SignStandard(testSignature, standardID, now, []byte(standardBody))
	f.Add(standardID, ts, good, []byte(standardBody))
	f.Add(standardID, ts, "v1,bad "+good, []byte(standardBody))
	f.Add(standardID, ts, "v2,"+strings.TrimPrefix(good, "v1,"), []byte(standardBody))
	f.Add(standardID, ts, good+",x", []byte(standardBody))
	f.Add(standardID, "+"+ts, good, []byte(standardBody))
	f.Add(standardID, "9223372036854775807", good, []byte(standardBody))
	f.Add("", ts, good, []byte{})
	f.Add(standardID, ts, "v1,", []byte("\x00\xff"))
	f.Add("msg.with.dots", "0", "  v1,  v1,x,y ", []byte(nil))

	ref, err := standardwebhooks.NewWebhookRaw([]byte(testSignature))
	require.NoError(f, err)
	f.Fuzz(func(t *testing.T, id, timestamp, signature string, body []byte) {
		err := VerifyStandard(testSignature, standardHeader(id, timestamp, signature), body, now, tolerance)
		if err != nil {
			require.ErrorIs(t, err, ErrSignature)
		}
		unix, perr := strconv.ParseInt(timestamp, 10, 64)
		valid := id != "" && allASCIIDigits(timestamp) && perr == nil &&
			unix >= standardNow-int64(tolerance/time.Second) && unix <= standardNow+int64(tolerance/time.Second)
		if err == nil {
			require.True(t, valid, "accepted id %q timestamp %q", id, timestamp)
			want := SignStandard(testSignature, id, time.Unix(unix, 0), body)
			require.Contains(t, strings.Split(signature, " "), want)
			require.NoError(t, ref.VerifyIgnoringTimestamp(body, standardHeader(id, timestamp, signature)))
		}
		if valid {
			want := SignStandard(testSignature, id, time.Unix(unix, 0), body)
			h := standardHeader(id, timestamp, signature+" "+want)
			require.NoError(t, VerifyStandard(testSignature, h, body, now, tolerance))
		}
	})
}

// benchBodies runs f on a 1 KiB and a 64 KiB body.
func benchBodies(b *testing.B, f func(body []byte)) {
	for _, size := range []int{1 << 10, 64 << 10} {
		body := bytes.Repeat([]byte("x"), size)
		b.Run(fmt.Sprintf("body=%dKiB", size>>10), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(size))
			for b.Loop() {
				f(body)
			}
		})
	}
}

func BenchmarkSign(b *testing.B) {
	benchBodies(b, func(body []byte) { Sign(testSignature, body) })
}

// BenchmarkSignStandard is compared to BenchmarkSign: the same HMAC over
// the body, plus the short "id.timestamp." prefix and base64 instead of hex.
func BenchmarkSignStandard(b *testing.B) {
	ts := time.Unix(standardNow, 0)
	benchBodies(b, func(body []byte) { SignStandard(testSignature, standardID, ts, body) })
}

func BenchmarkVerifyStandard(b *testing.B) {
	now := time.Unix(standardNow, 0)
	var h http.Header
	signed := -1 // the body length h was signed for; the first call of each size signs
	benchBodies(b, func(body []byte) {
		if len(body) != signed {
			h = standardHeader(standardID, strconv.FormatInt(standardNow, 10), SignStandard(testSignature, standardID, now, body))
			signed = len(body)
		}
		if err := VerifyStandard(testSignature, h, body, now, 5*time.Minute); err != nil {
			b.Fatal(err)
		}
	})
}

// BenchmarkSignBaselineSHA256 is the floor Sign is compared to: one plain
// SHA-256 of the same body.
func BenchmarkSignBaselineSHA256(b *testing.B) {
	benchBodies(b, func(body []byte) { sha256.Sum256(body) })
}

// TestReusedKeyedHashesSignAlike checks that the hashes a registration
// keeps for reuse sign as a fresh one does, in both formats, however they
// are shared between goroutines and whatever they signed before.
func TestReusedKeyedHashesSignAlike(t *testing.T) {
	const key = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
	bodies := [][]byte{nil, []byte(`[{}]`), bytes.Repeat([]byte("x"), 63), bytes.Repeat([]byte("y"), 64), bytes.Repeat([]byte("z"), 100_000)}
	at := time.Unix(1_790_000_000, 0)
	var m macs
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 100 {
				body := bodies[(g+i)%len(bodies)]
				h := m.get(key)
				got := signPipeliner(h, body)
				m.put(h)
				if want := Sign(key, body); got != want {
					t.Errorf("reused hash: %s, a fresh one: %s", got, want)
				}
				h = m.get(key)
				got = signStandard(h, "msg_1", at, body)
				m.put(h)
				if want := SignStandard(key, "msg_1", at, body); got != want {
					t.Errorf("reused hash: %s, a fresh one: %s", got, want)
				}
			}
		})
	}
	wg.Wait()
}
