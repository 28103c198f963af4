package chat

import (
	"net/http"
	"testing"
	"time"
)

// TestAuthCache: a checked token is trusted without the database for the
// cache's time: revoked behind the server's back (another node, the admin
// command), it works until then and not after; revoked through this node
// (logout, the admin API), it stops at once.
func TestAuthCache(t *testing.T) {
	onEachDatabase(t, func(t *testing.T, db database) {
		e := start(t, db, nil)
		e.svc.auth.ttl = 300 * time.Millisecond
		ann := e.user("Ann")
		e.call("GET", "/api/user", ann.token, nil).want(t, http.StatusOK)

		// Behind the server's back: still trusted, then not.
		db.exec(t, "DELETE FROM tokens")
		e.call("GET", "/api/user", ann.token, nil).want(t, http.StatusOK)
		deadline := time.Now().Add(5 * time.Second)
		for e.call("GET", "/api/user", ann.token, nil).status != http.StatusUnauthorized {
			if time.Now().After(deadline) {
				t.Fatal("a token deleted from the database still works after the cache's time")
			}
			time.Sleep(50 * time.Millisecond)
		}

		// Logout on this node: at once, though the cache had it.
		e.svc.auth.ttl = time.Hour
		bob := e.user("Bob")
		e.call("GET", "/api/user", bob.token, nil).want(t, http.StatusOK)
		e.call("POST", "/api/auth/logout", bob.token, nil).want(t, http.StatusOK)
		e.call("GET", "/api/user", bob.token, nil).want(t, http.StatusUnauthorized)
	})
}

// TestAuthCacheForgetWins: a lookup that read the database before a
// revocation committed must not put the token back after it was forgotten.
func TestAuthCacheForgetWins(t *testing.T) {
	a := newAuthCache(time.Hour)
	now := time.Now()
	e := authEntry{at: now}
	e.tok.ID, e.user.ID = 7, 3

	_, ok, gen := a.get(7, now) // a request misses and reads the database
	if ok {
		t.Fatal("an empty cache had token 7")
	}
	a.forgetUser(3) // meanwhile the user's tokens are revoked
	a.put(e, gen)   // the request's read, from before the revocation
	if _, ok, _ := a.get(7, now); ok {
		t.Fatal("a token read before its revocation was cached after it")
	}

	_, _, gen = a.get(7, now)
	a.put(e, gen)
	if _, ok, _ := a.get(7, now); !ok {
		t.Fatal("a lookup with nothing forgotten meanwhile was not cached")
	}
	a.forgetToken(7)
	if _, ok, _ := a.get(7, now); ok {
		t.Fatal("a forgotten token is still cached")
	}
}
