package protoactor

import (
	"errors"
	"math"
	"net"
	"strconv"
	"time"

	"github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/cluster/identitylookup/disthash"
	"github.com/asynkron/protoactor-go/remote"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
)

// The connection to a peer: a dead one is found by keepalive pings within
// KeepaliveTime+KeepaliveTimeout, and a connect to an unreachable address
// gives up after ConnectTimeout, so that a new attempt soon follows when a
// partition heals.
const (
	KeepaliveTime    = 2 * time.Second
	KeepaliveTimeout = 2 * time.Second
	ConnectTimeout   = 2 * time.Second
)

// ClusterConfig is protoactor's cluster configuration for a Parley node at
// host:port:
//   - membership comes from Parley (MemberList.UpdateClusterTopology, called
//     by Parley's membership through the member list of the returned
//     cluster); the provider does nothing;
//   - gossip's heartbeat expiry is off: it would block for good a member
//     whose heartbeat it missed for 20 s (a partition), and a blocked id is
//     never listed again (TestMemberListNeverListsARemovedIDAgain);
//   - a dead peer is given up after one connect attempt (MaxRetryCount 1),
//     connects time out after ConnectTimeout, keepalives find dead
//     connections;
//   - a batch of up to 200 messages travels in one gRPC message, and may be
//     large (events are up to 1 MB with a raised max_event_size): gRPC's
//     4 MiB default drops bigger batches silently.
func ClusterConfig(name, host string, port int, kinds ...*cluster.Kind) *cluster.Config {
	rc := remote.Configure(host, port,
		remote.WithServerOptions(grpc.MaxRecvMsgSize(64<<20),
			grpc.KeepaliveParams(keepalive.ServerParameters{Time: KeepaliveTime, Timeout: KeepaliveTimeout}),
			grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: KeepaliveTime / 2, PermitWithoutStream: true})),
		remote.WithDialOptions(grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20)),
			grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: KeepaliveTime, Timeout: KeepaliveTimeout, PermitWithoutStream: true}),
			grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.DefaultConfig, MinConnectTimeout: ConnectTimeout})),
		remote.WithEndpointWriterBatchSize(200))
	rc.MaxRetryCount = 1
	cc := cluster.Configure(name, memberListFeed{}, disthash.New(), rc,
		cluster.WithKinds(kinds...),
		cluster.WithRequestTimeout(time.Second),
		cluster.WithHeartbeatExpiration(math.MaxInt64))
	cc.GossipInterval = time.Hour // nothing of Parley's uses gossip
	return cc
}

// Member is a member for the member list.
func Member(id, address string, kinds []string) *cluster.Member {
	host, port, _ := net.SplitHostPort(address)
	p, _ := strconv.Atoi(port)
	return &cluster.Member{Id: id, Host: host, Port: int32(p), Kinds: kinds}
}

// memberListFeed is the cluster provider protoactor is given: Parley's
// membership tells protoactor's member list who the members are, so the
// grains' placement follows what Parley decided.
type memberListFeed struct{}

func (memberListFeed) StartMember(*cluster.Cluster) error { return nil }
func (memberListFeed) StartClient(*cluster.Cluster) error {
	return errors.New("parley nodes are members")
}
func (memberListFeed) Shutdown(bool) error { return nil }
