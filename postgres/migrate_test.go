package postgres

import (
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
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
	require.Equal(t, []int{1}, versions, "each version recorded once")
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
