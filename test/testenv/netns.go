package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// NetNS is a network namespace a test makes for itself: a veth pair to the host namespace on a /30 of
// 10.254.0.0/16 (HostIP on the host side, NSIP inside), loopback up, a default route via HostIP. Tests run a
// browser inside it and firewall or cut its link with nftables and `ip link`, without touching the host's own
// network. Only these two addresses are ever used.
type NetNS struct {
	Name           string
	HostIP, NSIP   string
	hostIf, nsIf   string
	t              testing.TB
	nftablesLoaded bool
}

// NewNetNS creates the namespace; t.Cleanup deletes it. Needs root and iproute2 (and nft for the firewall).
func NewNetNS(t testing.TB) *NetNS {
	t.Helper()
	n := newNetNSBase(t)
	t.Cleanup(n.delete)
	for _, args := range [][]string{
		{"netns", "add", n.Name},
		{"link", "add", n.hostIf, "type", "veth", "peer", "name", n.nsIf},
		{"link", "set", n.nsIf, "netns", n.Name},
		{"addr", "add", n.HostIP + "/30", "dev", n.hostIf},
		{"link", "set", n.hostIf, "up"},
		{"-n", n.Name, "addr", "add", n.NSIP + "/30", "dev", n.nsIf},
		{"-n", n.Name, "link", "set", "lo", "up"},
		{"-n", n.Name, "link", "set", n.nsIf, "up"},
		{"-n", n.Name, "route", "add", "default", "via", n.HostIP},
	} {
		n.ip(args...)
	}
	return n
}

func (n *NetNS) ip(args ...string) {
	n.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		n.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

func (n *NetNS) delete() {
	_ = exec.Command("ip", "netns", "del", n.Name).Run()
	_ = exec.Command("ip", "link", "del", n.hostIf).Run() // gone with the namespace's end already, normally
}

// Command runs name inside the namespace.
func (n *NetNS) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Firewall replaces the namespace's nftables ruleset with an output filter holding rules (nft syntax, one per
// line), e.g. "ip daddr 10.254.1.1 udp dport 50000 drop". Empty rules lift it.
func (n *NetNS) Firewall(rules ...string) {
	n.t.Helper()
	if _, err := exec.LookPath("nft"); err != nil {
		n.t.Fatalf("nft not found: run scripts/provision.sh (nftables): %v", err)
	}
	script := "flush ruleset\n"
	if len(rules) > 0 {
		script += "table inet pbtest {\n chain out {\n  type filter hook output priority 0; policy accept;\n"
		for _, r := range rules {
			script += "  " + r + "\n"
		}
		script += " }\n}\n"
	}
	cmd := n.Command(context.Background(), "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		n.t.Fatalf("nft in %s: %v: %s\n%s", n.Name, err, out, script)
	}
}

// BlockUDP drops every UDP datagram leaving the namespace (DNS is not used: tests name hosts by IP).
func (n *NetNS) BlockUDP() { n.Firewall("meta l4proto udp drop") }

// LinkDown cuts the namespace's only link; LinkUp restores it with its default route.
func (n *NetNS) LinkDown() { n.ip("-n", n.Name, "link", "set", n.nsIf, "down") }

// LinkUp brings the link back.
func (n *NetNS) LinkUp() {
	n.ip("-n", n.Name, "link", "set", n.nsIf, "up")
	// The default route left with the link; on a fresh link up it may take a moment to be addable.
	deadline := time.Now().Add(2 * time.Second)
	for {
		out, err := exec.Command("ip", "-n", n.Name, "route", "replace", "default", "via", n.HostIP).CombinedOutput()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("restore default route in %s: %v: %s", n.Name, err, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// newNetNSBase checks what a namespace needs and names one (namespace and both interfaces) with a free /30 of
// 10.254.0.0/16 for its two addresses; the caller creates it and its link.
func newNetNSBase(t testing.TB) *NetNS {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("network namespaces need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatalf("ip not found: run scripts/provision.sh (iproute2): %v", err)
	}
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	id := hex.EncodeToString(b)
	n := &NetNS{Name: "pbt-" + id, hostIf: "pbh" + id, nsIf: "pbn" + id, t: t}
	for try := 0; ; try++ {
		x, _ := rand.Int(rand.Reader, big.NewInt(250*64))
		third, fourth := x.Int64()/64, (x.Int64()%64)*4
		n.HostIP = fmt.Sprintf("10.254.%d.%d", third+1, fourth+1)
		n.NSIP = fmt.Sprintf("10.254.%d.%d", third+1, fourth+2)
		out, _ := exec.Command("ip", "-4", "-o", "addr", "show", "to", n.HostIP+"/30").Output()
		if len(strings.TrimSpace(string(out))) == 0 {
			return n
		}
		if try > 20 {
			t.Fatal("no free /30 in 10.254.0.0/16")
		}
	}
}
