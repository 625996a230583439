// Package postgres keeps the registrations of a webhook Registry and the
// deliveries of a webhook Dispatcher in PostgreSQL (15 or newer), shared
// by every replica of a service, so that a delivery accepted by one
// replica survives its crash and is sent by another.
//
// A Store is a webhook.Store and a Queue is a webhook.Queue; both take a
// *pgxpool.Pool of the host's. Migrate creates their tables; call it once
// at start, from as many replicas as there are:
//
//	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
//	...
//	if err := postgres.Migrate(ctx, pool); err != nil { ... }
//	store, err := postgres.NewStore(ctx, pool, postgres.StoreConfig{})
//	...
//	queue, err := postgres.NewQueue(ctx, pool, postgres.QueueConfig{})
//	...
//	defer store.Close()
//	defer queue.Close()
//
// Queue.Tx enqueues inside the host's own transaction (the transactional
// outbox): the deliveries of a change commit with it or not at all.
//
// The tables, sequences and the function Migrate makes are named
// webhook_*, in the first schema of the search_path; the role needs the
// right to create them there once, and to read and write them after. Each
// Store and Queue holds one connection of its own, outside the pool, to
// LISTEN, from its first Wait or Wake until Close.
package postgres

import "errors"

// ErrClosed reports a Store.Wait on a Store that was closed.
var ErrClosed = errors.New("postgres: closed")
