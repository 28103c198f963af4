#!/usr/bin/env bash
# Scale-out, measured: the highest fan-out rate one Parley node holds, and
# then three, each node in a cgroup of its own with the same CPU quota, so
# that three nodes have three times one node's CPU.
#
#   sudo bash deploy/bench/scale-out.sh
#
# For each node count in NODES (default "1 3"), SWEEPS times: start the
# nodes (each `parley serve --chat=false` with an embedded data dir in a
# temp folder, started inside cgroup parley-scale-node$i of the cgroup v1
# cpu controller with cpu.cfs_period_us=PERIOD and cpu.cfs_quota_us=QUOTA;
# three nodes form a cluster with static peers; one node runs alone), wait
# until every node answers /up 200 and hears every member, then step the
# delivery rate up through STEPS: each step one bounded `parley bench
# fanout` run of SUBS subscribers spread over the nodes, on CHANNELS
# channels, DURATION long, every event published through the nodes' HTTP
# APIs in turn (--publish-all-nodes). A step holds when the run completed,
# every scheduled event was published, nothing was lost or duplicated, and
# p99 <= P99_LIMIT ms. The sweep ends at the first step that does not
# hold (after TRIES tries if other processes disturbed it); the rate the
# sweep held is the step below. The summary shows each sweep's held rate,
# the median per node count and the ratio of three nodes' to one node's.
#
# The bench itself runs in this script's cgroup, outside the quotas.
#
# Environment (all optional)
#   PARLEY_BIN  parley binary, also used as the bench (default: built from this checkout)
#   WORK        scratch folder: binaries, data dirs, logs (default: a new /tmp/parley-scale.*)
#   OUT         where the reports go (default: WORK/results)
#   NODES       node counts (default "1 3")
#   QUOTA       cpu.cfs_quota_us of each node (default 25000: 25 % of a core)
#   PERIOD      cpu.cfs_period_us (default 100000)
#   SUBS        subscriber sockets, spread over the nodes (default 1000)
#   CHANNELS    channels; event k goes to channel k mod CHANNELS, so each event
#               reaches SUBS/CHANNELS sockets (default 10)
#   STEPS       deliveries/s tried, in increasing order; the event rate of a step
#               is deliveries/s × CHANNELS / SUBS (default 5000 to 120000)
#   DURATION    publishing time per step (default 15s)
#   PAYLOAD     event data bytes (default 200)
#   P99_LIMIT   p99 latency (ms) a step must stay at or under (default 250)
#   SWEEPS      sweeps per node count (default 3)
#   MAX_OTHER_CPU  a failed step during which other processes used more than
#               this % of one core in some 2-second window is tried again (default 40)
#   TRIES       tries at most of such a step (default 3)
#   QUIET_WAIT  before each try, wait up to this many seconds for the other
#               processes to use at most MAX_OTHER_CPU % of a core (default 120)
#   PLOT        set to 0 to skip the SVG (default: draw OUT/scale-out.svg)
#
# Output in OUT: scale-<N>nodes-n<SUBS>-d<DELIVERIES>-<SWEEP>.json (the
# bench's report of each step; .txt its table, .other the other processes'
# CPU per 2 s window, .cgroup each node's cpu.stat throttling over the step),
# scale-out.csv (one row per step), scale-out-summary.json and scale-out.svg
# (p99 against deliveries/s per node count, drawn by deploy/bench/plot).
#
# Only loopback; every loop is bounded in count and time; the nodes and
# cgroups are removed on exit. Needs root (cgroups), curl, jq, ss, go.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=lib.sh
source "$REPO/deploy/bench/lib.sh"
WORK=${WORK:-$(mktemp -d /tmp/parley-scale.XXXXXX)}
OUT=${OUT:-$WORK/results}
NODES=${NODES:-1 3}
QUOTA=${QUOTA:-25000}
PERIOD=${PERIOD:-100000}
SUBS=${SUBS:-1000}
CHANNELS=${CHANNELS:-10}
STEPS=${STEPS:-5000 10000 15000 20000 25000 30000 35000 40000 45000 50000 55000 60000 65000 70000 75000 80000 90000 100000 110000 120000}
DURATION=${DURATION:-15s}
PAYLOAD=${PAYLOAD:-200}
P99_LIMIT=${P99_LIMIT:-250}
SWEEPS=${SWEEPS:-3}
MAX_OTHER_CPU=${MAX_OTHER_CPU:-40}
TRIES=${TRIES:-3}
QUIET_WAIT=${QUIET_WAIT:-120}
CG_ROOT=/sys/fs/cgroup/cpu

