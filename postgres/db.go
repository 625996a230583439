package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// SQLSTATE codes this package acts on.
const (
	codeUndefinedTable       = "42P01"
	codeSerializationFailure = "40001"
	codeDeadlockDetected     = "40P01"
)

// txAttempts is how often inTx runs a transaction that failed for a
// reason that another try may not meet.
const txAttempts = 4

// inTx runs f in a transaction of pool and commits it, trying again as
// retry says. f must have no effect outside the transaction, since it may
// run more than once.
func inTx(ctx context.Context, pool *pgxpool.Pool, opts pgx.TxOptions, f func(pgx.Tx) error) error {
	return retry(ctx, func() error { return pgx.BeginTxFunc(ctx, pool, opts, f) })
}

// retry runs f, a transaction, again when the server broke it off as a
// deadlock or a serialization failure (two replicas touching the same
// rows in another order), or when the connection failed before anything
// was sent (a connection the pool kept across a server restart), at most
// txAttempts times in all.
func retry(ctx context.Context, f func() error) error {
	var err error
	for attempt := range txAttempts {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Duration(attempt) * 10 * time.Millisecond):
			}
		}
		if err = f(); !retryable(err) {
			return err
		}
	}
	return err
}

// pipelined runs f on a connection of pool, trying again as retry says.
// f runs a transaction whose BEGIN goes in its first batch of statements
// and whose COMMIT in its last, which spares the two round trips of a
// pgx.Tx; pipelined rolls it back if f leaves it open.
func pipelined(ctx context.Context, pool *pgxpool.Pool, f func(*pgx.Conn) error) error {
	return retry(ctx, func() error {
		conn, err := pool.Acquire(ctx)
		if err != nil {
			return err
		}
		defer conn.Release()
		err = f(conn.Conn())
		// A transaction f left open (it failed, or a statement it ignores
		// failed after its commit) is rolled back.
		abort(ctx, conn.Conn())
		return err
	})
}

// abort rolls back conn's transaction, if one is open, so that conn goes
// back to its pool clean; a conn that cannot is closed.
func abort(ctx context.Context, conn *pgx.Conn) {
	if conn.IsClosed() || conn.PgConn().TxStatus() == 'I' {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	if _, err := conn.Exec(ctx, "ROLLBACK"); err != nil {
		conn.Close(ctx)
	}
}

// retryable reports an error after which the same transaction, run again,
// may succeed and cannot have taken effect.
func retryable(err error) bool {
	if err == nil {
		return false
	}
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok {
		return pgErr.Code == codeDeadlockDetected || pgErr.Code == codeSerializationFailure
	}
	return pgconn.SafeToRetry(err)
}

// ctxErr returns ctx's error when it is done, so that a method whose ctx
// ended returns that error rather than the driver's wrapping of it.
func ctxErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	return err
}
