package webhook

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Tenants never meet: every call names its space, and another space's id
// is exactly one that does not exist (issue 10, findings 1 and 2).

func TestAnotherSpacesIDIsOneThatDoesNotExist(t *testing.T) {
	ctx := context.Background()
	rcv := newReceiver(t)
	r := newTestRegistry()
	theirs := mustCreate(t, r, Webhook{Space: "victim", URL: rcv.URL + "/victim", Events: []string{"Task.*"}, Signature: testSignature})
	const unknown = "0b8a3e4c-2f1d-4c6e-9a7b-5d3c2e1f0a9b"
	for _, space := range []string{"", "attacker"} {
		// Finding 1: Update with the default space rewrote another
		// space's registration. Every call answers as for an unknown id.
		for _, id := range []string{theirs.ID, unknown} {
			url, sig := "https://evil.example/", "00000000-0000-0000-0000-000000000000"
			_, errUpdate := r.Update(ctx, space, id, Patch{URL: &url, Signature: &sig})
			_, errGet := r.Get(ctx, space, id)
			errDelete := r.Delete(ctx, space, id)
			res, errApply := r.Apply(ctx, space, []Change{{ID: id, Delete: true}}, false)
			require.NoError(t, errApply)
			for _, err := range []error{errUpdate, errGet, errDelete, res[0].Err} {
				require.ErrorIs(t, err, ErrNotFound)
				require.EqualError(t, err, `webhook "`+id+`": webhook: not found`, "the same message as for an id nobody has")
			}
		}
		require.Empty(t, mustListSpace(t, r, space))
	}
	got, err := r.Get(ctx, "victim", theirs.ID)
	require.NoError(t, err)
	require.Equal(t, theirs, got, "unchanged")

	// Its next event still goes where its owner said, signed with its key.
	d := newTestDispatcher(t, r, Config{})
	dispatch(t, d, Event{Space: "victim", Name: "Task.Create", Data: account})
	req := rcv.next(t)
	require.Equal(t, "/victim", req.Path)
	require.NoError(t, VerifySignature(testSignature, req.Body, req.Header.Get(HeaderSignature)))
}

func TestAnIDTakenInAnotherSpaceIsFree(t *testing.T) {
	ctx := context.Background()
	r := newTestRegistry()
	w := validWebhook()
	w.ID = "0b8a3e4c-2f1d-4c6e-9a7b-5d3c2e1f0a9b"
	w.Space = "a"
	mustCreate(t, r, w)
	// Answering "taken" would tell space b what space a has.
	w.Space = "b"
	mustCreate(t, r, w)
	_, err := r.Create(ctx, "b", w)
	requireFieldError(t, err, "id")
	require.Len(t, mustListSpace(t, r, "a"), 1)
	require.Len(t, mustListSpace(t, r, "b"), 1)
}

func TestDeletingARegistrationRemovesItsDeliveries(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock()
	var up atomic.Bool
	rcv := newReceiverFunc(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		if !up.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	q := NewMemoryQueue(QueueLimits{})
	r := newRegistry(RegistryConfig{Addresses: loopback, Clock: clock})
	const id = "0b8a3e4c-2f1d-4c6e-9a7b-5d3c2e1f0a9b" // a host restoring its own may choose it
	old := mustCreate(t, r, Webhook{ID: id, Space: "old", URL: rcv.URL + "/old", Events: []string{"Task.*"}, Options: Options{ChunkSize: 1}})
	obs, attempts := observed()
	d := newTestDispatcher(t, r, Config{Queue: q, Clock: clock, Observer: obs, Logger: quietLogger(),
		RetrySchedule: []time.Duration{time.Hour}})
	// One delivery dies, one waits for its retry.
	require.NoError(t, d.Dispatch(ctx, Event{Space: "old", Name: "Task.Create", Data: account}))
	nextAttempt(t, attempts)
	clock.Advance(time.Hour + 10*time.Minute)
	require.True(t, nextAttempt(t, attempts).Dead)
	require.NoError(t, d.Dispatch(ctx, Event{Space: "old", Name: "Task.Update", Data: account}))
	require.False(t, nextAttempt(t, attempts).Dead)
	dead, err := d.Dead(ctx, "old", id)
	require.NoError(t, err)
	require.Len(t, dead, 1)

	// Finding 2: after Delete, a registration that reuses the id, in
	// another space, got the old tenant's pending retry and dead bodies.
	require.NoError(t, r.Delete(ctx, "old", old.ID))
	require.NoError(t, d.Flush(ctx), "the deleted registration's deliveries are done")
	eventually(t, func() bool { return len(q.entries) == 0 }, "the Queue still holds a deleted registration's deliveries")
	up.Store(true)
	mustCreate(t, r, Webhook{ID: id, Space: "new", URL: rcv.URL + "/new", Events: []string{"Note.*"}})
	dead, err = d.Dead(ctx, "new", id)
	require.NoError(t, err)
	require.Empty(t, dead)
	n, err := d.Redeliver(ctx, "new", id, "")
	require.NoError(t, err)
	require.Zero(t, n)
	clock.Advance(2 * time.Hour) // when the old retry was due
	require.NoError(t, d.Dispatch(ctx, Event{Space: "new", Name: "Note.Create", Data: account}))
	require.NoError(t, d.Flush(ctx))
	var paths, events []string
	for _, req := range rcv.drain() {
		paths = append(paths, req.Path)
		events = append(events, decodeItems(t, req.Body)[0].Event)
	}
	require.Equal(t, []string{"/old", "/old", "/old", "/new"}, paths, "three attempts before the Delete; after it, the new registration's own event only")
	require.Equal(t, "Note.Create", events[3])
	_, err = d.Dead(ctx, "old", id)
	require.ErrorIs(t, err, ErrNotFound)
}

func mustListSpace(t testing.TB, r *Registry, space string) []Webhook {
	t.Helper()
	hooks, err := r.List(context.Background(), space)
	require.NoError(t, err)
	return hooks
}

// TestDeletingNoIDCreatesNothing: a change that deletes the id "" is a
// delete of what does not exist, not a create.
func TestDeletingNoIDCreatesNothing(t *testing.T) {
	ctx := context.Background()
	r := newTestRegistry()
	require.ErrorIs(t, r.Delete(ctx, "", ""), ErrNotFound)
	url, events := "https://example.com/hooks", []string{"Account.Create"}
	_, err := r.Update(ctx, "", "", Patch{URL: &url, Events: &events})
	require.ErrorIs(t, err, ErrNotFound, "an update of no id is not a create either")
	_, err = r.Apply(ctx, "", []Change{{Delete: true, Patch: Patch{URL: &url, Events: &events}}}, true)
	require.ErrorIs(t, err, ErrNotFound)
	require.Empty(t, mustList(t, r))
}
