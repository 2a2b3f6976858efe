// Package kittest tests the operator's kit: the Helm chart, the Envoy
// Gateway and Istio examples and the GoReleaser configuration.
package kittest
