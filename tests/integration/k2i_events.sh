#!/bin/bash
# SPDX-License-Identifier: MIT
#
# k2i's live process lifecycle: GET /v1/events streams (HTTP/2 NDJSON and HTTP/1.1 SSE at once)
# and GET /v1/exits during a burst of 1,000 processes each living well under a millisecond, with
# the BPF source and with the process connector (k2i --no-bpf); a new process in /v1/proc before
# any periodic scan; a stalled stream cut off with k2i's memory bounded.
. "$(dirname "$0")/lib.sh"
need curl jq
N=${K2I_EVENTS_BURST:-1000}
for p in burst exit_with; do
	[ -x "$B/tests/$p" ] || skip_all "$B/tests/$p is not built"
done

metric() {
	kcurl "$K2I_URL/metrics" | sed -n "s/^$1 //p"
}

# wait_metric NAME VALUE: waits up to 10 s for a metric to reach VALUE.
wait_metric() {
	local i
	for i in $(seq 1 100); do
		[ "$(metric "$1")" = "$2" ] && return 0
		sleep 0.1
	done
	return 1
}

# burst_test LABEL: streams open, a burst runs, every exec and exit must arrive.
burst_test() {
	local label=$1 out=$T_TMP/$1 missing i
	kcurl -N --http2 "$K2I_URL/v1/events?type=exec,exit" >"$out.h2" &
	T_PIDS+=("$!")
	kcurl -N --http1.1 -H 'Accept: text/event-stream' "$K2I_URL/v1/events" >"$out.sse" &
	T_PIDS+=("$!")
	check "$label: two event streams attached" wait_metric k2i_event_streams 2
	"$B/tests/burst" -n "$N" >"$out.expected" 2>"$out.burst.log"
	check_eq "$label: burst of $N processes ran" "$N" "$(wc -l <"$out.expected")"
	sort "$out.expected" >"$out.exp.sorted"
	last=$(tail -n1 "$out.expected" | cut -d' ' -f1)
	for i in $(seq 1 200); do
		grep -q "\"type\":\"exit\",[^}]*\"pid\":$last," "$out.h2" && break
		sleep 0.05
	done
	jq -r 'select(.type == "exit") | "\(.pid) \(.exit_code)"' "$out.h2" | sort >"$out.exits"
	missing=$(comm -23 "$out.exp.sorted" "$out.exits" | wc -l)
	check_eq "$label: every exit arrived over h2, with its exit code" "0" "$missing"
	jq -r 'select(.type == "exec") | .pid' "$out.h2" | sort -u >"$out.execs"
	missing=$(cut -d' ' -f1 "$out.exp.sorted" | sort | comm -23 - "$out.execs" | wc -l)
	check_eq "$label: every exec arrived over h2" "0" "$missing"
	# The process connector reports PIDs only; comm is read from /proc when the event is
	# handled, and a process that lived a millisecond is usually gone by then.
	if [ "$label" = bpf ]; then
		check "$label: exec events name the program" jq -e -s --argjson p "$last" \
			'[.[] | select(.type == "exec" and .pid == $p)][0] | .comm == "exit_with"' "$out.h2"
	fi
	sed -n 's/^data: //p' "$out.sse" | jq -r 'select(.type == "exit") | "\(.pid) \(.exit_code)"' |
		sort >"$out.sse.exits"
	missing=$(comm -23 "$out.exp.sorted" "$out.sse.exits" | wc -l)
	check_eq "$label: every exit arrived over the HTTP/1.1 SSE stream too" "0" "$missing"
	check "$label: SSE framing" grep -q '^event: exec$' "$out.sse"
	kcurl "$K2I_URL/v1/exits?limit=100000" | jq -r '.exits[] | "\(.pid) \(.exit_code)"' |
		sort >"$out.ring"
	missing=$(comm -23 "$out.exp.sorted" "$out.ring" | wc -l)
	check_eq "$label: every exit is in /v1/exits with its exit code" "0" "$missing"
	if [ "$label" = bpf ]; then
		check "$label: /v1/exits has comm, command line, times and duration" jq -e \
			'.exits[0] | (.comm == "exit_with") and (.cmdline | test("exit_with"))
			 and (.end_time != null) and (.duration_ms >= 0)' \
			<<<"$(kcurl "$K2I_URL/v1/exits?pid=$last")"
	else
		check "$label: /v1/exits has the end time" jq -e '.exits[0].end_time != null' \
			<<<"$(kcurl "$K2I_URL/v1/exits?pid=$last")"
	fi
	check_eq "$label: no event lost" "0" "$(metric k2i_events_lost_total)"
}

