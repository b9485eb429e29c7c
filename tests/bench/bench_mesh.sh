#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Cross-host request/reply: a caller on host 1 and an echo responder on host 2 (two network
# namespaces joined by veth pairs and a bridge), through two middlecon relays linked over mutual
# TLS, against the same through a two-node nats-server cluster on the same namespaces, with the
# same payloads and the same load generator (middlecon/benchloop.c).
#
# Each request crosses two brokers either way: caller -> relay/server on host 1 -> link/route ->
# relay/server on host 2 -> responder, and back. The clients use each system's local transport:
# middlecon's Unix socket, and TCP over loopback inside the namespace for NATS (natsbench runs in
# the namespace). NATS runs twice: its default plaintext cluster route, and the route with mutual
# TLS like middlecon's link, from the same CA.
#
#   BENCH_SECONDS=5 BENCH_SIZE=64 B=build tests/bench/bench_mesh.sh
. "$(dirname "$0")/../integration/lib.sh"
. "$(dirname "$0")/../integration/lib_netns.sh"
D=${BENCH_SECONDS:-5}
SIZE=${BENCH_SIZE:-64}
PATH=$PATH:/usr/sbin

for f in "$B/bin/middlecon" "$B/bin/mcbench" "$B/tests/natsbench"; do
	[ -x "$f" ] || { echo "missing $f (make B=$B)"; exit 1; }
done
command -v nats-server >/dev/null || { echo "nats-server is not installed"; exit 1; }
netns_setup 2
IP1=${NS_IPS[1]} IP2=${NS_IPS[2]}

# wait_for FILE PATTERN: up to 10 s for PATTERN to show in FILE.
wait_for() {
	for _ in $(seq 200); do
		grep -q "$2" "$1" 2>/dev/null && return 0
		sleep 0.05
	done
	echo "timed out waiting for '$2' in $1:"
	cat "$1"
	exit 1
}

pki_new_ca "$T_TMP/ca" "bench CA"
for i in 1 2; do
	ip=${NS_IPS[i]}
	pki_issue "$T_TMP/ca" "$T_TMP/h$i" "h$i" "DNS:h$i,IP:$ip" || { echo "pki failed"; exit 1; }
done

# --- two relays ---
for i in 1 2; do
	cat >"$T_TMP/mc$i.conf" <<-EOF
		node_name = h$i
		tls_cert = $T_TMP/h$i.pem
		tls_key = $T_TMP/h$i.key
		tls_ca = $T_TMP/ca/ca.pem
		listen = 0.0.0.0:9401
	EOF
done
echo "peers = $IP1" >>"$T_TMP/mc2.conf"
for i in 1 2; do
	ns_bg "$i" "$B/bin/middlecon" --config "$T_TMP/mc$i.conf" --rundir "$T_TMP/run$i" \
		--state-dir "$T_TMP/state$i" 2>"$T_TMP/mc$i.log"
	MC_PID[i]=$NS_BG_PID
done
for i in 1 2; do wait_for "$T_TMP/mc$i.log" "ready"; done
SOCK1=$T_TMP/run1/middlecon.sock SOCK2=$T_TMP/run2/middlecon.sock
"$B/bin/mcbench" --socket "$SOCK2" --serve --responders 2 >"$T_TMP/mc-serve.out" 2>&1 &
T_PIDS+=($!)
MCSERVE_PID=$!
wait_for "$T_TMP/mc-serve.out" '^ready'
for _ in $(seq 200); do
	"$B/bin/mcctl" -s "$SOCK1" list 2>/dev/null | grep -q '"node":"h2"' && break
	sleep 0.05
done

