package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"hash"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Sign returns the WebHook-Signature of body: the lowercase hex
// HMAC-SHA256 of the exact body bytes, keyed with the registration's
// signature UUID as text.
func Sign(key string, body []byte) string { return signPipeliner(newMAC(key), body) }

// signPipeliner is Sign with h, a keyed HMAC-SHA256 in its initial state.
func signPipeliner(h hash.Hash, body []byte) string {
	var sum [sha256.Size]byte
	var out [2 * sha256.Size]byte // hex.EncodeToString would allocate twice
	return string(hex.AppendEncode(out[:0], mac(sum[:0], h, nil, body)))
}

func newMAC(key string) hash.Hash { return hmac.New(sha256.New, []byte(key)) }

// mac appends to dst the HMAC-SHA256 that h, keyed and in its initial
// state, computes of prefix followed by body. The two parts are written
// separately so that Standard Webhooks' "id.timestamp." never has to be
// joined with a body that may be megabytes.
func mac(dst []byte, h hash.Hash, prefix, body []byte) []byte {
	h.Write(prefix)
	h.Write(body)
	return h.Sum(dst)
}

// macs keeps keyed HMAC-SHA256 hashes of one key for reuse: keying one
// costs as much as hashing a small body, and six allocations. The zero
// value is ready to use; a macs is safe for simultaneous use.
type macs struct{ pool sync.Pool }

// get returns a hash keyed with key, in its initial state; key must be the
// same at every call.
func (m *macs) get(key string) hash.Hash {
	if h, ok := m.pool.Get().(hash.Hash); ok {
		return h
	}
	return newMAC(key)
}

// put takes back a hash that get returned.
func (m *macs) put(h hash.Hash) {
	h.Reset() // back to the keyed state
	m.pool.Put(h)
}

// VerifySignature checks the WebHook-Signature header of a request against
// its body, in constant time, for receivers written in Go. key is the
// signature UUID the webhook was registered with; body must be the bytes
// as received, before any decoding. It returns nil, or an error that wraps
// ErrSignature.
func VerifySignature(key string, body []byte, header string) error {
	header = strings.TrimSpace(header)
	if header == "" {
		return fmt.Errorf("%w: no %s header", ErrSignature, HeaderSignature)
	}
	got, err := hex.DecodeString(header)
	if err != nil || len(got) != sha256.Size {
		return fmt.Errorf("%w: %s is not a hex HMAC-SHA256", ErrSignature, HeaderSignature)
	}
	var sum [sha256.Size]byte
	if !hmac.Equal(got, mac(sum[:0], newMAC(key), nil, body)) {
		return fmt.Errorf("%w: %s does not match the body", ErrSignature, HeaderSignature)
	}
	return nil
}

// standardVersion prefixes every signature SignStandard writes; entries of
// other versions are skipped by VerifyStandard, as the specification asks.
const standardVersion = "v1,"

// standardLen is the length of a v1 signature: the prefix and 44 characters
// of padded base64.
const standardLen = len(standardVersion) + (sha256.Size+2)/3*4

// SignStandard returns the Standard Webhooks signature of a request: "v1,"
// and the base64 (standard, padded) HMAC-SHA256 of id + "." + unix seconds
// + "." + body, keyed with the registration's signature text as bytes.
// Only the whole seconds of timestamp are signed, so the webhook-timestamp
// header must carry timestamp.Unix() for a receiver to agree.
func SignStandard(key, id string, timestamp time.Time, body []byte) string {
	return signStandard(newMAC(key), id, timestamp, body)
}

// signStandard is SignStandard with h, a keyed HMAC-SHA256 in its initial
// state.
func signStandard(h hash.Hash, id string, timestamp time.Time, body []byte) string {
	var out [standardLen]byte
	return string(appendStandard(out[:0], h, id, timestamp.Unix(), body))
}