# --- BPF -----------------------------------------------------------------------------------
k2i_start bpf || { not_ok "k2i starts"; done_testing; exit 1; }
src=$(kcurl "$K2I_URL/v1/host" | jq -r .event_source)
if [ "$src" = bpf ]; then
	ok "BPF source active (/v1/host event_source)"
	check_eq "/metrics names the source" "1" "$(metric 'k2i_event_source{source="bpf"}')"
	burst_test bpf

	# A new process is in /v1/proc at once, although a scan is less than 1 s old.
	kcurl -o /dev/null "$K2I_URL/v1/proc"
	sleep 300 &
	S=$!
	T_PIDS+=("$S")
	sleep 0.05
	check_eq "a new process appears in /v1/proc without waiting for a scan" "$S" \
		"$(kcurl "$K2I_URL/v1/proc?pid=$S&fields=pid" | jq '.processes[0].pid')"
	kill "$S"
	wait "$S" 2>/dev/null
	sleep 0.05
	check_eq "an exited process disappears from /v1/proc at once" "0" \
		"$(kcurl "$K2I_URL/v1/proc?pid=$S&fields=pid" | jq .count)"
	check_eq "... and is in /v1/exits, killed by SIGTERM" "15" \
		"$(kcurl "$K2I_URL/v1/exits?pid=$S" | jq '.exits[-1].signal')"
else
	skip "BPF source" "not available here: k2i uses '$src' ($(grep -o 'Process events from.*' "$K2I_LOG"))"
fi
kill -TERM "$K2I_PID"

# --- Process connector (BPF disabled by the flag) -----------------------------------------
k2i_start netlink --no-bpf || { not_ok "k2i --no-bpf starts"; done_testing; exit 1; }
src=$(kcurl "$K2I_URL/v1/host" | jq -r .event_source)
if [ "$src" = netlink ]; then
	ok "--no-bpf: process connector active"
	check "the choice is logged once" bash -c "[ \$(grep -c 'Process events from netlink' $K2I_LOG) = 1 ]"
	burst_test netlink
else
	skip "process connector" "not available here: k2i uses '$src'"
fi
kill -TERM "$K2I_PID"

# --- Clients that go away mid-stream ------------------------------------------------------
k2i_start gone || { not_ok "k2i starts"; done_testing; exit 1; }
for proto in --http2 --http1.1; do
	# exec: $! must be curl itself, not a subshell around it.
	(exec curl -sS --cacert "$K2I_STATE/ca.pem" --cert "$K2I_STATE/client.pem" \
		--key "$K2I_STATE/client.key" -N $proto "$K2I_URL/v1/events" >/dev/null 2>&1) &
	c=$!
	wait_metric k2i_event_streams 1
	kill "$c"
	wait "$c" 2>/dev/null
	"$B/tests/burst" -n 20 >/dev/null 2>&1
	check "$proto client closing its event stream leaves k2i serving" \
		test "$(status_of "$K2I_URL/healthz")" = 200
	check_eq "$proto: the stream is gone" "0" "$(metric k2i_event_streams)"
done
kill -TERM "$K2I_PID"
wait "$K2I_PID"
check_eq "k2i exits 0 after that" "0" "$?"
check "no sanitizer report" bash -c "! grep -q -i -E 'sanitizer|runtime error' $K2I_LOG"

# --- A stalled client ----------------------------------------------------------------------
printf 'stream_backlog_kb = 64\n' >"$T_TMP/stall.conf"
# Under ASan, freed memory waits in a quarantine; keep it small so RSS measures what k2i holds.
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=1
k2i_start stall --config "$T_TMP/stall.conf" || { not_ok "k2i starts"; done_testing; exit 1; }
# curl reading one byte a second: the socket buffers fill, then k2i's queue for the stream.
kcurl -N --http1.1 --limit-rate 1 "$K2I_URL/v1/events" >/dev/null &
T_PIDS+=("$!")
kcurl -N --http2 "$K2I_URL/v1/events?type=exit" >"$T_TMP/fast" &
T_PIDS+=("$!")
wait_metric k2i_event_streams 2
rss0=$(awk '/^VmRSS/ { print $2 }' "/proc/$K2I_PID/status")
for i in $(seq 1 10); do
	"$B/tests/burst" -n 1000 >/dev/null 2>&1
	[ "$(metric k2i_event_streams_cut_off_total)" -ge 1 ] && break
done
check "a stalled stream is cut off" test "$(metric k2i_event_streams_cut_off_total)" -ge 1
check_eq "the other stream goes on" "1" "$(metric k2i_event_streams)"
"$B/tests/burst" -n 1000 >/dev/null 2>&1
rss1=$(awk '/^VmRSS/ { print $2 }' "/proc/$K2I_PID/status")
check "k2i's memory stays bounded (RSS ${rss0} kB -> ${rss1} kB)" test $((rss1 - rss0)) -lt 32768
check "k2i still answers" test "$(status_of "$K2I_URL/healthz")" = 200

done_testing
