package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/crmhook/webhook"
)

// DefaultPollInterval is how long Store.Wait waits at most when
// StoreConfig.PollInterval is 0.
const DefaultPollInterval = time.Second

// storeLock is the key of the transaction-level advisory lock that every
// Write holds until it commits, so that versions commit one after the
// other, in increasing order.
const storeLock = 0x7765626b73746f72 // "webkstor"

// codeUniqueViolation is the SQLSTATE of a duplicate key.
const codeUniqueViolation = "23505"

// StoreConfig configures a Store. The zero value is the default
// configuration.
type StoreConfig struct {
	// PollInterval is the longest that Wait waits for a notification
	// before it returns anyway, so that a notification lost while the
	// listening connection was down heals. If PollInterval is 0,
	// DefaultPollInterval (1 s) is used.
	PollInterval time.Duration
}

// Store is a webhook.Store in PostgreSQL: every registration is a row of
// the table webhook_registrations, kept after its deletion as a tombstone.
// Writes are serialized by an advisory lock held until they commit, so
// that versions become visible in increasing order, and each one NOTIFYs
// the replicas, whose Wait returns at once; a listening connection of the
// Store's own, opened at the first Wait, hears them and reconnects by
// itself.
//
// Times are stored to the microsecond, as PostgreSQL keeps them, and
// returned in UTC. Signatures are stored as given: protect the database
// as the secrets it holds deserve.
//
// The zero value is not usable: use NewStore. A Store is safe for
// simultaneous use by multiple goroutines.
type Store struct {
	pool   *pgxpool.Pool
	poll   time.Duration
	listen *listener
}

var _ webhook.Store = (*Store)(nil)

// NewStore returns a Store on the database of pool, whose schema must be
// migrated (see Migrate). The pool stays the caller's: Close does not
// close it.
func NewStore(ctx context.Context, pool *pgxpool.Pool, cfg StoreConfig) (*Store, error) {
	if err := checkSchema(ctx, pool); err != nil {
		return nil, err
	}
	poll := cfg.PollInterval
	if poll <= 0 {
		poll = DefaultPollInterval
	}
	return &Store{pool: pool, poll: poll, listen: newListener(pool, storeChannel)}, nil
}

// Close stops the Store's listening connection and releases every Wait,
// which returns ErrClosed. Write and Changes work on after Close.
func (s *Store) Close() error {
	s.listen.close()
	return nil
}

// Write stores changes, all of them or none, as webhook.Store says: a
// version 0 creates, any other updates the registration with the change's
// Key if that is its current version. Each change gets the next version.
// A refused change fails the whole Write with an error that wraps
// webhook.ErrConflict or webhook.ErrNotFound and names the change.
func (s *Store) Write(ctx context.Context, changes ...webhook.Stored) ([]webhook.Stored, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(changes) == 0 {
		return nil, nil
	}
	rows := make([]registrationRow, len(changes))
	for i, c := range changes {
		r, err := rowOf(c)
		if err != nil {
			return nil, fmt.Errorf("postgres: write change %d of %d: %w", i+1, len(changes), err)
		}
		rows[i] = r
	}
	var out []webhook.Stored
	err := inTx(ctx, s.pool, pgx.TxOptions{}, func(tx pgx.Tx) error {
		var err error
		out, err = writeRows(ctx, tx, changes, rows)
		return err
	})
	if err != nil {
		return nil, ctxErr(ctx, err)
	}
	return out, nil
}

