//go:build linux

package tokencache

import (
	"fmt"
	"syscall"
	"unsafe"
)

// allocSlots maps n zeroed slots outside the Go heap (see cache). The
// kernel backs a page only once it is written. A failed mapping is out of
// memory, which Go's own allocator would not survive either.
func allocSlots(n int) []slot {
	mem, err := syscall.Mmap(-1, 0, n*int(unsafe.Sizeof(slot{})), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		panic(fmt.Sprintf("tokencache: map %d slots: %v", n, err))
	}
	return unsafe.Slice((*slot)(unsafe.Pointer(unsafe.SliceData(mem))), n)
}

// freeSlots unmaps slots from allocSlots.
func freeSlots(s []slot) {
	if len(s) > 0 {
		_ = syscall.Munmap(slotBytes(s))
	}
}

// clearSlots zeroes s and gives its whole pages back to the kernel
// (MADV_DONTNEED reads back as zeros), so an emptied cache also stops
// costing RSS. Partial pages at either end are zeroed in place, in case
// they hold something else.
func clearSlots(s []slot) {
	mem := slotBytes(s)
	page := uintptr(syscall.Getpagesize())
	start := uintptr(unsafe.Pointer(unsafe.SliceData(mem)))
	lo := int((start+page-1)&^(page-1) - start)
	hi := int((start+uintptr(len(mem)))&^(page-1) - start)
	if lo >= hi || syscall.Madvise(mem[lo:hi], syscall.MADV_DONTNEED) != nil {
		clear(mem)
		return
	}
	clear(mem[:lo])
	clear(mem[hi:])
}

func slotBytes(s []slot) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), len(s)*int(unsafe.Sizeof(slot{})))
}
