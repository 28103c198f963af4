#!/usr/bin/env bash
# Chat on one node against chat on three nodes sharing one PostgreSQL
# database, with `parley bench chat`: the REST -> WebSocket latency of
# MessageSent and the servers' CPU per message, summed over the nodes.
#
#   bash deploy/bench/cluster-chat.sh
#
# Each run gets a fresh database (created on DATABASE_ADMIN_URL, dropped
# afterwards) and fresh nodes. The bench creates MATTERS matters of MEMBERS
# users, connects a socket per user to node 1 and sends RATE messages a
# second through node 1's REST API for DURATION, no read cycles; with three
# nodes the users' unread counter grains are spread over the nodes by
# protoactor's placement, so most counter updates cross nodes, and the
# MessageSent frames reach the sockets from node 1. One-node and three-node
# runs alternate, RUNS rounds; the summary prints every run and the medians.
#
# Needs curl, jq, ss, psql and python3.
#
# Environment (all optional)
#   PARLEY_BIN         parley binary (default: built from this checkout)
#   DATABASE_ADMIN_URL PostgreSQL where the run databases are created
#                      (default postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable)
#   RATE MATTERS MEMBERS DURATION   (default 1000, 10, 5, 20s)
#   RUNS               rounds (default 3)
#   NODES              the set-ups to run (default "1 3")
#   WORK               scratch folder (default: a new /tmp/parley-cluster-chat.*)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
# shellcheck source=lib.sh
source "$here/lib.sh"
WORK="${WORK:-$(mktemp -d /tmp/parley-cluster-chat.XXXXXX)}"
mkdir -p "$WORK"
RATE="${RATE:-1000}" MATTERS="${MATTERS:-10}" MEMBERS="${MEMBERS:-5}" DURATION="${DURATION:-20s}"
RUNS="${RUNS:-3}" NODES="${NODES:-1 3}"
ADMIN_URL="${DATABASE_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}"

if [[ -z "${PARLEY_BIN:-}" ]]; then
  (cd "$root" && go build -o "$WORK/parley" ./cmd/parley)
  PARLEY_BIN="$WORK/parley"
fi
export PARLEY_APP_ID=app-1 PARLEY_APP_KEY=key-1 PARLEY_APP_SECRET=secret-1 PARLEY_HOST=127.0.0.1
export PARLEY_API_RATE_LIMIT=0

pids=()
dbs=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  for d in "${dbs[@]}"; do psql -q "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $d WITH (FORCE)" >/dev/null 2>&1 || true; done
}
trap cleanup EXIT

# run N ROUND: one measured run with N nodes; writes $WORK/chat-nN-rROUND.json.
run() {
  local n=$1 round=$2 db="parley_cluster_chat_$$_${1}_$2"
  psql -q "$ADMIN_URL" -c "CREATE DATABASE $db" >/dev/null
  dbs+=("$db")
  local url="${ADMIN_URL%/*}/$db?sslmode=disable"
  local http=() grpc=() started=() i
  for i in $(seq 1 "$n"); do http+=("$(free_port)"); grpc+=("$(free_port)"); done
  for i in $(seq 0 $((n - 1))); do
    local args=(serve --port "${http[$i]}")
    if ((n > 1)); then
      local peers=()
      for j in $(seq 0 $((n - 1))); do ((j == i)) || peers+=("127.0.0.1:${grpc[$j]}"); done
      args+=(--cluster-address "127.0.0.1:${grpc[$i]}" --cluster-peers "$(IFS=,; echo "${peers[*]}")")
    fi
    mkdir -p "$WORK/data-n$n-r$round-$i"
    DATABASE_URL="$url" PARLEY_DATA_DIR="$WORK/data-n$n-r$round-$i" \
      "$PARLEY_BIN" "${args[@]}" >"$WORK/node-n$n-r$round-$i.log" 2>&1 &
    pids+=($!)
    started+=($!)
  done
  # Every node serving and, in a cluster, hearing all the others.
  wait_nodes started http || { echo "see $WORK/node-n$n-r$round-*.log" >&2; return 1; }
  DATABASE_URL="$url" timeout 300 "$PARLEY_BIN" bench chat --quiet --port "${http[0]}" \
    --server-pid "$(IFS=,; echo "${started[*]}")" --rate "$RATE" --matters "$MATTERS" --members "$MEMBERS" \
    --duration "$DURATION" --read-rate 0 --data-dir "$WORK/data-n$n-r$round-0" --parley-bin "$PARLEY_BIN" \
    --json "$WORK/chat-n$n-r$round.json" >"$WORK/bench-n$n-r$round.txt" 2>&1 || {
      echo "bench with $n node(s), round $round failed:" >&2; tail -20 "$WORK/bench-n$n-r$round.txt" >&2; return 1; }
  for p in "${started[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${started[@]}"; do wait "$p" 2>/dev/null || true; done
  psql -q "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
}

for round in $(seq 1 "$RUNS"); do
  for n in $NODES; do
    echo "round $round: $n node(s), $RATE msg/s, $MATTERS matters x $MEMBERS members, $DURATION" >&2
    run "$n" "$round"
  done
done

python3 - "$WORK" "$RUNS" $NODES <<'EOF'
import json, statistics, sys
work, runs, nodes = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
print(f"{'nodes':>5} {'run':>3} {'acked':>6} {'lost':>5} {'p50 ms':>8} {'p99 ms':>8} {'server CPU s':>12} {'µs/msg':>7}")
med = {}
for n in nodes:
    p99s, cpus = [], []
    for k in range(1, runs + 1):
        with open(f"{work}/chat-n{n}-r{k}.json") as f:
            r = json.load(f)
        cpu = r["server"]["cpu_seconds_publish"]
        per = cpu / max(r["messages_acked"], 1) * 1e6
        p99s.append(r["latency"]["p99_ms"]); cpus.append(per)
        print(f"{n:>5} {k:>3} {r['messages_acked']:>6} {r['lost'] + r['history_missing']:>5} {r['latency']['p50_ms']:>8.2f} "
              f"{r['latency']['p99_ms']:>8.2f} {cpu:>12.2f} {per:>7.0f}")
    med[n] = (statistics.median(p99s), statistics.median(cpus))
for n in nodes:
    print(f"median, {n} node(s): p99 {med[n][0]:.2f} ms, server CPU per message {med[n][1]:.0f} µs")
if "1" in med and "3" in med:
    print(f"three nodes / one node: p99 {med['3'][0] / med['1'][0]:.2f}x, CPU per message {med['3'][1] / med['1'][1]:.2f}x")
EOF
echo "reports and logs: $WORK" >&2
