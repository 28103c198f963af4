#!/usr/bin/env bash
# Compares Parley with soketi 1.6.1 and with the floor server
# (deploy/bench/floor: the least work a Pusher server can do) on this
# machine, with `parley bench`.
#
#   bash deploy/bench/run-comparison.sh [SECTION...]
#
# SECTIONS (default: all but curve and presence, in this order)
#   fanout       budget line 1: 1000 subscribers, 1 channel, 20 events/s, 20 s
#   rates        1000 subscribers, 1 channel, at each of RATES events/s (x1000 deliveries/s), 15 s
#   sweep        budget line 2: highest deliveries/s with p99 <= 50 ms and no loss
#   connections  budget line 3: 10,000 idle subscribed sockets held 10 s
#                 (CONNECTIONS sets how many; each needs a descriptor on both sides)
#   connect      server CPU per connect + subscribe: CONNECTIONS sockets, each
#                joining a public and then a private channel (signed auth),
#                held 10 s; the servers take turns, RUNS rounds; the summary
#                shows the medians of server CPU per socket over the ramp (from
#                /proc) and RSS per idle socket, and each server's ratio to soketi
#   curve        fan-out on one channel over a grid of CURVE_SUBS subscribers x
#                CURVE_RATES deliveries/s, 10 s each; draws OUT/curve-latency.svg
#                and OUT/curve-cpu.svg (p99 and server CPU per delivery against
#                deliveries/s; failed points marked) with deploy/bench/plot
#   presence     PRESENCE_MEMBERS sockets join one presence channel (Parley and
#                soketi: the floor has no presence), limits raised to fit
#   chat         budget line 4 (Parley only): REST send -> socket, embedded DB and PostgreSQL
#   wsconn       go test -bench ./wsconn/
#   syscall      cost of one 200-byte write(2) on a TCP loopback pair (the floor of µs/delivery)
#   summary      alone: only print the summary of the reports already in OUT
#
# Environment (all optional)
#   PARLEY_BIN    parley binary to test, also used as the bench (default: built from this checkout)
#   PARLEY_BASE_BIN  connect section only: a second parley binary (say, built
#                 from an older commit), measured as server "base" in the same
#                 rounds, for a before/after in one run
#   SOKETI_DIR    folder holding node_modules/@soketi/soketi (default: installed
#                 from npm into WORK/soketi with the uWebSockets.js override)
#   WORK          scratch folder: binaries, data dirs, logs (default: a new /tmp/parley-bench.*)
#   OUT           where every --json report goes (default: WORK/results)
#   RUNS          runs per measured line (default 3); the summary shows the median run
#   SERVERS       "floor parley soketi" (default) or some of them (floor: fanout,
#                 rates, sweep and connections only)
#   RATES         events/s of the rates section (default "20 100 200")
#   SWEEP_RATES   events/s tried in the sweep (default "20 40 60 80 100 150 200")
#   SWEEP_SHAPES  "subscribers:channels ..." (default "1000:1 2000:2 2000:1")
#   SWEEP_RUNS    sweeps per server and shape (default 3)
#   CURVE_SUBS    subscriber counts of the curve (default "100 1000 10000 50000")
#   CURVE_RATES   deliveries/s of the curve (default "1000 10000 100000 300000");
#                 a point whose event rate (deliveries/s / subscribers) would be
#                 below 1/s or above 5000/s is skipped, and so is one that needs
#                 more open files than the limit allows
#   CURVE_DURATION  publishing time per curve point (default 10s)
#   CURVE_QUICK   set: a smoke test of the curve, one run of a tiny grid
#                 (subscribers "100 1000", deliveries/s "1000 20000", 3 s)
#   PRESENCE_MEMBERS  members of the presence runs (default "100 1000")
#   MAX_OTHER_CPU  a run during which other processes used more than this % of
#                 one core in some 2-second window is run again (default 25)
#   TRIES         runs at most per measurement when others disturb it (default 5)
#   RESUME        set: keep the undisturbed reports already in OUT instead of redoing them
#   CHAT_DATABASE_URL  PostgreSQL for the second chat run
#                 (default postgres://postgres@127.0.0.1:5432/test?sslmode=disable; "" skips it)
#
# Every server listens on 127.0.0.1 and every load targets it; every run is
# bounded (the bench's own deadline, and `timeout` around it). The bench and
# the server share the machine: the summary shows the bench's CPU, and runs
# that other processes disturbed (a build, a test suite) are repeated.
# Needs: go, node + npm (for soketi), curl, jq. Not part of the test suite.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
WORK=${WORK:-$(mktemp -d /tmp/parley-bench.XXXXXX)}
OUT=${OUT:-$WORK/results}
RUNS=${RUNS:-3}
SERVERS=${SERVERS:-floor parley soketi}
RATES=${RATES:-20 100 200}
SWEEP_RATES=${SWEEP_RATES:-20 40 60 80 100 150 200}
SWEEP_SHAPES=${SWEEP_SHAPES:-1000:1 2000:2 2000:1}
SWEEP_RUNS=${SWEEP_RUNS:-3}
if [[ -n ${CURVE_QUICK:-} ]]; then
	CURVE_SUBS=${CURVE_SUBS:-100 1000} CURVE_RATES=${CURVE_RATES:-1000 20000}
	CURVE_DURATION=${CURVE_DURATION:-3s} CURVE_RUNS=1
