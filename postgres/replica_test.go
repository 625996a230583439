package postgres

// A replica in a process of its own, for the tests that kill one: the
// test binary runs itself again with replicaEnv set to a JSON
// replicaConfig, and TestMain makes it a replica instead of running tests.
// The replica prints replicaReady on stdout once its Dispatcher runs, and
// runs until it is killed, or closes down when its stdin closes.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/crmhook/webhook"
)

// replicaEnv, when set, makes the test binary a replica: its value is a
// replicaConfig in JSON.
const replicaEnv = "WEBHOOK_POSTGRES_REPLICA"

// replicaReady is the line a replica prints once it runs.
const replicaReady = "replica ready"

// replicaConfig is what a replica process is told.
type replicaConfig struct {
	URL      string // the server, as a connection string
	Database string // the database on it

	Lease        time.Duration // of its Dispatcher
	PollInterval time.Duration
	Workers      int
	MaxInFlight  int
	// Dispatch, when set, makes the replica dispatch these events, one
	// call each, once it runs, before it says it is ready.
	Dispatch []webhook.Event
	// DispatchFile, when set, names a file of JSON [][]webhook.Event: calls
	// the replica makes after Dispatch's, before it says it is ready. A
	// long list goes in a file rather than in the environment, whose
	// variables are bounded (128 KiB on Linux).
	DispatchFile string
	// Name, when set, is sent in the X-Replica header of every request
	// the replica makes, so that a receiver can tell who sent what.
	Name string
}

// runReplica is the test binary's life as a replica. It returns the exit
// code.
func runReplica() int {
	var cfg replicaConfig
	if err := json.Unmarshal([]byte(os.Getenv(replicaEnv)), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "replica:", err)
		return 2
	}
	if err := serveReplica(cfg, os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "replica:", err)
		return 1
	}
	return 0
}

// serveReplica runs a replica until stdin closes.
func serveReplica(cfg replicaConfig, stdin io.Reader, stdout io.Writer) error {
	ctx := context.Background()
	pcfg, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		return err
	}
	pcfg.ConnConfig.Database = cfg.Database
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	store, err := NewStore(ctx, pool, StoreConfig{})
	if err != nil {
		return err
	}
	defer store.Close()
	queue, err := NewQueue(ctx, pool, QueueConfig{})
	if err != nil {
		return err
	}
	defer queue.Close()
	reg, err := webhook.NewRegistry(ctx, webhook.RegistryConfig{Store: store, Addresses: loopback})
	if err != nil {
		return err
	}
	defer reg.Close()
	transport := webhook.NewHTTPTransport(webhook.HTTPConfig{AddressPolicy: loopback})
	defer transport.Close()
	disp, err := webhook.NewDispatcher(reg, webhook.Config{
		Queue:        queue,
		Transport:    taggedTransport{transport, cfg.Name},
		Lease:        cfg.Lease,
		PollInterval: cfg.PollInterval,
		Workers:      cfg.Workers,
		MaxInFlight:  cfg.MaxInFlight,
	})
	if err != nil {
		return err
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		disp.Close(ctx)
	}()
	for _, e := range cfg.Dispatch {
		if err := disp.Dispatch(ctx, e); err != nil {
			return err
		}
	}
	if cfg.DispatchFile != "" {
		b, err := os.ReadFile(cfg.DispatchFile)
		if err != nil {
			return err
		}
		var calls [][]webhook.Event
		if err := json.Unmarshal(b, &calls); err != nil {
			return err
		}
		for _, call := range calls {
			if err := disp.Dispatch(ctx, call...); err != nil {
				return err
			}
		}
	}
	fmt.Fprintln(stdout, replicaReady)
	io.Copy(io.Discard, stdin) // until the parent closes it, or dies
	return nil
}

// replicaProcess is a replica running in a child process.
type replicaProcess struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	exited chan struct{} // closed once it has exited and been waited for
}

// startReplica starts a replica process on the database of cfg and
// waits until it runs. It is killed when t ends, if it still runs.
func startReplica(t *testing.T, cfg *pgxpool.Config, rc replicaConfig) *replicaProcess {
	t.Helper()
	rc.URL, rc.Database = cfg.ConnString(), cfg.ConnConfig.Database
	env, err := json.Marshal(rc)
	require.NoError(t, err)
	exe, err := os.Executable()
	require.NoError(t, err)
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), replicaEnv+"="+string(env))
	cmd.Stderr = os.Stderr
	// The replica dies with the test binary, however that ends; and if it
	// did not, its stdin would close.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p := &replicaProcess{cmd: cmd, exited: make(chan struct{})}
	p.stdin, err = cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { p.kill(t) })
	ready := make(chan string, 1)
	go func() {
		defer close(p.exited)
		r := bufio.NewReader(stdout)
		line, _ := r.ReadString('\n')
		ready <- strings.TrimSpace(line)
		io.Copy(io.Discard, r) // once ready, it says nothing more
		cmd.Wait()
	}()
	select {
	case line := <-ready:
		require.Equal(t, replicaReady, line, "the replica did not start")
	case <-time.After(30 * time.Second):
		t.Fatal("the replica did not start within 30 s")
	}
	return p
}

// kill ends the replica with SIGKILL, as a crash would, and waits for it.
func (p *replicaProcess) kill(t *testing.T) {
	t.Helper()
	select {
	case <-p.exited:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		t.Error("the replica did not die within 10 s of SIGKILL")
	}
}

// TestKilledReplicaLosesNothing kills a replica process with SIGKILL
// while it has requests in flight: another replica sends what it had
// claimed once its lease ends, and every delivery arrives.
func TestKilledReplicaLosesNothing(t *testing.T) {
	t.Parallel()
	const events = 60
	pool, cfg := newTestDatabase(t)
	rc := newReceiver(t)
	rc.delay = 50 * time.Millisecond
	reg, err := webhook.NewRegistry(t.Context(), webhook.RegistryConfig{Store: mustStore(t, pool), Addresses: loopback})
	require.NoError(t, err)
	defer reg.Close()
	_, err = reg.Create(t.Context(), "team", webhook.Webhook{URL: rc.URL, Events: []string{"Contact.Create"}})
	require.NoError(t, err)

	var batch []webhook.Event
	for i := range events {
		batch = append(batch, contactEvent(i))
	}
	child := startReplica(t, cfg, replicaConfig{Lease: 2 * time.Second, PollInterval: 100 * time.Millisecond,
		Workers: 4, MaxInFlight: 4, Dispatch: batch})
	require.Eventually(t, func() bool {
		n, _ := rc.count()
		return n >= 10
	}, 20*time.Second, 5*time.Millisecond, "the replica sends nothing")
	child.kill(t)
	sentByChild, _ := rc.count()

	newReplica(t, cfg) // takes over once the child's leases end
	require.Eventually(t, func() bool {
		_, distinct := rc.count()
		return distinct == events
	}, 20*time.Second, 10*time.Millisecond, "deliveries lost with the killed replica")
	requests, _ := rc.count()
	t.Logf("the child sent %d requests before SIGKILL; %d requests in all for %d deliveries", sentByChild, requests, events)
}

func mustStore(t *testing.T, pool *pgxpool.Pool) *Store {
	t.Helper()
	s, err := NewStore(t.Context(), pool, StoreConfig{})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}
