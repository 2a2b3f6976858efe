//go:build !linux

package passwd

// setThreadPriority is a no-op where threads cannot be reprioritised
// individually.
func setThreadPriority(Priority) {}
