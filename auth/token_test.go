package auth

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef-test")

func newTestSigner(t *testing.T) *Signer {
	t.Helper()
	s, err := NewSigner(testSecret, "patchbay-test")
	if err != nil {
		t.Fatalf("NewSigner: %v", err)
	}
	return s
}

func TestNewSignerRejectsWeakConfig(t *testing.T) {
	if _, err := NewSigner([]byte("short"), "x"); err == nil || !strings.Contains(err.Error(), "openssl rand") {
		t.Fatalf("short secret: got %v, want error explaining how to make one", err)
	}
	if _, err := NewSigner(testSecret, ""); err == nil {
		t.Fatal("empty issuer accepted")
	}
}

func TestMintVerifyRoundTrip(t *testing.T) {
	s := newTestSigner(t)
	in := Claims{Name: "Alice A.", Dial: []string{"ext", "+4420"}, Room: "r1", Role: "agent", CallerIDs: []string{"+15551234567"}}
	in.Subject = "alice"
	tok, err := s.Mint(in, time.Minute)
	if err != nil {
		t.Fatalf("Mint: %v", err)
	}
	c, err := s.Verify(tok)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if c.User() != "alice" || c.Name != in.Name || c.Room != "r1" || c.Role != "agent" ||
		len(c.Dial) != 2 || c.Dial[1] != "+4420" || len(c.CallerIDs) != 1 {
		t.Fatalf("claims changed in transit: %+v", c)
	}
	if c.Issuer != "patchbay-test" || c.ID == "" || c.IssuedAt == nil || c.ExpiresAt == nil {
		t.Fatalf("registered claims not set: %+v", c.RegisteredClaims)
	}
	tok2, _ := s.Mint(in, time.Minute)
	c2, _ := s.Verify(tok2)
	if c2.ID == c.ID {
		t.Fatal("jti repeated across mints")
	}
}

func TestMintRejectsBadInput(t *testing.T) {
	s := newTestSigner(t)
	if _, err := s.Mint(Claims{}, time.Minute); err == nil {
		t.Fatal("empty subject accepted")
	}
	c := Claims{}
	c.Subject = "bob"
	if _, err := s.Mint(c, 0); err == nil {
		t.Fatal("zero ttl accepted")
	}
}

// rawToken signs arbitrary claims with an arbitrary method, bypassing Mint.
func rawToken(t *testing.T, m jwt.SigningMethod, key any, claims jwt.Claims) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(m, claims).SignedString(key)
	if err != nil {
		t.Fatalf("sign test token: %v", err)
	}
	return tok
}

func TestVerifyRejects(t *testing.T) {
	s := newTestSigner(t)
	now := time.Now()
	good := func() Claims {
		c := Claims{Name: "x"}
		c.Subject = "alice"
		c.Issuer = "patchbay-test"
		c.IssuedAt = jwt.NewNumericDate(now)
		c.ExpiresAt = jwt.NewNumericDate(now.Add(time.Minute))
		return c
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}

	past := newTestSigner(t)
	past.now = func() time.Time { return now.Add(-time.Hour) }
	expired, _ := past.Mint(Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: "alice"}}, time.Minute)

	nbf := good()
	nbf.NotBefore = jwt.NewNumericDate(now.Add(time.Hour))

	noExp := good()
	noExp.ExpiresAt = nil

	other, _ := NewSigner(testSecret, "someone-else")
	wrongIss, _ := other.Mint(Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: "alice"}}, time.Minute)

	noSub := good()
	noSub.Subject = ""

	// An RS256 header carrying an HMAC signature made with our secret: the
	// classic algorithm-confusion shape.
	hs := rawToken(t, jwt.SigningMethodHS256, testSecret, good())
	parts := strings.Split(hs, ".")
	rsHeader := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"RS256","typ":"JWT"}`))
	confused := rsHeader + "." + parts[1] + "." + parts[2]
	noneHeader := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))

	tests := []struct {
		name    string
		token   string
		expired bool
	}{
		{"expired", expired, true},
		{"not yet valid", rawToken(t, jwt.SigningMethodHS256, testSecret, nbf), false},
		{"wrong secret", rawToken(t, jwt.SigningMethodHS256, []byte("another-secret-another-secret-xx"), good()), false},
		{"alg none", rawToken(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, good()), false},
		{"alg none, empty signature", noneHeader + "." + parts[1] + ".", false},
		{"RS256 signed", rawToken(t, jwt.SigningMethodRS256, rsaKey, good()), false},
		{"RS256 header, HMAC signature", confused, false},
		{"HS512", rawToken(t, jwt.SigningMethodHS512, testSecret, good()), false},
		{"garbage", "not.a.jwt", false},
		{"empty", "", false},
		{"huge", strings.Repeat("a", 10000), false},
		{"missing exp", rawToken(t, jwt.SigningMethodHS256, testSecret, noExp), false},
		{"wrong issuer", wrongIss, false},
		{"no subject", rawToken(t, jwt.SigningMethodHS256, testSecret, noSub), false},
		{"tampered payload", parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"root","iss":"patchbay-test","exp":9999999999}`)) + "." + parts[2], false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := s.Verify(tt.token)
			if err == nil {
				t.Fatalf("accepted: %+v", c)
			}
			if !errors.Is(err, ErrInvalidToken) {
				t.Errorf("error %v does not match ErrInvalidToken", err)
			}
			if got := errors.Is(err, ErrExpired); got != tt.expired {
				t.Errorf("errors.Is(ErrExpired) = %v, want %v (%v)", got, tt.expired, err)
			}
			t.Logf("rejected: %v", err)
			msg := err.Error()
			if tt.token != "" && len(tt.token) > 8 && strings.Contains(msg, tt.token[:8]) {
				t.Errorf("error message leaks the token: %q", msg)
			}
			if strings.Contains(msg, string(testSecret)) {
				t.Errorf("error message leaks the secret: %q", msg)
			}
		})
	}
}

func TestVerifyLeeway(t *testing.T) {
	s := newTestSigner(t)
	now := time.Now()
	minted := newTestSigner(t)
	minted.now = func() time.Time { return now.Add(-time.Minute - Leeway/2) }
	tok, err := minted.Mint(Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: "alice"}}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Verify(tok); err != nil {
		t.Fatalf("token expired within leeway rejected: %v", err)
	}
}

func TestVerifyRefusesOverlongLifetime(t *testing.T) {
	s, err := NewSigner([]byte(strings.Repeat("k", MinSecretLen)), "patchbay")
	if err != nil {
		t.Fatal(err)
	}
	tenYears, err := s.Mint(Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: "alice"}}, 10*365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Verify(tenYears); err == nil || !strings.Contains(err.Error(), "longer than") {
		t.Errorf("10-year token: err = %v, want refused for its lifetime", err)
	}
	day, _ := s.Mint(Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: "alice"}}, 24*time.Hour)
	if _, err := s.Verify(day); err != nil {
		t.Errorf("24 h token refused: %v", err)
	}
	s.SetMaxLifetime(time.Hour)
	if _, err := s.Verify(day); err == nil {
		t.Error("24 h token accepted with a 1 h maximum")
	}
}
