package webhook

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Issue 10, finding 7: a URL's user-info is the receiver's secret; it was
// written to the warning log and handed to the Observer.
func TestAURLsUserInfoReachesNoLogNorObserver(t *testing.T) {
	rcv := newReceiver(t)
	rcv.status.Store(http.StatusServiceUnavailable)
	closed := newReceiver(t)
	closed.Close() // refuses connections: the Transport's error quotes the URL
	const user, password = "hook-user-token", "s3cret-passw0rd"
	withInfo := func(raw string) string {
		u, err := url.Parse(raw)
		require.NoError(t, err)
		u.User = url.UserPassword(user, password)
		return u.String()
	}
	r := newTestRegistry()
	mustCreate(t, r, Webhook{URL: withInfo(rcv.URL) + "/a", Events: []string{"Task.*"}})
	mustCreate(t, r, Webhook{URL: withInfo(closed.URL) + "/b", Events: []string{"Task.*"}})
	var logs syncBuffer
	var got attempts
	d := newTestDispatcher(t, r, Config{Observer: got.add, Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		RetrySchedule: []time.Duration{}})
	dispatch(t, d, Event{Name: "Task.Create", Data: account})

	// The receiver still gets the credentials, as HTTP basic authentication.
	req := rcv.next(t)
	u, p, ok := (&http.Request{Header: req.Header}).BasicAuth()
	require.True(t, ok)
	require.Equal(t, [2]string{user, password}, [2]string{u, p})

	failed := got.failed()
	require.Len(t, failed, 2)
	for _, a := range failed {
		for _, secret := range []string{user, password} {
			require.NotContains(t, a.URL, secret)
			require.NotContains(t, a.Err.Error(), secret)
		}
	}
	require.Contains(t, logs.String(), "connection refused", "the failure is logged")
	for _, secret := range []string{user, password} {
		require.NotContains(t, logs.String(), secret)
	}
}

func TestScrubKeepsTheErrorsIdentity(t *testing.T) {
	cause := &url.Error{Op: "Post", URL: "https://tok:***@example.com/h", Err: errors.New("boom")}
	err := scrub(cause, "https://tok:pw@example.com/h")
	require.Equal(t, `Post "https://example.com/h": boom`, err.Error())
	var ue *url.Error
	require.ErrorAs(t, err, &ue)
	require.Same(t, cause, ue)
	require.True(t, strings.Contains(scrub(cause, "https://example.com/h").Error(), "tok:***@"), "no user-info in the URL: nothing to scrub")

	// Only the user-info goes: an empty or short user name is no licence
	// to remove every "@" or "a@" of the message.
	for _, raw := range []string{"https://:pw@example.com/h", "https://a:pw@example.com/h"} {
		cause := fmt.Errorf(`Post %q: mail a@b.example refused`, raw)
		require.Equal(t, `Post "https://example.com/h": mail a@b.example refused`, scrub(cause, raw).Error(), raw)
	}
	// User-info as the registration wrote it, which url.URL writes back
	// otherwise ("us%65r" is "user"): a Transport may quote either.
	const raw = "https://us%65r:p%61ss@example.com/h"
	for _, quoted := range []string{raw, "https://user:pass@example.com/h"} {
		cause := fmt.Errorf("Post %q: boom", quoted)
		require.Equal(t, `Post "https://example.com/h": boom`, scrub(cause, raw).Error(), quoted)
	}
}
