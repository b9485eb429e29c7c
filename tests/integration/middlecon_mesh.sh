#!/bin/bash
# SPDX-License-Identifier: MIT
#
# middlecon across hosts: four network-namespace hosts, a relay on each, linked over mutual TLS.
# h1..h3 share a CA; h4's certificate comes from another CA and must be refused. h1 dials h2, h3
# and its own address (which it must recognise and not link to); h2 dials h1 (so h1 and h2 dial
# each other and must settle on one link); h3 finds its peers through a DNS name whose records
# are all three hosts (itself included). Then: calls across hosts, name@node, local responders
# preferred and load balancing across hosts, deadlines carried to the remote relay, remote
# ACLs by node, a host going down mid-request (PEER_GONE at once), its return, a partition
# (heartbeat) and its healing.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_netns.sh"

[ "$(id -u)" = 0 ] || skip_all "needs root for network namespaces"
command -v jq >/dev/null || skip_all "jq is not installed"
netns_setup 4

PORT=9401
declare -a MC_PIDS

# A relay for host I from the config file $T_TMP/hI/mc.conf, waiting for its socket.
mesh_start() {
	local i=$1 d=$T_TMP/h$1
	rm -f "$d/run/middlecon.sock"
	ns_bg "$i" "$B/bin/middlecon" --config "$d/mc.conf" --rundir "$d/run" \
		--state-dir "$d/state" --log-level debug 2>>"$d/mc.log"
	MC_PIDS[i]=$NS_BG_PID
	for _ in $(seq 100); do
		[ -S "$d/run/middlecon.sock" ] && return 0
		sleep 0.05
	done
	echo "# relay h$i did not start"
	sed 's/^/#   /' "$d/mc.log"
	exit 1
}

mesh_stop() {
	kill "${MC_PIDS[$1]}" 2>/dev/null
	wait "${MC_PIDS[$1]}" 2>/dev/null
}

mcx() {
	local i=$1
	shift
	"$B/bin/mcctl" -s "$T_TMP/h$i/run/middlecon.sock" "$@"
}

# peers_json I: $sys.peers of host I.
peers_json() { mcx "$1" --json peers 2>/dev/null; }

link_up() { peers_json "$1" | jq -e --arg n "$2" '[.links[] | select(.node == $n and .state == "up")] | length == 1' >/dev/null; }
no_link() { peers_json "$1" | jq -e --arg n "$2" '[.links[] | select(.node == $n)] | length == 0' >/dev/null; }
has_route() { mcx "$1" list | jq -e --arg r "$2" --arg n "$3" '[.[] | select(.kind == "remote" and .name == $r and .node == $n)] | length == 1' >/dev/null; }
no_route_from() { mcx "$1" list | jq -e --arg n "$2" '[.[] | select(.kind == "remote" and .node == $n)] | length == 0' >/dev/null; }

# serve I NAME OUT [ARGS]: a responder for NAME on host I, output in $T_TMP/OUT.
serve() {
	local i=$1 name=$2 out=$T_TMP/$3
	shift 3
	"$B/tests/mc_client" -s "$T_TMP/h$i/run/middlecon.sock" serve "$name" "$@" >"$out" 2>&1 &
	LAST_PID=$!
	T_PIDS+=("$LAST_PID")
	wait_until 50 grep -q '^ready' "$out" || echo "# responder $name on h$i did not start"
}

call() {
	local i=$1
	shift
	"$B/tests/mc_client" -s "$T_TMP/h$i/run/middlecon.sock" call "$@"
}

# --- hosts, certificates, configurations ---
pki_new_ca "$T_TMP/ca" "mesh CA"
pki_new_ca "$T_TMP/rogue-ca" "another CA"
for i in 1 2 3 4; do
	mkdir -p "$T_TMP/h$i"
	if [ "$i" = 4 ]; then ca=$T_TMP/rogue-ca; else ca=$T_TMP/ca; fi
	pki_issue "$ca" "$T_TMP/h$i/node" "h$i" "DNS:h$i" || {
		not_ok "a certificate for h$i"
		done_testing
		exit 1
	}
	cat >"$T_TMP/h$i/mc.conf" <<-EOF
		node_name = h$i
		tls_cert = $T_TMP/h$i/node.pem
		tls_key = $T_TMP/h$i/node.key
		tls_ca = $ca/ca.pem
		listen = 0.0.0.0:$PORT
		peer_heartbeat_ms = 200
		peer_timeout_ms = 1000
		peer_backoff_min_ms = 50
		peer_backoff_max_ms = 1000
		peer_dns_refresh_s = 2
	EOF
