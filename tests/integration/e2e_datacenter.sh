#!/bin/bash
# SPDX-License-Identifier: MIT
#
# The whole system on several namespace hosts: each runs k2i and middlecon (the relays in one
# mesh), instances run under supervision on two of them (sandboxes, and a microVM where
# /dev/kvm works), and an operator on a third sees them with k2ps --sandboxes/--vms, pauses and
# resumes them through middlecon from another host, kills one and sees it reported as exited,
# stops the others, and finds no stale record or registration left.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_netns.sh"

[ "$(id -u)" = 0 ] || skip_all "needs root for network namespaces"
for b in sandbox k2i-certs k2i k2ps middlecon mcctl; do
	[ -x "$B/bin/$b" ] || skip_all "no $B/bin/$b"
done
command -v jq >/dev/null || skip_all "jq is not installed"
netns_setup 3

# in_host I CMD...: CMD in host I's network namespace, under host name hI.
in_host() {
	local i=$1
	shift
	ip netns exec "${NS_NAMES[i]}" unshare --uts /bin/sh -c 'hostname "$0" && exec "$@"' "h$i" "$@"
}
# bg_host I LOG CMD...: in_host in the background.
bg_host() {
	local i=$1 log=$2
	shift 2
	in_host "$i" "$@" >"$log" 2>&1 &
	LAST_PID=$!
	T_PIDS+=("$LAST_PID")
}
"$B/bin/k2i-certs" ca "$T_TMP/ca" >/dev/null
"$B/bin/k2i-certs" client --ca "$T_TMP/ca" --out "$T_TMP/op" operator >/dev/null
HOSTS=
for i in 1 2 3; do
	d=$T_TMP/h$i
	mkdir -p "$d/run" "$d/state"
	"$B/bin/k2i-certs" node --ca "$T_TMP/ca" --out "$d/tls" --san "IP:${NS_IPS[i]}" "h$i" >/dev/null
	printf 'listen = 0.0.0.0:9400\ntls_cert = %s\ntls_key = %s\ntls_ca = %s\n' \
		"$d/tls/node.pem" "$d/tls/node.key" "$d/tls/ca.pem" >"$d/k2i.conf"
	printf 'listen = 0.0.0.0\npeers = %s\ntls_cert = %s\ntls_key = %s\ntls_ca = %s\n' \
		"${NS_IPS[1]}, ${NS_IPS[2]}, ${NS_IPS[3]}" "$d/tls/node.pem" "$d/tls/node.key" \
		"$d/tls/ca.pem" >"$d/middlecon.conf"
	bg_host "$i" "$d/k2i.log" "$B/bin/k2i" --config "$d/k2i.conf" --state-dir "$d/state" \
		--rundir "$d/run"
	bg_host "$i" "$d/middlecon.log" "$B/bin/middlecon" --config "$d/middlecon.conf" \
		--state-dir "$d/state" --rundir "$d/run"
	HOSTS+="${HOSTS:+,}${NS_IPS[i]}"
done
for i in 1 2 3; do
	check "h$i's relay is up" wait_until 100 test -S "$T_TMP/h$i/run/middlecon.sock"
	check "h$i's k2i is up" wait_until 100 ns_exec "$i" curl -sk -o /dev/null "https://${NS_IPS[i]}:9400/healthz"
done

K2PS=("$B/bin/k2ps" --ca "$T_TMP/op/ca.pem" --cert "$T_TMP/op/client.pem" --key "$T_TMP/op/client.key")
mcx() {
	local i=$1
	shift
	"$B/bin/mcctl" -s "$T_TMP/h$i/run/middlecon.sock" "$@"
}

# Instances: a sandbox on h1 and one on h2.
bg_host 1 "$T_TMP/sb1.log" "$B/bin/sandbox" run --rundir "$T_TMP/h1/run" --id web-1 -- \
	/bin/sh -c 'while :; do sleep 0.2; done'
SB1=$LAST_PID
bg_host 2 "$T_TMP/sb2.log" "$B/bin/sandbox" run --rundir "$T_TMP/h2/run" --id batch-2 -- \
	/bin/sleep 600
