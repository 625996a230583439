package postgres

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/crmhook/webhook"
)

func TestSchemaVersionIsTheLastMigration(t *testing.T) {
	ms := loadMigrations()
	require.Equal(t, SchemaVersion, ms[len(ms)-1].version)
}

func TestMigrateFromSeveralReplicasAtOnce(t *testing.T) {
	t.Parallel()
	pool := newTestPool(t)
	ctx := t.Context()
	_, err := pool.Exec(ctx, `DROP SCHEMA public CASCADE; CREATE SCHEMA public`)
	require.NoError(t, err)
	require.Error(t, checkSchema(ctx, pool), "an empty database")

	var wg sync.WaitGroup
	errs := make([]error, 5)
	for i := range errs {
		wg.Go(func() { errs[i] = Migrate(ctx, pool) })
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	require.NoError(t, checkSchema(ctx, pool))
	var versions []int
	rows, err := pool.Query(ctx, `SELECT version FROM webhook_schema_version ORDER BY version`)
	require.NoError(t, err)
	for rows.Next() {
		var v int
		require.NoError(t, rows.Scan(&v))
		versions = append(versions, v)
	}
	require.NoError(t, rows.Err())
	var want []int
	for v := 1; v <= SchemaVersion; v++ {
		want = append(want, v)
	}
	require.Equal(t, want, versions, "each version recorded once")
}

// TestMigrateFromVersion1 upgrades a database that has the first version
// of the schema and a pending delivery, as the first release left it: the
// delivery is claimed after the upgrade.
func TestMigrateFromVersion1(t *testing.T) {
	t.Parallel()
	pool := newTestPool(t)
	ctx := t.Context()
	_, err := pool.Exec(ctx, `DROP SCHEMA public CASCADE; CREATE SCHEMA public;
		CREATE TABLE webhook_schema_version (version integer PRIMARY KEY, name text NOT NULL,
			applied timestamptz NOT NULL DEFAULT now())`)
	require.NoError(t, err)
	v1 := loadMigrations()[0]
	require.Equal(t, 1, v1.version)
	_, err = pool.Exec(ctx, v1.sql)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `INSERT INTO webhook_schema_version (version, name) VALUES (1, $1)`, v1.name)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `INSERT INTO webhook_deliveries (id, seq, target, space, webhook_id, event_ids,
			body, created, attempts, due, last_status, last_error)
		VALUES ('d1', nextval('webhook_delivery_seq'), 't1', 's1', 'w1', '["ev-1"]', '[]', $1, 0, $1, 0, '')`, testBase)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `INSERT INTO webhook_targets (target, space, held, next_due, next_seq)
		SELECT target, space, 1, due, seq FROM webhook_deliveries;
		INSERT INTO webhook_queue_counts (shard, held) VALUES (0, 1)`)
	require.NoError(t, err)
	require.ErrorContains(t, checkSchema(ctx, pool), "call postgres.Migrate")

	require.NoError(t, Migrate(ctx, pool))
	q := newTestQueue(t, pool, webhook.QueueLimits{})
	got, err := q.Claim(ctx, testBase, 10, time.Hour, 1)
	require.NoError(t, err)
	require.Len(t, got, 1)
	require.Equal(t, "d1", got[0].ID)
	requireConsistent(t, pool, "after the upgrade and a Claim")
}

func TestMigrateRefusesANewerSchema(t *testing.T) {
	t.Parallel()
	pool := newTestPool(t)
	ctx := t.Context()
	_, err := pool.Exec(ctx, `INSERT INTO webhook_schema_version (version, name) VALUES ($1, 'future')`, SchemaVersion+1)
	require.NoError(t, err)
	require.ErrorContains(t, Migrate(ctx, pool), "newer")
	require.ErrorContains(t, checkSchema(ctx, pool), "newer")
}