done
IP1=${NS_IPS[1]} IP2=${NS_IPS[2]} IP3=${NS_IPS[3]}
echo "peers = $IP2, $IP3:$PORT, $IP1" >>"$T_TMP/h1/mc.conf"
echo "peers = $IP1" >>"$T_TMP/h2/mc.conf"
echo "allow_call = secret. node=h1" >>"$T_TMP/h2/mc.conf"
ns_hosts 3 "$IP1 mesh.test" "$IP2 mesh.test" "$IP3 mesh.test"
echo "peer_dns = mesh.test" >>"$T_TMP/h3/mc.conf"
echo "peers = $IP1" >>"$T_TMP/h4/mc.conf"

for i in 1 2 3 4; do mesh_start "$i"; done

# --- the mesh forms ---
check "h1 links to h2" wait_until 100 link_up 1 h2
check "h1 links to h3" wait_until 100 link_up 1 h3
check "h2 links to h3 (dialled by h3, found through DNS)" wait_until 100 link_up 2 h3
check "h3 links to h1 and h2" wait_until 100 eval 'link_up 3 h1 && link_up 3 h2'
check "h1 and h2 dialled each other and kept one link" \
	wait_until 30 eval 'link_up 1 h2 && [ "$(peers_json 1 | jq "[.links[] | select(.node == \"h2\")] | length")" = 1 ]'
check "h1 does not link to its own address" \
	wait_until 50 eval "peers_json 1 | jq -e '.peers[] | select(.addr == \"$IP1:$PORT\") | .state == \"self\"' >/dev/null"
check "h3 does not link to itself through DNS" \
	wait_until 50 eval "peers_json 3 | jq -e '.peers[] | select(.addr == \"$IP3:$PORT\") | .state == \"self\"' >/dev/null"
check_eq "h3 resolved three addresses for mesh.test" 3 \
	"$(peers_json 3 | jq '[.peers[] | select(.peer == "mesh.test")] | length')"
check "no node names itself in its links" eval \
	'! peers_json 1 | jq -e ".links[] | select(.node == \"h1\")" >/dev/null'
check "round-trip times are measured" \
	wait_until 30 eval "peers_json 1 | jq -e '[.links[] | select(.node == \"h2\") | .rtt_ms > 0] | any' >/dev/null"
check "mcctl peers prints the links" eval 'mcx 1 peers | grep -E -q "^h2 +[0-9.]+:[0-9]+ +(in|out) +up "'

# --- a certificate from another CA ---
check "h4 (another CA) is refused by h1" wait_until 50 grep -q "Link from .* refused" "$T_TMP/h1/mc.log"
check "h1 has no link to h4" no_link 1 h4
check "h4 reports why it cannot link" \
	wait_until 50 eval "peers_json 4 | jq -e '.peers[] | select(.last_error != null) | .last_error | test(\"certificate|TLS|alert\")' >/dev/null"
serve 4 rogue.svc rogue.out --reply h4
check_eq "h4's names do not reach h1" "NO_RESPONDERS" "$(call 1 rogue.svc x | cut -d' ' -f1)"

# --- calls across hosts ---
serve 2 svc.a a2.out --reply from-h2
check "h1 learns h2's route" wait_until 50 has_route 1 svc.a h2
check "h3 learns h2's route" wait_until 50 has_route 3 svc.a h2
check_eq "h1 calls a name served on h2" "OK from-h2" "$(call 1 svc.a hello)"
check_eq "h3 calls a name served on h2" "OK from-h2" "$(call 3 svc.a hello3)"
check "the responder sees the calling node and uid" grep -q "^request hello uid=$(id -u) node=h1\$" "$T_TMP/a2.out"
check_eq "a name nobody serves: NO_RESPONDERS at once" "NO_RESPONDERS" "$(call 1 svc.none x | cut -d' ' -f1)"

