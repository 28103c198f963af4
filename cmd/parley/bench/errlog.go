package bench

import (
	"fmt"
	"sort"
	"sync"
)

// errorLog counts errors by message and keeps a few distinct ones for the
// report: with thousands of sockets the same failure repeats thousands of
// times and only its count is news.
type errorLog struct {
	mu     sync.Mutex
	counts map[string]int // guarded by mu
}

const maxDistinctErrors = 20

func newErrorLog() *errorLog { return &errorLog{counts: map[string]int{}} }

func (l *errorLog) add(context string, err error) {
	if err == nil {
		return
	}
	msg := context + ": " + err.Error()
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.counts[msg]; ok || len(l.counts) < maxDistinctErrors {
		l.counts[msg]++
	} else {
		l.counts["(other errors)"]++
	}
}

// any returns the most frequent message, for a one-line summary.
func (l *errorLog) any() string {
	s := l.list()
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

// list returns "message (×count)" lines, most frequent first.
func (l *errorLog) list() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	type kv struct {
		msg string
		n   int
	}
	all := make([]kv, 0, len(l.counts))
	for m, n := range l.counts {
		all = append(all, kv{m, n})
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].n != all[j].n {
			return all[i].n > all[j].n
		}
		return all[i].msg < all[j].msg
	})
	out := make([]string, len(all))
	for i, e := range all {
		if e.n == 1 {
			out[i] = e.msg
		} else {
			out[i] = fmt.Sprintf("%s (×%d)", e.msg, e.n)
		}
	}
	return out
}