export PARLEY_APP_ID=app-1 PARLEY_APP_KEY=key-1 PARLEY_APP_SECRET=secret-1
mkdir -p "$WORK/logs" "$OUT"
for tool in curl jq ss; do command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 1; }; done
[[ -w $CG_ROOT/cgroup.procs ]] || { echo "needs root and the cgroup v1 cpu controller at $CG_ROOT" >&2; exit 1; }
if (($(ulimit -n) < SUBS + 1100)); then ulimit -n "$(ulimit -Hn)"; fi

log() { printf '== %s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

if [[ -z ${PARLEY_BIN:-} ]]; then
	PARLEY_BIN=$WORK/parley
	log "building parley from $REPO"
	(cd "$REPO" && go build -o "$PARLEY_BIN" ./cmd/parley)
	COMMIT=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
	if [[ -n $(git -C "$REPO" status --porcelain --untracked-files=no 2>/dev/null) ]]; then COMMIT="$COMMIT (work tree differs from it)"; fi
	echo "$COMMIT" >"$OUT/COMMIT"
fi
COMMIT=$(cat "$OUT/COMMIT" 2>/dev/null || echo "unknown: PARLEY_BIN=$PARLEY_BIN")

# ------------------------------------------------------------------ nodes

BENCH_PID=''
PIDS=() PORTS=() CGROUPS=() NODE_CGROUPS=() # CGROUPS: all made; NODE_CGROUPS: the running nodes'

# make_cgroup NAME: a cpu cgroup with the quota.
make_cgroup() {
	local g=$CG_ROOT/$1
	[[ -d $g ]] || mkdir "$g"
	echo "$PERIOD" >"$g/cpu.cfs_period_us"
	echo "$QUOTA" >"$g/cpu.cfs_quota_us"
	[[ " ${CGROUPS[*]} " == *" $g "* ]] || CGROUPS+=("$g")
	NODE_CGROUPS+=("$g")
}

# start_nodes N: N nodes, node i in cgroup parley-scale-node$i.
start_nodes() {
	local n=$1 i j peers cluster_ports=() data
	PIDS=() PORTS=() NODE_CGROUPS=()
	for ((i = 1; i <= n; i++)); do
		PORTS+=("$(free_port)")
		cluster_ports+=("$(free_port)")
	done
	for ((i = 1; i <= n; i++)); do
		make_cgroup "parley-scale-node$i"
		data=$(mktemp -d "$WORK/data.XXXXXX")
		local args=(serve --chat=false)
		if ((n > 1)); then
			peers=''
			for ((j = 1; j <= n; j++)); do
				((j == i)) || peers+="${peers:+,}127.0.0.1:${cluster_ports[j - 1]}"
			done
			args+=(--cluster-address "127.0.0.1:${cluster_ports[i - 1]}" --cluster-peers "$peers")
		fi
		# The shell puts itself in the cgroup, then becomes the node: the
		# node runs under the quota from its first instruction.
		PARLEY_HOST=127.0.0.1 PARLEY_PORT=${PORTS[i - 1]} PARLEY_DATA_DIR=$data \
			sh -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$CG_ROOT/parley-scale-node$i" "$PARLEY_BIN" "${args[@]}" \
			>"$WORK/logs/node$i-of$n-${PORTS[i - 1]}.log" 2>&1 &
		PIDS+=($!)
	done
	wait_nodes PIDS PORTS || { echo "see $WORK/logs" >&2; return 1; }
}

stop_nodes() {
	local p
	for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do
		for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	PIDS=()
	sleep 1 # let the sockets of the last run close
}

cleanup() {
	[[ -n $BENCH_PID ]] && kill -TERM "$BENCH_PID" 2>/dev/null || true
	stop_nodes
	local g
	for g in "${CGROUPS[@]}"; do
		[[ -d $g ]] && rmdir "$g" 2>/dev/null || true
	done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------ measurements

proc_ticks() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $12+$13}' || echo 0; }
machine_ticks() { awk '/^cpu /{print $2+$3+$4+$7+$8; exit}' /proc/stat; }
nodes_ticks() { local t=0 p; for p in "${PIDS[@]}"; do t=$((t + $(proc_ticks "$p"))); done; echo "$t"; }

# other_cpu BENCH: while BENCH runs, the CPU neither it nor the nodes used,
# per 2-second window, in % of one core (about 10 % is the kernel's own).
other_cpu() {
	local m0 s0 b0 m1 s1 b1
	m0=$(machine_ticks) s0=$(nodes_ticks) b0=$(proc_ticks "$1")
	while sleep 2; do
		m1=$(machine_ticks) s1=$(nodes_ticks) b1=$(proc_ticks "$1")
		kill -0 "$1" 2>/dev/null || break
		echo $(((m1 - m0 - (s1 - s0) - (b1 - b0)) / 2))
		m0=$m1 s0=$s1 b0=$b1
	done
}

# throttling: "nr_periods nr_throttled throttled_ns" summed over the running nodes' cgroups.
throttling() {
	local g p=0 t=0 ns=0 a b c
	for g in "${NODE_CGROUPS[@]}"; do
		read -r a b c < <(awk '/^nr_periods/{p=$2} /^nr_throttled/{t=$2} /^throttled_time/{n=$2} END{print p, t, n}' "$g/cpu.stat")
		p=$((p + a)) t=$((t + b)) ns=$((ns + c))
	done
	echo "$p $t $ns"
}

# wait_quiet: waits (QUIET_WAIT seconds at most) until the machine, less
# the idle nodes, has used at most MAX_OTHER_CPU % of a core for 2 seconds,
# so that a step does not start in the middle of someone's build.
wait_quiet() {
	local m0 s0 m1 s1 waited=0
	while ((waited < QUIET_WAIT)); do
		m0=$(machine_ticks) s0=$(nodes_ticks)
		sleep 2
		m1=$(machine_ticks) s1=$(nodes_ticks)
		(((m1 - m0 - (s1 - s0)) / 2 <= MAX_OTHER_CPU)) && return 0
		waited=$((waited + 2))
	done
	log "the machine stayed busy for ${QUIET_WAIT}s; measuring anyway"
}

# holds FILE: the step held (see the header).
holds() {
	jq -e --argjson limit "$P99_LIMIT" '.completed and .events_sent == .events_scheduled and .publish_errors == 0
		and .expected > 0 and .lost == 0 and .duplicates == 0 and .latency.p99_ms <= $limit' "$1" >/dev/null 2>&1
}

# step N SWEEP DELIVERIES: one bench run against the running nodes; returns
# whether it held.
step() {
	local n=$1 s=$2 d=$3 rate name ports pids try worst bench t0 t1
	rate=$(awk -v d="$d" -v c="$CHANNELS" -v n="$SUBS" 'BEGIN { printf "%g", d * c / n }')
	name="scale-${n}nodes-n$SUBS-d$d-$s"
	ports=$(IFS=,; echo "${PORTS[*]}")
	pids=$(IFS=,; echo "${PIDS[*]}")
	for try in $(seq "$TRIES"); do
		wait_quiet
		rm -f "$OUT/$name.json"
		t0=$(throttling)
		"$PARLEY_BIN" bench fanout --quiet --port "$ports" --publish-all-nodes --server-pid "$pids" \
			-n "$SUBS" --channels "$CHANNELS" --rate "$rate" --duration "$DURATION" --payload "$PAYLOAD" \
			--timeout 180s --json "$OUT/$name.json" >"$OUT/$name.txt" 2>&1 &
		bench=$! BENCH_PID=$!
		other_cpu "$bench" >"$OUT/$name.other"
		wait "$bench" || echo "bench $name exited $?" >>"$OUT/$name.txt"
		BENCH_PID=''
		t1=$(throttling)
		paste -d' ' <(tr ' ' '\n' <<<"$t0") <(tr ' ' '\n' <<<"$t1") | awk '{ printf "%s ", $2 - $1 } END { print "" }' |
			awk '{ printf "{\"nr_periods\": %d, \"nr_throttled\": %d, \"throttled_ms\": %.1f}\n", $1, $2, $3 / 1e6 }' >"$OUT/$name.cgroup"
		record "$n" "$s" "$d" "$rate" "$name" "$try"
		if holds "$OUT/$name.json"; then
			log "$n node(s), sweep $s: $d deliveries/s held (p99 $(jq -r .latency.p99_ms "$OUT/$name.json") ms)"
			return 0
		fi
		worst=$(sort -n "$OUT/$name.other" | tail -1)
		if ((${worst:-0} <= MAX_OTHER_CPU)); then break; fi
		log "$name failed while other processes used up to $worst% of a core (try $try of $TRIES)"
		cp "$OUT/$name.json" "$OUT/$name.disturbed-$try.json" 2>/dev/null || true
		sleep 2
	done
	log "$n node(s), sweep $s: $d deliveries/s not held ($(why "$OUT/$name.json"))"
	return 1
}

# why FILE: what failed in a step.
why() {
	jq -r --argjson limit "$P99_LIMIT" '[
		(if .completed then empty else "did not complete" end),
		(if .events_sent < .events_scheduled then "sent \(.events_sent) of \(.events_scheduled) events" else empty end),
		(if .publish_errors > 0 then "\(.publish_errors) publish errors" else empty end),
		(if .lost > 0 then "lost \(.lost)" else empty end),
		(if .duplicates > 0 then "\(.duplicates) duplicates" else empty end),
		(if .latency.p99_ms > $limit then "p99 \(.latency.p99_ms) ms" else empty end)] | join(", ")' "$1" 2>/dev/null || echo "no report"
}

