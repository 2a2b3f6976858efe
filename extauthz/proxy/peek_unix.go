//go:build linux || darwin

package proxy

import (
	"io"
	"syscall"
)

// canPeek says whether upConn.alive can look at an idle connection.
const canPeek = true

// peekFD looks at an idle connection without reading from it or waiting
// (a RawConn.Read callback).
func (c *upConn) peekFD(fd uintptr) bool {
	var b [1]byte
	_, _, c.peekErr = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	if c.peekErr == nil {
		// Data or EOF on an idle connection: unusable either way.
		c.peekErr = io.EOF
	}
	return true
}