fi
CURVE_SUBS=${CURVE_SUBS:-100 1000 10000 50000}
CURVE_RATES=${CURVE_RATES:-1000 10000 100000 300000}
CURVE_DURATION=${CURVE_DURATION:-10s}
CURVE_RUNS=${CURVE_RUNS:-$RUNS}
PRESENCE_MEMBERS=${PRESENCE_MEMBERS:-100 1000}
MAX_OTHER_CPU=${MAX_OTHER_CPU:-25}
TRIES=${TRIES:-5}
CHAT_DATABASE_URL=${CHAT_DATABASE_URL-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}
SECTIONS=${*:-fanout rates sweep connections connect chat wsconn syscall}
CONNECTIONS=${CONNECTIONS:-10000}

export PARLEY_APP_ID=app-1 PARLEY_APP_KEY=key-1 PARLEY_APP_SECRET=secret-1
mkdir -p "$WORK/logs" "$OUT"
# Each socket is a descriptor, on both sides; the curve's 50,000 sockets need
# more than most hard limits, which root may raise.
if [[ $(ulimit -Hn) != unlimited ]] && (($(ulimit -Hn) < 200000)); then ulimit -Hn 200000 2>/dev/null || true; fi
ulimit -n "$(ulimit -Hn)"
for tool in curl jq; do command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 1; }; done

log() { printf '== %s\n' "$*" >&2; }

# ---------------------------------------------------------------- binaries

if [[ -z ${PARLEY_BIN:-} ]]; then
	PARLEY_BIN=$WORK/parley
	log "building parley from $REPO"
	(cd "$REPO" && go build -o "$PARLEY_BIN" ./cmd/parley)
	COMMIT=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
	if [[ -n $(git -C "$REPO" status --porcelain 2>/dev/null) ]]; then COMMIT="$COMMIT (work tree differs from it)"; fi
	echo "$COMMIT" >"$OUT/COMMIT"
fi
# With PARLEY_BIN given, OUT/COMMIT is whatever the caller wrote there.
COMMIT=$(cat "$OUT/COMMIT" 2>/dev/null || echo "unknown: PARLEY_BIN=$PARLEY_BIN")

need_soketi() {
	SOKETI_DIR=${SOKETI_DIR:-$WORK/soketi}
	[[ -f $SOKETI_DIR/node_modules/@soketi/soketi/bin/server.js ]] && return
	log "installing soketi 1.6.1 into $SOKETI_DIR"
	mkdir -p "$SOKETI_DIR"
	# soketi pins a uWebSockets.js that is fetched from GitHub, not npm:
	# the override swaps in a build of the same API published on npm.
	cat >"$SOKETI_DIR/package.json" <<'EOF'
{"dependencies":{"@soketi/soketi":"1.6.1"},"overrides":{"uWebSockets.js":"npm:@trufflesuite/uws-js-unofficial@20.30.0-unofficial.0"}}
EOF
	(cd "$SOKETI_DIR" && timeout 600 npm install --no-audit --no-fund >"$WORK/logs/npm-install.log" 2>&1)
}

# ----------------------------------------------------------------- servers

PORT=${PORT_BASE:-7100} # a new port per server start
SERVER_PID='' DATA_DIR=''

wait_ready() { # URL
	for _ in $(seq 100); do
		curl -fs -o /dev/null "$1" && return 0
		kill -0 "$SERVER_PID" 2>/dev/null || { echo "server died; see $WORK/logs" >&2; return 1; }
		sleep 0.1
	done
	echo "server not ready at $1" >&2
	return 1
}

