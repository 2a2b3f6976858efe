package e2etest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Postgres is a private PostgreSQL server for one test, which the test may
// stop and start (outages) without disturbing the machine's shared server.
// It listens on 127.0.0.1 and a free port (kept across restarts), with its
// unix socket in its own directory, trust authentication for user postgres,
// and fsync off (the tests kill processes, not the machine).
type Postgres struct {
	// Dir holds the cluster (Dir/data), its log (Dir/postgres.log) and
	// socket.
	Dir string
	// Port is the TCP port on 127.0.0.1.
	Port int
	// URL is the postgres database's URL.
	URL string

	bin    string
	asUser string // run the binaries as this OS user ("" for ourselves)
}

// PostgresBin returns the directory of the newest Debian PostgreSQL
// binaries (/usr/lib/postgresql/N/bin), or "" when none is installed.
func PostgresBin() string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return vi < vj
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(dirs[i], "initdb")); err == nil {
			return dirs[i]
		}
	}
	return ""
}

// NeedPostgresBin returns PostgresBin, or ends the test like NeedTool when
// no PostgreSQL binaries are installed.
func NeedPostgresBin(t testing.TB) string {
	t.Helper()
	bin := PostgresBin()
	if bin == "" {
		missingTool(t, errors.New("no PostgreSQL binaries in /usr/lib/postgresql/*/bin (scripts/test.sh installs them)"))
	}
	return bin
}

// StartPostgres initialises a cluster in a fresh directory and starts it
// (about a second). Without PostgreSQL binaries the test is skipped, or
// fails with CI=true. The server is stopped and its directory removed when
// the test ends. As root, the binaries run as the postgres OS user.
func StartPostgres(t testing.TB) *Postgres {
	t.Helper()
	bin := NeedPostgresBin(t)
	// Not t.TempDir(): its parents are 0700 and owned by us, and the
	// postgres user must reach the directory.
	dir, err := os.MkdirTemp("", "passgate-pg-")
	if err != nil {
		t.Fatal(err)
	}
	p := &Postgres{Dir: dir, bin: bin}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("e2e: running as root and there is no postgres user: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
		p.asUser = "postgres"
	}
	if out, err := p.run(60*time.Second, "initdb", "-D", p.dataDir(), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"); err != nil {
		t.Fatalf("e2e: initdb: %v\n%s", err, out)
	}
	for range 3 {
		_, port, _ := net.SplitHostPort(FreeAddr(t))
		p.Port, _ = strconv.Atoi(port)
		p.URL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", p.Port)
		if err = p.start(); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("e2e: start postgres: %v\n%s", err, p.Log())
	}
	t.Cleanup(func() {
		if out, err := p.run(30*time.Second, "pg_ctl", "-D", p.dataDir(), "-m", "immediate", "-w", "stop"); err != nil && p.Running() {
			t.Errorf("e2e: stop postgres: %v\n%s", err, out)
		}
	})
	return p
}

func (p *Postgres) dataDir() string { return filepath.Join(p.Dir, "data") }

// Log returns the server's log.
func (p *Postgres) Log() string {
	b, _ := os.ReadFile(filepath.Join(p.Dir, "postgres.log"))
	return string(b)
}

func (p *Postgres) run(timeout time.Duration, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	path := filepath.Join(p.bin, name)
	var cmd *exec.Cmd
	if p.asUser != "" {
		cmd = exec.CommandContext(ctx, "runuser", append([]string{"-u", p.asUser, "--", path}, args...)...)
	} else {
		cmd = exec.CommandContext(ctx, path, args...)
	}
	cmd.Dir = p.Dir
	// A server started by pg_ctl must not hold our pipes open past the
	// timeout.
	cmd.WaitDelay = 5 * time.Second
	return cmd.CombinedOutput()
}

func (p *Postgres) start() error {
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c max_connections=200", p.Port, p.Dir)
	out, err := p.run(60*time.Second, "pg_ctl", "-D", p.dataDir(), "-l", filepath.Join(p.Dir, "postgres.log"), "-w", "-t", "30", "-o", opts, "start")
	if err != nil {
		return fmt.Errorf("pg_ctl start: %w\n%s", err, out)
	}
	return nil
}

// Start starts the server again on the same port after Stop.
func (p *Postgres) Start(t testing.TB) {
	t.Helper()
	if err := p.start(); err != nil {
		t.Fatalf("e2e: restart postgres: %v\n%s", err, p.Log())
	}
}

// Stop stops the server with pg_ctl's mode: "immediate" (like a crash:
// connections drop at once, recovery on the next start) or "fast"
// (connections are terminated, clean shutdown).
func (p *Postgres) Stop(t testing.TB, mode string) {
	t.Helper()
	if out, err := p.run(30*time.Second, "pg_ctl", "-D", p.dataDir(), "-m", mode, "-w", "stop"); err != nil {
		t.Fatalf("e2e: stop postgres: %v\n%s", err, out)
	}
}

// Running reports whether the server accepts connections.
func (p *Postgres) Running() bool {
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p.Port), time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// NewDatabase creates a database with a fresh name and returns its URL.
func (p *Postgres) NewDatabase(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, p.URL)
	if err != nil {
		t.Fatalf("e2e: connect postgres: %v", err)
	}
	defer c.Close(ctx)
	name := fmt.Sprintf("passgate_%d", time.Now().UnixNano())
	if _, err := c.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("e2e: create database: %v", err)
	}
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", p.Port, name)
}

// Bin returns the path of a PostgreSQL program (pg_dump, pg_restore, psql)
// of the same installation.
func (p *Postgres) Bin(name string) string { return filepath.Join(p.bin, name) }
