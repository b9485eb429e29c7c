#!/bin/bash
# SPDX-License-Identifier: MIT
#
# libcommon/supervise.c against a real middlecon: an instance registers its name when the relay
# is there (also when it comes later, and again after the relay restarts), answers methods given
# as -m METHOD, NAME.METHOD or the body, reports errors as statuses, and unregisters when it
# ends (NO_RESPONDERS after, PEER_GONE for a call in flight when it dies).
. "$(dirname "$0")/lib.sh"

SOCK=$T_TMP/run/middlecon.sock
mcx() { "$B/bin/mcctl" -s "$SOCK" "$@"; }
# The instance first: no relay yet.
"$B/tests/sv_instance" "$SOCK" sbx.t1 >"$T_TMP/inst.out" 2>"$T_TMP/inst.err" &
INST=$!
T_PIDS+=("$INST")
sleep 0.5
check "without a relay the instance keeps running" kill -0 "$INST"
echo "" >"$T_TMP/mc.conf"
mc_start "$T_TMP/mc.conf"
check "it registers once the relay starts" wait_until 100 grep -q '^registered' "$T_TMP/inst.out"
check_eq "state" '{"state":"running"}' "$(mcx call sbx.t1 state)"
check_eq "pause (method in the body)" '{"state":"paused"}' "$(mcx call sbx.t1 pause)"
check_eq "state after pause, as NAME.METHOD" '{"state":"paused"}' "$(mcx call sbx.t1.state </dev/null)"
mcx -m pause call sbx.t1 </dev/null >"$T_TMP/again.out" 2>&1
check_eq "pausing twice: OVERLOADED (-EBUSY) with the handler's reason" \
	"OVERLOADED: already paused" "$(cat "$T_TMP/again.out")"
check_eq "resume with -m" '{"state":"running"}' "$(mcx -m resume call sbx.t1 </dev/null)"
check_eq "the body reaches a method named with -m" '{"echo":"hello"}' "$(mcx -m echo call sbx.t1 hello)"
mcx call sbx.t1 frobnicate >"$T_TMP/unk.out" 2>&1
check_eq "an unknown method: BAD_REQUEST" "BAD_REQUEST: unknown method 'frobnicate'" "$(cat "$T_TMP/unk.out")"
mcx call sbx.t1 'Not A Method' >"$T_TMP/bad.out" 2>&1
check "a malformed method: BAD_REQUEST" grep -q '^BAD_REQUEST: name a method' "$T_TMP/bad.out"
check "both the name and its methods are registered" \
	eval "mcx list | jq -e '[.[] | select(.name == \"sbx.t1\" or .name == \"sbx.t1.*\")] | length == 2' >/dev/null"

# The relay restarts: the instance registers again.
kill "$MC_PID"
wait "$MC_PID" 2>/dev/null
check "the instance notices the relay is gone" wait_until 50 grep -q '^unregistered' "$T_TMP/inst.out"
mc_start "$T_TMP/mc.conf"
check "...and registers again when it is back" \
	wait_until 100 eval "[ \$(grep -c '^registered' '$T_TMP/inst.out') = 2 ]"
check_eq "calls work again" '{"state":"running"}' "$(mcx call sbx.t1 state)"

# stop: answered, then the instance ends and its name goes.
check_eq "stop is answered" '{"state":"stopping"}' "$(mcx call sbx.t1 stop)"
check "the instance exits" wait_until 50 eval "! kill -0 $INST 2>/dev/null"
wait "$INST"
check_eq "...with status 0 (under ASan: no leak)" 0 "$?"
check "...and no sanitizer report" eval "! grep -E -q 'Sanitizer|runtime error' '$T_TMP/inst.err'"
mcx call sbx.t1 state >"$T_TMP/gone.out" 2>&1
check "after it ended: NO_RESPONDERS" grep -q '^NO_RESPONDERS' "$T_TMP/gone.out"

# An instance that dies with a call in flight: the caller gets PEER_GONE.
"$B/tests/sv_instance" "$SOCK" sbx.t2 >"$T_TMP/inst2.out" 2>&1 &
T_PIDS+=($!)
check "a second instance registers" wait_until 100 grep -q '^registered' "$T_TMP/inst2.out"
mcx call sbx.t2 crash >"$T_TMP/crash.out" 2>&1
check_eq "a call in flight when the instance dies: PEER_GONE" "PEER_GONE" \
	"$(cut -d: -f1 "$T_TMP/crash.out")"
check "the relay is still running" kill -0 "$MC_PID"
done_testing
