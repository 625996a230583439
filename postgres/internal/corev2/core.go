// Package webhook is a SCRATCH copy of the core's v2 interfaces from
// /work/notes/design.md, used until they land on main. It is deleted
// before the branch is finished.
package webhook

import (
	"context"
	"errors"
	"time"

	core "github.com/crmhook/webhook"
)

type (
	Webhook       = core.Webhook
	Options       = core.Options
	Disabled      = core.Disabled
	EntityOptions = core.EntityOptions
)

var (
	ErrInvalid   = core.ErrInvalid
	ErrNotFound  = core.ErrNotFound
	ErrConflict  = errors.New("webhook: conflicting change")
	ErrQueueFull = errors.New("webhook: queue full")
)

type Stored struct {
	Key     string
	Webhook Webhook
	Version int64
	Deleted bool
}

type Store interface {
	Write(ctx context.Context, changes ...Stored) ([]Stored, error)
	Changes(ctx context.Context, after int64) ([]Stored, error)
	Wait(ctx context.Context, after int64) error
}

type Delivery struct {
	ID         string
	Space      string
	WebhookID  string
	Target     string
	EventIDs   []string
	Body       []byte
	Created    time.Time
	Attempts   int
	Due        time.Time
	LastStatus int
	LastError  string
}

type OutcomeKind uint8

const (
	Delivered OutcomeKind = iota + 1
	Retried
	Died
	Released
	Dropped
)

type Outcome struct {
	Delivery   *Delivery
	Kind       OutcomeKind
	Failed     bool
	PauseUntil time.Time
}

type Health struct {
	Failures     int
	FailingSince time.Time
}

const (
	DefaultMaxPending          = 100_000
	DefaultMaxPendingPerTarget = 10_000
	DefaultMaxDead             = 1000
)

type QueueLimits struct {
	MaxPending          int
	MaxPendingPerTarget int
	MaxDead             int
}

type Queue interface {
	Enqueue(ctx context.Context, ds ...*Delivery) error
	Claim(ctx context.Context, now time.Time, max int, lease time.Duration, perTarget int) ([]*Delivery, error)
	Settle(ctx context.Context, now time.Time, outcomes ...Outcome) ([]Health, error)
	Dead(ctx context.Context, target string) ([]*Delivery, error)
	Revive(ctx context.Context, target, id string, now time.Time) ([]string, error)
	Purge(ctx context.Context, target string) error
	NextDue(ctx context.Context) (t time.Time, ok bool, err error)
}

type Waker interface {
	Wake(ctx context.Context) <-chan struct{}
}

type Enqueuer interface {
	Enqueue(ctx context.Context, ds ...*Delivery) error
}
