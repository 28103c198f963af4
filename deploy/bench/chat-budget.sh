#!/usr/bin/env bash
# Reproduces the chat budget table (docs/performance.md, "Chat budget") for
# the embedded database and PostgreSQL with `parley bench chat`.
#
#   bash deploy/bench/chat-budget.sh            # the full table: about 45 minutes on 2 cores
#   bash deploy/bench/chat-budget.sh --quick    # a smoke run of every line: about 3 minutes
#
# Lines, for each database (DATABASES), RUNS runs each, every run on a fresh
# server and a fresh database:
#   base   bench chat --rate 200 --matters 10 --members 5 --duration 20s:
#          REST→WS p99, send request p99, server CPU per sent message (5 members:
#          4 deliveries each) from --server-pid
#   sweep  the same at each of SWEEP_RATES (15 s): the highest rate whose median
#          run has REST→WS p99 <= 100 ms, nothing lost, every send acknowledged;
#          it stops at the first rate that fails
#   data   for each of SIZES messages: `bench seed-data --messages N` (1,000
#          matters, 10,000 users) into a fresh database, then bench chat on its
#          10 busiest matters at 200 msg/s with --read-rate 20: send p99 and the
#          p99 of GET /api/messages page 1, after_id, before_id, PUT
#          /api/matters/{id}/read and GET /api/messages/unread-count
# It prints medians with the range of the runs in brackets, as markdown rows,
# and keeps every --json report in OUT.
#
# Environment (all optional)
#   PARLEY_BIN    parley binary, server and bench (default: built from this checkout)
#   WORK          scratch folder (default: a new /tmp/parley-chat-budget.*)
#   OUT           where the reports go (default WORK/results)
#   DATABASES     "embedded postgres" (default) or one of them
#   DATABASE_URL  the PostgreSQL server to use; each run gets a schema of its
#                 own, dropped afterwards (default postgres://postgres@127.0.0.1:5432/test?sslmode=disable)
#   RUNS          runs per line (default 3; --quick 1)
#   SWEEP_RATES_EMBEDDED / SWEEP_RATES_POSTGRES  messages/s tried, ascending
#                 (default "1500 2000 2500 3000 4000" / "1000 1500 2000 2500 3000";
#                 --quick "1500 2500" / "1000 2000")
#   SIZES         messages of the seeded datasets (default "10000 100000 1000000"; --quick "10000")
#   LINES         which lines to run (default "base sweep data"), e.g. LINES=data SIZES=1000000
#   SENDERS       the bench's concurrent send requests (default 64: a busy team is many
#                 independent clients, and 16 bounds the sends to 16 / send latency)
#   PORT          the server's port (default 18090)
# Needs: go (unless PARLEY_BIN), curl, jq, psql (for PostgreSQL). Not part of the test suite.
set -euo pipefail

QUICK=
for a in "$@"; do
	case $a in
	--quick) QUICK=1 ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "unknown argument $a (see --help)" >&2; exit 2 ;;
	esac
done

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
WORK=${WORK:-$(mktemp -d /tmp/parley-chat-budget.XXXXXX)}
OUT=${OUT:-$WORK/results}
DATABASES=${DATABASES:-embedded postgres}
PG_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}
PORT=${PORT:-18090}
SENDERS=${SENDERS:-64}
LINES=${LINES:-base sweep data}
if [[ -n $QUICK ]]; then
	RUNS=${RUNS:-1}
	DURATION=5s SWEEP_DURATION=5s
	SWEEP_RATES_EMBEDDED=${SWEEP_RATES_EMBEDDED:-1500 2500}
	SWEEP_RATES_POSTGRES=${SWEEP_RATES_POSTGRES:-1000 2000}
	SIZES=${SIZES:-10000}
else
	RUNS=${RUNS:-3}
	DURATION=20s SWEEP_DURATION=15s
	SWEEP_RATES_EMBEDDED=${SWEEP_RATES_EMBEDDED:-1500 2000 2500 3000 4000}
	SWEEP_RATES_POSTGRES=${SWEEP_RATES_POSTGRES:-1000 1500 2000 2500 3000}
	SIZES=${SIZES:-10000 100000 1000000}
fi

