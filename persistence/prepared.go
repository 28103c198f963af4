package persistence

import (
	"context"
	"errors"
	"sync"

	"github.com/jmoiron/sqlx"
)

// statements keeps the send path's statements prepared, by query text.
// Run as a plain query, a statement is parsed again every time, and
// PostgreSQL plans it again too: at 1,000 messages a second that was about a
// third of PostgreSQL's CPU (the group's insert took 270 µs to plan and
// 310 µs to run), and on the embedded database a seventh of the server's.
// Prepared, each connection parses a statement once. (PostgreSQL would
// still plan the group's statement on every run: see sendSession.) A
// transaction binds a statement with Tx.Stmtx, which reuses the one already
// prepared on its connection and prepares it there the first time; outside
// a transaction database/sql does the same for the connection it takes.
//
// A statement is prepared on first use (after Migrate, so it sees the
// schema it runs on) and kept until the store closes. Only fixed query
// texts belong here: one whose text varies with its arguments would fill
// the cache.
type statements struct {
	mu     sync.Mutex
	m      map[string]*sqlx.Stmt
	closed bool
}

// errStoreClosed is a statement asked for after Close.
var errStoreClosed = errors.New("persistence: store closed")

// prepared is each query, prepared on db once. Call it outside a
// transaction of db: preparing may need a connection of its own, and a
// transaction that waits for one while holding one can wait forever.
func (p *statements) prepared(ctx context.Context, db *sqlx.DB, queries ...string) ([]*sqlx.Stmt, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, errStoreClosed
	}
	out := make([]*sqlx.Stmt, len(queries))
	for i, q := range queries {
		st, ok := p.m[q]
		if !ok {
			var err error
			if st, err = db.PreparexContext(ctx, q); err != nil {
				return nil, err
			}
			if p.m == nil {
				p.m = map[string]*sqlx.Stmt{}
			}
			p.m[q] = st
		}
		out[i] = st
	}
	return out, nil
}

// close closes every statement; prepared refuses from then on.
func (p *statements) close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	var errs []error
	for _, st := range p.m {
		errs = append(errs, st.Close())
	}
	p.m = nil
	return errors.Join(errs...)
}
