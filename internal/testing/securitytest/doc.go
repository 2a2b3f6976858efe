// Package securitytest holds passgate's cross-package and binary-level
// security and observability tests: the audit log and its metric agreeing
// event by event through a scripted OAuth flow on SQLite and PostgreSQL,
// the metrics listener's families, `passgate audit`, audit retention,
// secrets never reaching the logs, rate limits, account lockout across
// replicas, trusted-proxy handling, and the operators' kit in deploy/
// (Grafana dashboard and Prometheus alert rules) checked against the real
// metric registry.
//
// The tests run the real binary through internal/testing/e2etest. Only test files
// live here besides this comment.
package securitytest
