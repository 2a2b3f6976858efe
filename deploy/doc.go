// Package deploy holds the files users copy to run passgate in front of an
// MCP server: nginx.conf (an envsubst template for nginx auth_request),
// envoy.yaml (an Envoy v3 bootstrap with the ext_authz filter),
// docker-compose.yml and .env.example.
//
// The package has no code of its own, only tests that keep those files
// working as shipped: envoy.yaml is decoded strictly into Envoy's own
// protobuf types and validated; docker-compose.yml is checked against the
// two proxy configurations; nginx.conf is rendered the way the official
// nginx image renders templates and served by a real nginx on loopback.
//
// The tests also provide the nginx harness for end-to-end tests
// (startNginx, renderNginxConf, buildBinary, startProcess): a test that runs
// passgate and the example MCP server behind the shipped nginx.conf uses them.
package deploy
