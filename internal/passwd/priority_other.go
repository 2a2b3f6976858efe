//go:build !linux

package passwd

// lowerThreadPriority is a no-op where threads cannot be reprioritised
// individually.
func lowerThreadPriority() {}
