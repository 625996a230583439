package postgres

// The PostgreSQL server the package's tests run against: the one that
// WEBHOOK_POSTGRES_URL names, or else one throwaway cluster that the test
// binary starts from the local PostgreSQL binaries on first use and removes
// when it ends. Each test gets a database of its own, copied from a
// template that has the migrations applied, so that tests run in parallel
// and never see each other's rows.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// urlEnv names the variable that gives the tests a server of the user's
// instead of a throwaway cluster. Its role must be allowed to create
// databases.
const urlEnv = "WEBHOOK_POSTGRES_URL"

// minServerVersion is the oldest PostgreSQL the package supports.
const minServerVersion = 15

// clusterDirPrefix names the temporary directories of throwaway clusters,
// so that a run finds what a killed run left.
const clusterDirPrefix = "webhook-pgtest-"

// testDB is the server of this test binary, started at the first test
// that asks for a database.
var testDB struct {
	once sync.Once
	srv  *testServer
	err  error
}

// testServer is a server with a migrated template database.
type testServer struct {
	base     *pgxpool.Config // connects to the maintenance database
	admin    *pgxpool.Pool   // creates and drops the tests' databases
	template string
	runID    string       // prefixes every database this run creates
	made     atomic.Int64 // databases created, for their names
	cluster  *testCluster // nil when urlEnv gives the server
}

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	if os.Getenv(replicaEnv) != "" {
		return runReplica()
	}
	code := m.Run()
	if testDB.srv != nil {
		if err := testDB.srv.close(); err != nil {
			fmt.Fprintln(os.Stderr, "postgres tests:", err)
			if code == 0 {
				code = 1
			}
		}
	}
	return code
}

// server returns the test binary's server, starting it on first use. A
// server that cannot be had fails the test with the reason; it never skips.
func server(t testing.TB) *testServer {
	t.Helper()
	testDB.once.Do(func() { testDB.srv, testDB.err = startServer() })
	if testDB.err != nil {
		t.Fatal(testDB.err)
	}
	return testDB.srv
}

// newTestPool returns a pool on a fresh database with the schema migrated,
// closed and dropped when t ends.
func newTestPool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	pool, _ := newTestDatabase(t)
	return pool
}

// newTestDatabase is newTestPool that also returns the pool's config, for
// tests that open more pools on the same database (two replicas).
func newTestDatabase(t testing.TB) (*pgxpool.Pool, *pgxpool.Config) {
	t.Helper()
	s := server(t)
	name := fmt.Sprintf("%s_%d", s.runID, s.made.Add(1))
	ctx := context.Background() // t.Context ends before Cleanup runs
	if err := s.adminExec(ctx, "CREATE DATABASE "+name+" TEMPLATE "+s.template); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		if err := s.adminExec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop test database: %v", err)
		}
	})
	cfg := s.configFor(name)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connect to test database: %v", err)
	}
	t.Cleanup(pool.Close) // before the drop: cleanups run last first
	return pool, cfg.Copy()
}

// adminExec runs sql on the maintenance database, again on a fresh
// connection if the one it got had died: the restart test ends every
// session, the admin pool's idle ones included.
func (s *testServer) adminExec(ctx context.Context, sql string) error {
	var err error
	for range 3 {
		if _, err = s.admin.Exec(ctx, sql); err == nil || !isConnError(err) {
			return err
		}
	}
	return err
}

// isConnError reports an error of a connection that the server ended.
func isConnError(err error) bool {
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok {
		return strings.HasPrefix(pgErr.Code, "57P") // admin_shutdown, crash_shutdown, cannot_connect_now
	}
	return pgconn.SafeToRetry(err) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)
}

// configFor returns a pool config for database name of s.
func (s *testServer) configFor(name string) *pgxpool.Config {
	cfg := s.base.Copy()
	cfg.ConnConfig.Database = name
	cfg.MaxConns = 8
	return cfg
}

