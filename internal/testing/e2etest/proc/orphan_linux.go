package proc

import "syscall"

// orphanSignal makes a child get SIGTERM when its parent dies without
// stopping it, instead of living on. (SIGTERM, not SIGKILL, so nginx's
// master takes its workers down with it.)
func orphanSignal() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
