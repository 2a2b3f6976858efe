//go:build !(linux || darwin)

package proxy

// canPeek says whether upConn.alive can look at an idle connection: not
// here, so a kept connection the upstream closed fails the request on it
// (and a body-less GET, HEAD, OPTIONS or TRACE is sent again).
const canPeek = false

func (c *upConn) peekFD(uintptr) bool { return true }