// writeRows runs Write's statements in tx, in one round trip: the lock,
// one statement a change, and the notification.
func writeRows(ctx context.Context, tx pgx.Tx, changes []webhook.Stored, rows []registrationRow) ([]webhook.Stored, error) {
	b := &pgx.Batch{}
	b.Queue(`SELECT pg_advisory_xact_lock($1)`, int64(storeLock))
	for i, r := range rows {
		if changes[i].Version == 0 {
			b.Queue(insertRegistration, r.args()...)
		} else {
			b.Queue(updateRegistration, append(r.args(), changes[i].Version)...)
		}
	}
	b.Queue(`SELECT pg_notify($1, (SELECT max(version) FROM webhook_registrations)::text)`, storeChannel)
	br := tx.SendBatch(ctx, b)
	defer br.Close()
	if _, err := br.Exec(); err != nil {
		return nil, fmt.Errorf("postgres: write: lock: %w", err)
	}
	out := make([]webhook.Stored, len(changes))
	for i, c := range changes {
		var version int64
		err := br.QueryRow().Scan(&version)
		if err != nil {
			br.Close()
			return nil, refusal(ctx, tx, i, len(changes), c, err)
		}
		if out[i], err = rows[i].stored(version); err != nil {
			return nil, err
		}
	}
	if _, err := br.Exec(); err != nil {
		return nil, fmt.Errorf("postgres: write: notify: %w", err)
	}
	return out, nil
}

// The statements of a change. Each takes the next version under the
// advisory lock, and a deletion clears everything but the key, space and
// id, the secret included.
const (
	insertRegistration = `
INSERT INTO webhook_registrations (key, space, id, deleted, url, events, options, insecure_ssl,
	signature, created, modified, disabled_at, disabled_reason, version)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13,
	(SELECT coalesce(max(version), 0) + 1 FROM webhook_registrations))
ON CONFLICT DO NOTHING
RETURNING version`
	updateRegistration = `
UPDATE webhook_registrations SET space = $2, id = $3, deleted = $4, url = $5, events = $6,
	options = $7, insecure_ssl = $8, signature = $9, created = $10, modified = $11,
	disabled_at = $12, disabled_reason = $13,
	version = (SELECT max(version) + 1 FROM webhook_registrations)
WHERE key = $1 AND version = $14 AND NOT deleted
RETURNING version`
)

// refusal says why change i was refused: err is what its statement
// returned.
func refusal(ctx context.Context, tx pgx.Tx, i, n int, c webhook.Stored, err error) error {
	what := fmt.Sprintf("postgres: write change %d of %d (registration %s of space %q, key %s)", i+1, n, c.Webhook.ID, c.Webhook.Space, c.Key)
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok && pgErr.Code == codeUniqueViolation {
		return fmt.Errorf("%s: %w: a live registration has its id", what, webhook.ErrConflict)
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%s: %w", what, err)
	}
	if c.Version == 0 {
		return fmt.Errorf("%s: %w: a live registration has its id, or its key was stored before", what, webhook.ErrConflict)
	}
	var version int64
	var deleted bool
	err = tx.QueryRow(ctx, `SELECT version, deleted FROM webhook_registrations WHERE key = $1`, c.Key).Scan(&version, &deleted)
	switch {
	case errors.Is(err, pgx.ErrNoRows), err == nil && deleted:
		return fmt.Errorf("%s: %w", what, webhook.ErrNotFound)
	case err != nil:
		return fmt.Errorf("%s: %w", what, err)
	}
	return fmt.Errorf("%s: %w: made from version %d, the current one is %d", what, webhook.ErrConflict, c.Version, version)
}

// Changes returns the latest state of every registration whose version is
// greater than after, in version order, tombstones included.
func (s *Store) Changes(ctx context.Context, after int64) ([]webhook.Stored, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `
SELECT key, space, id, deleted, url, events, options, insecure_ssl, signature, created, modified,
	disabled_at, disabled_reason, version
FROM webhook_registrations WHERE version > $1 ORDER BY version`, after)
	if err != nil {
		return nil, ctxErr(ctx, fmt.Errorf("postgres: changes: %w", err))
	}
	var out []webhook.Stored
	for rows.Next() {
		var r registrationRow
		var version int64
		if err := rows.Scan(&r.key, &r.space, &r.id, &r.deleted, &r.url, &r.events, &r.options,
			&r.insecureSSL, &r.signature, &r.created, &r.modified, &r.disabledAt, &r.disabledReason, &version); err != nil {
			rows.Close()
			return nil, fmt.Errorf("postgres: changes: %w", err)
		}
		st, err := r.stored(version)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("postgres: changes: %w", err)
		}
		out = append(out, st)
	}
	if err := rows.Err(); err != nil {
		return nil, ctxErr(ctx, fmt.Errorf("postgres: changes: %w", err))
	}
	return out, nil
}