# --- local first, load balancing across hosts, name@node ---
for i in 1 2 3; do serve "$i" svc.lb "lb$i.out" --reply "h$i"; LB_PID[i]=$LAST_PID; done
check "h1 learns svc.lb on h2 and h3" wait_until 50 eval 'has_route 1 svc.lb h2 && has_route 1 svc.lb h3'
out=$(for _ in 1 2 3 4 5 6; do call 1 svc.lb x; done | sort | uniq -c | tr -s ' ')
check_eq "a local responder is preferred" " 6 OK h1" "$out"
check_eq "svc.lb@h2 goes to h2" "OK h2" "$(call 1 svc.lb@h2 x)"
check_eq "svc.lb@h3 goes to h3" "OK h3" "$(call 1 svc.lb@h3 x)"
check_eq "svc.lb@h1 stays on h1" "OK h1" "$(call 1 svc.lb@h1 x)"
check_eq "name@node for a node without a link" "NO_RESPONDERS" "$(call 1 svc.lb@h9 x | cut -d' ' -f1)"
check_eq "name@node where the node does not serve it" "NO_RESPONDERS" "$(call 1 svc.a@h3 x | cut -d' ' -f1)"
check_eq "a malformed node name" "BAD_REQUEST" "$(call 1 'svc.lb@h!' x | cut -d' ' -f1)"
check_eq "\$sys of another node" "h3" "$(mcx 1 -n h3 stats | jq -r .node)"
kill "${LB_PID[1]}"
check "h1's local responder is gone" wait_until 50 eval '! mcx 1 list | jq -e ".[] | select(.name == \"svc.lb\" and .kind == \"register\")" >/dev/null'
out=$(for _ in $(seq 10); do call 1 svc.lb x; done | sort | uniq -c | tr -s ' ' | tr '\n' ',')
check_eq "without a local responder, calls alternate between h2 and h3" " 5 OK h2, 5 OK h3," "$out"

# --- deadlines travel, remote ACLs ---
serve 2 svc.slow slow2.out --delay 1500
check "h1 learns svc.slow" wait_until 50 has_route 1 svc.slow h2
t0=$(date +%s%N)
out=$(call 1 svc.slow x --deadline-ms 300)
t1=$(date +%s%N)
check_eq "a remote call past its deadline: DEADLINE_EXCEEDED" "DEADLINE_EXCEEDED" "$(echo "$out" | cut -d' ' -f1)"
check "...after about 300 ms" [ $(((t1 - t0) / 1000000)) -lt 1200 ]
check "h2's relay cancels its responder at the same deadline" \
	wait_until 40 grep -q '^cancel DEADLINE_EXCEEDED' "$T_TMP/slow2.out"
serve 2 secret.x secret2.out --reply secret
check "h1 and h3 learn secret.x" wait_until 50 eval 'has_route 1 secret.x h2 && has_route 3 secret.x h2'
check_eq "h2's ACL admits callers from node h1" "OK secret" "$(call 1 secret.x x)"
check_eq "h2's ACL refuses callers from node h3" "DENIED" "$(call 3 secret.x x | cut -d' ' -f1)"

# --- publish/subscribe across hosts: one copy per subscriber, one hop ---
sub() {
	local i=$1 pattern=$2 out=$T_TMP/$3
	"$B/tests/mc_client" -s "$T_TMP/h$i/run/middlecon.sock" sub "$pattern" >"$out" 2>&1 &
	T_PIDS+=($!)
	wait_until 50 grep -q '^ready' "$out" || echo "# subscriber $pattern on h$i did not start"
}
has_sub() { mcx "$1" list | jq -e --arg r "$2" --arg n "$3" '[.[] | select(.kind == "remote" and .subscribe and .name == $r and .node == $n)] | length == 1' >/dev/null; }
pub() { "$B/tests/mc_client" -s "$T_TMP/h$1/run/middlecon.sock" pub "$2" "$3"; }
sub 2 'ev.>' ev2.out
sub 3 'ev.>' ev3.out
sub 3 'ev.*' ev3b.out
sub 1 'ev.>' ev1.out
check "h1 learns the subscriptions of h2 and h3" \
	wait_until 50 eval 'has_sub 1 "ev.>" h2 && has_sub 1 "ev.>" h3 && has_sub 1 "ev.*" h3'
check "h2 learns h3's subscriptions" wait_until 50 eval 'has_sub 2 "ev.>" h3'
pub 1 ev.one from-h1
pub 2 ev.two from-h2
check "a message published on h1 reaches h2's subscriber" \
	wait_until 30 grep -q '^ev.one from-h1$' "$T_TMP/ev2.out"
check "...and both of h3's subscriptions" \
	wait_until 30 eval "grep -q '^ev.one from-h1\$' '$T_TMP/ev3.out' && grep -q '^ev.one from-h1\$' '$T_TMP/ev3b.out'"
check "...and h1's own subscriber" wait_until 30 grep -q '^ev.one from-h1$' "$T_TMP/ev1.out"
check "a message published on h2 reaches h1 and h3" \
	wait_until 30 eval "grep -q '^ev.two from-h2\$' '$T_TMP/ev1.out' && grep -q '^ev.two from-h2\$' '$T_TMP/ev3.out'"
sleep 0.3
for f in ev1 ev2 ev3 ev3b; do
	check_eq "$f: each message exactly once (no loop, no duplicate)" "1 1" \
		"$(grep -c '^ev.one ' "$T_TMP/$f.out") $(grep -c '^ev.two ' "$T_TMP/$f.out")"
done

