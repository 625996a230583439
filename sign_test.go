package webhook

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"strings"
	"testing"

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

// BenchmarkSignBaselineSHA256 is the floor Sign is compared to: one plain
// SHA-256 of the same body.
func BenchmarkSignBaselineSHA256(b *testing.B) {
	benchBodies(b, func(body []byte) { sha256.Sum256(body) })
}
