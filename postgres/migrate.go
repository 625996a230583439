package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// migrations holds the schema, one file a version: NNNN_name.sql. A
// version, once released, is never edited: a change is a new file.
//
//go:embed migrations/*.sql
var migrations embed.FS

// migrateLock is the key of the transaction-level advisory lock that
// Migrate holds, so that replicas starting at once apply each version
// once, one after the other.
const migrateLock = 0x7765626b6d696772 // "webkmigr"

// migration is one version of the schema.
type migration struct {
	version int
	name    string
	sql     string
}

// SchemaVersion is the version of the schema this package's Queue and
// Store need: the number of the last of its migrations (a test keeps the
// two in step).
const SchemaVersion = 2

// Migrate brings the schema in the database of pool up to SchemaVersion:
// it creates the tables of the Store and the Queue, or applies the
// versions a database lacks, and records each in the table
// webhook_schema_version. It is safe to call from several replicas at
// once: they take turns on an advisory lock, and all but the first find
// nothing to do. The tables go into the first schema of the search_path.
// A database whose schema is newer than this package knows is left alone
// and reported as an error.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(migrateLock)); err != nil {
			return fmt.Errorf("postgres: migrate: lock: %w", err)
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS webhook_schema_version (
			version integer PRIMARY KEY,
			name    text NOT NULL,
			applied timestamptz NOT NULL DEFAULT now())`); err != nil {
			return fmt.Errorf("postgres: migrate: %w", err)
		}
		var have int
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM webhook_schema_version`).Scan(&have); err != nil {
			return fmt.Errorf("postgres: migrate: %w", err)
		}
		if have > SchemaVersion {
			return fmt.Errorf("postgres: migrate: the database has schema version %d, newer than this package's %d", have, SchemaVersion)
		}
		for _, m := range loadMigrations() {
			if m.version <= have {
				continue
			}
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return fmt.Errorf("postgres: migrate: version %d (%s): %w", m.version, m.name, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO webhook_schema_version (version, name) VALUES ($1, $2)`, m.version, m.name); err != nil {
				return fmt.Errorf("postgres: migrate: version %d: %w", m.version, err)
			}
		}
		return nil
	})
}

// checkSchema reports a database whose schema is not the one this package
// needs, so that a constructor fails with advice instead of its first
// query failing with a missing table.
func checkSchema(ctx context.Context, pool *pgxpool.Pool) error {
	var have int
	err := pool.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM webhook_schema_version`).Scan(&have)
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok && pgErr.Code == codeUndefinedTable {
		have, err = 0, nil // nothing migrated
	}
	switch {
	case err != nil:
		return fmt.Errorf("postgres: schema version: %w", err)
	case have < SchemaVersion:
		return fmt.Errorf("postgres: the database has schema version %d, this package needs %d: call postgres.Migrate", have, SchemaVersion)
	case have > SchemaVersion:
		return fmt.Errorf("postgres: the database has schema version %d, newer than this package's %d", have, SchemaVersion)
	}
	return nil
}

// loadMigrations returns the embedded migrations in version order. It
// panics on a misnamed file or a gap: the files are part of the package,
// so that is a bug that every test run shows at once.
func loadMigrations() []migration {
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		panic(err)
	}
	var ms []migration
	for _, name := range names {
		base := path.Base(name)
		num, rest, ok := strings.Cut(strings.TrimSuffix(base, ".sql"), "_")
		version, err := strconv.Atoi(num)
		if !ok || err != nil {
			panic("postgres: migration file " + base + " is not named NNNN_name.sql")
		}
		sql, err := migrations.ReadFile(name)
		if err != nil {
			panic(err)
		}
		ms = append(ms, migration{version: version, name: rest, sql: string(sql)})
	}
	slices.SortFunc(ms, func(a, b migration) int { return a.version - b.version })
	for i, m := range ms {
		if m.version != i+1 {
			panic(fmt.Sprintf("postgres: migration %d is missing", i+1))
		}
	}
	return ms
}