# --- never delivered twice: each responder saw each call made to it exactly once ---
check_eq "svc.a on h2 served 2 requests" 2 "$(grep -c '^request' "$T_TMP/a2.out")"
check_eq "svc.lb on h1 served 7 requests" 7 "$(grep -c '^request' "$T_TMP/lb1.out")"
check_eq "svc.lb on h2 served 6 requests" 6 "$(grep -c '^request' "$T_TMP/lb2.out")"
check_eq "svc.lb on h3 served 6 requests" 6 "$(grep -c '^request' "$T_TMP/lb3.out")"
check_eq "secret.x on h2 served 1 request" 1 "$(grep -c '^request' "$T_TMP/secret2.out")"
check_eq "h2 counts what it served for links: 2 + 6 + 1 slow + 1 secret" 10 \
	"$(mcx 2 stats | jq .remote_served)"

# --- a host goes down mid-request ---
serve 2 svc.hang hang2.out --delay 20000
check "h1 learns svc.hang" wait_until 50 has_route 1 svc.hang h2
call 1 svc.hang x --deadline-ms 20000 >"$T_TMP/hang.call" &
CALL_PID=$!
wait_until 50 grep -q '^request' "$T_TMP/hang2.out"
t0=$(date +%s%N)
mesh_stop 2
wait "$CALL_PID"
t1=$(date +%s%N)
check_eq "the caller gets PEER_GONE" "PEER_GONE" "$(cut -d' ' -f1 "$T_TMP/hang.call")"
# "At once": well before the 20 s deadline (the bound leaves room for a loaded machine).
check "...at once, not at its deadline ($(((t1 - t0) / 1000000)) ms)" [ $(((t1 - t0) / 1000000)) -lt 5000 ]
check "h1 withdraws h2's routes" wait_until 30 no_route_from 1 h2
check "h3 withdraws h2's routes" wait_until 30 no_route_from 3 h2
check_eq "h2's names: NO_RESPONDERS" "NO_RESPONDERS" "$(call 1 svc.a x | cut -d' ' -f1)"

# --- and comes back ---
mesh_start 2
serve 2 svc.a a2b.out --reply back-h2
check "h1 re-links to h2" wait_until 100 link_up 1 h2
check "h1 re-learns h2's routes" wait_until 100 has_route 1 svc.a h2
check "h3 re-learns h2's routes" wait_until 100 has_route 3 svc.a h2
check_eq "calls reach h2 again" "OK back-h2" "$(call 1 svc.a x)"

# --- a partition, healed ---
serve 3 svc.p p3.out --reply h3 --delay 200
check "h1 learns svc.p" wait_until 50 has_route 1 svc.p h3
serve 3 svc.phang phang3.out --delay 20000
check "h1 learns svc.phang" wait_until 50 has_route 1 svc.phang h3
call 1 svc.phang x --deadline-ms 20000 >"$T_TMP/phang.call" &
CALL_PID=$!
wait_until 50 grep -q '^request' "$T_TMP/phang3.out"
t0=$(date +%s%N)
ip link set "${NS_VETHS[3]}" down
wait "$CALL_PID"
t1=$(date +%s%N)
ms=$(((t1 - t0) / 1000000))
check_eq "a partition fails the request in flight with PEER_GONE" "PEER_GONE" "$(cut -d' ' -f1 "$T_TMP/phang.call")"
check "...when the heartbeat times out ($ms ms), long before its deadline" [ "$ms" -lt 8000 ]
check "h1 drops the link to h3" wait_until 30 no_link 1 h3
check "h2 drops the link to h3" wait_until 30 no_link 2 h3
check_eq "h3's names: NO_RESPONDERS during the partition" "NO_RESPONDERS" "$(call 1 svc.p x | cut -d' ' -f1)"
ip link set "${NS_VETHS[3]}" up
check "after healing, h1 re-links to h3" wait_until 150 link_up 1 h3
check "after healing, h2 re-links to h3" wait_until 150 link_up 2 h3
check "h1 re-learns h3's routes" wait_until 50 has_route 1 svc.p h3
check_eq "calls reach h3 again" "OK h3" "$(call 1 svc.p x)"

# --- nothing crashed, and every relay shuts down cleanly (under ASan: without a report) ---
for i in 1 2 3 4; do
	check "relay h$i is still running" kill -0 "${MC_PIDS[i]}"
done
for i in 1 2 3 4; do
	kill "${MC_PIDS[i]}"
	wait "${MC_PIDS[i]}"
	check_eq "relay h$i exits with status 0 on SIGTERM" 0 "$?"
	check "relay h$i's log has no sanitizer report" \
		eval "! grep -E -q 'AddressSanitizer|LeakSanitizer|runtime error' '$T_TMP/h$i/mc.log'"
done
done_testing
