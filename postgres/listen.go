package postgres

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The notification channels. A Queue notifies queueChannel when it may
// have made deliveries claimable; a Store notifies storeChannel with the
// version of each change it commits.
const (
	queueChannel = "webhook_queue"
	storeChannel = "webhook_store"
)

// Timings of a listener's connection.
const (
	// listenPing is how long a listener waits for a notification before
	// it checks its connection with a query: a connection whose peer
	// vanished without closing it would otherwise wait forever.
	listenPing = 30 * time.Second
	// listenTimeout bounds connecting and pinging.
	listenTimeout = 10 * time.Second
	// listenBackoffMin and listenBackoffMax bound the wait before
	// connecting again after a failure, doubled at each failure in a row.
	listenBackoffMin = 50 * time.Millisecond
	listenBackoffMax = time.Second
)

// listenerAppName is the application_name of a listener's session, so
// that an operator (or a test) can tell it in pg_stat_activity.
const listenerAppName = "webhook listener"

// listener LISTENs on a channel, on a connection of its own (not the
// pool's: it is held for good), and tells its subscribers of every
// notification and of every (re)connection, after which a notification
// may have been missed. It connects again by itself when the connection
// fails, for instance when the server restarts. Its goroutine starts at
// the first subscription and ends at close.
type listener struct {
	conn    *pgx.ConnConfig
	channel string

	mu       sync.Mutex // guards the fields below
	started  bool
	closed   bool
	cancel   context.CancelFunc // ends the goroutine
	done     chan struct{}      // closed when the goroutine has ended
	changed  chan struct{}      // closed and replaced at each event; closed for good by close
	connects uint64             // connections so far
	highest  int64              // the highest number a payload carried
	wakers   map[chan<- struct{}]struct{}
}

func newListener(pool *pgxpool.Pool, channel string) *listener {
	cfg := pool.Config().ConnConfig // a copy
	cfg.RuntimeParams["application_name"] = listenerAppName
	return &listener{conn: cfg, channel: channel, changed: make(chan struct{})}
}

// listenState is what a subscriber compares to see what happened since.
type listenState struct {
	changed  <-chan struct{}
	connects uint64
	highest  int64
}

// state starts the goroutine if it is not running, and returns the
// current state. The second result is false after close.
func (l *listener) state() (listenState, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return listenState{}, false
	}
	l.startLocked()
	return listenState{changed: l.changed, connects: l.connects, highest: l.highest}, true
}

// wake registers a channel that receives, without blocking the listener,
// at every event until ctx ends.
func (l *listener) wake(ctx context.Context) <-chan struct{} {
	ch := make(chan struct{}, 1)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ch
	}
	l.startLocked()
	if l.wakers == nil {
		l.wakers = make(map[chan<- struct{}]struct{})
	}
	l.wakers[ch] = struct{}{}
	context.AfterFunc(ctx, func() {
		l.mu.Lock()
		delete(l.wakers, ch)
		l.mu.Unlock()
	})
	return ch
}

// startLocked starts the goroutine once. requires l.mu held.
func (l *listener) startLocked() {
	if l.started {
		return
	}
	l.started = true
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel, l.done = cancel, make(chan struct{})
	go l.run(ctx)
}

// close ends the goroutine and waits for it. The listener then tells
// nothing more, and its connection is closed.
func (l *listener) close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	cancel, done := l.cancel, l.done
	l.wakers = nil
	close(l.changed) // waiters look again and find it closed
	l.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// run keeps a listening connection until ctx ends.
func (l *listener) run(ctx context.Context) {
	defer close(l.done)
	backoff := listenBackoffMin
	for ctx.Err() == nil {
		if l.listen(ctx) {
			backoff = listenBackoffMin // it worked for a while
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, listenBackoffMax)
	}
}

// listen connects, LISTENs and tells of notifications until the
// connection fails or ctx ends. It reports whether it got as far as
// listening.
func (l *listener) listen(ctx context.Context) bool {
	cctx, cancel := context.WithTimeout(ctx, listenTimeout)
	conn, err := pgx.ConnectConfig(cctx, l.conn)
	cancel()
	if err != nil {
		return false
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn.Close(cctx)
		cancel()
	}()
	cctx, cancel = context.WithTimeout(ctx, listenTimeout)
	_, err = conn.Exec(cctx, "LISTEN "+pgx.Identifier{l.channel}.Sanitize())
	cancel()
	if err != nil {
		return false
	}
	// Notifications sent while no connection listened are lost: every
	// subscriber must look again.
	l.notify("", true)
	for {
		wctx, cancel := context.WithTimeout(ctx, listenPing)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return true
		case err == nil:
			l.notify(n.Payload, false)
		case wctx.Err() != nil: // no notification for a while
			pctx, cancel := context.WithTimeout(ctx, listenTimeout)
			err = conn.Ping(pctx)
			cancel()
			if err != nil {
				return true
			}
		default:
			return true
		}
	}
}

// notify tells the subscribers of an event.
func (l *listener) notify(payload string, connected bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	if connected {
		l.connects++
	}
	if v, err := strconv.ParseInt(payload, 10, 64); err == nil && v > l.highest {
		l.highest = v
	}
	close(l.changed)
	l.changed = make(chan struct{})
	for ch := range l.wakers {
		select {
		case ch <- struct{}{}:
		default: // it has one waiting: wakes coalesce
		}
	}
}
