# Helpers shared by the bench scripts that start their own nodes
# (scale-out.sh, cluster-chat.sh); source it. Needs curl, jq and ss.

# free_port: a random high port nothing listens on (20 tries at most).
free_port() {
	local p
	for _ in $(seq 20); do
		p=$((20000 + RANDOM % 40000))
		[[ -z $(ss -Htan "( sport = :$p )" 2>/dev/null) ]] && { echo "$p"; return 0; }
	done
	echo "no free port found" >&2
	return 1
}

# wait_nodes PIDS PORTS: the names of two arrays, the nodes' process ids and
# HTTP ports. Waits (60 s at most) until every node answers /up with 200
# and, when there are several, reports serving with all of them as members.
# Fails at once when a node died.
wait_nodes() {
	local -n pids_=$1 ports_=$2
	local n=${#ports_[@]} i body ok
	for _ in $(seq 120); do
		ok=1
		for ((i = 0; i < n; i++)); do
			kill -0 "${pids_[i]}" 2>/dev/null || { echo "node $((i + 1)) (pid ${pids_[i]}) died" >&2; return 1; }
			body=$(curl -fs --max-time 2 "http://127.0.0.1:${ports_[i]}/up") || { ok=0; break; }
			if ((n > 1)) && ! jq -e --argjson n "$n" '.cluster.serving and .cluster.members == $n' <<<"$body" >/dev/null; then
				ok=0
				break
			fi
		done
		((ok)) && return 0
		sleep 0.5
	done
	echo "the $n node(s) did not all serve within 60 s" >&2
	return 1
}