// appendStandard appends the v1 signature to dst. Callers pass a
// [standardLen]byte on their stack, so the signature text itself is built
// without allocating and SignStandard's string is its only heap copy.
func appendStandard(dst []byte, h hash.Hash, id string, unix int64, body []byte) []byte {
	// The prefix goes to the heap whatever its buffer, because mac passes
	// it to a hash.Hash method; sizing it for any id and int64 makes that
	// the one allocation.
	prefix := make([]byte, 0, len(id)+len(".-9223372036854775808."))
	prefix = append(prefix, id...)
	prefix = append(prefix, '.')
	prefix = strconv.AppendInt(prefix, unix, 10)
	prefix = append(prefix, '.')
	var sum [sha256.Size]byte
	dst = append(dst, standardVersion...)
	return base64.StdEncoding.AppendEncode(dst, mac(sum[:0], h, prefix, body))
}

// VerifyStandard checks a request signed the Standard Webhooks way, for
// receivers written in Go: webhook-id, webhook-timestamp and
// webhook-signature (a space-separated list; any v1 entry may match, others
// ignored, so keys can rotate). key is the registration's signature text;
// body must be the bytes as received, before any decoding.
//
// It refuses a timestamp more than tolerance before or after now (Standard
// Webhooks recommends 5 minutes); a timestamp exactly tolerance away is
// accepted. A negative tolerance is treated as 0, which accepts only a
// timestamp equal to now: failing closed is safer than reading a sign
// mistake as "no limit". The timestamp is checked before the signature so
// that replays are refused without computing an HMAC; the signature
// comparison is constant-time.
//
// webhook-signature is the same header as WebHook-Signature (header names
// are case-insensitive), so a request carries one format or the other.
// VerifyStandard returns nil, or an error that wraps ErrSignature and says
// which header is missing or malformed, that the timestamp is too old or
// too new, or that no signature matched.
func VerifyStandard(key string, header http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	id := header.Get(HeaderID)
	if id == "" {
		return fmt.Errorf("%w: no %s header", ErrSignature, HeaderID)
	}
	ts := header.Get(HeaderTimestamp)
	if ts == "" {
		return fmt.Errorf("%w: no %s header", ErrSignature, HeaderTimestamp)
	}
	sigs := header.Get(HeaderSignature)
	if sigs == "" {
		return fmt.Errorf("%w: no %s header", ErrSignature, HeaderSignature)
	}
	unix, ok := parseUnix(ts)
	if !ok {
		return fmt.Errorf("%w: %s is not unix seconds", ErrSignature, HeaderTimestamp)
	}
	tolerance = max(tolerance, 0)
	// Compare whole seconds as integers: time.Unix of an absurd header value
	// would overflow time.Time's range and could land anywhere.
	if lo := now.Add(-tolerance); unix < lo.Unix() || unix == lo.Unix() && lo.Nanosecond() > 0 {
		return fmt.Errorf("%w: %s is too old: more than %v before now", ErrSignature, HeaderTimestamp, tolerance)
	}
	if hi := now.Add(tolerance); unix > hi.Unix() {
		return fmt.Errorf("%w: %s is too new: more than %v after now", ErrSignature, HeaderTimestamp, tolerance)
	}

	var buf [standardLen]byte
	want := appendStandard(buf[:0], newMAC(key), id, unix, body)
	v1 := false
	for sig := range strings.SplitSeq(sigs, " ") {
		if !strings.HasPrefix(sig, standardVersion) {
			continue // another version, or the empty entry of a doubled space
		}
		v1 = true
		// The base64 text is compared, not its decoding: the lenient
		// decoder would accept other spellings of the same bytes.
		if hmac.Equal([]byte(sig), want) {
			return nil
		}
	}
	if !v1 {
		return fmt.Errorf("%w: %s has no v1 signature", ErrSignature, HeaderSignature)
	}
	return fmt.Errorf("%w: no v1 signature in %s matches the request", ErrSignature, HeaderSignature)
}

// parseUnix parses webhook-timestamp: unix seconds as ASCII digits. A
// signed "-5" or "+5" is no time a sender signs at.
func parseUnix(s string) (int64, bool) {
	if !allASCIIDigits(s) {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}
