package webhook

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// catchUp applies the changes the Store has that this Registry has not
// applied yet: those of other replicas. It compiles them before it takes
// the lock, which it holds only to file them. One catch-up runs at a
// time, so that a deletion cannot be undone by an older state that a
// catch-up begun before it brings.
func (r *Registry) catchUp(ctx context.Context) error {
	if r.store == nil {
		return nil
	}
	select {
	case r.syncing <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-r.syncing }()
	r.mu.RLock()
	after := r.version
	r.mu.RUnlock()
	changes, err := r.store.Changes(ctx, after)
	if err != nil {
		return fmt.Errorf("webhook: reading the registrations' changes: %w", err)
	}
	if len(changes) == 0 {
		return nil
	}
	regs := make([]*registration, len(changes))
	for i, st := range changes {
		if st.Deleted {
			continue
		}
		// Trusted: the replica that stored it validated it, perhaps with
		// other limits or a catalogue this one lacks.
		reg, err := r.compile(st.Webhook, true)
		if err != nil {
			r.log.LogAttrs(ctx, slog.LevelError, "webhook: a stored registration cannot be compiled; it fires nothing here",
				slog.String("webhook_id", st.Webhook.ID), slog.String("space", st.Webhook.Space), slog.String("error", err.Error()))
			continue
		}
		reg.key, reg.version = st.Key, st.Version
		regs[i] = reg
	}
	var dropped []string
	r.mu.Lock()
	for i, st := range changes {
		switch {
		case st.Deleted:
			if r.dropLocked(st.Key, st.Version) {
				dropped = append(dropped, st.Key)
			}
		case regs[i] != nil:
			r.putLocked(regs[i], &dropped)
		}
		r.version = max(r.version, st.Version)
	}
	for key, v := range r.gone {
		if v <= r.version {
			delete(r.gone, key) // no catch-up can bring an older state of it any more
		}
	}
	r.mu.Unlock()
	r.deleted(dropped)
	return nil
}

// follow catches up with the Store whenever it may have news, until ctx
// ends. A Store that fails is tried again a second later.
func (r *Registry) follow(ctx context.Context) {
	defer close(r.done)
	for ctx.Err() == nil {
		err := r.catchUp(ctx)
		if err == nil {
			r.mu.RLock()
			after := r.version
			r.mu.RUnlock()
			err = r.store.Wait(ctx, after)
		}
		if err == nil || ctx.Err() != nil {
			continue
		}
		r.log.LogAttrs(ctx, slog.LevelError, "webhook: following the registrations' store", slog.String("error", err.Error()))
		retry := make(chan struct{})
		stop := r.clock.AfterFunc(time.Second, func() { close(retry) })
		select {
		case <-retry:
		case <-ctx.Done():
			stop()
		}
	}
}

// Close stops following the Store. It returns once the Registry's
// goroutine has ended; the Registry stays usable, but sees other
// replicas' changes only when a call catches up. A Registry without a
// Store has nothing to stop.
func (r *Registry) Close() error {
	if r.stop != nil {
		r.stop()
		<-r.done
	}
	return nil
}