# start_parley [VAR=value...]: a fresh Parley with its own data dir.
start_parley() {
	PORT=$((PORT + 1))
	DATA_DIR=$(mktemp -d "$WORK/data.XXXXXX")
	env "$@" PARLEY_HOST=127.0.0.1 PARLEY_PORT=$PORT PARLEY_DATA_DIR="$DATA_DIR" \
		"$PARLEY_BIN" serve >"$WORK/logs/parley-$PORT.log" 2>&1 &
	SERVER_PID=$!
	wait_ready "http://127.0.0.1:$PORT/up"
}

# start_floor: the floor reference server, built from this checkout.
start_floor() {
	if [[ ! -x $WORK/floor ]]; then
		(cd "$REPO" && go build -o "$WORK/floor" ./deploy/bench/floor)
	fi
	PORT=$((PORT + 1))
	"$WORK/floor" --addr "127.0.0.1:$PORT" >"$WORK/logs/floor-$PORT.log" 2>&1 &
	SERVER_PID=$!
	wait_ready "http://127.0.0.1:$PORT/up"
}

# start_soketi [VAR=value...]: node itself is the serving process (no npx
# wrapper), with every per-app limit off.
start_soketi() {
	need_soketi
	PORT=$((PORT + 1))
	env "$@" SOKETI_HOST=127.0.0.1 SOKETI_PORT=$PORT SOKETI_METRICS_ENABLED=false \
	SOKETI_DEFAULT_APP_ID=app-1 SOKETI_DEFAULT_APP_KEY=key-1 SOKETI_DEFAULT_APP_SECRET=secret-1 \
	SOKETI_DEFAULT_APP_MAX_CONNS=-1 SOKETI_DEFAULT_APP_MAX_BACKEND_EVENTS_PER_SEC=-1 \
	SOKETI_DEFAULT_APP_MAX_CLIENT_EVENTS_PER_SEC=-1 SOKETI_DEFAULT_APP_MAX_READ_REQ_PER_SEC=-1 \
		node "$SOKETI_DIR/node_modules/@soketi/soketi/bin/server.js" start >"$WORK/logs/soketi-$PORT.log" 2>&1 &
	SERVER_PID=$!
	wait_ready "http://127.0.0.1:$PORT/ready"
}

# start_base: Parley from PARLEY_BASE_BIN (the connect section's "base").
start_base() { local PARLEY_BIN=$PARLEY_BASE_BIN; start_parley; }

# The chat runs: Parley without its API rate limit, on either database. The
# bench's admin commands inherit DATABASE_URL.
start_chat_embedded() { unset DATABASE_URL; start_parley PARLEY_API_RATE_LIMIT=0; }
start_chat_postgres() { export DATABASE_URL=$CHAT_DATABASE_URL; start_parley PARLEY_API_RATE_LIMIT=0; }

# The presence runs: the member limit (100 by default on both) raised to
# the largest run's. soketi 1.6.1 reads no per-app limit from the
# environment (no SOKETI_DEFAULT_APP_MAX_PRESENCE_MEMBERS_PER_CHANNEL in its
# dist/cli/cli.js); its default app takes the server-wide one.
presence_limit() { printf '%s\n' $PRESENCE_MEMBERS | sort -n | tail -1; }
start_parley_presence() { start_parley PARLEY_MAX_PRESENCE_MEMBERS="$(presence_limit)"; }
start_soketi_presence() { start_soketi SOKETI_PRESENCE_MAX_MEMBERS="$(presence_limit)"; }

stop_server() {
	[[ -n $SERVER_PID ]] || return 0
	kill -TERM "$SERVER_PID" 2>/dev/null || true
	for _ in $(seq 150); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$SERVER_PID" 2>/dev/null || true
	wait "$SERVER_PID" 2>/dev/null || true
	SERVER_PID=''
	sleep 1 # let the sockets of the last run close
}
trap stop_server EXIT

# ------------------------------------------------------------ measurements

# proc_ticks PID: CPU ticks (1/100 s) used so far by PID and the children
# it waited for (the chat scenario's admin commands); 0 once it is gone.
proc_ticks() {
	sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $12+$13+$14+$15}' || echo 0
}

# machine_ticks: CPU ticks used so far by the whole machine (user, nice,
# system, irq, softirq).
machine_ticks() { awk '/^cpu /{print $2+$3+$4+$7+$8; exit}' /proc/stat; }

# other_cpu SERVER BENCH: while BENCH runs, prints the CPU that neither it
# nor SERVER used, per 2-second window, in % of one core. About 10 % is the
# kernel's own work; more is another process (a build, a test suite).
other_cpu() {
	local m0 s0 b0 m1 s1 b1
	m0=$(machine_ticks) s0=$(proc_ticks "$1") b0=$(proc_ticks "$2")
	while sleep 2; do
		m1=$(machine_ticks) s1=$(proc_ticks "$1") b1=$(proc_ticks "$2")
		kill -0 "$2" 2>/dev/null || break # the window in which it ended is not counted
		echo $(((m1 - m0 - (s1 - s0) - (b1 - b0)) / 2))
		m0=$m1 s0=$s1 b0=$b1
	done
}

