#!/bin/bash
# SPDX-License-Identifier: MIT
#
# k2i /v1/proc against `ps aux`, in one run on the same process table: with N extra sleeping
# processes (default 5000), the CPU time (user+system) and wall time of one full /v1/proc
# response, and of one `ps aux`. The snapshot cache is disabled (scan_max_age_ms = 0), so every
# request walks /proc. k2i's CPU is read from /proc/<pid>/stat around R requests; the client's
# (curl's) CPU is not k2i's and is not counted, as ps's terminal output is not either.
#
# Then h2load throughput and latency percentiles on /v1/proc/self over HTTP/2.
#
#   BENCH_PROCS=5000 BENCH_ROUNDS=20 tests/bench/bench_k2i_proc.sh
set -u
cd "$(dirname "$0")/../.."
B=${B:-build}
N=${BENCH_PROCS:-5000}
R=${BENCH_ROUNDS:-20}
TMP=$(mktemp -d /tmp/k2i-bench.XXXXXX)
HZ=$(getconf CLK_TCK)
SLEEPERS_PGID=

cleanup() {
	[ -n "${K2I_PID:-}" ] && kill "$K2I_PID" 2>/dev/null
	[ -n "${COLD_PID:-}" ] && kill "$COLD_PID" 2>/dev/null
	[ -n "$SLEEPERS_PGID" ] && kill -- "-$SLEEPERS_PGID" 2>/dev/null
	wait 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT

# N sleeping processes in their own process group, so one kill ends them all.
setsid bash -c "for i in \$(seq $N); do sleep 3600 & done; wait" </dev/null >/dev/null 2>&1 &
SLEEPERS_PGID=$!
for _ in $(seq 300); do
	[ "$(pgrep -c -g "$SLEEPERS_PGID" sleep)" -ge "$N" ] && break
	sleep 0.1
done
TOTAL=$(ls -d /proc/[0-9]* | wc -l)
echo "processes on the host: $TOTAL (including $N sleepers)"

printf 'bench-token\n' >"$TMP/tokens"
chmod 600 "$TMP/tokens"
# scan_max_age_ms = 0: every request walks /proc (no shared snapshot).
printf 'scan_max_age_ms = 0\n' >"$TMP/k2i.conf"
"$B/bin/k2i" --config "$TMP/k2i.conf" --state-dir "$TMP/state" --rundir "$TMP/run" \
	--listen 127.0.0.1:0 --token-file "$TMP/tokens" 2>"$TMP/k2i.log" &
K2I_PID=$!
PORT=
for _ in $(seq 100); do
	PORT=$(sed -n 's#.*Listening on https://127\.0\.0\.1:\([0-9]*\)/.*#\1#p' "$TMP/k2i.log")
	[ -n "$PORT" ] && break
	sleep 0.1
done
[ -n "$PORT" ] || { echo "k2i did not start"; cat "$TMP/k2i.log"; exit 1; }
URL=https://127.0.0.1:$PORT
CURL=(curl -sS --http2 --cacert "$TMP/state/ca.pem" --cert "$TMP/state/client.pem"
	--key "$TMP/state/client.key")

# A second k2i with proc_cache_ttl_ms = 0: every request also re-reads every process's cmdline,
# exe, cgroup and namespaces (the first request's cost, or a host whose processes all just
# started).
printf 'scan_max_age_ms = 0\nproc_cache_ttl_ms = 0\n' >"$TMP/cold.conf"
"$B/bin/k2i" --config "$TMP/cold.conf" --state-dir "$TMP/state" --rundir "$TMP/run" \
	--listen 127.0.0.1:0 2>"$TMP/cold.log" &
COLD_PID=$!
for _ in $(seq 100); do
	COLD_PORT=$(sed -n 's#.*Listening on https://127\.0\.0\.1:\([0-9]*\)/.*#\1#p' "$TMP/cold.log")
	[ -n "$COLD_PORT" ] && break
	sleep 0.1
done

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# measure PID URL: mean CPU seconds of the k2i process PID and mean wall seconds of R requests.
measure() {
	local pid=$1 url=$2 t0 t1
	t0=$(cpu_ticks "$pid")
	: >"$TMP/times"
	for _ in $(seq "$R"); do
		"${CURL[@]}" -o /dev/null -w '%{time_total}\n' "$url" >>"$TMP/times"
	done
	t1=$(cpu_ticks "$pid")
	awk -v a="$t0" -v b="$t1" -v hz="$HZ" -v r="$R" 'BEGIN { printf "%.4f ", (b - a) / hz / r }'
	awk '{ w += $1 } END { printf "%.4f\n", w / NR }' "$TMP/times"
}

# Warm up both (page cache, user name cache, first CPU samples).
ps aux >/dev/null
"${CURL[@]}" -o "$TMP/proc.json" "$URL/v1/proc"
BYTES=$(stat -c %s "$TMP/proc.json")
COUNT=$(jq .count "$TMP/proc.json")

# ps aux: R runs, CPU from the shell's children accounting.
TIMEFORMAT='%R %U %S'
: >"$TMP/ps.times"
for _ in $(seq "$R"); do
	{ time ps aux >/dev/null; } 2>>"$TMP/ps.times"
done
read -r PS_WALL PS_CPU < <(awk '{ w += $1; c += $2 + $3 } END { printf "%.4f %.4f\n", w / NR, c / NR }' "$TMP/ps.times")

# k2i: R responses each; CPU from k2i's own utime+stime, wall from curl.
"${CURL[@]}" -o /dev/null "https://127.0.0.1:$COLD_PORT/v1/proc"
read -r K2I_CPU K2I_WALL < <(measure "$K2I_PID" "$URL/v1/proc")
read -r COLD_CPU COLD_WALL < <(measure "$COLD_PID" "https://127.0.0.1:$COLD_PORT/v1/proc")
PSF=pid,ppid,user,state,comm,cmdline,cpu_percent,mem_percent,vsz_kb,rss_kb,tty,start_time,cpu_time_ms
read -r PSF_CPU PSF_WALL < <(measure "$COLD_PID" "https://127.0.0.1:$COLD_PORT/v1/proc?fields=$PSF")

echo
echo "One full process table ($COUNT processes, $BYTES bytes of JSON), mean of $R runs:"
printf '  %-56s %8s %8s %6s\n' "" "CPU (s)" "wall (s)" "CPU/ps"
row() { printf '  %-56s %8s %8s %6s\n' "$1" "$2" "$3" "$(awk -v a="$2" -v b="$PS_CPU" 'BEGIN { printf "%.2f", a / b }')"; }
row "ps aux" "$PS_CPU" "$PS_WALL"
row "k2i GET /v1/proc, all fields (h2, TLS)" "$K2I_CPU" "$K2I_WALL"
row "  same, proc_cache_ttl_ms=0 (cold: every file re-read)" "$COLD_CPU" "$COLD_WALL"
row "  ps aux's columns only, proc_cache_ttl_ms=0" "$PSF_CPU" "$PSF_WALL"
echo "  target: k2i CPU <= 0.50 x ps aux"

# The live table: a k2i whose snapshot stays valid for a minute, patched from process events
# (only new, exec'd and ended processes are read), against a fresh /proc scan per request, with
# 50 short-lived processes (150 events) started before each request.
printf 'scan_max_age_ms = 60000\n' >"$TMP/live.conf"
"$B/bin/k2i" --config "$TMP/live.conf" --state-dir "$TMP/state" --rundir "$TMP/run" \
	--listen 127.0.0.1:0 2>"$TMP/live.log" &
LIVE_PID=$!
for _ in $(seq 100); do
	LIVE_PORT=$(sed -n 's#.*Listening on https://127\.0\.0\.1:\([0-9]*\)/.*#\1#p' "$TMP/live.log")
	[ -n "$LIVE_PORT" ] && break
	sleep 0.1
done
if [ -x "$B/tests/burst" ] && [ -n "$LIVE_PORT" ]; then
	LURL=https://127.0.0.1:$LIVE_PORT
	"${CURL[@]}" -o /dev/null "$LURL/v1/proc"
	measure_churn() {
		local pid=$1 url=$2 t0 t1
		t0=$(cpu_ticks "$pid")
		: >"$TMP/times"
		for _ in $(seq "$R"); do
			"$B/tests/burst" -n 50 >/dev/null 2>&1
			sleep 0.05
			"${CURL[@]}" -o /dev/null -w '%{time_total}\n' "$url" >>"$TMP/times"
		done
		t1=$(cpu_ticks "$pid")
		awk -v a="$t0" -v b="$t1" -v hz="$HZ" -v r="$R" 'BEGIN { printf "%.4f ", (b - a) / hz / r }'
		awk '{ w += $1 } END { printf "%.4f\n", w / NR }' "$TMP/times"
	}
	read -r LIVE_CPU LIVE_WALL < <(measure_churn "$LIVE_PID" "$LURL/v1/proc")
	read -r SCAN_CPU SCAN_WALL < <(measure_churn "$K2I_PID" "$URL/v1/proc")
	PATCHES=$("${CURL[@]}" "$LURL/metrics" | sed -n 's/^k2i_live_patches_total //p')
	echo
	echo "GET /v1/proc with 150 process events between requests, mean of $R (CPU includes handling the events):"
	printf '  %-56s %8s %8s\n' "" "CPU (s)" "wall (s)"
	printf '  %-56s %8s %8s\n' "fresh /proc scan per request (scan_max_age_ms=0)" "$SCAN_CPU" "$SCAN_WALL"
	printf '  %-56s %8s %8s\n' "live table: snapshot patched from events ($PATCHES patches)" "$LIVE_CPU" "$LIVE_WALL"
	awk -v a="$LIVE_CPU" -v b="$SCAN_CPU" 'BEGIN { printf "  ratio live/scan: CPU %.2f\n", a / b }'
fi
kill "$LIVE_PID" 2>/dev/null

# h2load on /v1/proc/self: throughput and latency percentiles from its per-request log.
if command -v h2load >/dev/null; then
	H2N=${BENCH_H2_REQUESTS:-20000}
	h2load -n "$H2N" -c 4 -m 10 -H 'authorization: Bearer bench-token' \
		--log-file="$TMP/h2load.log" "$URL/v1/proc/self" >"$TMP/h2load.out" 2>&1
	RPS=$(sed -n 's/^finished in .*, \([0-9.]*\) req\/s.*/\1/p' "$TMP/h2load.out")
	OKS=$(sed -n 's/^status codes: \([0-9]*\) 2xx.*/\1/p' "$TMP/h2load.out")
	read -r P50 P99 < <(awk '{ print $3 }' "$TMP/h2load.log" | sort -n |
		awk '{ v[NR] = $1 } END { printf "%.2f %.2f\n", v[int(NR * 0.50)] / 1000, v[int(NR * 0.99)] / 1000 }')
	echo
	echo "h2load -n $H2N -c 4 -m 10 GET /v1/proc/self (h2, TLS, bearer token):"
	echo "  $RPS req/s, $OKS of $H2N 2xx, latency p50 ${P50} ms, p99 ${P99} ms"
fi
