# SPDX-License-Identifier: MIT
# shellcheck shell=bash
#
# Test hosts made of network namespaces, for tests that need several "machines" on this one.
# Source after lib.sh:
#
#   . "$(dirname "$0")/lib.sh"
#   . "$(dirname "$0")/lib_netns.sh"
#   netns_setup 3            # NS_NAMES[1..3], NS_IPS[1..3]; skips (exit 77) if not permitted
#   ns_exec 1 some command   # runs in host 1's namespace
#   ns_bg 1 some command     # the same in the background; its pid is in NS_BG_PID and cleaned up
#
# Layout: a bridge k2ibr<tag> in the root namespace holds 10.200.<x>.1/24, where x is picked at
# random per run among the /24s of 10.200.0.0/16 that no interface on this machine uses yet. Host i
# is namespace k2i<tag>h<i>, joined to the bridge by a veth pair (k2v<tag>h<i> in the root
# namespace, eth0 inside), with address 10.200.<x>.<10+i>/24 and its own loopback. <tag> is six
# random hex digits, so parallel runs never share a name or an address. The root namespace reaches
# every host through the bridge's on-link route; nothing is routed or NATed further, so these
# addresses exist only between the namespaces this file makes.
#
# Every namespace, veth and bridge made here, and every process found inside those namespaces, is
# removed by the EXIT trap (which also runs lib.sh's cleanup); INT, TERM and HUP exit through it.

NS_TAG=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
NS_BRIDGE=k2ibr$NS_TAG
NS_NET=
NS_NAMES=()
NS_IPS=()
NS_VETHS=()
NS_MADE_BRIDGE=0
NS_BG_PID=

# netns_kill_all NAME: ends every process whose network namespace is NAME (SIGTERM, then SIGKILL
# after a second), since a namespace whose name is deleted lives on while a process is inside.
netns_kill_all() {
	local ns=$1 pids sig=TERM n
	for n in $(seq 20); do
		pids=$(ip netns pids "$ns" 2>/dev/null)
		[ -z "$pids" ] && return 0
		[ "$n" -gt 10 ] && sig=KILL
		# shellcheck disable=SC2086
		kill -"$sig" $pids 2>/dev/null
		sleep 0.1
	done
}

netns_cleanup() {
	local ns v
	for ns in "${NS_NAMES[@]}"; do
		[ -n "$ns" ] || continue
		netns_kill_all "$ns"
		ip netns del "$ns" 2>/dev/null
		rm -rf "/etc/netns/$ns"
	done
	# Deleting a namespace deletes its end of each veth pair and with it the pair; delete the
	# root ends too in case a namespace could not be deleted.
	for v in "${NS_VETHS[@]}"; do
		ip link del "$v" 2>/dev/null
	done
	[ "$NS_MADE_BRIDGE" = 1 ] && ip link del "$NS_BRIDGE" 2>/dev/null
	NS_NAMES=()
	NS_VETHS=()
	NS_MADE_BRIDGE=0
}

netns_exit() {
	local p
	for p in "${T_PIDS[@]}"; do
		kill "$p" 2>/dev/null
	done
	netns_cleanup
	cleanup
}
trap netns_exit EXIT
trap 'exit 143' TERM
trap 'exit 130' INT
trap 'exit 129' HUP

# netns_pick_net: sets NS_NET to "10.200.<x>" for an x no address on this machine is in.
netns_pick_net() {
	local used x _
	used=$(ip -o -4 addr show 2>/dev/null; ip -4 route show 2>/dev/null)
	for _ in $(seq 64); do
		x=$(($(od -An -N1 -tu1 /dev/urandom | tr -d ' ') % 254 + 1))
		if ! grep -q "10\.200\.$x\." <<<"$used"; then
			NS_NET=10.200.$x
			return 0
		fi
	done
	return 1
}

# netns_setup N: makes hosts 1..N (see the top of this file). Skips the whole script (exit 77,
# with the reason) when network namespaces cannot be made here, e.g. without CAP_SYS_ADMIN.
netns_setup() {
	local n=$1 i ns veth err
	command -v ip >/dev/null 2>&1 || skip_all "'ip' (iproute2) is not installed"
	if ! err=$(ip netns add "k2i${NS_TAG}probe" 2>&1); then
		skip_all "ip netns add is not permitted here: $err"
	fi
	ip netns del "k2i${NS_TAG}probe"
	netns_pick_net || skip_all "no free /24 in 10.200.0.0/16"
	ip link add "$NS_BRIDGE" type bridge || return 1
	NS_MADE_BRIDGE=1
	ip addr add "$NS_NET.1/24" dev "$NS_BRIDGE" || return 1
	ip link set "$NS_BRIDGE" up || return 1
	for i in $(seq "$n"); do
		netns_add_host "$i" || return 1
	done
}

# netns_add_host I: makes host I (namespace, veth pair, addresses); used by netns_setup.
netns_add_host() {
	local i=$1 ns=k2i${NS_TAG}h$1 veth=k2v${NS_TAG}h$1
	ip netns add "$ns" || return 1
	NS_NAMES[i]=$ns
	NS_IPS[i]=$NS_NET.$((10 + i))
	ip link add "$veth" type veth peer name eth0 netns "$ns" || return 1
	NS_VETHS[i]=$veth
	ip link set "$veth" master "$NS_BRIDGE" || return 1
	ip link set "$veth" up || return 1
	ip -n "$ns" link set lo up || return 1
	ip -n "$ns" addr add "${NS_IPS[i]}/24" dev eth0 || return 1
	ip -n "$ns" link set eth0 up || return 1
}

# ns_exec I COMMAND...: runs COMMAND in host I's network namespace.
ns_exec() {
	local i=$1
	shift
	ip netns exec "${NS_NAMES[i]}" "$@"
}

# ns_hosts I LINE...: the /etc/hosts that commands in host I see (ip netns exec bind-mounts
# /etc/netns/<namespace>/hosts over /etc/hosts); LINE is "ADDRESS NAME...".
ns_hosts() {
	local i=$1
	shift
	mkdir -p "/etc/netns/${NS_NAMES[i]}"
	printf '%s\n' "127.0.0.1 localhost" "$@" >"/etc/netns/${NS_NAMES[i]}/hosts"
}

# ns_bg I COMMAND...: ns_exec in the background; sets NS_BG_PID and registers it with lib.sh's
# cleanup (netns_cleanup also kills whatever else runs in the namespace).
ns_bg() {
	local i=$1
	shift
	ip netns exec "${NS_NAMES[i]}" "$@" &
	NS_BG_PID=$!
	T_PIDS+=("$NS_BG_PID")
}

# ns_wait_port I IP PORT [TRIES]: waits (0.1 s per try, default 100) until something listens on
# IP:PORT inside host I.
ns_wait_port() {
	local i=$1 ip=$2 port=$3 tries=${4:-100} _
	for _ in $(seq "$tries"); do
		ns_exec "$i" ss -Htln "sport = :$port" 2>/dev/null | grep -q -E " ($ip|0\.0\.0\.0|\*):$port " && return 0
		sleep 0.1
	done
	return 1
}