# wait_quiet: waits (5 minutes at most) until the machine has been nearly
# idle for 2 seconds, so that a run does not start in the middle of a build.
wait_quiet() {
	local m0 m1
	for _ in $(seq 150); do
		m0=$(machine_ticks)
		sleep 2
		m1=$(machine_ticks)
		(((m1 - m0) / 2 <= MAX_OTHER_CPU)) && return 0
	done
	log "the machine stayed busy; measuring anyway"
}

# undisturbed NAME: run NAME has a report and other processes stayed under
# MAX_OTHER_CPU all along.
undisturbed() {
	[[ -s $OUT/$1.json && -f $OUT/$1.other ]] || return 1
	local worst
	worst=$(sort -n "$OUT/$1.other" | tail -1)
	((${worst:-0} <= MAX_OTHER_CPU))
}

# measure NAME START SCENARIO [flags...]: runs START (a fresh server), one
# bounded bench run against it, and stops the server. The report goes to
# OUT/NAME.json (table in NAME.txt, other processes' CPU in NAME.other). A
# run that other processes disturbed is repeated, up to TRIES times. The
# flag value @DATA_DIR@ is replaced by the server's data dir.
measure() {
	local name=$1 start=$2; shift 2
	local try worst
	if [[ -n ${RESUME:-} ]] && undisturbed "$name"; then return 0; fi
	for try in $(seq "$TRIES"); do
		wait_quiet
		"$start"
		rm -f "$OUT/$name.json" # a failed run must not leave an older report behind
		local args=("${@//@DATA_DIR@/$DATA_DIR}")
		timeout 900 "$PARLEY_BIN" bench "${args[@]}" --quiet --port "$PORT" --server-pid "$SERVER_PID" \
			--json "$OUT/$name.json" >"$OUT/$name.txt" 2>&1 &
		local wrapper=$! bench_pid=''
		for _ in $(seq 100); do # the bench is timeout's child
			bench_pid=$(pgrep -P "$wrapper") && break
			sleep 0.01
		done
		other_cpu "$SERVER_PID" "${bench_pid:-$wrapper}" >"$OUT/$name.other"
		wait "$wrapper" || echo "bench $name exited $?" >&2
		stop_server
		undisturbed "$name" && return 0
		worst=$(sort -n "$OUT/$name.other" | tail -1)
		log "$name: other processes used up to $worst% of a core (try $try of $TRIES); running it again"
		cp "$OUT/$name.json" "$OUT/$name.disturbed-$try.json" 2>/dev/null || true
	done
	log "$name: disturbed on every try; kept the last"
}

# ---------------------------------------------------------------- sections

fanout_section() {
	log "line 1: fanout -n 1000 --channels 1 --rate 20 --duration 20s --payload 200"
	for srv in $SERVERS; do
		for r in $(seq "$RUNS"); do
			measure "fanout-$srv-$r" "start_$srv" fanout -n 1000 --channels 1 --rate 20 --duration 20s --payload 200
		done
	done
}

rates_section() {
	log "rates: fanout -n 1000 --channels 1 --payload 200 --duration 15s at $RATES events/s"
	for srv in $SERVERS; do
		for rate in $RATES; do
			for r in $(seq "$RUNS"); do
				measure "rate-$srv-r$rate-$r" "start_$srv" fanout -n 1000 --channels 1 --rate "$rate" --payload 200 --duration 15s
			done
		done
	done
}

# passes FILE: completed, every event published, nothing lost, p99 <= 50 ms.
passes() {
	jq -e '.completed and .events_sent == .events_scheduled and .publish_errors == 0
		and .lost == 0 and .expected > 0 and .latency.p99_ms <= 50' "$1" >/dev/null 2>&1
}

