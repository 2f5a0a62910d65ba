package testenv

import (
	"net"
	"strings"
	"testing"
	"time"
)

// ariQueued sees bytes that nobody reads on a socket of the port, and nothing once they are read.
func TestARIQueuedSeesUnreadBytes(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if q := ariQueued(port); q != "" {
		t.Fatalf("idle sockets reported as queued: %s", q)
	}
	if _, err := c.Write(make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for ariQueued(port) == "" && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if q := ariQueued(port); !strings.Contains(q, ":00000064") {
		t.Fatalf("100 unread bytes not reported: %q", q)
	}
	if _, err := s.Read(make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	if q := ariQueued(port); q != "" {
		t.Fatalf("read bytes still reported: %s", q)
	}
}
