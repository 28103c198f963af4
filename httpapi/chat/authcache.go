package chat

import (
	"sync"
	"time"

	"github.com/parley-chat/parley/persistence"
)

// authCacheTTL is how long a checked token and its user are trusted without
// asking the database again. It bounds revocation: a token revoked on this
// node (logout, the admin API) stops working here at once; one revoked on
// another node of a cluster, or behind the server's back, stops working
// here within authCacheTTL. A user's changed name shows within it too.
const authCacheTTL = 10 * time.Second

// authCacheMax bounds the cache; past it, it starts again empty.
const authCacheMax = 1 << 17

// authCache keeps recently checked tokens (by token id) with their users, so
// a client's requests cost no database query most of the time (the seed
// guide: "cache user data to reduce database queries").
type authCache struct {
	ttl time.Duration // set at construction

	mu  sync.Mutex
	m   map[int64]authEntry // guarded by mu
	gen uint64              // guarded by mu; moves on at every forget
}

type authEntry struct {
	tok  persistence.Token
	user persistence.User
	at   time.Time // when the database said so
}

func newAuthCache(ttl time.Duration) *authCache {
	return &authCache{ttl: ttl, m: map[int64]authEntry{}}
}

// get returns the token and user as the database said them within ttl;
// on a miss, gen is what put needs.
func (a *authCache) get(id int64, now time.Time) (e authEntry, ok bool, gen uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	e, ok = a.m[id]
	if !ok || now.Sub(e.at) >= a.ttl {
		return authEntry{}, false, a.gen
	}
	return e, true, a.gen
}

// put keeps what the database said unless something was forgotten since
// gen was read: that read may have seen the token or user before the
// revocation committed, and must not bring it back.
func (a *authCache) put(e authEntry, gen uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if gen != a.gen {
		return
	}
	if len(a.m) >= authCacheMax {
		clear(a.m)
	}
	a.m[e.tok.ID] = e
}

// touched records the token's new last_used_at.
func (a *authCache) touched(id int64, at time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if e, ok := a.m[id]; ok {
		e.tok.LastUsedAt = &at
		a.m[id] = e
	}
}

// forgetToken drops a revoked token; call it after the revocation committed.
func (a *authCache) forgetToken(id int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.gen++
	delete(a.m, id)
}

// forgetUser drops every token of a user (revoked, deleted or changed);
// call it after the change committed.
func (a *authCache) forgetUser(userID int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.gen++
	for id, e := range a.m {
		if e.user.ID == userID {
			delete(a.m, id)
		}
	}
}
