// Package deptest holds the repository-wide rules that no single package can
// check for itself: every package is documented, and the import graph keeps
// the layout's promises (the store contract depends on nothing, the
// authorization server and the checks never import each other or a storage
// backend, and the binary links no test helpers). It has tests only.
package deptest
