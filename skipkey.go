package webhook

import (
	"context"
	"net/http"
)

// skipKeyContext is the context key of a skip key.
type skipKeyContext struct{}

// ContextWithSkipKey returns a copy of ctx that carries key, the
// Webhook-Skip-Key of the API request behind the changes made with ctx:
// Dispatch gives it to every event that has no SkipKey of its own.
func ContextWithSkipKey(ctx context.Context, key string) context.Context {
	return context.WithValue(ctx, skipKeyContext{}, key)
}

// SkipKeyFromContext returns the skip key ctx carries, or "".
func SkipKeyFromContext(ctx context.Context) string {
	key, _ := ctx.Value(skipKeyContext{}).(string)
	return key
}

// CarrySkipKey returns a handler that serves next with the request's
// Webhook-Skip-Key header, if it has one, carried in its context, so
// that the changes the request makes and hands to Dispatch with that
// context do not fire the registrations that list the key in skip_keys.
// The host wraps its own API with it; no other plumbing is needed.
func CarrySkipKey(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if key := r.Header.Get(HeaderSkipKey); key != "" {
			r = r.WithContext(ContextWithSkipKey(r.Context(), key))
		}
		next.ServeHTTP(w, r)
	})
}