SB2=$LAST_PID
# And a microVM on h2, where /dev/kvm works.
HAVE_VM=0
if [ -x "$B/bin/microvm" ] && [ -f "$B/guests/bootcheck.elf" ] && [ -w /dev/kvm ]; then
	HAVE_VM=1
	cat >"$T_TMP/vm.json" <<-EOF
		{"boot-source": {"kernel_image_path": "$PWD/$B/guests/bootcheck.elf",
		                 "boot_args": "console=ttyS0 mode=count"},
		 "machine-config": {"vcpu_count": 1, "mem_size_mib": 32}}
	EOF
	bg_host 2 "$T_TMP/vm2.log" "$B/bin/microvm" --rundir "$T_TMP/h2/run" --id vm-2 \
		--config-file "$T_TMP/vm.json" --console "$T_TMP/vm2.console"
	VM2=$LAST_PID
fi
check "web-1 registers with h1's relay" \
	wait_until 100 eval "mcx 1 list | jq -e '.[] | select(.name == \"sandbox.web-1\" and .kind == \"register\")' >/dev/null"
check "h3 learns sandbox.web-1 from h1" \
	wait_until 100 eval "mcx 3 list | jq -e '.[] | select(.name == \"sandbox.web-1\" and .node == \"h1\")' >/dev/null"
check "h3 learns sandbox.batch-2 from h2" \
	wait_until 100 eval "mcx 3 list | jq -e '.[] | select(.name == \"sandbox.batch-2\" and .node == \"h2\")' >/dev/null"

# The operator's view, from the third host.
ns_exec 3 "${K2PS[@]}" -H "$HOSTS" --sandboxes --vms >"$T_TMP/list.txt"
check_eq "k2ps --sandboxes from h3 exits 0" 0 "$?"
check "it lists web-1 on h1, running" grep -E -q "^${NS_IPS[1]} +sandbox +web-1 +running " "$T_TMP/list.txt"
check "it lists batch-2 on h2, running" grep -E -q "^${NS_IPS[2]} +sandbox +batch-2 +running " "$T_TMP/list.txt"
check_eq "and nothing on h3" "" "$(grep -E "^${NS_IPS[3]} " "$T_TMP/list.txt")"

if [ "$HAVE_VM" = 1 ]; then
	check "h3 learns vm.vm-2 from h2" \
		wait_until 100 eval "mcx 3 list | jq -e '.[] | select(.name == \"vm.vm-2\" and .node == \"h2\")' >/dev/null"
	ns_exec 3 "${K2PS[@]}" -H "$HOSTS" --vms >"$T_TMP/vms.txt"
	check "k2ps --vms from h3 lists vm-2 on h2, running" \
		grep -E -q "^${NS_IPS[2]} +vm +vm-2 +Running " "$T_TMP/vms.txt"
	check_eq "pause vm-2 from h1" "Paused" "$(mcx 1 call vm.vm-2@h2 pause | jq -r .state)"
	check "k2i on h2 reports it paused" \
		wait_until 50 eval "ns_exec 3 '${K2PS[0]}' ${K2PS[*]:1} -H ${NS_IPS[2]} --vms | grep -E -q ' vm-2 +Paused '"
	check_eq "resume vm-2 from h1" "Running" "$(mcx 1 call vm.vm-2@h2 resume | jq -r .state)"
	check_eq "stop vm-2 from h3" "Stopping" "$(mcx 3 call vm.vm-2@h2 stop | jq -r .state)"
	check "vm-2's VMM exits" wait_until 50 eval "! kill -0 $VM2 2>/dev/null"
	check "vm-2 is reported exited with status 0" \
		wait_until 50 eval "ns_exec 3 '${K2PS[0]}' ${K2PS[*]:1} -H ${NS_IPS[2]} --vms | grep -E -q ' vm-2 +exited .*exit 0$'"
	check "no record of vm-2 is left" [ ! -e "$T_TMP/h2/run/instances/vm-2.json" ]
