package passwd

import "syscall"

// backgroundNice is the nice value of the threads that run password
// hashes: low enough that the kernel prefers the proxy checks' threads
// whenever both want a CPU, without starving logins on an idle machine.
const backgroundNice = 10

// lowerThreadPriority gives the calling OS thread a background priority.
// On Linux, setpriority on a thread ID affects that thread only. Failure is
// harmless: the hash then runs at normal priority.
func lowerThreadPriority() {
	_ = syscall.Setpriority(syscall.PRIO_PROCESS, syscall.Gettid(), backgroundNice)
}
