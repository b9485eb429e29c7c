#!/bin/bash
# SPDX-License-Identifier: MIT
#
# middlecon against nats-server, request/reply on one machine with the same 64-byte payloads,
# and the raw Unix-socket ping-pong (a socketpair to a forked echo process) as the floor.
#
# Both sides are driven by the same load generator (middlecon/benchloop.c): one thread and one
# connection per client, one request in flight each, latency per request from CLOCK_MONOTONIC.
# Responders: K connections (default 2) that echo the body, a load-balanced group on middlecon
# (mcbench --serve) and queue group "q" on NATS (natsbench --serve, SendAsap on every
# connection). nats-server listens on 127.0.0.1 only, on a random port, no TLS, no auth.
#
# Runs: closed loop with 1 client (latency) and 8 clients (rate), for middlecon, NATS and the
# floor; then an open loop at a fixed rate (latency from the scheduled send time) for both.
#
#   BENCH_SECONDS=5 BENCH_SIZE=64 BENCH_RESPONDERS=2 BENCH_OPEN_RATE=5000 \
#       B=build tests/bench/bench_middlecon.sh
set -u
cd "$(dirname "$0")/../.." || exit 1
B=${B:-build}
D=${BENCH_SECONDS:-5}
SIZE=${BENCH_SIZE:-64}
K=${BENCH_RESPONDERS:-2}
OPEN_RATE=${BENCH_OPEN_RATE:-5000}
TMP=$(mktemp -d /tmp/mc-bench.XXXXXX)
PATH=$PATH:/usr/sbin
PIDS=()

cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT

for f in "$B/bin/middlecon" "$B/bin/mcbench" "$B/tests/natsbench"; do
	[ -x "$f" ] || { echo "missing $f (make B=$B)"; exit 1; }
done
command -v nats-server >/dev/null || { echo "nats-server is not installed (scripts/install-deps.sh)"; exit 1; }

# wait_for FILE PATTERN: up to 5 s for PATTERN to show in FILE.
wait_for() {
	for _ in $(seq 100); do
		grep -q "$2" "$1" 2>/dev/null && return 0
		sleep 0.05
	done
	echo "timed out waiting for '$2' in $1:"
	cat "$1"
	exit 1
}

# The relay, with the default configuration (no ACL file).
"$B/bin/middlecon" --config /dev/null --rundir "$TMP/run" 2>"$TMP/middlecon.log" &
PIDS+=($!)
SOCK=$TMP/run/middlecon.sock
for _ in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.05; done
[ -S "$SOCK" ] || { echo "middlecon did not start"; cat "$TMP/middlecon.log"; exit 1; }

