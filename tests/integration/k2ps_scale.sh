#!/bin/bash
# SPDX-License-Identifier: MIT
#
# k2ps against 200 k2i endpoints (one k2i listening on 200 loopback ports, each a "host" to k2ps):
# every host answers, within a bounded time, with bounded memory in k2ps (its peak RSS, measured by
# GNU time or, without it, from VmHWM). Bounds: K2PS_SCALE_HOSTS (200), K2PS_SCALE_MAX_S (30),
# K2PS_SCALE_MAX_MIB (512). K2PS_SCALE_PROCS=N (default 0) first starts N extra sleeping processes,
# so every host's table is that much longer (a fleet of busy hosts).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_ports.sh"
need curl jq ss timeout
K2PS=$B/bin/k2ps
[ -x "$K2PS" ] || skip_all "$K2PS is not built yet"
N=${K2PS_SCALE_HOSTS:-200}
MAX_S=${K2PS_SCALE_MAX_S:-30}
MAX_MIB=${K2PS_SCALE_MAX_MIB:-512}
EXTRA=${K2PS_SCALE_PROCS:-0}

if [ "$EXTRA" -gt 0 ]; then
	# In their own process group, so that one kill ends them all, before lib.sh's cleanup.
	setsid bash -c "for i in \$(seq $EXTRA); do sleep 600 & done; wait" </dev/null >/dev/null 2>&1 &
	SLEEPERS=$!
	trap 'kill -- "-$SLEEPERS" 2>/dev/null; cleanup' EXIT
	for _ in $(seq 300); do
		[ "$(pgrep -c -g "$SLEEPERS" sleep)" -ge "$EXTRA" ] && break
		sleep 0.1
	done
fi

k2i_start_many "$N" --no-bpf || { not_ok "one k2i on $N loopback ports"; done_testing; exit 1; }
ok "one k2i (pid $MANY_PID) on $N loopback ports ${MANY_PORTS[0]}..${MANY_PORTS[N - 1]}"
CERTS=(--ca "$MANY_STATE/ca.pem" --cert "$MANY_STATE/client.pem" --key "$MANY_STATE/client.key")
# Warm the server's snapshot so the first host is not the only one to pay for a /proc scan.
curl -sS --max-time 10 --cacert "$MANY_STATE/ca.pem" --cert "$MANY_STATE/client.pem" \
	--key "$MANY_STATE/client.key" -o /dev/null "https://127.0.0.1:${MANY_PORTS[0]}/v1/proc"

# measured OUT ARGS...: k2ps ARGS with stdout in OUT and stderr in OUT.err; sets RC, ELAPSED (s)
# and PEAK_KB (k2ps's maximum resident set).
if [ -x /usr/bin/time ]; then
	measured() {
		local out=$1
		shift
		timeout --kill-after=5 120 /usr/bin/time -o "$out.time" -f '%e %M' "$K2PS" "$@" \
			>"$out" 2>"$out.err"
		RC=$?
		read -r ELAPSED PEAK_KB <"$out.time"
		# GNU time notes a non-zero exit in its output file first.
		[ -z "$PEAK_KB" ] && read -r ELAPSED PEAK_KB < <(tail -n1 "$out.time")
	}
else
	# Without GNU time: the kernel's high-water mark, read by a shell that becomes k2ps.
	measured() {
		local out=$1 t0 t1 pid
		shift
		t0=$(date +%s%N)
		"$K2PS" "$@" >"$out" 2>"$out.err" &
		pid=$!
		PEAK_KB=0
		while kill -0 "$pid" 2>/dev/null; do
			v=$(awk '/^VmHWM/ { print $2 }' "/proc/$pid/status" 2>/dev/null)
			[ -n "$v" ] && [ "$v" -gt "$PEAK_KB" ] && PEAK_KB=$v
			sleep 0.01
		done
		wait "$pid"
		RC=$?
		t1=$(date +%s%N)
		ELAPSED=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')
	}
fi
within() { awk -v e="$ELAPSED" -v m="$MAX_S" 'BEGIN { exit !(e < m) }'; }
mib() { awk -v k="$PEAK_KB" 'BEGIN { printf "%.1f", k / 1024 }'; }

# --- All hosts, NDJSON, default fan-out -----------------------------------------------------
measured "$T_TMP/all.json" "${CERTS[@]}" --timeout 20 --json -f "$MANY_HOSTS"
echo "# k2ps --json over $N hosts: exit $RC, ${ELAPSED}s, peak RSS $(mib) MiB, $(wc -l <"$T_TMP/all.json") lines"
check_eq "k2ps --json -f (${N} hosts): exit 0" 0 "$RC"
check_eq "no host reported on stderr" "" "$(head -n 5 "$T_TMP/all.json.err")"
check "answered within ${MAX_S}s (${ELAPSED}s)" within
check "peak RSS below ${MAX_MIB} MiB ($(mib) MiB)" test "${PEAK_KB:-999999999}" -lt $((MAX_MIB * 1024))
check_eq "every host answered, labelled as given" "$(sort "$MANY_HOSTS")" \
	"$(jq -r .host "$T_TMP/all.json" | sort -u)"
total=$(ls -d /proc/[0-9]* | wc -l)
check "every host answered with a whole process table (at least $((total / 2)) processes each)" \
	bash -c "jq -r .host '$T_TMP/all.json' | sort | uniq -c | awk '\$1 < $((total / 2)) { f = 1 } END { exit f }'"
check_eq "k2i itself is in every host's answer" "$N" \
	"$(jq -r --argjson p "$MANY_PID" 'select(.pid == $p) | .host' "$T_TMP/all.json" | sort -u | wc -l)"

# --- Narrow fan-out: the same result, still bounded -----------------------------------------
measured "$T_TMP/f8.json" "${CERTS[@]}" --timeout 20 --json --fanout 8 -f "$MANY_HOSTS"
echo "# k2ps --fanout 8: exit $RC, ${ELAPSED}s, peak RSS $(mib) MiB"
check_eq "--fanout 8: exit 0, every host answered" "0 $N" \
	"$RC $(jq -r .host "$T_TMP/f8.json" | sort -u | wc -l)"
check "--fanout 8: within ${MAX_S}s (${ELAPSED}s)" within

# --- Table output, filtered on the servers ---------------------------------------------------
measured "$T_TMP/k.txt" "${CERTS[@]}" --timeout 20 -C k2i --no-headers -f "$MANY_HOSTS"
echo "# k2ps -C k2i (table): exit $RC, ${ELAPSED}s, peak RSS $(mib) MiB"
check_eq "-C k2i table: exit 0, one row per host for this k2i" "0 $N" \
	"$RC $(awk -v p="$MANY_PID" '$3 == p { print $1 }' "$T_TMP/k.txt" | sort -u | wc -l)"
check "-C k2i table: within ${MAX_S}s (${ELAPSED}s)" within

# --- Summary mode ----------------------------------------------------------------------------
measured "$T_TMP/sum.txt" "${CERTS[@]}" --timeout 20 --hosts-summary -f "$MANY_HOSTS"
echo "# k2ps --hosts-summary: exit $RC, ${ELAPSED}s, peak RSS $(mib) MiB"
check_eq "--hosts-summary: exit 0, names every host" "0 $N" \
	"$RC $(grep -o -E '127\.0\.0\.1:[0-9]+' "$T_TMP/sum.txt" | sort -u | wc -l)"

check "k2i is still running" kill -0 "$MANY_PID"
done_testing
