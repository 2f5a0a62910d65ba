package testenv

import (
	"fmt"
	"net"
	"testing"
	"time"
)

// ariUnread sees bytes that nobody reads on a socket of the port, and nothing once they are read.
func TestARIUnreadSeesUnreadBytes(t *testing.T) {
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
	if q := ariUnread(port); len(q) != 0 {
		t.Fatalf("idle sockets reported: %v", q)
	}
	if _, err := c.Write(make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for len(ariUnread(port)) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	server := fmt.Sprintf("%d->%d", port, c.LocalAddr().(*net.TCPAddr).Port)
	if q := ariUnread(port); q[server] != 100 || len(q) != 1 {
		t.Fatalf("want 100 unread bytes on %s only, got %v", server, q)
	}
	if _, err := s.Read(make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	if q := ariUnread(port); len(q) != 0 {
		t.Fatalf("read bytes still reported: %v", q)
	}
}
