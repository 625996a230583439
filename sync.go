package webhook

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
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

// write is one change to commit: the new state of a registration, or its
// deletion.
type write struct {
	old *registration // the state the change was made from; nil for a new registration
	reg *registration // the new state; nil deletes old
}

// commit makes ws, all of them or none: in the Store, then here. A
// change whose registration changed since it was prepared is refused with
// ErrConflict.
func (r *Registry) commit(ctx context.Context, ws []write) error {
	if r.store == nil {
		return r.commitLocal(ws)
	}
	changes := make([]Stored, len(ws))
	for i, w := range ws {
		switch {
		case w.reg == nil:
			changes[i] = Stored{Key: w.old.key, Version: w.old.version, Deleted: true,
				Webhook: Webhook{ID: w.old.hook.ID, Space: w.old.hook.Space}}
		case w.old == nil:
			changes[i] = Stored{Key: w.reg.key, Webhook: w.reg.webhook()}
		default:
			changes[i] = Stored{Key: w.reg.key, Version: w.old.version, Webhook: w.reg.webhook()}
		}
	}
	stored, err := r.store.Write(ctx, changes...)
	if err != nil {
		if len(ws) == 1 && ws[0].old == nil && errors.Is(err, ErrConflict) {
			return FieldErrors{invalid("id", "%s is taken", ws[0].reg.hook.ID)}
		}
		if errors.Is(err, ErrNotFound) {
			return ErrConflict // deleted on another replica: the retry says not found
		}
		return fmt.Errorf("webhook: storing registrations: %w", err)
	}
	var dropped []string
	r.mu.Lock()
	for i, w := range ws {
		if w.reg == nil {
			if r.dropLocked(w.old.key, stored[i].Version) {
				dropped = append(dropped, w.old.key)
			}
			continue
		}
		w.reg.version = stored[i].Version
		r.putLocked(w.reg, &dropped)
	}
	r.mu.Unlock()
	r.deleted(dropped)
	return nil
}

// commitLocal is commit without a Store.
func (r *Registry) commitLocal(ws []write) error {
	var dropped []string
	r.mu.Lock()
	taken := map[spaceID]bool{}
	for _, w := range ws {
		if w.old != nil {
			if r.byKey[w.old.key] != w.old {
				r.mu.Unlock()
				return ErrConflict
			}
			continue
		}
		id := spaceID{w.reg.hook.Space, w.reg.hook.ID}
		if r.byID[id] != nil || taken[id] {
			r.mu.Unlock()
			return FieldErrors{invalid("id", "%s is taken", id.id)}
		}
		taken[id] = true
	}
	for _, w := range ws {
		r.version++
		if w.reg == nil {
			r.dropLocked(w.old.key, r.version)
			dropped = append(dropped, w.old.key)
			continue
		}
		w.reg.version = r.version
		r.putLocked(w.reg, &dropped)
	}
	r.mu.Unlock()
	r.deleted(dropped)
	return nil
}

// putLocked files reg, unless the Registry has a newer state of its
// registration. A registration of reg's space and ID under another key
// was deleted in the Store, which this replica learns only now: it goes,
// and its key is added to dropped. It requires r.mu held.
func (r *Registry) putLocked(reg *registration, dropped *[]string) {
	id := spaceID{reg.hook.Space, reg.hook.ID}
	if cur := r.byKey[reg.key]; cur != nil {
		if cur.version >= reg.version {
			return
		}
		reg.seq = cur.seq
		r.index.remove(cur)
	} else {
		if v, ok := r.gone[reg.key]; ok && v >= reg.version {
			return
		}
		if other := r.byID[id]; other != nil {
			r.removeLocked(other)
			*dropped = append(*dropped, other.key)
		}
		r.seq++
		reg.seq = r.seq
	}
	r.byKey[reg.key] = reg
	r.byID[id] = reg
	r.index.add(reg)
}

// dropLocked applies the deletion, at version, of the registration whose
// key is key, and reports whether it is news. It requires r.mu held.
func (r *Registry) dropLocked(key string, version int64) bool {
	if r.gone != nil {
		if _, seen := r.gone[key]; seen {
			return false
		}
		r.gone[key] = version
	}
	if cur := r.byKey[key]; cur != nil && cur.version < version {
		r.removeLocked(cur)
		return true
	}
	return r.gone != nil // unknown here, but another replica's deliveries may wait for it
}

func (r *Registry) removeLocked(reg *registration) {
	delete(r.byKey, reg.key)
	if id := (spaceID{reg.hook.Space, reg.hook.ID}); r.byID[id] == reg {
		delete(r.byID, id)
	}
	r.index.remove(reg)
}

// watchDeletes calls f with the key of every registration deleted from
// now on, here or, through the Store, on another replica, until cancel is
// called. f is called without locks held, from any goroutine.
func (r *Registry) watchDeletes(f func(key string)) (cancel func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.watchSeq++
	n := r.watchSeq
	r.watchers[n] = f
	return func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		delete(r.watchers, n)
	}
}

// deleted tells the watchers about deleted registrations.
func (r *Registry) deleted(keys []string) {
	if len(keys) == 0 {
		return
	}
	r.mu.RLock()
	fs := slices.Collect(maps.Values(r.watchers))
	r.mu.RUnlock()
	for _, f := range fs {
		for _, key := range keys {
			f(key)
		}
	}
}
