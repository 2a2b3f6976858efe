//go:build !linux

package proc

import "syscall"

// orphanSignal: only Linux can signal a child when its parent dies.
func orphanSignal() *syscall.SysProcAttr { return nil }
