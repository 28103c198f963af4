package chat

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
	"github.com/parley-chat/parley/httpapi/access"
	"github.com/parley-chat/parley/persistence"
	"github.com/parley-chat/parley/wsconn"
	"golang.org/x/crypto/bcrypt"
)

// BcryptCost is the cost of new password hashes: Laravel's default, 10.
// Tests lower it (bcrypt.MinCost is 4) to stay fast.
var BcryptCost = 10

// HashPassword hashes a password with bcrypt at BcryptCost. bcrypt reads at
// most 72 bytes; longer passwords are refused rather than silently cut.
func HashPassword(pw string) (string, error) {
	if pw == "" {
		return "", errors.New("password is empty")
	}
	if len(pw) > 72 {
		return "", errors.New("password is longer than 72 bytes")
	}
	if strings.IndexByte(pw, 0) >= 0 || !utf8.ValidString(pw) {
		// Login refuses such passwords, so the account could never be used.
		return "", errors.New("password contains NUL or invalid UTF-8")
	}
	h, err := bcrypt.GenerateFromPassword([]byte(pw), BcryptCost)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(h), nil
}

// CheckPassword reports whether pw matches a HashPassword hash.
func CheckPassword(hash, pw string) bool {
	return bcrypt.CompareHashAndPassword([]byte(hash), []byte(pw)) == nil
}

// secretLen is the length of a token's random part, as Sanctum makes them.
const secretLen = 40

const secretAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// IssueToken creates an API token for userID that expires after ttl (0 =
// never). plain is "{id}|{secret}", shown once; only the SHA-256 hex of the
// secret is stored.
func IssueToken(ctx context.Context, st persistence.Store, userID int64, ttl time.Duration) (plain string, tok persistence.Token, err error) {
	if ttl < 0 {
		return "", persistence.Token{}, fmt.Errorf("token ttl %v is negative", ttl)
	}
	secret, err := randomSecret()
	if err != nil {
		return "", persistence.Token{}, err
	}
	var expires *time.Time
	if ttl > 0 {
		t := time.Now().Add(ttl)
		expires = &t
	}
	tok, err = st.CreateToken(ctx, userID, hashSecret(secret), expires)
	if err != nil {
		return "", persistence.Token{}, err
	}
	return strconv.FormatInt(tok.ID, 10) + "|" + secret, tok, nil
}

func randomSecret() (string, error) {
	// Rejection sampling keeps every character equally likely.
	out := make([]byte, 0, secretLen)
	buf := make([]byte, 64)
	for len(out) < secretLen {
		if _, err := rand.Read(buf); err != nil {
			return "", fmt.Errorf("token secret: %w", err)
		}
		for _, b := range buf {
			if int(b) < 256-256%len(secretAlphabet) && len(out) < secretLen {
				out = append(out, secretAlphabet[int(b)%len(secretAlphabet)])
			}
		}
	}
	return string(out), nil
}

func hashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// parseToken splits "{id}|{secret}".
func parseToken(plain string) (id int64, secret string, ok bool) {
	idText, secret, found := strings.Cut(plain, "|")
	if !found || secret == "" {
		return 0, "", false
	}
	id, err := strconv.ParseInt(idText, 10, 64)
	if err != nil || id <= 0 {
		return 0, "", false
	}
	return id, secret, true
}

// touchEvery bounds last_used_at writes to one a minute per token.
const touchEvery = time.Minute

// authenticate checks the bearer token and loads its user: 401 for a
// missing, unknown, wrong or expired token, 503 when the database is down.
func (s *Service) authenticate(c *gin.Context) {
	h := c.GetHeader("Authorization")
	scheme, plain, _ := strings.Cut(h, " ")
	if !strings.EqualFold(scheme, "Bearer") {
		access.Reason(c, "no bearer token")
		abortMessage(c, http.StatusUnauthorized, msgUnauthenticated)
		return
	}
	id, secret, ok := parseToken(strings.TrimSpace(plain))
	if !ok {
		access.Reason(c, "malformed token")
		abortMessage(c, http.StatusUnauthorized, msgUnauthenticated)
		return
	}
	ctx := c.Request.Context()
	now := time.Now()
	e, cached, gen := s.auth.get(id, now)
	if !cached {
		var problem string
		if e, problem = s.lookupToken(c, id); problem != "" {
			if problem != "unavailable" {
				access.Reason(c, problem)
				abortMessage(c, http.StatusUnauthorized, msgUnauthenticated)
			}
			return
		}
		e.at = now
		s.auth.put(e, gen)
	}
	tok, u := e.tok, e.user
	if subtle.ConstantTimeCompare([]byte(hashSecret(secret)), []byte(tok.SecretHash)) != 1 ||
		(tok.ExpiresAt != nil && !now.Before(*tok.ExpiresAt)) {
		access.Reason(c, "wrong or expired token")
		abortMessage(c, http.StatusUnauthorized, msgUnauthenticated)
		return
	}
	if tok.LastUsedAt == nil || now.Sub(*tok.LastUsedAt) >= touchEvery {
		// Best effort: a failed touch must not fail the request.
		if err := s.st.TouchToken(ctx, tok.ID, now); err != nil && !errors.Is(err, persistence.ErrNotFound) {
			s.log.Warn("chat: touch token", "token_id", tok.ID, "error", err)
		}
		s.auth.touched(tok.ID, now)
	}
	c.Set(ctxUser, u)
	c.Set(ctxToken, tok)
	access.SetUser(c, u.ID)
}

