#!/bin/bash
# SPDX-License-Identifier: MIT
#
# k2ps fan-out against the same queries done one host at a time with curl, in one run, on the
# same k2i endpoints: one k2i listening on N loopback ports (default 200), each a "host". For each
# client, the wall time and the CPU time (user+system of the client and its children) of querying
# every host once, mean of R rounds (default 3), and the ratios k2ps/curl.
#
# The query is the one k2ps sends: a probe k2i with --log-level debug logs the request target of
# one k2ps run with the same options (K2PS_BENCH_ARGS, default "--json"), and curl asks for
# exactly that, with the same CA and client certificate, over HTTP/2, one process per host.
# Output goes to /dev/null for both; k2ps also parses and prints every process, curl does not.
# k2i's own CPU over each client's rounds is shown too.
#
#   BENCH_HOSTS=200 BENCH_ROUNDS=3 K2PS_BENCH_ARGS="--json" tests/bench/bench_k2ps_fanout.sh
set -u
cd "$(dirname "$0")/../.."
B=${B:-build}
N=${BENCH_HOSTS:-200}
R=${BENCH_ROUNDS:-3}
read -r -a KARGS <<<"${K2PS_BENCH_ARGS:---json}"
K2PS=$B/bin/k2ps
if [ ! -x "$K2PS" ]; then
	echo "bench_k2ps_fanout: $K2PS is not built; skipped"
	exit 0
fi
if [ ! -x /usr/bin/time ]; then
	echo "bench_k2ps_fanout: needs GNU time (/usr/bin/time, Debian package 'time'); skipped"
	exit 0
fi
T_TMP=$(mktemp -d /tmp/k2ps-bench.XXXXXX)
T_PIDS=()
HZ=$(getconf CLK_TCK)
cleanup() {
	local p
	for p in "${T_PIDS[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${T_PIDS[@]}"; do wait "$p" 2>/dev/null; done
	rm -rf "$T_TMP"
}
trap cleanup EXIT
trap 'exit 143' TERM INT HUP
. tests/integration/lib_ports.sh

k2i_start_many "$N" --no-bpf || { echo "k2i with $N listeners did not start"; exit 1; }
S=$MANY_STATE
CERTS=(--ca "$S/ca.pem" --cert "$S/client.pem" --key "$S/client.key")

# The request target k2ps sends with these options, from a probe k2i's debug log.
"$B/bin/k2i" --state-dir "$S" --rundir "$S/probe-run" --config /dev/null --no-bpf \
	--listen 127.0.0.1:0 --log-level debug 2>"$T_TMP/probe.log" &
PROBE=$!
T_PIDS+=("$PROBE")
for _ in $(seq 100); do
	PPORT=$(sed -n 's#.*Listening on https://127\.0\.0\.1:\([0-9]*\)/.*#\1#p' "$T_TMP/probe.log")
	[ -n "$PPORT" ] && break
	sleep 0.1
done
timeout 30 "$K2PS" "${CERTS[@]}" "${KARGS[@]}" -H "127.0.0.1:$PPORT" >/dev/null 2>&1
TARGET=$(sed -n 's#.* GET \(/v1/proc[^ ]*\) -> 200.*#\1#p' "$T_TMP/probe.log" | head -n1)
kill "$PROBE" 2>/dev/null
if [ -z "$TARGET" ]; then
	echo "could not see the request k2ps sends (probe log below); using /v1/proc"
	grep -E ' (GET|POST) ' "$T_TMP/probe.log" | head -n 5
	TARGET=/v1/proc
fi

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
CURL=(curl -sS --http2 --max-time 20 --cacert "$S/ca.pem" --cert "$S/client.pem" --key "$S/client.key")
# curl_all: every host in turn, one curl each; fails if any failed.
curl_all() {
	local h rc=0
	while read -r h; do
		"${CURL[@]}" -o /dev/null "https://$h$TARGET" || rc=1
	done <"$MANY_HOSTS"
	return $rc
}
export -f curl_all
export TARGET MANY_HOSTS
CURL_DECL=$(declare -p CURL)
export CURL_DECL

# Warm up: the server's snapshot, the page cache, both clients' binaries.
"${CURL[@]}" -o /dev/null "https://127.0.0.1:${MANY_PORTS[0]}$TARGET"
"$K2PS" "${CERTS[@]}" "${KARGS[@]}" -f "$MANY_HOSTS" >/dev/null 2>&1

# rounds NAME CMD...: R runs of CMD under GNU time; prints mean wall, mean CPU (user+sys), mean
# k2i CPU per round, and the number of failed runs.
rounds() {
	local name=$1 k0 k1 fails=0
	shift
	: >"$T_TMP/$name.times"
	k0=$(cpu_ticks "$MANY_PID")
	for _ in $(seq "$R"); do
		/usr/bin/time -a -o "$T_TMP/$name.times" -f '%e %U %S' "$@" >/dev/null 2>"$T_TMP/$name.err" ||
			fails=$((fails + 1))
	done
	k1=$(cpu_ticks "$MANY_PID")
	grep -E '^[0-9.]+ [0-9.]+ [0-9.]+$' "$T_TMP/$name.times" |
		awk -v a="$k0" -v b="$k1" -v hz="$HZ" -v r="$R" -v f="$fails" \
			'{ w += $1; c += $2 + $3 } END { printf "%.3f %.3f %.3f %d\n", w / NR, c / NR, (b - a) / hz / r, f }'
}
read -r KW KC KS KF < <(rounds k2ps "$K2PS" "${CERTS[@]}" "${KARGS[@]}" -f "$MANY_HOSTS")
read -r CW CC CS CF < <(rounds curl bash -c 'eval "$CURL_DECL"; curl_all')
COUNT=$("${CURL[@]}" "https://127.0.0.1:${MANY_PORTS[0]}$TARGET" | jq .count)

echo "k2ps ${KARGS[*]} -f HOSTS over $N hosts (one k2i on $N loopback ports, $COUNT processes each)"
echo "against curl --http2 one host at a time, GET $TARGET, mean of $R rounds:"
printf '  %-40s %9s %9s %11s %7s\n' "" "wall (s)" "CPU (s)" "k2i CPU (s)" "failed"
printf '  %-40s %9s %9s %11s %7s\n' "k2ps (fan-out, default 64 in flight)" "$KW" "$KC" "$KS" "$KF"
printf '  %-40s %9s %9s %11s %7s\n' "curl, $N processes in sequence" "$CW" "$CC" "$CS" "$CF"
awk -v kw="$KW" -v kc="$KC" -v cw="$CW" -v cc="$CC" \
	'BEGIN { printf "  ratio k2ps/curl: wall %.2f, CPU %.2f\n", kw / cw, kc / cc }'
[ "$KF" -eq 0 ] && [ "$CF" -eq 0 ]