CSV=$OUT/scale-out.csv
# record N SWEEP DELIVERIES RATE NAME TRY: one CSV row per try.
record() {
	local f=$OUT/$5.json held=no
	[[ -s $CSV ]] || echo "nodes,sweep,try,nominal_deliveries_per_s,events_per_s,deliveries_per_s,p50_ms,p99_ms,max_ms,lost,duplicates,publish_errors,events_sent,events_scheduled,server_cpu_us_per_delivery,bench_cpu_percent,throttled_periods,periods,throttled_ms,other_cpu_max_percent,held" >"$CSV"
	holds "$f" && held=yes
	if [[ -s $f ]]; then
		printf '%s,%s,%s,%s,%s,%s,%s,%s,%s\n' "$1" "$2" "$6" "$3" "$4" \
			"$(jq -r '[.deliveries_per_second, .latency.p50_ms, .latency.p99_ms, .latency.max_ms, .lost, .duplicates, .publish_errors,
				.events_sent, .events_scheduled, (.server.cpu_us_per_delivery // ""), .bench.cpu_percent_of_one_core] | @csv' "$f")" \
			"$(jq -r '[.nr_throttled, .nr_periods, .throttled_ms] | @csv' "$OUT/$5.cgroup")" \
			"$(sort -n "$OUT/$5.other" | tail -1)" "$held" >>"$CSV"
	else
		printf '%s,%s,%s,%s,%s,,,,,,,,,,,,,,,%s,%s\n' "$1" "$2" "$6" "$3" "$4" "$(sort -n "$OUT/$5.other" | tail -1)" "$held" >>"$CSV"
	fi
}

# ------------------------------------------------------------------ sweeps

declare -A HELD # "N SWEEP" → deliveries/s held (0: none)
log "commit $COMMIT; quota $QUOTA/$PERIOD µs per node; $SUBS subscribers on $CHANNELS channels; $DURATION per step; p99 <= $P99_LIMIT ms"
for s in $(seq "$SWEEPS"); do
	for n in $NODES; do
		log "$n node(s), sweep $s of $SWEEPS: starting the nodes"
		start_nodes "$n"
		log "$n node(s) up on ports ${PORTS[*]}, pids ${PIDS[*]}"
		HELD["$n $s"]=0
		for d in $STEPS; do
			step "$n" "$s" "$d" || break
			HELD["$n $s"]=$d
			sleep 2
		done
		stop_nodes
	done
done

# ----------------------------------------------------------------- summary

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)]; else print 0 }'; }
{
	echo "scale-out — commit $COMMIT; each node cpu.cfs_quota_us=$QUOTA of cpu.cfs_period_us=$PERIOD;"
	echo "$SUBS subscribers spread over the nodes, $CHANNELS channels, $PAYLOAD B, $DURATION per step,"
	echo "events published through every node in turn; held: completed, nothing lost or duplicated, p99 <= $P99_LIMIT ms"
	printf 'nodes\tdeliveries/s held per sweep\tmedian\n'
	declare -A MED
	for n in $NODES; do
		runs=() for_median=''
		for s in $(seq "$SWEEPS"); do runs+=("${HELD["$n $s"]}"); for_median+="${HELD["$n $s"]}"$'\n'; done
		MED[$n]=$(printf '%s' "$for_median" | median)
		printf '%s\t%s\t%s\n' "$n" "$(IFS=,; echo "${runs[*]}")" "${MED[$n]}"
	done
	set -- $NODES
	if (($# >= 2)) && ((${MED[$1]} > 0)); then
		first=$1 last=${*: -1}
		printf 'ratio %s nodes / %s node: %s\n' "$last" "$first" "$(awk -v a="${MED[$last]}" -v b="${MED[$first]}" 'BEGIN { printf "%.2f", a / b }')"
	fi
} | tee "$OUT/scale-out.txt"
jq -n --arg commit "$COMMIT" --argjson quota "$QUOTA" --argjson period "$PERIOD" --argjson subs "$SUBS" \
	--argjson channels "$CHANNELS" --arg duration "$DURATION" --argjson p99 "$P99_LIMIT" --argjson payload "$PAYLOAD" \
	--arg held "$(for k in "${!HELD[@]}"; do echo "$k ${HELD[$k]}"; done)" '
	($held | split("\n") | map(select(length > 0) | split(" ") | map(tonumber))) as $rows |
	{commit: $commit, cfs_quota_us: $quota, cfs_period_us: $period, subscribers: $subs, channels: $channels,
	 payload_bytes: $payload, step_duration: $duration, p99_limit_ms: $p99,
	 held: ($rows | group_by(.[0]) | map({nodes: .[0][0], sweeps: (sort_by(.[1]) | map(.[2])),
		median: (map(.[2]) | sort | .[(length - 1) / 2 | floor])}))}' >"$OUT/scale-out-summary.json"

if [[ ${PLOT:-1} != 0 ]]; then
	(cd "$REPO" && go build -o "$WORK/plot" ./deploy/bench/plot)
	mapfile -t files < <(ls "$OUT"/scale-*nodes-n*-d*-[0-9]*.json 2>/dev/null | grep -v disturbed || true)
	if ((${#files[@]})); then
		"$WORK/plot" -scale "$OUT/scale-out.svg" -p99-limit "$P99_LIMIT" "${files[@]}"
		log "figure: $OUT/scale-out.svg"
	fi
fi
log "reports in $OUT"
