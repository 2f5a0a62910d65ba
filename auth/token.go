package auth

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const (
	// MinSecretLen is the shortest HMAC secret NewSigner accepts: HS256 is
	// only as strong as its key, and 32 random bytes match the hash size.
	MinSecretLen = 32
	// Leeway absorbs clock skew between Patchbay instances when checking
	// exp, nbf and iat.
	Leeway = 10 * time.Second
	// maxTokenLen bounds the work done on a hostile token before any
	// signature check.
	maxTokenLen = 8 << 10
)

// Claims is what a browser token grants. Subject is the user name.
type Claims struct {
	Name      string   `json:"name"`
	Dial      []string `json:"dial"`
	Room      string   `json:"room,omitempty"`
	Role      string   `json:"role,omitempty"`
	CallerIDs []string `json:"caller_ids,omitempty"`
	jwt.RegisteredClaims
}

// User returns the user name the token was minted for (the JWT subject).
func (c *Claims) User() string { return c.Subject }

// Signer mints and verifies HS256 tokens for one issuer.
type Signer struct {
	secret  []byte
	issuer  string
	now     func() time.Time // replaced in tests
	parser  *jwt.Parser
	maxLife time.Duration
}

// DefaultMaxLifetime is the longest token lifetime Verify accepts unless SetMaxLifetime says otherwise.
const DefaultMaxLifetime = 24 * time.Hour

// SetMaxLifetime sets the longest lifetime (exp − iat; exp − now for a token without iat) Verify accepts, so a
// token minted by a careless backend for ten years is refused rather than useful to whoever copies it.
func (s *Signer) SetMaxLifetime(d time.Duration) {
	if d > 0 {
		s.maxLife = d
	}
}

// NewSigner returns a Signer using secret, which must be at least
// MinSecretLen bytes. The secret is copied.
func NewSigner(secret []byte, issuer string) (*Signer, error) {
	if len(secret) < MinSecretLen {
		return nil, fmt.Errorf("auth: token secret is %d bytes, need at least %d random bytes; generate one with `openssl rand -base64 48`", len(secret), MinSecretLen)
	}
	if issuer == "" {
		return nil, errors.New("auth: token issuer is empty; set it to a name identifying this Patchbay deployment")
	}
	s := &Signer{
		secret:  append([]byte(nil), secret...),
		issuer:  issuer,
		now:     time.Now,
		maxLife: DefaultMaxLifetime,
	}
	s.parser = jwt.NewParser(
		// Pinning the method rejects "none", RS256 and alg-confusion
		// tokens before the key is ever used.
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithIssuer(issuer),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(Leeway),
		jwt.WithTimeFunc(func() time.Time { return s.now() }),
	)
	return s, nil
}

// LogValue keeps the secret out of logs if a Signer is ever logged.
func (s *Signer) LogValue() slog.Value {
	return slog.GroupValue(slog.String("issuer", s.issuer))
}

// Mint signs c for ttl. It sets iat, exp, jti and iss, overwriting any values
// in c; Subject must be set.
func (s *Signer) Mint(c Claims, ttl time.Duration) (string, error) {
	if ttl <= 0 {
		return "", fmt.Errorf("auth: mint token: ttl %v is not positive; pass how long the token may be used", ttl)
	}
	if c.Subject == "" {
		return "", errors.New("auth: mint token: Subject (user name) is empty; set it to the browser user's name")
	}
	jti, err := newID()
	if err != nil {
		return "", fmt.Errorf("auth: mint token: %w", err)
	}
	now := s.now()
	c.Issuer = s.issuer
	c.IssuedAt = jwt.NewNumericDate(now)
	c.ExpiresAt = jwt.NewNumericDate(now.Add(ttl))
	c.ID = jti
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, &c).SignedString(s.secret)
	if err != nil {
		return "", fmt.Errorf("auth: mint token: sign: %w", err)
	}
	return tok, nil
}

// Verify checks token's signature (HS256 only), issuer and expiry and returns
// its claims. Errors match ErrInvalidToken, and also ErrExpired when the token
// has expired; their text never contains the token.
func (s *Signer) Verify(token string) (*Claims, error) {
	if token == "" {
		return nil, invalid("token is empty", nil)
	}
	if len(token) > maxTokenLen {
		return nil, invalid(fmt.Sprintf("token is longer than %d bytes", maxTokenLen), nil)
	}
	var c Claims
	_, err := s.parser.ParseWithClaims(token, &c, func(t *jwt.Token) (any, error) {
		// Defence in depth next to WithValidMethods: the key is only ever
		// handed to the HMAC verifier.
		if t.Method != jwt.SigningMethodHS256 {
			return nil, fmt.Errorf("unexpected signing method")
		}
		return s.secret, nil
	})
	if err != nil {
		if errors.Is(err, jwt.ErrTokenSignatureInvalid) && !isHS256(token) {
			return nil, invalid("token uses a signing method other than HS256", err)
		}
		return nil, classify(err)
	}
	if c.Subject == "" {
		return nil, invalid("token has no subject (user name)", nil)
	}
	from := s.now()
	if c.IssuedAt != nil {
		from = c.IssuedAt.Time
	}
	if life := c.ExpiresAt.Sub(from); life > s.maxLife+Leeway {
		return nil, invalid(fmt.Sprintf("token lifetime %v is longer than the %v this server accepts; mint shorter-lived tokens", life.Round(time.Second), s.maxLife), nil)
	}
	return &c, nil
}

// classify turns a jwt error into a fixed, token-free reason.
func classify(err error) error {
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return &verifyError{reason: "token has expired; ask for a new one", errs: []error{ErrInvalidToken, ErrExpired, err}}
	case errors.Is(err, jwt.ErrTokenMalformed):
		return invalid("token is malformed", err)
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return invalid("token uses a signing method other than HS256", err)
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return invalid("token signature does not match; it was signed with another secret or altered", err)
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return invalid("token lacks a required claim (exp)", err)
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return invalid("token was issued by another issuer", err)
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return invalid("token is not valid yet (nbf in the future); check the clocks", err)
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return invalid("token was issued in the future; check the clocks", err)
	default:
		return invalid("token was rejected", err)
	}
}

// isHS256 reports whether token's header names HS256. It only refines the
// error reason: the parser has already refused other methods.
func isHS256(token string) bool {
	t, _, err := jwt.NewParser().ParseUnverified(token, &jwt.RegisteredClaims{})
	return err == nil && t.Header["alg"] == jwt.SigningMethodHS256.Alg()
}

func newID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("read random token id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}
