package webhook

import "context"

// Store keeps registrations where every replica of a service sees them,
// under a Registry that keeps its own compiled copy in memory for
// matching. A Registry writes through its Store and follows the changes
// that other replicas make with Changes and Wait, so that matching never
// waits for the Store. The module github.com/crmhook/webhook/postgres has
// a PostgreSQL Store; without one (RegistryConfig.Store nil) registrations
// live in the Registry's memory alone.
//
// Every method may be called from several goroutines at once, and a
// method whose ctx is done returns ctx's error.
type Store interface {
	// Write stores changes, all of them or none. The Version of each
	// change is the version it was made from: 0 for a new registration,
	// which is refused with an error wrapping ErrConflict if a live
	// registration has its Space and ID or its Key was ever stored;
	// otherwise the current version of the registration with its Key,
	// refused with an error wrapping ErrConflict if that is not the
	// current version, or ErrNotFound if the Key is unknown or deleted.
	// Deleted marks the registration deleted. Write returns the changes
	// as stored, with their new versions.
	Write(ctx context.Context, changes ...Stored) ([]Stored, error)
	// Changes returns, in version order, the latest state of every
	// registration whose version is greater than after, deleted ones
	// included. Versions become visible in increasing order: once Changes
	// has returned version v, no change with a version of v or less
	// appears later.
	Changes(ctx context.Context, after int64) ([]Stored, error)
	// Wait returns when a change with a version greater than after may
	// have been stored, when ctx ends (with its error), and otherwise
	// after the Store's poll interval at the latest, so that a missed
	// notification heals by itself. It may return early.
	Wait(ctx context.Context, after int64) error
}

// Stored is a registration as a Store keeps it.
type Stored struct {
	// Key is the registration's identity inside the service: given when
	// it is created and never reused, so that deliveries built for it
	// reach no other registration, even one that later has its ID.
	Key string
	// Webhook is the registration, Space included. After a deletion it
	// holds only ID and Space.
	Webhook Webhook
	// Version orders the changes of all registrations; see Store.Write.
	Version int64
	// Deleted marks a registration deleted; deletions are final.
	Deleted bool
}
