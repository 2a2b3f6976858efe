//go:build !linux

package tokencache

// allocSlots allocates n slots on the heap. Only Linux gets the mapping of
// slots_linux.go: the syscall package has Madvise there alone (darwin,
// which release builds target, lacks it).
func allocSlots(n int) []slot { return make([]slot, n) }

func freeSlots([]slot) {}

func clearSlots(s []slot) { clear(s) }