# nats-server on a random free port (-p -1), loopback only.
nats-server -a 127.0.0.1 -p -1 2>"$TMP/nats.log" &
PIDS+=($!)
wait_for "$TMP/nats.log" "Listening for client connections on"
PORT=$(sed -n 's/.*Listening for client connections on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$TMP/nats.log")
URL=nats://127.0.0.1:$PORT

"$B/bin/mcbench" --socket "$SOCK" --serve --responders "$K" >"$TMP/mc-serve.out" 2>&1 &
PIDS+=($!)
wait_for "$TMP/mc-serve.out" '^ready'
"$B/tests/natsbench" --url "$URL" --serve --responders "$K" >"$TMP/nats-serve.out" 2>&1 &
PIDS+=($!)
wait_for "$TMP/nats-serve.out" '^ready'

# run NAME CMD...: runs one load, keeps its result line in $TMP/NAME.
run() {
	local name=$1
	shift
	if ! "$@" >"$TMP/$name" 2>"$TMP/$name.err"; then
		echo "  $name failed:" "$(cat "$TMP/$name.err")"
	fi
	cat "$TMP/$name"
}
# get NAME KEY: one value of a result line.
get() { tr ' ' '\n' <"$TMP/$1" | sed -n "s/^$2=//p"; }

echo "$SIZE-byte requests, $D s per run, $K responders, $(nproc) CPUs; nats-server $(nats-server --version | sed 's/.*v//')"
COMMON=(--size "$SIZE" --duration "$D")
run mc1 "$B/bin/mcbench" --socket "$SOCK" --clients 1 "${COMMON[@]}"
run nats1 "$B/tests/natsbench" --url "$URL" --clients 1 "${COMMON[@]}"
run uds1 "$B/bin/mcbench" --uds-floor --clients 1 "${COMMON[@]}"
run mc8 "$B/bin/mcbench" --socket "$SOCK" --clients 8 "${COMMON[@]}"
run nats8 "$B/tests/natsbench" --url "$URL" --clients 8 "${COMMON[@]}"
run uds8 "$B/bin/mcbench" --uds-floor --clients 8 "${COMMON[@]}"
OPEN=(--clients 4 --mode open --rate "$OPEN_RATE" "${COMMON[@]}")
run mcopen "$B/bin/mcbench" --socket "$SOCK" "${OPEN[@]}"
run natsopen "$B/tests/natsbench" --url "$URL" "${OPEN[@]}"

# The 1-client latency again with every process (relay or broker, responders, client) pinned to
# CPU 0, as in research/middlecon.md §9.3: on these VMs an idle vCPU's wake-up otherwise costs
# tens of µs per hop, which even the raw socketpair pays.
for p in "${PIDS[@]}"; do taskset -a -p -c 0 "$p" >/dev/null; done
run mc1pin taskset -c 0 "$B/bin/mcbench" --socket "$SOCK" --clients 1 "${COMMON[@]}"
run nats1pin taskset -c 0 "$B/tests/natsbench" --url "$URL" --clients 1 "${COMMON[@]}"
run uds1pin taskset -c 0 "$B/bin/mcbench" --uds-floor --clients 1 "${COMMON[@]}"

echo
printf '  %-40s %10s %8s %8s %8s %8s %8s\n' "" "req/s" "p50 µs" "p90 µs" "p99 µs" "p999 µs" "max µs"
row() {
	printf '  %-40s %10s %8s %8s %8s %8s %8s\n' "$1" "$(get "$2" rate)" "$(get "$2" p50_us)" \
		"$(get "$2" p90_us)" "$(get "$2" p99_us)" "$(get "$2" p999_us)" "$(get "$2" max_us)"
}
row "middlecon, closed, 1 client" mc1
row "nats-server, closed, 1 client" nats1
row "raw UDS floor, closed, 1 client" uds1
row "middlecon, closed, 8 clients" mc8
row "nats-server, closed, 8 clients" nats8
row "raw UDS floor, closed, 8 clients" uds8
row "middlecon, open $OPEN_RATE/s, 4 clients" mcopen
row "nats-server, open $OPEN_RATE/s, 4 clients" natsopen
row "middlecon, closed, 1 client, CPU 0" mc1pin
row "nats-server, closed, 1 client, CPU 0" nats1pin
row "raw UDS floor, closed, 1 client, CPU 0" uds1pin

# ratio A B: A / B with two decimals.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
verdict() { awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN {
	ok = (op == "<=") ? (v <= t) : (v >= t); print ok ? "met" : "NOT met" }'; }
RATER=$(ratio "$(get mc8 rate)" "$(get nats8 rate)")
echo
echo "Targets (issue 5):"
for v in "mc1 nats1 uds1 unpinned" "mc1pin nats1pin uds1pin CPU 0"; do
	read -r m n u label <<<"$v"
	P50R=$(ratio "$(get "$m" p50_us)" "$(get "$n" p50_us)")
	P99=$(get "$m" p99_us)
	echo "  middlecon p50 / nats p50, 1 client, $label: $P50R (target <= 0.50: $(verdict "$P50R" '<=' 0.5))"
	echo "  middlecon p99, 1 client, $label: ${P99} µs (target <= 50 µs: $(verdict "$P99" '<=' 50))"
	echo "  middlecon p50 / floor p50, 1 client, $label: $(ratio "$(get "$m" p50_us)" "$(get "$u" p50_us)")"
done
echo "  middlecon rate / nats rate, 8 clients: $RATER (target >= 2.00: $(verdict "$RATER" '>=' 2))"
