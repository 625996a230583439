package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/crmhook/webhook"
)

// Claim leases until now+lease, and returns, up to limit due deliveries,
// as the Queue contract says (limit is the contract's max).
//
// It is one statement in one round trip: the function webhook_claim (see
// the migration) returns to pending the deliveries whose lease ended,
// counts the leased deliveries of every space that has ready work, locks
// (FOR UPDATE SKIP LOCKED) the first ready targets of the spaces that may
// get some of limit, reads their earliest ready deliveries, takes them
// one at a time as the fairness between spaces says, leases them and
// moves its targets' heads, so that the targets are locked for no longer
// than the server takes, never while this process is scheduled. A target
// locked by another claimer is skipped: that one claims from it.
//
// Claims need not be durable, and commit without waiting for the disk
// (synchronous_commit off): a lease lost in a crash of the server only
// makes its delivery claimable again.
func (q *Queue) Claim(ctx context.Context, now time.Time, limit int, lease time.Duration, perTarget int) ([]*webhook.Delivery, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, nil
	}
	var out []*webhook.Delivery
	err := pipelined(ctx, q.pool, func(conn *pgx.Conn) error {
		b := &pgx.Batch{}
		b.Queue(`BEGIN`)
		b.Queue(asyncSettings)
		b.Queue(`SELECT * FROM webhook_claim($1, $2, $3, $4)`, now, limit, ceilMicro(now.Add(lease)), max(perTarget, 1))
		b.Queue(`COMMIT`)
		br := conn.SendBatch(ctx, b)
		defer br.Close()
		for range 2 {
			if _, err := br.Exec(); err != nil {
				return err
			}
		}
		rows, _ := br.Query() // its error comes with the rows'
		var err error
		if out, err = scanDeliveries(rows); err != nil {
			return err
		}
		_, err = br.Exec()
		return err
	})
	if err != nil {
		return nil, ctxErr(ctx, fmt.Errorf("postgres: claim: %w", err))
	}
	return out, nil
}

// ceilMicro rounds t up to the microsecond, as a lease end is stored: a
// lease never ends before now+lease.
func ceilMicro(t time.Time) time.Time {
	if f := t.Truncate(time.Microsecond); !f.Equal(t) {
		return f.Add(time.Microsecond)
	}
	return t
}
