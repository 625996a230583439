package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/crmhook/webhook"
)

// newTestStore returns a Store on a fresh database, closed when t ends.
func newTestStore(t *testing.T, cfg StoreConfig) (*Store, *pgxpool.Pool) {
	t.Helper()
	pool := newTestPool(t)
	s, err := NewStore(t.Context(), pool, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s, pool
}

// fullWebhook returns a registration with every field set, so that a
// field the Store does not keep shows.
func fullWebhook(space, id string) webhook.Webhook {
	return webhook.Webhook{
		ID:     id,
		Space:  space,
		URL:    "https://example.com/hook/" + id,
		Events: []string{"Contact.Create", "Account.*"},
		Options: webhook.Options{
			Entity: map[string]webhook.EntityOptions{"Contact": {
				LoadOnly: []string{"id", "owner.name"},
				Filter:   map[string]json.RawMessage{"owner.name": json.RawMessage(`["Ann","Bob"]`)},
				FilterOp: map[string]string{"owner.name": "eq"},
			}},
			SkipKeys:  []string{"import"},
			ChunkSize: 10,
		},
		InsecureSSL: true,
		Signature:   "s3cret",
		Created:     time.Date(2024, 5, 1, 12, 0, 0, 123456000, time.UTC),
		Modified:    time.Date(2024, 5, 2, 12, 0, 0, 654321000, time.UTC),
		Disabled:    &webhook.Disabled{At: time.Date(2024, 5, 3, 0, 0, 0, 0, time.UTC), Reason: "410 Gone"},
	}
}

func TestFullWebhookSetsEveryField(t *testing.T) {
	v := reflect.ValueOf(fullWebhook("s", "id"))
	for i := range v.NumField() {
		require.False(t, v.Field(i).IsZero(), "fullWebhook leaves Webhook.%s zero: the Store's tests would not see it lost", v.Type().Field(i).Name)
	}
}

func created(key string, w webhook.Webhook) webhook.Stored {
	return webhook.Stored{Key: key, Webhook: w}
}

// write writes and fails the test on an error.
func write(t *testing.T, s *Store, changes ...webhook.Stored) []webhook.Stored {
	t.Helper()
	out, err := s.Write(t.Context(), changes...)
	require.NoError(t, err)
	require.Len(t, out, len(changes))
	return out
}

func changes(t *testing.T, s *Store, after int64) []webhook.Stored {
	t.Helper()
	out, err := s.Changes(t.Context(), after)
	require.NoError(t, err)
	return out
}

func requireStored(t *testing.T, want, got []webhook.Stored) {
	t.Helper()
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("stored (-want +got):\n%s", d)
	}
}

func TestStoreKeepsEveryField(t *testing.T) {
	t.Parallel()
	s, _ := newTestStore(t, StoreConfig{})
	bare := webhook.Webhook{ID: "b", URL: "https://example.com/b", Events: []string{"Contact.*"}}
	out := write(t, s, created("k1", fullWebhook("space-a", "a")), created("k2", bare))
	want := []webhook.Stored{
		{Key: "k1", Webhook: fullWebhook("space-a", "a"), Version: 1},
		{Key: "k2", Webhook: bare, Version: 2},
	}
	requireStored(t, want, out)
	requireStored(t, want, changes(t, s, 0))
	requireStored(t, want[1:], changes(t, s, 1))
	require.Empty(t, changes(t, s, 2))
}

func TestStoreTimesAsStored(t *testing.T) {
	t.Parallel()
	s, _ := newTestStore(t, StoreConfig{})
	w := fullWebhook("", "a")
	w.Created = time.Date(2024, 5, 1, 12, 0, 0, 123456789, time.FixedZone("CEST", 2*3600))
	out := write(t, s, created("k", w))
	want := w.Created.Truncate(time.Microsecond).UTC()
	require.Equal(t, want, out[0].Webhook.Created, "Write returns the time as stored")
	require.Equal(t, want, changes(t, s, 0)[0].Webhook.Created)
}

