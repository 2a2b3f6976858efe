// Package deptest holds the repository-wide rules that no single package can
// check for itself: every package is documented, and the import graph keeps
// the layout's promises (the store contract depends on nothing, the
// authorization server and the checks never import each other or a storage
// backend), and no package outside the test-only ones (package testing,
// any package whose name ends in "test", such as internal/testing/e2etest) links test code:
// that rule covers every package of the module, present or future. It has
// tests only.
package deptest