// startServer connects to the server urlEnv names, or starts a cluster,
// and makes the template database.
func startServer() (s *testServer, err error) {
	s = &testServer{runID: "webhook_test_" + randomHex(4)}
	url := os.Getenv(urlEnv)
	if url == "" {
		s.cluster, err = startCluster()
		if err != nil {
			return nil, err
		}
		url = s.cluster.url()
	}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	s.base, err = pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", urlEnv, err)
	}
	ctx := context.Background()
	s.admin, err = pgxpool.NewWithConfig(ctx, s.base.Copy())
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", redact(url), err)
	}
	if err := s.checkVersion(ctx); err != nil {
		return nil, err
	}
	s.template = s.runID + "_template"
	if _, err := s.admin.Exec(ctx, "CREATE DATABASE "+s.template); err != nil {
		return nil, fmt.Errorf("create template database: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, s.configFor(s.template))
	if err != nil {
		return nil, fmt.Errorf("connect to template database: %w", err)
	}
	defer pool.Close() // CREATE DATABASE refuses a template with sessions
	if err := Migrate(ctx, pool); err != nil {
		return nil, fmt.Errorf("migrate template database: %w", err)
	}
	return s, nil
}

func (s *testServer) checkVersion(ctx context.Context) error {
	var num int
	if err := s.admin.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&num); err != nil {
		return fmt.Errorf("server version: %w", err)
	}
	if num/10000 < minServerVersion {
		return fmt.Errorf("PostgreSQL %d.%d is too old: the tests need %d or newer", num/10000, num%10000, minServerVersion)
	}
	return nil
}

// close drops the template and stops the cluster, if the run started one.
func (s *testServer) close() error {
	var errs []error
	if s.admin != nil {
		if s.template != "" {
			_, err := s.admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+s.template+" WITH (FORCE)")
			errs = append(errs, err)
		}
		s.admin.Close()
	}
	if s.cluster != nil {
		errs = append(errs, s.cluster.stop())
	}
	return errors.Join(errs...)
}

// restart restarts the server, as an operator's restart or a failover
// would: every session ends. Only a throwaway cluster can be restarted; a
// test that needs it skips against a server of the user's.
func (s *testServer) restart(t testing.TB) {
	t.Helper()
	s.restartAfter(t, nil)
}

// restartAfter is restart that calls down, when it is not nil, while the
// server is stopped: a test does there what must happen during an outage.
func (s *testServer) restartAfter(t testing.TB, down func()) {
	t.Helper()
	if s.cluster == nil {
		t.Skipf("%s names a server of the user's, which the tests do not restart", urlEnv)
	}
	if err := s.cluster.restart(down); err != nil {
		t.Fatalf("restart server: %v", err)
	}
}

// testCluster is a throwaway cluster: a data directory in a temporary
// directory and a postmaster that is a child of the test binary. The
// postmaster is started directly rather than through pg_ctl, which would
// detach it: as a child it gets SIGQUIT (immediate shutdown) from the
// kernel when the test binary dies, however it dies, so that no server
// outlives a run that panicked, timed out or was killed.
type testCluster struct {
	bin  string              // the directory of initdb and postgres
	dir  string              // data/, the log and the socket
	port int                 // on 127.0.0.1
	cred *syscall.Credential // the user the server runs as; nil for this process's

	mu     sync.Mutex // guards exited
	exited chan error // receives the postmaster's exit; nil when none runs
}

func (c *testCluster) url() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", c.port)
}