else
	skip "a microVM on h2" "no usable /dev/kvm or microvm build here"
fi

# Pause and resume web-1 through middlecon, from h3.
check_eq "state of web-1 from h3" "running" "$(mcx 3 call sandbox.web-1@h1 state | jq -r .state)"
check_eq "pause web-1 from h3" "paused" "$(mcx 3 call sandbox.web-1@h1 pause | jq -r .state)"
check "k2i on h1 shows it paused" \
	wait_until 50 eval "ns_exec 3 '${K2PS[0]}' ${K2PS[*]:1} -H ${NS_IPS[1]} --sandboxes | grep -E -q ' web-1 +paused '"
# Every process of the sandbox but its launcher (which keeps serving calls) is stopped.
launcher=$(jq -r .pid "$T_TMP/h1/run/instances/web-1.json")
web1_procs() {
	ns_exec 3 "${K2PS[@]}" -H "${NS_IPS[1]}" --instance sandbox/web-1 -o pid,stat,comm \
		--no-headers | awk -v l="$launcher" '$1 != l'
}
check "the sandboxed processes are listed" eval '[ -n "$(web1_procs)" ]'
# A stop is no process event: k2i's shared snapshot shows it within its freshness (1 s).
check "...and stopped (state T)" wait_until 30 eval \
	'p=$(web1_procs) && [ -n "$p" ] && ! awk '"'"'$2 !~ /^T/'"'"' <<<"$p" | grep -q .'
check_eq "resume web-1 from h3" "running" "$(mcx 3 call sandbox.web-1@h1 resume | jq -r .state)"
check "k2i on h1 shows it running again" \
	wait_until 50 eval "ns_exec 3 '${K2PS[0]}' ${K2PS[*]:1} -H ${NS_IPS[1]} --sandboxes | grep -E -q ' web-1 +running '"

# Kill batch-2's launcher outright: reported exited, nothing left behind.
kill -9 "$(jq -r .pid "$T_TMP/h2/run/instances/batch-2.json")"
check "batch-2 is reported exited, killed by signal 9" \
	wait_until 50 eval "ns_exec 3 '${K2PS[0]}' ${K2PS[*]:1} -H ${NS_IPS[2]} --sandboxes | grep -E -q ' batch-2 +exited .*signal 9$'"
check "no record of batch-2 is left" [ ! -e "$T_TMP/h2/run/instances/batch-2.json" ]
check "no socket of batch-2 is left" [ ! -e "$T_TMP/h2/run/instances/batch-2.sock" ]
check "h2's relay dropped sandbox.batch-2" \
	wait_until 50 eval "! mcx 2 list | jq -e '.[] | select(.name == \"sandbox.batch-2\")' >/dev/null"
check "h3 no longer routes sandbox.batch-2" \
	wait_until 50 eval "! mcx 3 list | jq -e '.[] | select(.name == \"sandbox.batch-2\")' >/dev/null"
mcx 3 call sandbox.batch-2@h2 state >"$T_TMP/gone.out" 2>&1
check "a call to it: NO_RESPONDERS" grep -q '^NO_RESPONDERS' "$T_TMP/gone.out"

# Stop web-1 through middlecon: it ends cleanly and unregisters.
mcx 3 call sandbox.web-1@h1 stop >/dev/null
check "web-1's launcher exits after stop" wait_until 50 eval "! kill -0 $SB1 2>/dev/null"
check "web-1 is reported exited" \
	wait_until 50 eval "ns_exec 3 '${K2PS[0]}' ${K2PS[*]:1} -H ${NS_IPS[1]} --sandboxes | grep -E -q ' web-1 +exited '"
check "no record is left on h1" eval "[ -z \"\$(ls '$T_TMP/h1/run/instances')\" ]"
check "no sandbox or vm name is registered anywhere" \
	eval "! { mcx 1 list; mcx 2 list; mcx 3 list; } | jq -e '.[] | select(.name | startswith(\"sandbox.\") or startswith(\"vm.\"))' >/dev/null"
done_testing