func TestStoreWriteRefuses(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name   string
		change webhook.Stored
		want   error
	}{
		{"a new registration with the id of a live one in its space", created("new", fullWebhook("s", "live")), webhook.ErrConflict},
		{"a new registration with a key that is live", created("live-key", fullWebhook("s", "other")), webhook.ErrConflict},
		{"a new registration with the key of a deleted one", created("gone-key", fullWebhook("s", "other")), webhook.ErrConflict},
		{"an update made from an older version", webhook.Stored{Key: "live-key", Webhook: fullWebhook("s", "live"), Version: 1}, webhook.ErrConflict},
		{"an update made from a newer version", webhook.Stored{Key: "live-key", Webhook: fullWebhook("s", "live"), Version: 9}, webhook.ErrConflict},
		{"an update of an unknown key", webhook.Stored{Key: "nope", Webhook: fullWebhook("s", "x"), Version: 1}, webhook.ErrNotFound},
		{"an update of a deleted registration", webhook.Stored{Key: "gone-key", Webhook: fullWebhook("s", "gone"), Version: 4}, webhook.ErrNotFound},
		{"a deletion of a deleted registration", webhook.Stored{Key: "gone-key", Webhook: fullWebhook("s", "gone"), Version: 4, Deleted: true}, webhook.ErrNotFound},
		{"an update that takes the id of another live one", webhook.Stored{Key: "live-key", Webhook: fullWebhook("s", "other-live"), Version: 2}, webhook.ErrConflict},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, _ := newTestStore(t, StoreConfig{})
			v1 := write(t, s, created("live-key", fullWebhook("s", "live")))[0]
			v1.Webhook.URL = "https://example.com/v2"
			write(t, s, v1) // version 2
			gone := write(t, s, created("gone-key", fullWebhook("s", "gone")))[0]
			gone.Deleted = true
			write(t, s, gone) // version 4
			write(t, s, created("other-key", fullWebhook("s", "other-live")))
			before := changes(t, s, 0)

			ok := created("fine", fullWebhook("s", "fine"))
			out, err := s.Write(t.Context(), ok, tt.change)
			require.ErrorIs(t, err, tt.want)
			require.Nil(t, out)
			requireStored(t, before, changes(t, s, 0))
		})
	}
}

func TestStoreUpdateAndDelete(t *testing.T) {
	t.Parallel()
	s, _ := newTestStore(t, StoreConfig{})
	a := write(t, s, created("ka", fullWebhook("s", "a")))[0]
	write(t, s, created("kb", fullWebhook("s", "b")))

	a.Webhook.URL, a.Webhook.Disabled = "https://example.com/new", nil
	a = write(t, s, a)[0]
	require.EqualValues(t, 3, a.Version)

	del := webhook.Stored{Key: "ka", Webhook: a.Webhook, Version: a.Version, Deleted: true}
	tomb := write(t, s, del)[0]
	wantTomb := webhook.Stored{Key: "ka", Webhook: webhook.Webhook{ID: "a", Space: "s"}, Version: 4, Deleted: true}
	requireStored(t, []webhook.Stored{wantTomb}, []webhook.Stored{tomb})

	// The id is free again, under a new key; the tombstone stays.
	again := write(t, s, created("ka2", fullWebhook("s", "a")))[0]
	require.EqualValues(t, 5, again.Version)
	got := changes(t, s, 2)
	requireStored(t, []webhook.Stored{wantTomb, again}, got)

	var signature string
	require.NoError(t, s.pool.QueryRow(t.Context(), `SELECT signature FROM webhook_registrations WHERE key = 'ka'`).Scan(&signature))
	require.Empty(t, signature, "a tombstone keeps no secret")
}

func TestStoreSameIDInTwoSpaces(t *testing.T) {
	t.Parallel()
	s, _ := newTestStore(t, StoreConfig{})
	write(t, s, created("k1", fullWebhook("s1", "same")), created("k2", fullWebhook("s2", "same")))
	require.Len(t, changes(t, s, 0), 2)
}

// TestStoreVersionsBecomeVisibleInOrder has writers race while a follower
// reads Changes after the highest version it saw: if a version became
// visible after a higher one, the follower would never see it.
func TestStoreVersionsBecomeVisibleInOrder(t *testing.T) {
	t.Parallel()
	s, _ := newTestStore(t, StoreConfig{})
	const writers, each = 4, 30
	ctx := t.Context()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				key := fmt.Sprintf("w%d-%d", w, i)
				if _, err := s.Write(ctx, created(key, fullWebhook("s", key))); err != nil {
					t.Errorf("write: %v", err)
					return
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	seen := map[int64]bool{}
	var after int64
	follow := func() {
		got, err := s.Changes(ctx, after)
		require.NoError(t, err)
		for _, c := range got {
			require.Greater(t, c.Version, after, "Changes out of order")
			require.False(t, seen[c.Version])
			seen[c.Version] = true
			after = c.Version
		}
	}
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
		}
		follow()
	}
	follow()
	require.Len(t, seen, writers*each, "versions the follower missed")
	for v := int64(1); v <= writers*each; v++ {
		require.True(t, seen[v], "version %d", v)
	}
}