// lookupToken reads a token and its user from the database. problem is
// why the token is refused, "unavailable" when 503 was answered, or "".
func (s *Service) lookupToken(c *gin.Context, id int64) (authEntry, string) {
	ctx := c.Request.Context()
	tok, err := s.st.TokenByID(ctx, id)
	if errors.Is(err, persistence.ErrNotFound) {
		return authEntry{}, "unknown or revoked token"
	}
	if err != nil {
		s.unavailable(c, err)
		return authEntry{}, "unavailable"
	}
	u, err := s.st.UserByID(ctx, tok.UserID)
	if errors.Is(err, persistence.ErrNotFound) {
		return authEntry{}, "the token's user is gone"
	}
	if err != nil {
		s.unavailable(c, err)
		return authEntry{}, "unavailable"
	}
	return authEntry{tok: tok, user: u}, ""
}

// dummyHash is compared against when the email is unknown, so that a login
// takes as long whether or not the account exists.
var dummyHash = sync.OnceValue(func() string {
	h, _ := bcrypt.GenerateFromPassword([]byte("parley-no-such-user"), BcryptCost)
	return string(h)
})

const msgBadCredentials = "These credentials do not match our records."

// login is POST /api/auth/login {email, password} → {token, user}. The
// throttle is consulted before the database and bcrypt, and bcrypt runs in
// one of a few slots, so guessing costs the server little.
func (s *Service) login(c *gin.Context) {
	in, ok := readInput(c)
	if !ok {
		return
	}
	var v validation
	email := in.requiredString(&v, "email")
	password := in.requiredString(&v, "password")
	if v.failed() {
		v.render(c)
		return
	}
	ip := clientKey(c.Request, s.proxies)
	attempt, retry, ok := s.logins.begin(emailKey(email, ip), ip, time.Now())
	if !ok {
		access.AuthFailure(c, "login throttled: too many failed attempts", "email", wsconn.Truncate(email, 100))
		lockedOut(c, retry)
		return
	}
	ctx := c.Request.Context()
	u, err := s.st.UserByEmail(ctx, email)
	// A user without a password (made by the admin API for tokens only)
	// fails like an unknown email, after the same bcrypt work.
	known := err == nil && u.PasswordHash != ""
	if err != nil && !errors.Is(err, persistence.ErrNotFound) {
		s.logins.refund(attempt)
		s.unavailable(c, err)
		return
	}
	hash := dummyHash
	if known {
		hash = func() string { return u.PasswordHash }
	}
	match, err := s.checkPassword(ctx, hash, password)
	if err != nil {
		s.logins.refund(attempt)
		s.hashBusy(c)
		return
	}
	if !known || !match {
		reason := "login failed: wrong password"
		if !known {
			reason = "login failed: unknown email"
		}
		access.AuthFailure(c, reason, "email", wsconn.Truncate(email, 100))
		s.logins.failed(attempt)
		v.add("email", msgBadCredentials)
		v.render(c)
		return
	}
	s.logins.succeeded(attempt)
	plain, tok, err := IssueToken(ctx, s.st, u.ID, LoginTokenTTL)
	if err != nil {
		s.unavailable(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{
		"token":      plain,
		"token_type": "Bearer",
		"expires_at": timePtrJSON(tok.ExpiresAt),
		"user":       newUserJSON(u),
	})
}

// logout is POST /api/auth/logout: the token used stops working (on this
// node at once, on the others within authCacheTTL).
func (s *Service) logout(c *gin.Context) {
	err := s.st.DeleteToken(c.Request.Context(), tokenOf(c).ID)
	s.auth.forgetToken(tokenOf(c).ID)
	if err != nil && !errors.Is(err, persistence.ErrNotFound) {
		s.unavailable(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"message": "Logged out."})
}

// currentUser is GET /api/user: the user object itself, as Laravel's default
// route returns it.
func (s *Service) currentUser(c *gin.Context) {
	c.JSON(http.StatusOK, newUserJSON(userOf(c)))
}
