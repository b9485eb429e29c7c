#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Slow consumers against the real middlecon relay: a subscriber, a requester and a responder
# that never read while others flood them. The relay's RSS must stay bounded (growth < 64 MiB
# for 80 MiB sent), the slow side gets OVERLOADED, dropped messages or paused reads, and is
# finally closed with a logged reason, while a third client's PING and calls keep working.
. "$(dirname "$0")/lib.sh"

MC=$B/tests/mc_client
[ -x "$B/bin/middlecon" ] && [ -x "$MC" ] || skip_all "build middlecon and mc_client first"

printf 'output_buffer_kb = 64\nslow_consumer_timeout_ms = 3000\n' >"$T_TMP/slow.conf"
# Under ASan, freed chunks sit in a 256 MiB quarantine by default and would read as growth.
ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=8 mc_start "$T_TMP/slow.conf"

mc() { timeout 10 "$MC" -s "$SOCK" "$@"; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$MC_PID/status"; }
stat_of() { mc call '$sys.stats' x | sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p"; }

# bg OUT CMD...: starts a client in the background and waits for its "ready"; sets BG_PID.
bg() {
	local out=$1
	shift
	"$@" >"$out" &
	BG_PID=$!
	T_PIDS+=("$BG_PID")
	for _ in $(seq 1 100); do
		grep -q '^ready' "$out" 2>/dev/null && return 0
		sleep 0.02
	done
	return 1
}

bg "$T_TMP/echo.out" "$MC" -s "$SOCK" serve echo.svc
check_eq "PING before the floods" PONG "$(mc ping)"
# Warm up the allocator so the baseline is not the empty process.
mc flood ev.warm --count 100 --size 4096 >/dev/null
RSS0=$(rss_kb)

# 1. A subscriber that never reads, 80 MiB published at it.
bg "$T_TMP/stall.out" "$MC" -s "$SOCK" sub-stall 'ev.>'
check "stalled subscriber is subscribed" grep -q '^ready' "$T_TMP/stall.out"
STALL_PID=$BG_PID
check_eq "publisher sends 80 MiB" "sent 20000" "$(mc flood ev.x --count 20000 --size 4096)"
rss=$(rss_kb)
check "relay RSS grew by < 64 MiB with a stalled subscriber ($(((rss - RSS0) / 1024)) MiB)" \
	test $((rss - RSS0)) -lt $((64 * 1024))
check "messages to the stalled subscriber were dropped and counted" test "$(stat_of publish_dropped)" -gt 0
check_eq "a third client's PING works meanwhile" PONG "$(mc ping)"
check_eq "a third client's call works meanwhile" "OK hi" "$(mc call echo.svc hi)"

# 2. A requester that floods requests and never reads its replies: its reads are paused.
out=$(mc flood echo.svc --call --count 20000 --size 4096 --hold-ms 100)
check "the flooding requester is stopped by backpressure ($out)" grep -q '^stuck' <<<"$out"
check "the relay counted paused reads" test "$(stat_of read_pauses)" -gt 0
rss=$(rss_kb)
check "relay RSS grew by < 64 MiB with a requester that does not read ($(((rss - RSS0) / 1024)) MiB)" \
	test $((rss - RSS0)) -lt $((64 * 1024))
check_eq "a third client's call still works" "OK again" "$(mc call echo.svc again)"

# 3. A responder that never reads: requests for it get OVERLOADED once its queue is full.
bg "$T_TMP/deaf.out" "$MC" -s "$SOCK" serve-stall deaf.svc
DEAF_PID=$BG_PID
out=$(mc flood deaf.svc --call --count 200 --size 4096)
check_eq "800 KiB of requests sent at a responder that does not read" "sent 200" "$out"
check_eq "the next request gets OVERLOADED at once" OVERLOADED \
	"$(mc call deaf.svc x --deadline-ms 2000 | cut -d' ' -f1)"
check "\$sys.stats counts OVERLOADED" grep -q '"OVERLOADED":[1-9]' <<<"$(mc call '$sys.stats' x)"
check_eq "PING still works" PONG "$(mc ping)"

# After slow_consumer_timeout_ms without progress both stalled peers are closed with a reason.
for _ in $(seq 1 60); do
	[ "$(grep -c 'closed: slow consumer' "$LOG")" -ge 2 ] && break
	sleep 0.1
done
check "relay log gives the reason for closing slow consumers" test "$(grep -c 'closed: slow consumer' "$LOG")" -ge 2
check "\$sys.stats counts slow consumers closed" test "$(stat_of slow_consumers_closed)" -ge 2
check "\$sys.conns no longer lists the stalled subscriber" test -z "$(mc call '$sys.conns' x | grep -o "\"pid\":$STALL_PID,")"
check_eq "the relay keeps serving" "OK end" "$(mc call echo.svc end)"
rss=$(rss_kb)
echo "# relay RSS: $((RSS0 / 1024)) MiB before, $((rss / 1024)) MiB after"
kill "$STALL_PID" "$DEAF_PID" 2>/dev/null

kill -TERM "$MC_PID"
wait "$MC_PID"
check_eq "exit status 0 on SIGTERM" 0 "$?"
check "no sanitizer report" test -z "$(grep -E 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$LOG")"
done_testing
