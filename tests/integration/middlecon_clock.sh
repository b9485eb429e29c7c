#!/bin/bash
# SPDX-License-Identifier: MIT
#
# middlecon across hosts whose clocks disagree: two network-namespace hosts linked over mutual
# TLS, h2's relay and clients running with a clock 5 s ahead (libfaketime, which shifts
# CLOCK_REALTIME only for the processes started under it, as a badly synchronised host would
# have it). Each relay measures the other's clock offset through the heartbeats and translates
# the absolute deadlines it receives over the link: a call from h1 to h2 is not refused as
# already late, and deadlines are still enforced on both sides, in both directions.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_netns.sh"

[ "$(id -u)" = 0 ] || skip_all "needs root for network namespaces"
command -v jq >/dev/null || skip_all "jq is not installed"
command -v faketime >/dev/null || skip_all "faketime is not installed (apt-get install faketime)"
netns_setup 2

PORT=9401
SKEW=5
# Only the wall clock is shifted; libevent's timers run on CLOCK_MONOTONIC.
export FAKETIME_DONT_FAKE_MONOTONIC=1
# libfaketime is preloaded ahead of an ASan build's runtime, which ASan accepts when told.
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0
# skewed I CMD...: runs CMD with host I's clock (h2 is $SKEW s ahead).
skewed() {
	local i=$1
	shift
	if [ "$i" = 2 ]; then faketime -f "+${SKEW}s" "$@"; else "$@"; fi
}

pki_new_ca "$T_TMP/ca" "clock CA"
for i in 1 2; do
	mkdir -p "$T_TMP/h$i"
	pki_issue "$T_TMP/ca" "$T_TMP/h$i/node" "h$i" "DNS:h$i" || {
		not_ok "a certificate for h$i"
		done_testing
		exit 1
	}
	cat >"$T_TMP/h$i/mc.conf" <<-EOF
		node_name = h$i
		tls_cert = $T_TMP/h$i/node.pem
		tls_key = $T_TMP/h$i/node.key
		tls_ca = $T_TMP/ca/ca.pem
		listen = 0.0.0.0:$PORT
		peer_heartbeat_ms = 200
		peer_timeout_ms = 1000
	EOF
done
echo "peers = ${NS_IPS[2]}" >>"$T_TMP/h1/mc.conf"

declare -a MC_PIDS
for i in 1 2; do
	d=$T_TMP/h$i
	pre=()
	[ "$i" = 2 ] && pre=(faketime -f "+${SKEW}s")
	ns_bg "$i" "${pre[@]}" "$B/bin/middlecon" --config "$d/mc.conf" --rundir "$d/run" \
		--state-dir "$d/state" --log-level debug 2>>"$d/mc.log"
	MC_PIDS[i]=$NS_BG_PID
	wait_until 100 test -S "$d/run/middlecon.sock" || {
		not_ok "relay h$i starts"
		sed 's/^/#   /' "$d/mc.log"
		done_testing
		exit 1
	}
done

mcx() {
	local i=$1
	shift
	skewed "$i" "$B/bin/mcctl" -s "$T_TMP/h$i/run/middlecon.sock" "$@"
}
peers_json() { mcx "$1" --json peers 2>/dev/null; }
serve() {
	local i=$1 name=$2 out=$T_TMP/$3
	shift 3
	skewed "$i" "$B/tests/mc_client" -s "$T_TMP/h$i/run/middlecon.sock" serve "$name" "$@" \
		>"$out" 2>&1 &
	T_PIDS+=("$!")
	wait_until 50 grep -q '^ready' "$out" || echo "# responder $name on h$i did not start"
}
call() {
	local i=$1
	shift
	skewed "$i" "$B/tests/mc_client" -s "$T_TMP/h$i/run/middlecon.sock" call "$@"
}
# offset_ms I NODE: host I's estimate of NODE's clock offset, in whole ms.
offset_ms() {
	peers_json "$1" | jq -r --arg n "$2" \
		'.links[] | select(.node == $n and .clock_offset_ms != null) | .clock_offset_ms | round'
}
near() { [ -n "$1" ] && [ "$1" -ge $(($2 - 250)) ] && [ "$1" -le $(($2 + 250)) ]; }

check "the clocks really differ" \
	[ $(($(skewed 2 date +%s) - $(date +%s))) -ge $((SKEW - 1)) ]
check "h1 and h2 link" wait_until 100 eval \
	"peers_json 1 | jq -e '.links[] | select(.node == \"h2\" and .state == \"up\")' >/dev/null"
check "h1 measures h2's clock ${SKEW} s ahead" wait_until 50 eval "near \"\$(offset_ms 1 h2)\" $((SKEW * 1000))"
check "h2 measures h1's clock ${SKEW} s behind" wait_until 50 eval "near \"\$(offset_ms 2 h1)\" $((-SKEW * 1000))"
check "mcctl peers shows the offset" eval "mcx 1 peers | grep -E -q '^h2 .* \+5[0-9]{3}\.[0-9] '"

# h1 -> h2: h1's deadline, in h1's clock, is 5 s in h2's past unless translated.
serve 2 svc.two two.out --reply h2
check "h1 learns svc.two" wait_until 50 eval \
	"mcx 1 list | jq -e '.[] | select(.kind == \"remote\" and .name == \"svc.two\")' >/dev/null"
check_eq "a call from h1 to h2 with a 1 s deadline is answered" "OK h2" \
	"$(call 1 svc.two x --deadline-ms 1000)"
serve 2 svc.slow2 slow2.out --delay 1500
wait_until 50 eval "mcx 1 list | jq -e '.[] | select(.name == \"svc.slow2\")' >/dev/null"
t0=$(date +%s%N)
out=$(call 1 svc.slow2 x --deadline-ms 400)
t1=$(date +%s%N)
check_eq "h1 -> h2 past its deadline: DEADLINE_EXCEEDED" "DEADLINE_EXCEEDED" "${out%% *}"
ms=$(((t1 - t0) / 1000000))
check "...after about 400 ms, not at once ($ms ms)" eval "[ $ms -ge 300 ] && [ $ms -lt 1500 ]"
check "h2's responder got the request and then its cancellation" \
	wait_until 40 eval "grep -q '^request x' '$T_TMP/slow2.out' && grep -q '^cancel DEADLINE_EXCEEDED' '$T_TMP/slow2.out'"

# h2 -> h1: h2's deadline is 5 s in h1's future unless translated.
serve 1 svc.one one.out --reply h1
check "h2 learns svc.one" wait_until 50 eval \
	"mcx 2 list | jq -e '.[] | select(.kind == \"remote\" and .name == \"svc.one\")' >/dev/null"
check_eq "a call from h2 to h1 is answered" "OK h1" "$(call 2 svc.one x --deadline-ms 1000)"
check "the relays are still running" kill -0 "${MC_PIDS[1]}" "${MC_PIDS[2]}"
done_testing
