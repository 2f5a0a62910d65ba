// Package certs makes the certificate authority and server certificate that Patchbay's HTTPS/WSS listener and
// Asterisk's TLS transports and DTLS use. The file names are the ones the rendered Asterisk configs point at.
package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// File names inside the certificate directory.
const (
	CACertFile = "ca.crt"
	CAKeyFile  = "ca.key"
	CertFile   = "server.crt"
	KeyFile    = "server.key"
)

// Options says where the files go and what the server certificate must cover.
type Options struct {
	Dir      string        // directory for the four files; created 0750 if missing
	Hosts    []string      // DNS names and IP addresses for the server certificate's SANs
	ValidFor time.Duration // server certificate lifetime; default 397 days (what browsers accept)
	Force    bool          // replace existing keys and certificates
	// Org names the CA and certificate subjects.
	Org string
}

// Paths are the absolute paths of the files.
type Paths struct {
	CACert, CAKey, Cert, Key string
}

// PathsIn returns the file paths inside dir.
func PathsIn(dir string) Paths {
	return Paths{
		CACert: filepath.Join(dir, CACertFile),
		CAKey:  filepath.Join(dir, CAKeyFile),
		Cert:   filepath.Join(dir, CertFile),
		Key:    filepath.Join(dir, KeyFile),
	}
}

// ErrMissing says a certificate or key file is not there.
var ErrMissing = errors.New("certificate file missing")

// Ensure makes whatever is missing: the CA when there is none, and a server certificate when there is none, when
// it does not cover opts.Hosts, or when it expires within 30 days. Existing keys are kept unless opts.Force.
func Ensure(opts Options) (Paths, error) {
	if opts.Dir == "" {
		return Paths{}, errors.New("certs: no directory given: set certs.dir")
	}
	if len(opts.Hosts) == 0 {
		return Paths{}, errors.New("certs: no host names given: set certs.hosts (e.g. localhost, 127.0.0.1, your public name)")
	}
	if opts.ValidFor == 0 {
		opts.ValidFor = 397 * 24 * time.Hour
	}
	if opts.Org == "" {
		opts.Org = "Patchbay"
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return Paths{}, fmt.Errorf("certs: resolve %s: %w", opts.Dir, err)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return Paths{}, fmt.Errorf("certs: create directory %s: %w", dir, err)
	}
	p := PathsIn(dir)

	caCert, caKey, err := loadPair(p.CACert, p.CAKey)
	if opts.Force || err != nil {
		if err != nil && !errors.Is(err, ErrMissing) {
			return Paths{}, fmt.Errorf("certs: existing CA unusable (%w); re-run with --force to replace it", err)
		}
		caCert, caKey, err = newCA(opts.Org)
		if err != nil {
			return Paths{}, err
		}
		if err := writePair(p.CACert, p.CAKey, caCert, caKey); err != nil {
			return Paths{}, err
		}
		opts.Force = true // a new CA invalidates the old server certificate
	}

	cert, key, err := loadPair(p.Cert, p.Key)
	switch {
	case opts.Force || errors.Is(err, ErrMissing):
		key = nil
	case err != nil:
		return Paths{}, fmt.Errorf("certs: existing server certificate unusable (%w); re-run with --force to replace it", err)
	case !covers(cert, opts.Hosts) || time.Until(cert.NotAfter) < 30*24*time.Hour || cert.CheckSignatureFrom(caCert) != nil:
		// Reissue, keeping the server key: pinned keys and Asterisk's DTLS fingerprint users are not disturbed.
	default:
		return p, nil
	}
	if key == nil {
		if key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			return Paths{}, fmt.Errorf("certs: generate server key: %w", err)
		}
	}
	cert, err = newServerCert(caCert, caKey, key, opts)
	if err != nil {
		return Paths{}, err
	}
	if err := writePair(p.Cert, p.Key, cert, key); err != nil {
		return Paths{}, err
	}
	return p, nil
}

// Check verifies that the server certificate and key exist, match, and chain to the CA. Patchbay calls it at
// start so a missing or wrong file is reported with what to do instead of a TLS failure later.
func Check(p Paths) error {
	for _, f := range []string{p.Cert, p.Key} {
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("%w: %s: run `patchbay certs init` or set tls cert/key paths: %v", ErrMissing, f, err)
		}
	}
	if _, err := tls.LoadX509KeyPair(p.Cert, p.Key); err != nil {
		return fmt.Errorf("certificate %s and key %s do not form a pair: %w", p.Cert, p.Key, err)
	}
	return nil
}

func covers(c *x509.Certificate, hosts []string) bool {
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			if !slices.ContainsFunc(c.IPAddresses, ip.Equal) {
				return false
			}
		} else if !slices.Contains(c.DNSNames, h) {
			return false
		}
	}
	return true
}

func serial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("certs: serial number: %w", err)
	}
	return n, nil
}

func newCA(org string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: generate CA key: %w", err)
	}
	sn, err := serial()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{Organization: []string{org}, CommonName: org + " CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: create CA certificate: %w", err)
	}
	c, err := x509.ParseCertificate(der)
	return c, key, err
}

func newServerCert(ca *x509.Certificate, caKey *ecdsa.PrivateKey, key *ecdsa.PrivateKey, opts Options) (*x509.Certificate, error) {
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{Organization: []string{opts.Org}, CommonName: opts.Hosts[0]},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(opts.ValidFor),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, h := range opts.Hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("certs: create server certificate: %w", err)
	}
	return x509.ParseCertificate(der)
}

func loadPair(certPath, keyPath string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	cb, err := os.ReadFile(certPath)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("%w: %s", ErrMissing, certPath)
	} else if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", certPath, err)
	}
	kb, err := os.ReadFile(keyPath)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("%w: %s", ErrMissing, keyPath)
	} else if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", keyPath, err)
	}
	blk, _ := pem.Decode(cb)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, nil, fmt.Errorf("%s: no PEM certificate", certPath)
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("parse %s: %w", certPath, err)
	}
	kblk, _ := pem.Decode(kb)
	if kblk == nil {
		return nil, nil, fmt.Errorf("%s: no PEM key", keyPath)
	}
	key, err := x509.ParseECPrivateKey(kblk.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("parse %s (want an EC private key): %w", keyPath, err)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, nil, fmt.Errorf("%s does not belong to %s", keyPath, certPath)
	}
	return cert, key, nil
}

func writePair(certPath, keyPath string, cert *x509.Certificate, key *ecdsa.PrivateKey) error {
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return fmt.Errorf("certs: encode key: %w", err)
	}
	// Asterisk reads both files as the asterisk user, so the key is group-readable by the directory's group at most.
	if err := writeFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return err
	}
	return writeFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o644)
}

// writeFile replaces path atomically so a reader never sees half a key.
func writeFile(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return fmt.Errorf("certs: write %s: %w", tmp, err)
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return fmt.Errorf("certs: chmod %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("certs: install %s: %w", path, err)
	}
	return nil
}

// CertPool returns a pool holding the CA, for clients (tests, the synthetic caller) that trust it.
func CertPool(caCertPath string) (*x509.CertPool, error) {
	b, err := os.ReadFile(caCertPath)
	if err != nil {
		return nil, fmt.Errorf("read CA certificate: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no PEM certificate", caCertPath)
	}
	return pool, nil
}
