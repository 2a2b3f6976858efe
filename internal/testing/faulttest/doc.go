// Package faulttest holds passgate's fault tests: they run the real binary
// (through internal/testing/e2etest) against real SQLite files and real PostgreSQL
// servers and break things on purpose: PostgreSQL stopped and started
// mid-test, passgate killed with SIGKILL under load, replicas restarted one
// after the other under load, a tokens table locked so lookups hang, and a
// backup restored into a fresh store. docs/operations.md describes what
// operators see in each case; these tests keep it true.
//
// The package has no code of its own, only tests. Each is bounded in time,
// listens on loopback only, and starts its own PostgreSQL server (initdb
// into a temporary directory) when it needs to stop one; tests that only
// need a database use store/postgres/pgtest on the shared server.
package faulttest
