package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
)

// Sign returns the WebHook-Signature of body: the lowercase hex
// HMAC-SHA256 of the exact body bytes, keyed with the registration's
// signature UUID as text.
func Sign(key string, body []byte) string {
	var sum [sha256.Size]byte
	return hex.EncodeToString(mac(key, body, sum[:0]))
}

func mac(key string, body, dst []byte) []byte {
	h := hmac.New(sha256.New, []byte(key))
	h.Write(body)
	return h.Sum(dst)
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
	if !hmac.Equal(got, mac(key, body, sum[:0])) {
		return fmt.Errorf("%w: %s does not match the body", ErrSignature, HeaderSignature)
	}
	return nil
}
