// Package e2etest is the end-to-end harness for tests that run the real
// passgate binary: it builds cmd/passgate once per test process, starts it
// on free loopback ports, waits for /readyz, captures its logs, stops it
// with SIGTERM or SIGKILL and restarts it; it opens the same store the
// binary uses (to mint users or inspect tables), drives the OAuth flow over
// HTTP like a browser and an MCP client would (registration, authorize,
// login form, consent form, code exchange, refresh), asks the HTTP and Envoy
// gRPC checks, and runs a private PostgreSQL server that a test may stop and
// start (internal/testing/faulttest uses that for outage tests).
//
// It is the one harness of every test that runs a process: BuildPackage
// builds other main packages the way the Dockerfile does, StartProcess and
// StartNginx run them and nginx, NeedTool finds an installed tool or skips
// (fails with CI=true) — tests never install anything — and Transcript
// with Golden pins HTTP exchanges in testdata/*.txt (-update rewrites
// them). MCPAuth connects the official MCP Go SDK client with its OAuth
// flow, Browser.Approve playing the user (also through a proxy), and
// CallWhoami asks the example MCP server who it saw. Its testing-free
// part, internal/testing/e2etest/proc (locked buffers, JSON logs,
// polling), is shared with cmd/passgate-bench.
//
// It is imported only by tests. Everything is bounded in time and bound to
// 127.0.0.1; every process and temporary directory is cleaned up with
// t.Cleanup.
//
// # Typical use
//
//	func TestMain(m *testing.M) { e2etest.RunMain(m) } // optional: removes the build
//
//	func TestSomething(t *testing.T) {
//		srv := e2etest.Start(t, e2etest.Options{})           // SQLite in t.TempDir()
//		e2etest.AddUser(t, srv.OpenStore(t), "alice", "pw") // or srv.CLI(t, …)
//		cl := srv.RegisterClient(t)                   // RFC 7591, public client
//		// or a real client's registration body, secret and auth method:
//		// cl, err := srv.RegisterMetadata(ctx, map[string]any{…})
//		b := e2etest.NewBrowser()
//		tok, err := cl.Login(ctx, b, "alice", "pw")   // authorize+login+consent+exchange
//		status, _ := srv.CheckHTTP(ctx, tok.AccessToken) // 200
//		srv.Kill(t); srv.Restart(t)                   // same ports, same store
//	}
//
// # Names the flow relies on
//
// The login form (oauthweb/templates/login.html) posts username, password,
// csrf and return_to to /login; csrf is double-submitted with the
// passgate_login cookie. The consent form (consent.html) posts csrf (the
// session's CSRF token), decision=approve|deny and the authorization
// parameters as hidden fields to /consent. The session cookie is
// passgate_session (the __Host- prefixed names are used only with an https
// issuer, which this harness never uses). Form reads any form
// generically, so template changes that keep the field names keep working.
package e2etest