sweep_section() {
	log "line 2: sweep fanout --payload 200 --duration 15s at rates $SWEEP_RATES"
	for srv in $SERVERS; do
		for shape in $SWEEP_SHAPES; do
			local n=${shape%:*} c=${shape#*:}
			for s in $(seq "$SWEEP_RUNS"); do
				for rate in $SWEEP_RATES; do
					local name="sweep-$srv-n$n-c$c-s$s-r$rate"
					measure "$name" "start_$srv" fanout -n "$n" --channels "$c" --rate "$rate" --payload 200 --duration 15s
					passes "$OUT/$name.json" || break # the first failing rate ends this sweep
				done
			done
		done
	done
}

connections_section() {
	log "line 3: connections -n $CONNECTIONS --hold 10s"
	for srv in $SERVERS; do
		for r in $(seq "$RUNS"); do
			measure "connections-$srv-$r" "start_$srv" connections -n "$CONNECTIONS" --hold 10s
		done
	done
}

# connect_servers: the connect section's servers, "base" last when given.
connect_servers() { echo $SERVERS ${PARLEY_BASE_BIN:+base}; }

connect_section() {
	log "connect: connections -n $CONNECTIONS --private --hold 10s, servers in turn, $RUNS rounds"
	local r srv
	for r in $(seq "$RUNS"); do
		for srv in $(connect_servers); do
			measure "connect-$srv-$r" "start_$srv" connections -n "$CONNECTIONS" --private --hold 10s
		done
	done
}

# curve_points: the curve's grid points, "SERVER SUBSCRIBERS DELIVERIES
# EVENTS/S" per line, without the skipped ones; with "skip", the skipped
# ones and why, on stderr.
curve_points() {
	local srv n d rate files
	files=$(ulimit -n)
	for srv in $SERVERS; do
		for n in $CURVE_SUBS; do
			for d in $CURVE_RATES; do
				rate=$(awk -v d="$d" -v n="$n" 'BEGIN { printf "%g", d / n }')
				if awk -v r="$rate" 'BEGIN { exit !(r < 1 || r > 5000) }'; then
					[[ ${1:-} == skip ]] && log "curve: $srv $n subscribers at $d deliveries/s skipped: $rate events/s is outside 1-5000"
					continue
				fi
				# The bench needs a descriptor per socket plus 256; Parley
				# takes sockets up to its open-files limit less 1,024.
				if ((n + 1100 > files)); then
					[[ ${1:-} == skip ]] && log "curve: $srv $n subscribers skipped: needs ulimit -n >= $((n + 1100)) (it is $files)"
					continue
				fi
				echo "$srv $n $d $rate"
			done
		done
	done
}

curve_section() {
	log "curve: fanout --channels 1 --payload 200 --duration $CURVE_DURATION over subscribers $CURVE_SUBS x deliveries/s $CURVE_RATES, $CURVE_RUNS runs each"
	local srv n d rate r
	curve_points skip >/dev/null
	while read -r srv n d rate; do
		for r in $(seq "$CURVE_RUNS"); do
			# The bench's own deadline allows 2 ms per socket to connect
			# (100 s for 50,000) on top of the publishing and the drain.
			measure "curve-$srv-n$n-d$d-$r" "start_$srv" fanout -n "$n" --channels 1 --rate "$rate" \
				--payload 200 --duration "$CURVE_DURATION" </dev/null
		done
	done < <(curve_points)
	curve_plot -latency "$OUT/curve-latency.svg" -cpu "$OUT/curve-cpu.svg"
	log "curve: figures in $OUT/curve-latency.svg and $OUT/curve-cpu.svg"
}

# curve_medians: the median run (by p99) of each grid point that was run.
# A point none of whose runs left a report is named by its first run's
# report, which plot shows as failed.
curve_medians() {
	local srv n d rate m
	while read -r srv n d rate; do
		[[ -f $OUT/curve-$srv-n$n-d$d-1.txt ]] || continue # not run
		m=$(median "$OUT"/curve-"$srv"-n"$n"-d"$d"-[0-9].json)
		echo "${m:-$OUT/curve-$srv-n$n-d$d-1.json}"
	done < <(curve_points)
}

# curve_plot FLAGS...: deploy/bench/plot over the median runs.
curve_plot() {
	if [[ ! -x $WORK/plot ]]; then
		(cd "$REPO" && go build -o "$WORK/plot" ./deploy/bench/plot)
	fi
	local files
	mapfile -t files < <(curve_medians)
	((${#files[@]})) || { echo "no curve reports in $OUT"; return 0; }
	"$WORK/plot" "$@" "${files[@]}"
}

presence_section() {
	log "presence: presence --members $PRESENCE_MEMBERS (Parley and soketi, member limit $(presence_limit))"
	local srv m r
	for srv in $SERVERS; do
		if [[ $srv == floor ]]; then
			log "presence: the floor has no presence channels; skipped"
			continue
		fi
		for m in $PRESENCE_MEMBERS; do
			for r in $(seq "$RUNS"); do
				measure "presence-$srv-m$m-$r" "start_${srv}_presence" presence --members "$m"
			done
		done
	done
}

chat_section() {
	log "line 4: chat (Parley only)"
	start_parley
	local code
	code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "127.0.0.1:$PORT/api/auth/login" \
		-H 'Content-Type: application/json' -d '{}')
	stop_server
	if [[ $code != 422 ]]; then
		echo "chat API not served (POST /api/auth/login answered $code): chat skipped" | tee "$OUT/chat-skipped.txt" >&2
		return 0
	fi
	local dbs=(embedded)
	[[ -n $CHAT_DATABASE_URL ]] && dbs+=(postgres)
	for db in "${dbs[@]}"; do
		# PostgreSQL's own processes count as "other" CPU: do not retry for them.
		local max_other=$MAX_OTHER_CPU
		[[ $db == postgres ]] && max_other=10000
		MAX_OTHER_CPU=$max_other measure "chat-$db" "start_chat_$db" chat --rate 200 --matters 10 --members 5 \
			--duration 20s --parley-bin "$PARLEY_BIN" --data-dir @DATA_DIR@
	done
	unset DATABASE_URL
}

wsconn_section() {
	log "go test -bench ./wsconn/"
	(cd "$REPO" && timeout 600 go test -run '^$' -bench . -benchmem ./wsconn/) | tee "$OUT/wsconn-bench.txt"
}

# The cost of one 200-byte write(2) to a TCP loopback socket whose peer
# drains it: what a server pays at least once per delivery (one frame to one
# socket) on this kernel and VM.
syscall_section() {
	log "write(2) cost on a loopback pair"
	local dir=$WORK/writecost
	mkdir -p "$dir"
	cat >"$dir/main.go" <<'EOF'
package main

import (
	"fmt"
	"io"
	"net"
	"runtime"
	"syscall"
	"time"
)

func main() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go func() {
		c, _ := ln.Accept()
		io.Copy(io.Discard, c)
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		panic(err)
	}
	raw, _ := c.(*net.TCPConn).SyscallConn()
	buf := make([]byte, 200)
	const n = 100000
	runtime.LockOSThread()
	for round := 1; round <= 3; round++ {
		var t0, t1 syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_THREAD, &t0)
		start := time.Now()
		raw.Write(func(fd uintptr) bool {
			for i := 0; i < n; i++ {
				for {
					if _, err := syscall.Write(int(fd), buf); err != syscall.EAGAIN {
						break
					}
				}
			}
			return true
		})
		wall := time.Since(start)
		syscall.Getrusage(syscall.RUSAGE_THREAD, &t1)
		cpu := t1.Utime.Nano() + t1.Stime.Nano() - t0.Utime.Nano() - t0.Stime.Nano()
		fmt.Printf("round %d: %d writes of 200 B: %.2f µs/write wall, %.2f µs/write CPU of the writing thread\n",
			round, n, float64(wall.Nanoseconds())/1e3/n, float64(cpu)/1e3/n)
	}
	start := time.Now()
	for i := 0; i < 1000000; i++ {
		syscall.Getppid()
	}
	fmt.Printf("getppid (an empty syscall): %.2f µs/call\n", float64(time.Since(start).Nanoseconds())/1e3/1e6)
}
EOF
	printf 'module writecost\n\ngo 1.22\n' >"$dir/go.mod"
	(cd "$dir" && go build -o writecost . && ./writecost) | tee "$OUT/syscall.txt"
}

# ----------------------------------------------------------------- summary

# median FILE...: the median run of FILEs by MEDIAN_KEY (default p99 latency).
median() {
	local key=${MEDIAN_KEY:-.latency.p99_ms}
	for f in "$@"; do [[ -s $f ]] && printf '%s\t%s\n' "$(jq -r "$key // 1e9" "$f")" "$f"; done |
		sort -g | awk '{ l[NR] = $2 } END { if (NR) print l[int((NR + 1) / 2)] }'
}

# worst_other FILE.json: the most CPU other processes used in a 2-s window of that run.
worst_other() { sort -n "${1%.json}.other" 2>/dev/null | tail -1; }

# fanout_row FILE: one summary line of a fanout report.
fanout_row() {
	printf '%s\t%s\n' "$(jq -r '[(.subscribers|tostring) + "/" + (.channels|tostring), .rate_per_second,
		.deliveries_per_second, .lost, .publish_errors, .latency.p50_ms, .latency.p99_ms, .latency.max_ms,
		(.server.cpu_us_per_delivery // "-"), .bench.cpu_percent_of_one_core] | @tsv' "$1")" "$(worst_other "$1")"
}
FANOUT_HEADER=$'server\tsubs/ch\tev/s\tdeliv/s\tlost\tpub_err\tp50ms\tp99ms\tmaxms\tsrv_us/deliv\tbench_cpu%\tother_cpu%'

summary() {
	log "summary (commit $COMMIT; reports in $OUT)"
	if ls "$OUT"/fanout-*-[0-9].json >/dev/null 2>&1; then
		echo "line 1 — fanout 1000 subs, 1 channel, 20 ev/s (budget: 0 lost, p99 <= 5 ms); median run by p99"
		echo "$FANOUT_HEADER"
		for srv in $SERVERS; do
			local m; m=$(median "$OUT"/fanout-"$srv"-[0-9].json)
			[[ -n $m ]] && printf '%s\t%s\n' "$srv" "$(fanout_row "$m")"
			printf '%s\tp99 of every run: %s\n' "$srv" "$(jq -s -r 'map(.latency.p99_ms) | sort | map(tostring) | join(", ")' "$OUT"/fanout-"$srv"-[0-9].json)"
		done
	fi
	if ls "$OUT"/rate-*.json >/dev/null 2>&1; then
		echo
		echo "rates — fanout 1000 subs, 1 channel, 200 B; median run by p99 of each server and rate"
		echo "$FANOUT_HEADER"
		for rate in $RATES; do
			for srv in $SERVERS; do
				local m; m=$(median "$OUT"/rate-"$srv"-r"$rate"-[0-9].json)
				[[ -n $m ]] && printf '%s\t%s\n' "$srv" "$(fanout_row "$m")"
				ls "$OUT"/rate-"$srv"-r"$rate"-[0-9].json >/dev/null 2>&1 &&
					printf '%s\tp99 of every run: %s; µs/delivery: %s\n' "$srv" \
						"$(jq -s -r 'map(.latency.p99_ms) | sort | map(tostring) | join(", ")' "$OUT"/rate-"$srv"-r"$rate"-[0-9].json)" \
						"$(jq -s -r 'map(.server.cpu_us_per_delivery // "-") | map(tostring) | join(", ")' "$OUT"/rate-"$srv"-r"$rate"-[0-9].json)"
			done
		done
	fi
	if ls "$OUT"/sweep-*-r[0-9]*[0-9].json >/dev/null 2>&1; then
		echo
		echo "line 2 — sweep: highest passing rate of each sweep (budget: >= 100,000 deliveries/s, <= 4 µs/delivery)"
		echo "$FANOUT_HEADER"
		for srv in $SERVERS; do
			for shape in $SWEEP_SHAPES; do
				local n=${shape%:*} c=${shape#*:} s
				for s in $(seq "$SWEEP_RUNS"); do
					local best='' rate
					for rate in $SWEEP_RATES; do
						local f="$OUT/sweep-$srv-n$n-c$c-s$s-r$rate.json"
						passes "$f" || break
						best=$f
					done
					if [[ -n $best ]]; then
						printf '%s\t%s\n' "$srv" "$(fanout_row "$best")"
					elif [[ -f $OUT/sweep-$srv-n$n-c$c-s$s-r${SWEEP_RATES%% *}.json ]]; then
						printf '%s\t%s/%s sweep %s: no passing rate\n' "$srv" "$n" "$c" "$s"
					fi
				done
			done
		done
	fi
	if ls "$OUT"/connections-*-[0-9].json >/dev/null 2>&1; then
		echo
		echo "line 3 — connections $CONNECTIONS held 10 s (budget: <= 6 KB RSS/connection, >= 10,000 connects/s)"
		printf 'server\tconnected\tconnects/s\tRSS_B/conn\tsubscribe_p99ms\tsrv_us/conn\tbench_cpu%%\tother_cpu%%\n'
		for srv in $SERVERS; do
			for f in "$OUT"/connections-"$srv"-[0-9].json; do
				printf '%s\t%s\t%s\n' "$srv" "$(jq -r '[.connected, .connect_rate_per_second, .server.rss_per_connection_bytes,
					.subscribe_latency.p99_ms, .server.cpu_us_per_connection, .bench.cpu_percent_of_one_core] | @tsv' "$f")" "$(worst_other "$f")"
			done
		done
	fi
	ls "$OUT"/connect-*-[0-9].json >/dev/null 2>&1 && connect_summary
	if ls "$OUT"/curve-*-[0-9].txt >/dev/null 2>&1; then
		echo
		echo "curve — fanout, 1 channel, 200 B, $CURVE_DURATION per point; median run by p99 (FAILED: lost deliveries,"
		echo "an event not published, under 90 % of the nominal deliveries/s, or no finished run)"
		curve_plot -table
		[[ -f $OUT/curve-latency.svg ]] && echo "figures: $OUT/curve-latency.svg, $OUT/curve-cpu.svg"
	fi
	if ls "$OUT"/presence-*-[0-9].json >/dev/null 2>&1; then
		echo
		echo "presence — N sockets join one presence channel; median run by time to consistency"
		printf 'server\tmembers\tjoined\tconsistent\tconsistency_s\tafter_last_join_ms\tmember_added_p99ms\tmember_added_maxms\tother_cpu%%\n'
		for srv in $SERVERS; do
			for m in $PRESENCE_MEMBERS; do
				ls "$OUT"/presence-"$srv"-m"$m"-[0-9].json >/dev/null 2>&1 || continue
				local pm
				pm=$(MEDIAN_KEY='if .consistent then .consistency_seconds else null end' median "$OUT"/presence-"$srv"-m"$m"-[0-9].json)
				printf '%s\t%s\t%s\n' "$srv" "$(jq -r '[.members, .joined, .consistent, .consistency_seconds, .lag_after_last_join_ms,
					.member_added_latency.p99_ms, .member_added_latency.max_ms] | @tsv' "$pm")" "$(worst_other "$pm")"
				printf '%s\tconsistency (s) of every run: %s\n' "$srv" \
					"$(jq -s -r 'map(if .consistent then .consistency_seconds else "never" end) | map(tostring) | join(", ")' "$OUT"/presence-"$srv"-m"$m"-[0-9].json)"
			done
		done
	fi
	for f in "$OUT"/chat-embedded.json "$OUT"/chat-postgres.json; do
		[[ -f $f ]] || continue
		echo
		echo "line 4 — $(basename "$f" .json) (budget: p99 <= 20 ms, 0 missing from history)"
		jq -r '"acked \(.messages_acked)/\(.messages_scheduled)  send_errors \(.send_errors)  delivered \(.delivered)/\(.expected)  lost \(.lost)  p50 \(.latency.p50_ms) ms  p99 \(.latency.p99_ms) ms  max \(.latency.max_ms) ms  send p99 \(.send_request_latency.p99_ms) ms  history missing \(.history_missing) of \(.history_checked)  server \(.server.cpu_us_per_delivery) µs/delivery"' "$f"
	done
	if [[ -f $OUT/chat-skipped.txt ]]; then echo; cat "$OUT/chat-skipped.txt"; fi
	return 0
}

# runs_of KEY FILE...: KEY of every FILE, ", "-joined in file order.
runs_of() { local key=$1; shift; jq -s -r "map($key // \"-\" | tostring) | join(\", \")" "$@"; }

# median_of KEY FILE...: the median of KEY over FILEs.
median_of() {
	local key=$1; shift
	jq -s -r "map($key // empty) | sort | if length == 0 then \"-\" else .[(length - 1) / 2 | floor] end" "$@"
}

connect_summary() {
	echo
	echo "connect — $CONNECTIONS sockets, each subscribing to a public and a private channel (signed), held 10 s;"
	echo "server CPU (utime+stime from /proc) over the connect ramp ÷ sockets connected, RSS per idle socket; medians of the runs"
	local ref='' srv files
	if ls "$OUT"/connect-soketi-[0-9].json >/dev/null 2>&1; then
		ref=$(median_of .server.cpu_us_per_connection "$OUT"/connect-soketi-[0-9].json)
	fi
	printf 'server\tconnected\tsrv_us/conn\t÷soketi\tRSS_B/socket\tbench_cpu%%\tother_cpu%%\tsrv_us/conn of every run\tRSS of every run\n'
	for srv in $(connect_servers); do
		files=("$OUT"/connect-"$srv"-[0-9].json)
		[[ -s ${files[0]} ]] || continue
		local us ratio worst=0 f w
		us=$(median_of .server.cpu_us_per_connection "${files[@]}")
		ratio=$(awk -v a="$us" -v b="${ref:-}" 'BEGIN { if (b + 0 > 0 && a + 0 > 0) printf "%.2f", a / b; else printf "-" }')
		for f in "${files[@]}"; do w=$(worst_other "$f"); ((${w:-0} > worst)) && worst=${w:-0}; done
		printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$srv" "$(median_of .connected "${files[@]}")" "$us" "$ratio" \
			"$(median_of .server.rss_per_connection_bytes "${files[@]}")" "$(median_of .bench.cpu_percent_of_one_core "${files[@]}")" "$worst" \
			"$(runs_of .server.cpu_us_per_connection "${files[@]}")" "$(runs_of .server.rss_per_connection_bytes "${files[@]}")"
	done
}

summary_section() { :; } # the summary is printed anyway

for section in $SECTIONS; do
	"${section}_section"
done
summary
