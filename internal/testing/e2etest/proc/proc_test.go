package proc

import (
	"net"
	"strconv"
	"testing"
)

func TestFreeAddrAvoidsEphemeralPorts(t *testing.T) {
	lo := ephemeralLow()
	if lo <= minPickedPort+1000 {
		t.Skipf("ephemeral range starts at %d: nothing to pick below it", lo)
	}
	for range 50 {
		addr, err := FreeAddr()
		if err != nil {
			t.Fatal(err)
		}
		_, p, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatal(err)
		}
		port, _ := strconv.Atoi(p)
		if port < minPickedPort || port >= lo {
			t.Fatalf("FreeAddr() = %s, want a port in [%d, %d)", addr, minPickedPort, lo)
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("FreeAddr() = %s, which cannot be bound: %v", addr, err)
		}
		ln.Close()
	}
}