func TestStoreWait(t *testing.T) {
	t.Parallel()
	t.Run("returns at once when a newer version exists", func(t *testing.T) {
		t.Parallel()
		s, _ := newTestStore(t, StoreConfig{PollInterval: time.Hour})
		write(t, s, created("k", fullWebhook("s", "a")))
		require.NoError(t, s.Wait(t.Context(), 0))
	})
	t.Run("wakes on another connection's write, well within the poll interval", func(t *testing.T) {
		t.Parallel()
		s, pool := newTestStore(t, StoreConfig{PollInterval: time.Hour})
		other, err := NewStore(t.Context(), pool, StoreConfig{})
		require.NoError(t, err)
		defer other.Close()
		requireWaitWakes(t, s, 0, func() { write(t, other, created("k", fullWebhook("s", "a"))) })
	})
	t.Run("returns after the poll interval without a change", func(t *testing.T) {
		t.Parallel()
		s, _ := newTestStore(t, StoreConfig{PollInterval: 50 * time.Millisecond})
		start := time.Now()
		require.NoError(t, s.Wait(t.Context(), 0))
		require.Less(t, time.Since(start), 5*time.Second)
	})
	t.Run("returns ctx's error when ctx ends", func(t *testing.T) {
		t.Parallel()
		s, _ := newTestStore(t, StoreConfig{PollInterval: time.Hour})
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		waitConnected(t, s)
		require.ErrorIs(t, s.Wait(ctx, 0), context.DeadlineExceeded)
	})
	t.Run("Close releases a Wait with ErrClosed", func(t *testing.T) {
		t.Parallel()
		s, _ := newTestStore(t, StoreConfig{PollInterval: time.Hour})
		waitConnected(t, s)
		errc := make(chan error, 1)
		go func() { errc <- s.Wait(t.Context(), 0) }()
		time.Sleep(50 * time.Millisecond) // let it wait; it returns ErrClosed either way
		require.NoError(t, s.Close())
		select {
		case err := <-errc:
			require.ErrorIs(t, err, ErrClosed)
		case <-time.After(10 * time.Second):
			t.Fatal("Wait not released by Close")
		}
		require.ErrorIs(t, s.Wait(t.Context(), 0), ErrClosed)
	})
}

// waitConnected waits until s's listening connection has listened.
func waitConnected(t *testing.T, s *Store) {
	t.Helper()
	for {
		st, ok := s.listen.state()
		require.True(t, ok, "closed")
		if st.connects > 0 {
			return
		}
		select {
		case <-st.changed:
		case <-time.After(10 * time.Second):
			t.Fatal("the Store's listener did not connect within 10 s")
		}
	}
}

// requireWaitWakes waits until s listens, then checks that a Wait after
// after returns within a second of change.
func requireWaitWakes(t *testing.T, s *Store, after int64, change func()) {
	t.Helper()
	waitConnected(t, s)
	errc := make(chan error, 1)
	started := make(chan struct{})
	go func() {
		close(started)
		errc <- s.Wait(t.Context(), after)
	}()
	<-started
	time.Sleep(20 * time.Millisecond) // so that the Wait is waiting, not looking
	change()
	select {
	case err := <-errc:
		require.NoError(t, err)
	case <-time.After(time.Second):
		t.Fatal("Wait did not return within a second of the change")
	}
}

func TestStoreWaitHealsAfterTheListenerIsKilled(t *testing.T) {
	t.Parallel()
	s, pool := newTestStore(t, StoreConfig{PollInterval: time.Hour})
	waitConnected(t, s)
	killListeners(t, pool)
	// The change is made while the listener may still be down: the
	// notification is lost, and the reconnection must wake the Wait.
	write(t, s, created("k", fullWebhook("s", "a")))
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for {
		require.NoError(t, s.Wait(ctx, 0), "Wait did not heal within 10 s with an hour's poll interval")
		if got := changes(t, s, 0); len(got) == 1 {
			break
		}
	}
	// And it listens again.
	requireWaitWakes(t, s, 1, func() { write(t, s, created("k2", fullWebhook("s", "b"))) })
}

// killListeners ends the listening sessions on pool's database, as an
// operator's pg_terminate_backend or a failing network would.
func killListeners(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	var n int
	err := pool.QueryRow(t.Context(), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND application_name = $1`, listenerAppName).Scan(&n)
	require.NoError(t, err)
	require.Positive(t, n, "no listener to kill")
}
