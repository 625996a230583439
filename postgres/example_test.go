package postgres_test

import (
	"context"
	"encoding/json"
	"log"
	"os"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/crmhook/webhook"
	"github.com/crmhook/webhook/postgres"
)

// A replica of a service: registrations in a Store, deliveries in a
// Queue, both shared with every other replica on the same database.
func Example() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	if err := postgres.Migrate(ctx, pool); err != nil {
		log.Fatal(err)
	}
	store, err := postgres.NewStore(ctx, pool, postgres.StoreConfig{})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	queue, err := postgres.NewQueue(ctx, pool, postgres.QueueConfig{})
	if err != nil {
		log.Fatal(err)
	}
	defer queue.Close()

	reg, err := webhook.NewRegistry(ctx, webhook.RegistryConfig{Store: store})
	if err != nil {
		log.Fatal(err)
	}
	defer reg.Close()
	d, err := webhook.NewDispatcher(reg, webhook.Config{Queue: queue})
	if err != nil {
		log.Fatal(err)
	}
	defer d.Close(ctx)
	// Registrations made through any replica fire here; deliveries
	// accepted here survive this process and go out from any replica.
}

// The transactional outbox: the deliveries of a change are written in the
// transaction of the change, so that they commit together or not at all,
// and a committed delivery is sent even if this process dies right after
// the commit.
func ExampleQueue_Tx() {
	ctx := context.Background()
	var (
		pool       *pgxpool.Pool
		queue      *postgres.Queue
		dispatcher *webhook.Dispatcher
	) // made as in the package example

	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE contacts SET email = $1 WHERE id = $2`, "ann@example.com", "c1"); err != nil {
			return err
		}
		return dispatcher.DispatchTo(ctx, queue.Tx(tx), webhook.Event{
			Space: "team-1",
			Name:  "Contact.Update",
			Data:  json.RawMessage(`{"id":"c1","email":"ann@example.com"}`),
		})
	})
	if err != nil {
		log.Print(err) // nothing was stored, nothing is sent
	}
}
