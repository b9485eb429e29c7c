#!/bin/bash
# SPDX-License-Identifier: MIT
#
# The cost to k2i of a fork/exec storm: two k2i side by side in one run, one on the BPF source
# and one on the process connector (--no-bpf), each with one GET /v1/events stream open and
# read. A storm of short-lived processes (burst, BENCH_STORM_ROUNDS x 1000) runs; for each k2i:
# events received, events lost, events per second sustained, and its CPU time per 1,000 events.
#
#   BENCH_STORM_ROUNDS=20 tests/bench/bench_k2i_events.sh
set -u
cd "$(dirname "$0")/../.."
B=${B:-build}
ROUNDS=${BENCH_STORM_ROUNDS:-20}
TMP=$(mktemp -d /tmp/k2i-bench.XXXXXX)
HZ=$(getconf CLK_TCK)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT

# start NAME ARGS...: a k2i on an ephemeral port; sets PORT_<NAME> and PID_<NAME>.
start() {
	local name=$1 port=
	shift
	"$B/bin/k2i" --config /dev/null --state-dir "$TMP/state" --rundir "$TMP/run" \
		--listen 127.0.0.1:0 "$@" 2>"$TMP/$name.log" &
	PIDS+=("$!")
	eval "PID_$name=$!"
	for _ in $(seq 100); do
		port=$(sed -n 's#.*Listening on https://127\.0\.0\.1:\([0-9]*\)/.*#\1#p' "$TMP/$name.log")
		[ -n "$port" ] && break
		sleep 0.1
	done
	[ -n "$port" ] || { echo "k2i $name did not start"; cat "$TMP/$name.log"; exit 1; }
	eval "PORT_$name=$port"
}
start bpf
start netlink --no-bpf
CURL=(curl -sS --cacert "$TMP/state/ca.pem" --cert "$TMP/state/client.pem" --key "$TMP/state/client.key")
metric() { "${CURL[@]}" "https://127.0.0.1:$1/metrics" | sed -n "s/^$2 //p"; }
src_bpf=$("${CURL[@]}" "https://127.0.0.1:$PORT_bpf/v1/host" | jq -r .event_source)
src_nl=$("${CURL[@]}" "https://127.0.0.1:$PORT_netlink/v1/host" | jq -r .event_source)
for n in bpf netlink; do
	eval "port=\$PORT_$n"
	"${CURL[@]}" -N --http2 "https://127.0.0.1:$port/v1/events" >/dev/null 2>&1 &
	PIDS+=("$!")
done
sleep 0.5
cpu() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

r0_bpf=$(metric "$PORT_bpf" k2i_events_received_total)
r0_nl=$(metric "$PORT_netlink" k2i_events_received_total)
c0_bpf=$(cpu "$PID_bpf")
c0_nl=$(cpu "$PID_netlink")
t0=$(date +%s.%N)
for _ in $(seq "$ROUNDS"); do
	"$B/tests/burst" -n 1000 >/dev/null 2>&1
done
t1=$(date +%s.%N)
sleep 1 # let both drain their buffers
c1_bpf=$(cpu "$PID_bpf")
c1_nl=$(cpu "$PID_netlink")
r1_bpf=$(metric "$PORT_bpf" k2i_events_received_total)
r1_nl=$(metric "$PORT_netlink" k2i_events_received_total)
lost_bpf=$(metric "$PORT_bpf" k2i_events_lost_total)
lost_nl=$(metric "$PORT_netlink" k2i_events_lost_total)

echo "Storm: $ROUNDS x 1000 short-lived processes (fork, exec, exit each) in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }') s"
printf '  %-34s %10s %8s %12s %18s\n' "" "events" "lost" "events/s" "CPU ms/1000 events"
row() {
	awk -v name="$1" -v r="$2" -v l="$3" -v c="$4" -v t0="$t0" -v t1="$t1" -v hz="$HZ" 'BEGIN {
		printf "  %-34s %10d %8d %12.0f %18.2f\n", name, r, l, r / (t1 - t0), c / hz * 1000 / (r / 1000) }'
}
row "k2i, source $src_bpf" $((r1_bpf - r0_bpf)) "$lost_bpf" $((c1_bpf - c0_bpf))
row "k2i --no-bpf, source $src_nl" $((r1_nl - r0_nl)) "$lost_nl" $((c1_nl - c0_nl))
awk -v a=$((c1_bpf - c0_bpf)) -v b=$((c1_nl - c0_nl)) -v ra=$((r1_bpf - r0_bpf)) -v rb=$((r1_nl - r0_nl)) \
	'BEGIN { if (b > 0 && ra > 0 && rb > 0) printf "  CPU per event, bpf / netlink: %.2f\n", (a / ra) / (b / rb) }'