export PARLEY_APP_ID=app-1 PARLEY_APP_KEY=key-1 PARLEY_APP_SECRET=secret-1 PARLEY_HOST=127.0.0.1
export PARLEY_API_RATE_LIMIT=0 # the bench's tokens send far more than 60 a minute
unset PARLEY_DATA_DIR
mkdir -p "$WORK/logs" "$OUT"
ulimit -n "$(ulimit -Hn)"
for tool in curl jq; do command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 1; }; done
[[ $DATABASES != *postgres* ]] || command -v psql >/dev/null || { echo "needs psql for PostgreSQL (or DATABASES=embedded)" >&2; exit 1; }

log() { printf '== %s\n' "$*" >&2; }

if [[ -z ${PARLEY_BIN:-} ]]; then
	PARLEY_BIN=$WORK/parley
	log "building parley from $REPO"
	(cd "$REPO" && go build -o "$PARLEY_BIN" ./cmd/parley)
	git -C "$REPO" rev-parse --short HEAD >"$OUT/COMMIT" 2>/dev/null || true
fi

# ------------------------------------------------------------ one database

SERVER_PID= SCHEMA= DB_ARGS=()

# fresh_db DB NAME: a new empty database; sets DB_ARGS (the flags that name it).
fresh_db() {
	local db=$1 name=$2
	if [[ $db == postgres ]]; then
		SCHEMA=parley_budget_${name//[^a-z0-9]/_}
		psql -q "$PG_URL" -c "SET client_min_messages = warning; DROP SCHEMA IF EXISTS $SCHEMA CASCADE; CREATE SCHEMA $SCHEMA;" >/dev/null
		local sep='?'
		[[ $PG_URL == *\?* ]] && sep='&'
		DB_ARGS=(--database-url "$PG_URL${sep}search_path=$SCHEMA")
	else
		SCHEMA=
		rm -rf "$WORK/data-$name"
		mkdir -p "$WORK/data-$name"
		DB_ARGS=(--data-dir "$WORK/data-$name")
	fi
}

drop_db() {
	if [[ -n $SCHEMA ]]; then psql -q "$PG_URL" -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE;" >/dev/null 2>&1 || true; fi
}

start_server() {
	local name=$1
	"$PARLEY_BIN" serve --port "$PORT" "${DB_ARGS[@]}" >"$WORK/logs/$name.server.log" 2>&1 &
	SERVER_PID=$!
	for _ in $(seq 200); do
		curl -sf "http://127.0.0.1:$PORT/up" >/dev/null && return 0
		kill -0 "$SERVER_PID" 2>/dev/null || break
		sleep 0.1
	done
	echo "the server did not come up; see $WORK/logs/$name.server.log" >&2
	exit 1
}

stop_server() {
	[[ -n $SERVER_PID ]] || return 0
	kill "$SERVER_PID" 2>/dev/null || true
	wait "$SERVER_PID" 2>/dev/null || true
	SERVER_PID=
}
trap 'stop_server; drop_db' EXIT

# bench NAME ARGS...: one bench chat run against the running server.
bench() {
	local name=$1
	shift
	timeout 15m "$PARLEY_BIN" bench chat --port "$PORT" --server-pid "$SERVER_PID" --senders "$SENDERS" \
		--json "$OUT/$name.json" "$@" >"$WORK/logs/$name.bench.txt" 2>&1 ||
		echo "bench $name failed; see $WORK/logs/$name.bench.txt" >&2
}

# run_fresh DB NAME ARGS...: fresh database, server, bench chat with admin-made users.
run_fresh() {
	local db=$1 name=$2
	shift 2
	fresh_db "$db" "$name"
	start_server "$name"
	bench "$name" "${DB_ARGS[@]}" --matters 10 --members 5 "$@"
	stop_server
	drop_db
}

# ------------------------------------------------------------ summaries

# stat JQ FILES...: "median (min–max)" of a number from each report.
stat() {
	local expr=$1
	shift
	local files=()
	for f in "$@"; do [[ -s $f ]] && files+=("$f"); done
	((${#files[@]})) || { echo "–"; return; }
	jq -s -r "[.[] | ($expr)] | sort | (.[(length-1)/2|floor]) as \$m | \"\(\$m*100|round/100) (\(.[0]*100|round/100)–\(.[-1]*100|round/100))\"" "${files[@]}"
}

# passes FILES...: the median run kept the schedule within budget.
passes() {
	local files=()
	for f in "$@"; do [[ -s $f ]] && files+=("$f"); done
	((${#files[@]})) || return 1
	jq -s -e '[.[] | (.latency.p99_ms <= 100 and .lost == 0 and .messages_acked == .messages_scheduled and .history_missing == 0)]
		| map(if . then 1 else 0 end) | add * 2 > length' "${files[@]}" >/dev/null
}

CPU_PER_MSG='if .server.cpu_seconds_publish and .messages_acked > 0 then .server.cpu_seconds_publish * 1e6 / .messages_acked else 0 end'
ROWS=()

# ------------------------------------------------------------ lines

# wants LINE: LINE is one of LINES.
wants() { [[ " $LINES " == *" $1 "* ]]; }

for db in $DATABASES; do
	# base
	if wants base; then
		files=()
		for run in $(seq "$RUNS"); do
			log "$db: 200 msg/s, run $run of $RUNS"
			run_fresh "$db" "$db-base-$run" --rate 200 --duration "$DURATION"
			files+=("$OUT/$db-base-$run.json")
		done
		ROWS+=("| $db | 200 msg/s, 10 × 5 | REST→WS p99 $(stat .latency.p99_ms "${files[@]}") ms; send p99 $(stat .send_request_latency.p99_ms "${files[@]}") ms; lost $(stat .lost "${files[@]}"); server CPU per sent message $(stat "$CPU_PER_MSG" "${files[@]}") µs |")
	fi

	# sweep
	if wants sweep; then
		rates=SWEEP_RATES_${db^^}
		best="none of ${!rates}"
		for rate in ${!rates}; do
			files=()
			for run in $(seq "$RUNS"); do
				log "$db: sweep at $rate msg/s, run $run of $RUNS"
				run_fresh "$db" "$db-sweep-$rate-$run" --rate "$rate" --duration "$SWEEP_DURATION"
				files+=("$OUT/$db-sweep-$rate-$run.json")
			done
			ROWS+=("| $db | sweep $rate msg/s | REST→WS p99 $(stat .latency.p99_ms "${files[@]}") ms; lost $(stat .lost "${files[@]}"); acknowledged $(stat .messages_acked "${files[@]}") of $(stat .messages_scheduled "${files[@]}") |")
			if passes "${files[@]}"; then best="$rate msg/s"; else break; fi
		done
		ROWS+=("| $db | highest rate with p99 ≤ 100 ms, 0 lost | **$best** |")
	fi

	# data
	wants data || continue
	for size in $SIZES; do
		name="$db-data-$size"
		fresh_db "$db" "$name"
		log "$db: seeding $size messages"
		seed_args=(--messages "$size" --bench-users "$WORK/$name-users.json" --quiet)
		[[ -z $QUICK ]] || seed_args+=(--matters 100 --users 1000)
		start=$(date +%s)
		timeout 30m "$PARLEY_BIN" bench seed-data "${DB_ARGS[@]}" "${seed_args[@]}" >"$WORK/logs/$name.seed.txt" 2>&1 ||
			{ echo "seeding failed; see $WORK/logs/$name.seed.txt" >&2; exit 1; }
		seeded=$(($(date +%s) - start))
		files=()
		for run in $(seq "$RUNS"); do
			log "$db: $size messages, run $run of $RUNS"
			start_server "$name-$run"
			bench "$name-$run" --users-file "$WORK/$name-users.json" --rate 200 --read-rate 20 --duration "$DURATION"
			stop_server
			files+=("$OUT/$name-$run.json")
		done
		drop_db
		e() { stat ".endpoint_latency.$1.p99_ms" "${files[@]}"; }
		ROWS+=("| $db | $size messages (seeded in ${seeded} s) | send p99 $(e send) ms; list p99: page 1 $(e list), after_id $(e list_after_id), before_id $(e list_before_id) ms; read p99 $(e read) ms; unread p99 $(e unread) ms; REST→WS p99 $(stat .latency.p99_ms "${files[@]}") ms |")
	done
done

{
	echo
	echo "Chat budget: $(cat "$OUT/COMMIT" 2>/dev/null || echo "$PARLEY_BIN"), $RUNS run(s) per line${QUICK:+ (--quick: a smoke run, not figures)}, $(nproc) cores, $(date -u +%FT%TZ)"
	echo
	echo "| database | line | median (range) |"
	echo "|---|---|---|"
	printf '%s\n' "${ROWS[@]}"
} | tee "$OUT/summary.md"