// startCluster makes and starts a cluster in a new temporary directory.
func startCluster() (*testCluster, error) {
	removeStaleClusters()
	bin, err := findBinaries()
	if err != nil {
		return nil, err
	}
	c := &testCluster{bin: bin}
	base := os.TempDir()
	if os.Geteuid() == 0 {
		// PostgreSQL refuses to run as root: the server runs as the
		// postgres user, who must be able to reach its directory.
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root, the tests run PostgreSQL as the user postgres, and there is none: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		c.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if fi, err := os.Stat(base); err != nil || fi.Mode().Perm()&0o001 == 0 {
			base = "/tmp"
		}
	}
	c.dir, err = os.MkdirTemp(base, clusterDirPrefix)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			c.stop()
		}
	}()
	if err := os.WriteFile(filepath.Join(c.dir, "owner.pid"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return nil, err
	}
	if c.cred != nil {
		if err := os.Chown(c.dir, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
			return nil, err
		}
	}
	if err := c.initdb(); err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		if c.port, err = freePort(); err != nil {
			return nil, err
		}
		err = c.start()
		if err == nil || attempt == 2 {
			break
		}
	}
	ok = err == nil
	return c, err
}

// initdb makes the data directory. --no-sync only spares initdb's own
// flush of the files it writes: the server runs with fsync and
// synchronous_commit on, so that benchmarks measure durable commits.
func (c *testCluster) initdb() error {
	cmd := exec.Command(filepath.Join(c.bin, "initdb"), "-D", filepath.Join(c.dir, "data"),
		"-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb: %v\n%s", err, out)
	}
	return nil
}

// start starts the postmaster and waits until it accepts connections.
func (c *testCluster) start() error {
	logFile, err := os.OpenFile(filepath.Join(c.dir, "server.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := exec.Command(filepath.Join(c.bin, "postgres"), "-D", filepath.Join(c.dir, "data"),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "port="+strconv.Itoa(c.port),
		"-c", "unix_socket_directories="+c.dir,
		"-c", "max_connections=200",
		// A million deliveries take 450 MB and a GB of WAL to write; the
		// defaults (128 MB, checkpoints every GB) are for small machines.
		"-c", "shared_buffers=512MB",
		"-c", "max_wal_size=4GB",
		"-c", "fsync=on",
		"-c", "synchronous_commit=on",
		"-c", "log_min_messages=warning")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred, Pdeathsig: syscall.SIGQUIT, Setpgid: true}
	started := make(chan error, 1)
	exited := make(chan error, 1)
	go func() {
		// Pdeathsig is sent when the thread that started the child ends,
		// not the process: this goroutine keeps its thread, locked and
		// never unlocked, for as long as the postmaster runs.
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		exited <- cmd.Wait()
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	c.mu.Lock()
	c.exited = exited
	c.mu.Unlock()
	if err := c.waitReady(exited); err != nil {
		c.stop()
		return fmt.Errorf("%w\n%s", err, c.logTail())
	}
	return nil
}

// waitReady waits until the server accepts a session, or it exits.
func (c *testCluster) waitReady(exited chan error) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn, err := pgx.Connect(ctx, c.url())
		cancel()
		if err == nil {
			conn.Close(context.Background())
			return nil
		}
		select {
		case werr := <-exited:
			exited <- werr // for stop
			return fmt.Errorf("postgres exited at start: %v", werr)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("postgres did not accept connections within a minute: %v", err)
		}
	}
}

// signal sends sig to the postmaster and waits for it to exit, for at
// most wait; it reports whether it exited.
func (c *testCluster) signal(sig syscall.Signal, wait time.Duration) bool {
	c.mu.Lock()
	exited := c.exited
	c.mu.Unlock()
	if exited == nil {
		return true
	}
	pid := c.postmasterPID()
	if pid > 0 {
		syscall.Kill(pid, sig)
	}
	select {
	case <-exited:
		c.mu.Lock()
		c.exited = nil
		c.mu.Unlock()
		return true
	case <-time.After(wait):
		return false
	}
}

func (c *testCluster) postmasterPID() int {
	b, err := os.ReadFile(filepath.Join(c.dir, "data", "postmaster.pid"))
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, _ := strconv.Atoi(strings.TrimSpace(line))
	return pid
}

