package webhook

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// memStore is a Store in memory, for tests of replicas in one process:
// Registries that share one follow each other's changes as they would
// through a database.
type memStore struct {
	poll time.Duration // Wait's longest wait; 50 ms when zero
	down atomic.Bool   // every method fails while set

	mu      sync.Mutex
	version int64
	rows    map[string]Stored // by key
	changed chan struct{}     // closed, and replaced, on every write
}

var _ Store = (*memStore)(nil)

var errStoreDown = errors.New("store unreachable")

func newMemStore() *memStore {
	return &memStore{rows: map[string]Stored{}, changed: make(chan struct{})}
}

func (s *memStore) Write(ctx context.Context, changes ...Stored) ([]Stored, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range changes {
		cur, ok := s.rows[c.Key]
		switch {
		case c.Version == 0 && ok:
			return nil, fmt.Errorf("key %s: %w", c.Key, ErrConflict)
		case c.Version == 0:
			for _, row := range s.rows {
				if !row.Deleted && row.Webhook.Space == c.Webhook.Space && row.Webhook.ID == c.Webhook.ID {
					return nil, fmt.Errorf("%s in %q: %w", c.Webhook.ID, c.Webhook.Space, ErrConflict)
				}
			}
		case !ok || cur.Deleted:
			return nil, fmt.Errorf("key %s: %w", c.Key, ErrNotFound)
		case cur.Version != c.Version:
			return nil, fmt.Errorf("key %s at %d, not %d: %w", c.Key, cur.Version, c.Version, ErrConflict)
		}
	}
	out := make([]Stored, len(changes))
	for i, c := range changes {
		s.version++
		c.Version = s.version
		if c.Deleted {
			c.Webhook = Webhook{ID: c.Webhook.ID, Space: c.Webhook.Space}
		}
		s.rows[c.Key] = c
		out[i] = c
	}
	close(s.changed)
	s.changed = make(chan struct{})
	return out, nil
}

func (s *memStore) Changes(ctx context.Context, after int64) ([]Stored, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Stored
	for _, row := range s.rows {
		if row.Version > after {
			out = append(out, row)
		}
	}
	slices.SortFunc(out, func(a, b Stored) int { return int(a.Version - b.Version) })
	return out, nil
}

func (s *memStore) Wait(ctx context.Context, after int64) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	s.mu.Lock()
	newer, changed := s.version > after, s.changed
	s.mu.Unlock()
	if newer {
		return nil
	}
	poll := s.poll
	if poll == 0 {
		poll = 50 * time.Millisecond
	}
	select {
	case <-changed:
	case <-time.After(poll):
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

func (s *memStore) check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.down.Load() {
		return errStoreDown
	}
	return nil
}
