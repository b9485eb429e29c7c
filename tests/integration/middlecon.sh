#!/bin/bash
# SPDX-License-Identifier: MIT
#
# The middlecon relay over its real socket, driven by tests/integration/mc_client (the protocol
# spoken directly with middlecon/frame.h): request/reply, load balancing, wildcards, every
# status the relay answers itself, pub/sub, $sys, malformed frames, clean shutdown.
. "$(dirname "$0")/lib.sh"

MC=$B/tests/mc_client
[ -x "$B/bin/middlecon" ] && [ -x "$MC" ] || skip_all "build middlecon and mc_client first"

mc_start /dev/null

mc() { timeout 10 "$MC" -s "$SOCK" "$@"; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# serve_bg NAME OUTFILE ARGS...: starts a responder, waits until it is registered; sets SRV_PID.
serve_bg() {
	local name=$1 out=$2
	shift 2
	# Not under timeout(1): SRV_PID must be the responder itself, for kill -9.
	"$MC" -s "$SOCK" serve "$name" "$@" >"$out" &
	SRV_PID=$!
	T_PIDS+=("$SRV_PID")
	for _ in $(seq 1 100); do
		grep -q '^ready' "$out" 2>/dev/null && return 0
		sleep 0.02
	done
	return 1
}

check_eq "socket is 0666" 666 "$(stat -c %a "$SOCK")"
check_eq "socket directory is 0755" 755 "$(stat -c %a "$RUN")"
check_eq "PING gets PONG" PONG "$(mc ping)"

# Request/reply.
serve_bg echo.svc "$T_TMP/echo.out"
check_eq "request/reply" "OK hello" "$(mc call echo.svc hello)"
check "responder sees the caller's uid from SO_PEERCRED" grep -q "^request hello uid=$(id -u) node=$(hostname)\$" "$T_TMP/echo.out"
kill "$SRV_PID"; wait "$SRV_PID" 2>/dev/null

# Load balancing across three responders.
for i in 1 2 3; do serve_bg lb.svc "$T_TMP/lb$i.out" --reply "r$i"; done
out=$(for _ in $(seq 1 9); do mc call lb.svc x; done | sort | uniq -c | awk '{print $1 "x" $3}' | tr '\n' ' ')
check_eq "load balancing: round robin over three responders" "3xr1 3xr2 3xr3 " "$out"

# Wildcards.
serve_bg 'vm.*.pause' "$T_TMP/wc1.out" --reply star
serve_bg 'sandbox.>' "$T_TMP/wc2.out" --reply gt
check_eq "'*' matches one token" "OK star" "$(mc call vm.abc.pause x)"
check_eq "'*' does not match two tokens" NO_RESPONDERS "$(mc call vm.a.b.pause x | cut -d' ' -f1)"
check_eq "'>' matches several tokens" "OK gt" "$(mc call sandbox.a.b.c x)"
check_eq "'>' needs at least one token" NO_RESPONDERS "$(mc call sandbox x | cut -d' ' -f1)"

# NO_RESPONDERS at once.
t0=$(now_ms)
out=$(mc call nobody.here x | cut -d' ' -f1)
t1=$(now_ms)
check_eq "NO_RESPONDERS" NO_RESPONDERS "$out"
check "NO_RESPONDERS within 500 ms ($((t1 - t0)) ms)" test $((t1 - t0)) -lt 500

check_eq "invalid name gets BAD_REQUEST" BAD_REQUEST "$(mc call 'bad..name' x | cut -d' ' -f1)"

# DEADLINE_EXCEEDED, and the responder is told with CANCEL.
serve_bg slow.svc "$T_TMP/slow.out" --no-reply
t0=$(now_ms)
out=$(mc call slow.svc x --deadline-ms 300 | cut -d' ' -f1)
t1=$(now_ms)
check_eq "DEADLINE_EXCEEDED" DEADLINE_EXCEEDED "$out"
check "deadline enforced within 300 ms + slack ($((t1 - t0)) ms)" test $((t1 - t0)) -ge 290 -a $((t1 - t0)) -lt 800
sleep 0.1
check "responder got CANCEL DEADLINE_EXCEEDED" grep -q '^cancel DEADLINE_EXCEEDED' "$T_TMP/slow.out"

# CANCELLED to the responder when the requester goes away.
timeout 0.3 "$MC" -s "$SOCK" call slow.svc x >/dev/null
sleep 0.1
check "responder got CANCEL CANCELLED when the requester left" grep -q '^cancel CANCELLED' "$T_TMP/slow.out"
kill "$SRV_PID"; wait "$SRV_PID" 2>/dev/null

# PEER_GONE at once when the responder dies mid-request.
serve_bg gone.svc "$T_TMP/gone.out" --no-reply
GONE_PID=$SRV_PID
( sleep 0.3; kill -9 "$GONE_PID" ) &
t0=$(now_ms)
out=$(mc call gone.svc x --deadline-ms 5000 | cut -d' ' -f1)
t1=$(now_ms)
check_eq "PEER_GONE when the responder is killed" PEER_GONE "$out"
check "PEER_GONE at once, not at the deadline ($((t1 - t0)) ms)" test $((t1 - t0)) -lt 1500

# TOO_LARGE for 2 MiB; the connection and the daemon survive.
serve_bg big.svc "$T_TMP/big.out"
out=$(mc call big.svc x --size $((2 * 1024 * 1024)) --then-ping | cut -d' ' -f1 | tr '\n' ' ')
check_eq "2 MiB request gets TOO_LARGE, the connection stays usable" "TOO_LARGE PONG " "$out"
check "the responder never saw the oversize request" test ! -s <(grep '^request' "$T_TMP/big.out")
check_eq "a 512 KiB request still goes through" OK "$(mc call big.svc x --size $((512 * 1024)) | cut -d' ' -f1)"
kill "$SRV_PID"; wait "$SRV_PID" 2>/dev/null

# Pub/sub fan-out to two subscribers.
timeout 10 "$MC" -s "$SOCK" sub 'ev.*' --count 1 >"$T_TMP/sub1.out" &
S1=$!
timeout 10 "$MC" -s "$SOCK" sub 'ev.>' --count 1 >"$T_TMP/sub2.out" &
S2=$!
for _ in $(seq 1 100); do
	grep -q ready "$T_TMP/sub1.out" 2>/dev/null && grep -q ready "$T_TMP/sub2.out" 2>/dev/null && break
	sleep 0.02
done
mc pub ev.started payload1
wait "$S1" "$S2"
check_eq "subscriber 1 got the message" "ev.started payload1" "$(tail -n1 "$T_TMP/sub1.out")"
check_eq "subscriber 2 got the message" "ev.started payload1" "$(tail -n1 "$T_TMP/sub2.out")"

# $sys.
serve_bg listed.name "$T_TMP/listed.out"
out=$(mc call '$sys.list' x)
check "\$sys.list shows a registered name" grep -q '"name":"listed.name"' <<<"$out"
check "\$sys.conns answers JSON" grep -q '^OK \[{"id"' <<<"$(mc call '$sys.conns' x)"
check "\$sys.stats counts statuses" grep -q '"NO_RESPONDERS":[1-9]' <<<"$(mc call '$sys.stats' x)"
check_eq "\$sys cannot be registered by clients" "register DENIED" "$(mc serve '$sys.list')"

# Malformed frames: BAD_REQUEST and close, the daemon lives on.
check_eq "malformed prefix: BAD_REQUEST, closed" "BAD_REQUEST closed" "$(mc bad-prefix)"
check_eq "malformed header: BAD_REQUEST, closed" "BAD_REQUEST closed" "$(mc bad-header)"
check_eq "a frame before HELLO: BAD_REQUEST, closed" "BAD_REQUEST closed" "$(mc no-hello)"
check "daemon still running" kill -0 "$MC_PID"
check_eq "and still routing" "OK again" "$(mc call listed.name again)"

# Clean shutdown.
kill -TERM "$MC_PID"
wait "$MC_PID"
check_eq "exit status 0 on SIGTERM" 0 "$?"
check "socket removed on exit" test ! -e "$SOCK"
check "no sanitizer report" test -z "$(grep -E 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$LOG")"
done_testing
