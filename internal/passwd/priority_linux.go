package passwd

import (
	"syscall"
	"unsafe"
)

// schedIdle is Linux's SCHED_IDLE policy (sched.h).
const schedIdle = 5

// setThreadPriority gives the calling OS thread priority p. On Linux,
// setpriority and sched_setscheduler on a thread ID affect that thread
// only. Failure is harmless: the hash then runs at normal priority.
func setThreadPriority(p Priority) {
	p = p.orDefault()
	tid := syscall.Gettid()
	if p.idle {
		var param struct{ priority int32 }
		_, _, _ = syscall.RawSyscall(syscall.SYS_SCHED_SETSCHEDULER, uintptr(tid), schedIdle, uintptr(unsafe.Pointer(&param)))
		return
	}
	if p.nice != 0 {
		_ = syscall.Setpriority(syscall.PRIO_PROCESS, tid, p.nice)
	}
}
