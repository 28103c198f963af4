package main

import "testing"

// TestRaceReports: a race inside a dependency counts as the dependency's
// even when Parley's code called into it further down the stack; one whose
// access is in Parley's code is ours.
func TestRaceReports(t *testing.T) {
	dep := `WARNING: DATA RACE
Read at 0x00c0002f6780 by goroutine 67327:
  runtime.mapaccess2_faststr()
      /usr/local/go/src/internal/runtime/maps/runtime_faststr.go:161 +0x0
  github.com/asynkron/gofun/set.(*ImmutableSet[go.shape.string]).Contains()
      /root/go/pkg/mod/github.com/asynkron/gofun/set/immutable_set.go:42 +0x149
  github.com/asynkron/protoactor-go/remote.(*BlockList).IsBlocked()
      /root/go/pkg/mod/github.com/asynkron/protoactor-go/remote/blocklist.go:44 +0xb4

Previous write at 0x00c0002f6780 by goroutine 67251:
  runtime.mapassign_faststr()
      /usr/local/go/src/internal/runtime/maps/runtime_faststr.go:263 +0x0
  golang.org/x/exp/maps.Clone[go.shape.map[go.shape.string]bool,go.shape.string,go.shape.bool]()
      /root/go/pkg/mod/golang.org/x/exp/maps/maps.go:72 +0x2a5
  github.com/asynkron/protoactor-go/cluster.(*MemberList).UpdateClusterTopology()
      /root/go/pkg/mod/github.com/asynkron/protoactor-go/cluster/member_list.go:144 +0x27e
  github.com/parley-chat/parley/actors.(*nodeActor).publish()
      /work/main/actors/cluster.go:697 +0x11b2

Goroutine 67327 (running) created at:
  github.com/parley-chat/parley/actors.(*nodeActor).probe.func1()
      /work/main/actors/cluster.go:785 +0x1a7
==================
`
	ours := `WARNING: DATA RACE
Write at 0x00c000123 by goroutine 7:
  github.com/parley-chat/parley/actors.(*Node).setServing()
      /work/main/actors/node.go:100 +0x1

Previous read at 0x00c000123 by goroutine 8:
  runtime.mapaccess1()
      /usr/local/go/src/runtime/map.go:1 +0x1
  github.com/parley-chat/parley/actors.(*hooks).apply()
      /work/main/actors/hooks.go:200 +0x1
==================
`
	o, d := raceReports(dep + ours)
	if len(o) != 1 || len(d) != 1 {
		t.Fatalf("ours %q, deps %q; want one of each", o, d)
	}
}
