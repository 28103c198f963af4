package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// etcdTTL is the lease of a node's registration, in seconds: a node that
// cannot renew it for this long stops counting as a member, and stops
// serving itself (membership.go).
const etcdTTL = 5

// etcdRegistry registers this node in etcd under
// /parley/{cluster}/members/{member id}, on a lease it keeps alive, and
// watches the others' registrations from the revision it listed them at (so
// that none registering in between is missed). It tells the node actor the
// registered members (etcdMembersMsg) and whether it holds its lease
// (etcdLeaseMsg). Without etcd it keeps trying, once a second: the node does
// not serve meanwhile.
type etcdRegistry struct {
	endpoints []string
	prefix    string
	log       *slog.Logger

	mu      sync.Mutex
	self    memberInfo    // guarded by mu: what is to be registered
	changed chan struct{} // self changed
	ctx     context.Context
	cancel  context.CancelFunc
	done    chan struct{}
}

// etcdMembersMsg is every registered member, by address.
type etcdMembersMsg struct{ members map[string]memberInfo }

// etcdLeaseMsg says whether this node holds its lease.
type etcdLeaseMsg struct{ held bool }

// etcdEntry is a registration's value.
type etcdEntry struct {
	ID          string `json:"id"`
	Process     string `json:"process"`
	Incarnation uint64 `json:"incarnation"`
	Started     int64  `json:"started"`
	Address     string `json:"address"`
}

func newEtcdRegistry(endpoints []string, clusterName string, log *slog.Logger) *etcdRegistry {
	ctx, cancel := context.WithCancel(context.Background())
	return &etcdRegistry{endpoints: endpoints, prefix: "/parley/" + clusterName + "/members/", log: log,
		changed: make(chan struct{}, 1), ctx: ctx, cancel: cancel, done: make(chan struct{})}
}

// start registers self and keeps at it until close.
func (r *etcdRegistry) start(self memberInfo, root *actor.RootContext, pid *actor.PID) {
	r.mu.Lock()
	r.self = self
	r.mu.Unlock()
	go r.run(root, pid)
}

// update registers the node's new incarnation in place of the old one.
func (r *etcdRegistry) update(self memberInfo) {
	if r == nil {
		return
	}
	r.mu.Lock()
	r.self = self
	r.mu.Unlock()
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// close revokes the lease (the registration goes at once) and stops.
func (r *etcdRegistry) close() {
	r.cancel()
	select {
	case <-r.done:
	case <-time.After(3 * time.Second):
	}
}

func (r *etcdRegistry) run(root *actor.RootContext, pid *actor.PID) {
	defer close(r.done)
	for {
		err := r.session(root, pid)
		root.Send(pid, &etcdLeaseMsg{held: false})
		if r.ctx.Err() != nil {
			return
		}
		r.log.Warn("cluster: etcd registration lost; trying again", slog.Any("error", err), "endpoints", strings.Join(r.endpoints, ","))
		select {
		case <-r.ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// session is one lease: register, list, watch, until the lease or the watch
// is lost.
func (r *etcdRegistry) session(root *actor.RootContext, pid *actor.PID) error {
	cli, err := clientv3.New(clientv3.Config{Endpoints: r.endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return err
	}
	defer cli.Close()
	call := func() (context.Context, context.CancelFunc) { return context.WithTimeout(r.ctx, 5*time.Second) }
	ctx, cancel := call()
	lease, err := cli.Grant(ctx, etcdTTL)
	cancel()
	if err != nil {
		return fmt.Errorf("grant a lease: %w", err)
	}
	kaCtx, kaCancel := context.WithCancel(r.ctx)
	defer kaCancel()
	ka, err := cli.KeepAlive(kaCtx, lease.ID)
	if err != nil {
		return fmt.Errorf("keep the lease alive: %w", err)
	}
	registered := ""
	register := func() error {
		r.mu.Lock()
		self := r.self
		r.mu.Unlock()
		if self.ID == registered {
			return nil
		}
		v, _ := json.Marshal(etcdEntry{ID: self.ID, Process: self.Process, Incarnation: self.Incarnation, Started: self.Started, Address: self.Address})
		ctx, cancel := call()
		defer cancel()
		ops := []clientv3.Op{clientv3.OpPut(r.prefix+self.ID, string(v), clientv3.WithLease(lease.ID))}
		if registered != "" {
			ops = append(ops, clientv3.OpDelete(r.prefix+registered))
		}
		if _, err := cli.Txn(ctx).Then(ops...).Commit(); err != nil {
			return fmt.Errorf("register: %w", err)
		}
		registered = self.ID
		return nil
	}
	if err := register(); err != nil {
		return err
	}
	root.Send(pid, &etcdLeaseMsg{held: true})
	ctx, cancel = call()
	list, err := cli.Get(ctx, r.prefix, clientv3.WithPrefix())
	cancel()
	if err != nil {
		return fmt.Errorf("list the members: %w", err)
	}
	entries := map[string]etcdEntry{}
	for _, kv := range list.Kvs {
		var e etcdEntry
		if json.Unmarshal(kv.Value, &e) == nil {
			entries[string(kv.Key)] = e
		}
	}
	send := func() {
		byAddr := map[string]memberInfo{}
		for _, e := range entries {
			x := memberInfo{ID: e.ID, Process: e.Process, Incarnation: e.Incarnation, Started: e.Started, Address: e.Address}
			// An older registration at the same address (a dead process
			// whose lease has not expired yet) is not the member there.
			if o, ok := byAddr[x.Address]; !ok || o.Started < x.Started || (o.Started == x.Started && o.Incarnation < x.Incarnation) {
				byAddr[x.Address] = x
			}
		}
		root.Send(pid, &etcdMembersMsg{members: byAddr})
	}
	send()
	watch := cli.Watch(kaCtx, r.prefix, clientv3.WithPrefix(), clientv3.WithRev(list.Header.Revision+1))
	for {
		select {
		case <-r.ctx.Done():
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, _ = cli.Revoke(ctx, lease.ID)
			cancel()
			return nil
		case _, ok := <-ka:
			if !ok {
				return errors.New("the lease expired")
			}
		case w, ok := <-watch:
			if !ok {
				return errors.New("the watch ended")
			}
			if err := w.Err(); err != nil {
				return fmt.Errorf("watch: %w", err)
			}
			for _, ev := range w.Events {
				key := string(ev.Kv.Key)
				if ev.Type == clientv3.EventTypeDelete {
					delete(entries, key)
					continue
				}
				var e etcdEntry
				if json.Unmarshal(ev.Kv.Value, &e) == nil {
					entries[key] = e
				}
			}
			send()
		case <-r.changed:
			if err := register(); err != nil {
				return err
			}
		}
	}
}
