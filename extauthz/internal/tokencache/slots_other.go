//go:build !unix

package tokencache

// allocSlots allocates n slots on the heap where mmap is not available.
func allocSlots(n int) []slot { return make([]slot, n) }

func freeSlots([]slot) {}

func clearSlots(s []slot) { clear(s) }