// Wait returns nil when a change with a version greater than after may
// exist: at once if one does, else when a notification says so or the
// listening connection (re)connected, after which one may have been
// missed, and at the latest after the poll interval. It returns ctx's
// error when ctx ends, and ErrClosed after Close. A database it cannot
// reach makes it wait for the poll interval and return nil, so that a
// caller that follows changes in a loop does not spin.
func (s *Store) Wait(ctx context.Context, after int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	// The state is taken before the database is asked, so that a change
	// committed after the question wakes the wait below.
	st, ok := s.listen.state()
	if !ok {
		return ErrClosed
	}
	if st.highest > after {
		return nil
	}
	var latest int64
	err := s.pool.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM webhook_registrations`).Scan(&latest)
	if err == nil && latest > after {
		return nil
	}
	timer := time.NewTimer(s.poll)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
			return nil
		case <-st.changed:
			next, ok := s.listen.state()
			if !ok {
				return ErrClosed
			}
			if next.connects != st.connects || next.highest > after {
				return nil
			}
			st = next
		}
	}
}

// registrationRow is a registration as the columns of
// webhook_registrations hold it.
type registrationRow struct {
	key, space, id string
	deleted        bool
	url            string
	events         []string
	options        []byte // JSON, as the column keeps it verbatim
	insecureSSL    bool
	signature      string
	created        *time.Time
	modified       *time.Time
	disabledAt     *time.Time
	disabledReason *string
}

// rowOf returns the row of a change. A deletion keeps only the space and
// id.
func rowOf(c webhook.Stored) (registrationRow, error) {
	w := c.Webhook
	r := registrationRow{key: c.Key, space: w.Space, id: w.ID, deleted: c.Deleted, events: []string{}, options: []byte("{}")}
	if c.Deleted {
		return r, nil
	}
	options, err := json.Marshal(w.Options)
	if err != nil {
		return r, fmt.Errorf("options: %w", err)
	}
	r.url, r.options, r.insecureSSL, r.signature = w.URL, options, w.InsecureSSL, w.Signature
	if w.Events != nil {
		r.events = w.Events
	}
	r.created, r.modified = timeOrNil(w.Created), timeOrNil(w.Modified)
	if w.Disabled != nil {
		r.disabledAt, r.disabledReason = timeOrNil(w.Disabled.At), &w.Disabled.Reason
	}
	return r, nil
}

func (r registrationRow) args() []any {
	return []any{r.key, r.space, r.id, r.deleted, r.url, r.events, string(r.options), r.insecureSSL,
		r.signature, r.created, r.modified, r.disabledAt, r.disabledReason}
}

// stored returns the registration of r as a Store returns it, times in
// UTC to the microsecond, as stored.
func (r registrationRow) stored(version int64) (webhook.Stored, error) {
	st := webhook.Stored{Key: r.key, Version: version, Deleted: r.deleted}
	st.Webhook.ID, st.Webhook.Space = r.id, r.space
	if r.deleted {
		return st, nil
	}
	w := &st.Webhook
	if err := json.Unmarshal(r.options, &w.Options); err != nil {
		return st, fmt.Errorf("options of registration %s: %w", r.id, err)
	}
	w.URL, w.InsecureSSL, w.Signature = r.url, r.insecureSSL, r.signature
	w.Events = append([]string(nil), r.events...)
	w.Created, w.Modified = storedTime(r.created), storedTime(r.modified)
	if r.disabledReason != nil || r.disabledAt != nil {
		w.Disabled = &webhook.Disabled{At: storedTime(r.disabledAt)}
		if r.disabledReason != nil {
			w.Disabled.Reason = *r.disabledReason
		}
	}
	return st, nil
}

// timeOrNil returns a zero time as NULL.
func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// storedTime returns t as PostgreSQL keeps it: in UTC, to the microsecond,
// and zero for NULL.
func storedTime(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.Truncate(time.Microsecond).UTC()
}