# --- two nats-server clusters of two nodes: plaintext routes, and routes with mutual TLS ---
# nats_start I TAG TLS(0/1) CLIENT_PORT CLUSTER_PORT
nats_start() {
	local i=$1 tag=$2 tls=$3 cport=$4 rport=$5 me=${NS_IPS[$1]} other
	if [ "$i" = 1 ]; then other=$IP2; else other=$IP1; fi
	{
		echo "listen: 127.0.0.1:$cport"
		echo "server_name: $tag-h$i"
		echo "cluster {"
		echo "  name: $tag"
		echo "  listen: $me:$rport"
		echo "  routes: [\"nats://$other:$rport\"]"
		if [ "$tls" = 1 ]; then
			echo "  tls {"
			echo "    cert_file: \"$T_TMP/h$i.pem\""
			echo "    key_file: \"$T_TMP/h$i.key\""
			echo "    ca_file: \"$T_TMP/ca/ca.pem\""
			echo "    verify: true"
			echo "    timeout: 2"
			echo "  }"
		fi
		echo "}"
	} >"$T_TMP/$tag$i.conf"
	ns_bg "$i" nats-server -c "$T_TMP/$tag$i.conf" 2>"$T_TMP/$tag$i.log"
}
for i in 1 2; do
	nats_start "$i" plain 0 4222 6222
	nats_start "$i" tls 1 4223 6223
done
for t in plain tls; do
	for i in 1 2; do wait_for "$T_TMP/$t$i.log" "Route connection created"; done
done
for t in plain:4222 tls:4223; do
	ns_bg 2 "$B/tests/natsbench" --url "nats://127.0.0.1:${t#*:}" --serve --responders 2 \
		>"$T_TMP/nats-serve-${t%%:*}.out" 2>&1
	wait_for "$T_TMP/nats-serve-${t%%:*}.out" '^ready'
done
# Interest in the queue group reaches the other server asynchronously.
sleep 1

run() {
	local name=$1
	shift
	if ! "$@" >"$T_TMP/$name" 2>"$T_TMP/$name.err"; then
		echo "  $name failed:" "$(cat "$T_TMP/$name.err")"
	fi
}
get() { tr ' ' '\n' <"$T_TMP/$1" | sed -n "s/^$2=//p"; }
COMMON=(--size "$SIZE" --duration "$D")

echo "$SIZE-byte requests across two namespace hosts, $D s per run, 2 responders on host 2," \
	"$(nproc) CPUs; nats-server $(nats-server --version | sed 's/.*v//')"
run mc1 "$B/bin/mcbench" --socket "$SOCK1" --clients 1 "${COMMON[@]}"
run plain1 ns_exec 1 "$B/tests/natsbench" --url nats://127.0.0.1:4222 --clients 1 "${COMMON[@]}"
run tls1 ns_exec 1 "$B/tests/natsbench" --url nats://127.0.0.1:4223 --clients 1 "${COMMON[@]}"
run mc8 "$B/bin/mcbench" --socket "$SOCK1" --clients 8 "${COMMON[@]}"
run plain8 ns_exec 1 "$B/tests/natsbench" --url nats://127.0.0.1:4222 --clients 8 "${COMMON[@]}"
run tls8 ns_exec 1 "$B/tests/natsbench" --url nats://127.0.0.1:4223 --clients 8 "${COMMON[@]}"

echo
printf '  %-44s %10s %8s %8s %8s %8s\n' "" "req/s" "p50 µs" "p90 µs" "p99 µs" "max µs"
row() {
	printf '  %-44s %10s %8s %8s %8s %8s\n' "$1" "$(get "$2" rate)" "$(get "$2" p50_us)" \
		"$(get "$2" p90_us)" "$(get "$2" p99_us)" "$(get "$2" max_us)"
}
row "middlecon, 2 relays (TLS link), 1 client" mc1
row "nats-server cluster (plain route), 1 client" plain1
row "nats-server cluster (TLS route), 1 client" tls1
row "middlecon, 2 relays (TLS link), 8 clients" mc8
row "nats-server cluster (plain route), 8 clients" plain8
row "nats-server cluster (TLS route), 8 clients" tls8

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
echo
echo "Ratios (middlecon / nats-server; latency below 1 and rate above 1 favour middlecon):"
for t in plain tls; do
	echo "  p50, 1 client, $t route: $(ratio "$(get mc1 p50_us)" "$(get ${t}1 p50_us)")" \
		"  p99: $(ratio "$(get mc1 p99_us)" "$(get ${t}1 p99_us)")" \
		"  rate, 8 clients: $(ratio "$(get mc8 rate)" "$(get ${t}8 rate)")"
done
kill "$MCSERVE_PID" 2>/dev/null
