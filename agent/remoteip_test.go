package agent

import (
	"net"
	"testing"
)

func TestIPString(t *testing.T) {
	for _, c := range []struct {
		ip   net.IP
		want string
	}{
		{net.IPv4(127, 0, 0, 1), "127.0.0.1"},
		{net.IPv4(127, 0, 0, 1).To4(), "127.0.0.1"},
		{net.IPv4(10, 1, 2, 3), "10.1.2.3"},
		{net.ParseIP("::1"), "::1"},
		{net.ParseIP("2001:db8::7"), "2001:db8::7"},
		{net.IPv4(127, 0, 0, 1), "127.0.0.1"},
	} {
		for range 2 { // the second time from the cache
			if got := ipString(c.ip); got != c.want {
				t.Errorf("ipString(%v) = %q, want %q", []byte(c.ip), got, c.want)
			}
		}
	}
	if testing.AllocsPerRun(100, func() { ipString(net.IPv4(127, 0, 0, 1)) }) > 1 { // IPv4 itself allocates
		t.Error("a repeated address is formatted again")
	}
}
