package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestEnsureCreatesVerifiableChain(t *testing.T) {
	dir := t.TempDir()
	p, err := Ensure(Options{Dir: dir, Hosts: []string{"localhost", "127.0.0.1", "pbx.example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{p.CAKey, p.Key} {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", f, st.Mode().Perm())
		}
	}
	pool, err := CertPool(p.CACert)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(p.Cert, p.Key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(pair.Certificate[0])
	for _, host := range []string{"localhost", "127.0.0.1", "pbx.example.com"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: host}); err != nil {
			t.Errorf("verify for %s: %v", host, err)
		}
	}
	if err := Check(p); err != nil {
		t.Errorf("Check: %v", err)
	}
}

func TestEnsureKeepsKeysAndReissuesForNewHosts(t *testing.T) {
	dir := t.TempDir()
	p, err := Ensure(Options{Dir: dir, Hosts: []string{"localhost"}})
	if err != nil {
		t.Fatal(err)
	}
	ca1, _ := os.ReadFile(p.CACert)
	key1, _ := os.ReadFile(p.Key)
	cert1, _ := os.ReadFile(p.Cert)

	// Same hosts: nothing changes.
	if _, err := Ensure(Options{Dir: dir, Hosts: []string{"localhost"}}); err != nil {
		t.Fatal(err)
	}
	if cert2, _ := os.ReadFile(p.Cert); string(cert2) != string(cert1) {
		t.Error("certificate replaced although nothing changed")
	}
	// A new host: reissued with the same key and CA.
	if _, err := Ensure(Options{Dir: dir, Hosts: []string{"localhost", "10.1.2.3"}}); err != nil {
		t.Fatal(err)
	}
	ca3, _ := os.ReadFile(p.CACert)
	key3, _ := os.ReadFile(p.Key)
	cert3, _ := os.ReadFile(p.Cert)
	if string(ca3) != string(ca1) || string(key3) != string(key1) {
		t.Error("CA or key replaced without --force")
	}
	if string(cert3) == string(cert1) {
		t.Error("certificate not reissued for the new host")
	}
	// Force: everything new.
	if _, err := Ensure(Options{Dir: dir, Hosts: []string{"localhost"}, Force: true}); err != nil {
		t.Fatal(err)
	}
	if key4, _ := os.ReadFile(p.Key); string(key4) == string(key1) {
		t.Error("--force kept the key")
	}
}

func TestErrors(t *testing.T) {
	if _, err := Ensure(Options{Hosts: []string{"x"}}); err == nil {
		t.Error("no dir: no error")
	}
	if _, err := Ensure(Options{Dir: t.TempDir()}); err == nil {
		t.Error("no hosts: no error")
	}
	dir := t.TempDir()
	if err := Check(PathsIn(dir)); !errors.Is(err, ErrMissing) {
		t.Errorf("Check on empty dir = %v, want ErrMissing", err)
	}
	// A corrupt key is reported, not silently replaced.
	p, _ := Ensure(Options{Dir: dir, Hosts: []string{"localhost"}})
	os.WriteFile(p.Key, []byte("garbage"), 0o600)
	if _, err := Ensure(Options{Dir: dir, Hosts: []string{"localhost"}}); err == nil {
		t.Error("corrupt key: no error")
	}
	os.WriteFile(filepath.Join(dir, "other.crt"), nil, 0o644)
}
