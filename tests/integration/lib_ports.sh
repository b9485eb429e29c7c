# SPDX-License-Identifier: MIT
# shellcheck shell=bash
#
# Many k2i endpoints on loopback, for the k2ps scale test and fan-out benchmark. Source after
# lib.sh (or after defining T_TMP, T_PIDS and B).
#
#   k2i_start_many N      # one k2i listening on 127.0.0.1:P .. P+N-1; sets MANY_PORTS, MANY_PID,
#                         # MANY_STATE (ca.pem, client.pem, client.key), MANY_HOSTS (a host file)

# free_port_base N: prints a P such that nothing on this machine listens on 127.0.0.1 or the
# wildcard at ports P .. P+N-1. P is random below the ephemeral range (32768 on Linux), so the
# kernel does not hand those ports to outgoing connections meanwhile.
free_port_base() {
	local n=$1 used p lo _
	lo=$(awk '{ print $1 }' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null)
	lo=${lo:-32768}
	used=$(ss -Htan 2>/dev/null | awk '{ n = split($4, a, ":"); print a[n] }' | sort -un)
	for _ in $(seq 50); do
		p=$((20000 + RANDOM % (lo - 20000 - n)))
		if ! awk -v a="$p" -v b="$((p + n - 1))" '$1 >= a && $1 <= b { f = 1 } END { exit !f }' \
			<<<"$used"; then
			echo "$p"
			return 0
		fi
	done
	return 1
}

# k2i_start_many N [K2I OPTIONS...]: see above. Retries with another range if a port was taken
# between the check and the bind.
k2i_start_many() {
	local n=$1 base args i try
	shift
	MANY_STATE=$T_TMP/many
	mkdir -p "$MANY_STATE"
	for try in 1 2 3; do
		base=$(free_port_base "$n") || return 1
		args=()
		MANY_PORTS=()
		for i in $(seq 0 $((n - 1))); do
			args+=(--listen "127.0.0.1:$((base + i))")
			MANY_PORTS+=("$((base + i))")
		done
		"$B/bin/k2i" --state-dir "$MANY_STATE" --rundir "$MANY_STATE/run" --config /dev/null \
			"${args[@]}" "$@" 2>"$MANY_STATE.log" &
		MANY_PID=$!
		T_PIDS+=("$MANY_PID")
		for i in $(seq 100); do
			[ "$(grep -c 'Listening on https://127\.0\.0\.1:' "$MANY_STATE.log")" -ge "$n" ] && break
			kill -0 "$MANY_PID" 2>/dev/null || break
			sleep 0.1
		done
		if [ "$(grep -c 'Listening on https://127\.0\.0\.1:' "$MANY_STATE.log")" -ge "$n" ]; then
			MANY_HOSTS=$T_TMP/many.hosts
			printf '127.0.0.1:%s\n' "${MANY_PORTS[@]}" >"$MANY_HOSTS"
			return 0
		fi
		kill "$MANY_PID" 2>/dev/null
		wait "$MANY_PID" 2>/dev/null
		echo "# k2i with $n listeners from port $base did not start (try $try):"
		tail -n 3 "$MANY_STATE.log" | sed 's/^/#   /'
	done
	return 1
}