// restart stops the server (fast shutdown: sessions are ended), calls
// down unless it is nil, and starts the server again on the same port.
func (c *testCluster) restart(down func()) error {
	if !c.signal(syscall.SIGINT, 30*time.Second) {
		return errors.New("postgres did not stop within 30 s")
	}
	if down != nil {
		down()
	}
	return c.start()
}

// stop stops the server, however it can, and removes the directory.
func (c *testCluster) stop() error {
	if !c.signal(syscall.SIGINT, 10*time.Second) && !c.signal(syscall.SIGQUIT, 10*time.Second) {
		c.signal(syscall.SIGKILL, 10*time.Second)
	}
	return os.RemoveAll(c.dir)
}

// logTail returns the end of the server's log, for a failure to start.
func (c *testCluster) logTail() string {
	b, _ := os.ReadFile(filepath.Join(c.dir, "server.log"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return "server log:\n" + string(b)
}

// removeStaleClusters removes what earlier runs that died left: their
// directories and, should one have survived, their server.
func removeStaleClusters() {
	for _, base := range []string{os.TempDir(), "/tmp"} {
		dirs, _ := filepath.Glob(filepath.Join(base, clusterDirPrefix+"*"))
		for _, dir := range dirs {
			b, err := os.ReadFile(filepath.Join(dir, "owner.pid"))
			if err != nil {
				continue
			}
			owner, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil || alive(owner) {
				continue // another run's, still going
			}
			c := &testCluster{dir: dir}
			if pid := c.postmasterPID(); pid > 0 && alive(pid) && isPostgres(pid) {
				syscall.Kill(pid, syscall.SIGQUIT)
			}
			os.RemoveAll(dir)
		}
	}
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

func isPostgres(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return err == nil && strings.Contains(string(b), "postgres")
}

// findBinaries returns the directory of initdb and postgres, version
// minServerVersion or newer: from PATH, else pg_config --bindir, else the
// newest /usr/lib/postgresql/*/bin.
func findBinaries() (string, error) {
	var candidates []string
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			candidates = append(candidates, filepath.Dir(real))
		}
		candidates = append(candidates, filepath.Dir(p))
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		candidates = append(candidates, strings.TrimSpace(string(out)))
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int { return versionOf(b) - versionOf(a) })
	candidates = append(candidates, dirs...)
	var found []string
	for _, dir := range candidates {
		v, err := binaryVersion(dir)
		if err != nil {
			continue
		}
		if v >= minServerVersion {
			return dir, nil
		}
		found = append(found, fmt.Sprintf("%s (PostgreSQL %d)", dir, v))
	}
	msg := fmt.Sprintf("the tests need PostgreSQL %d or newer: install it (Debian, Ubuntu: apt-get install postgresql) so that initdb and postgres are on PATH or in /usr/lib/postgresql/*/bin, or set %s to a server's URL", minServerVersion, urlEnv)
	if len(found) > 0 {
		msg += "; found only " + strings.Join(found, ", ")
	}
	return "", errors.New(msg)
}

var versionRE = regexp.MustCompile(`\(PostgreSQL\) (\d+)`)

// binaryVersion returns the major version of the postgres binary in dir,
// which must have initdb too.
func binaryVersion(dir string) (int, error) {
	if _, err := os.Stat(filepath.Join(dir, "initdb")); err != nil {
		return 0, err
	}
	out, err := exec.Command(filepath.Join(dir, "postgres"), "--version").Output()
	if err != nil {
		return 0, err
	}
	m := versionRE.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("postgres --version: %q", out)
	}
	return strconv.Atoi(string(m[1]))
}

func versionOf(dir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return v
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// redact hides a password in a URL for messages.
func redact(url string) string {
	cfg, err := pgx.ParseConfig(url)
	if err != nil || cfg.Password == "" {
		return url
	}
	return strings.ReplaceAll(url, cfg.Password, "xxxxx")
}
