#!/bin/bash
# SPDX-License-Identifier: MIT
#
# A datacenter on one machine: N hosts made of network namespaces (each with its own host name,
# address and certificate from one CA), each running k2i and middlecon as its sidecars, the
# relays linked into one mesh, and a few sandboxes (and, where /dev/kvm works, a microVM) under
# supervision. Then the datacenter view: k2ps over every host, the mesh, and calls across hosts.
#
#   scripts/datacenter.sh up [N]     start N hosts (default 3), show the view, leave them running
#   scripts/datacenter.sh show       show the view again
#   scripts/datacenter.sh down       stop everything and remove the namespaces
#
# Needs root (namespaces, a bridge). Everything lives under $DC_DIR (default /tmp/k2i-dc), on the
# bridge k2idc0 with 10.201.0.0/24; hosts are dc1..dcN at 10.201.0.11, .12, ...
set -euo pipefail
cd "$(dirname "$0")/.."
B=${B:-build}
DC_DIR=${DC_DIR:-/tmp/k2i-dc}
NET=10.201.0
BRIDGE=k2idc0

die() {
	echo "datacenter: $*" >&2
	exit 1
}

[ "$(id -u)" = 0 ] || die "needs root (network namespaces)"
for b in k2i k2ps middlecon mcctl k2i-certs; do
	[ -x "$B/bin/$b" ] || die "missing $B/bin/$b: run make first"
done

n_hosts() { cat "$DC_DIR/hosts" 2>/dev/null || echo 0; }
ip_of() { echo "$NET.$((10 + $1))"; }
host_list() {
	local n i out=
	n=$(n_hosts)
	for i in $(seq "$n"); do out+="${out:+,}$(ip_of "$i")"; done
	echo "$out"
}

# in_host I CMD...: runs CMD in host I's network namespace under its own host name.
in_host() {
	local i=$1
	shift
	ip netns exec "k2idc-dc$i" unshare --uts /bin/sh -c 'hostname "$0" && exec "$@"' "dc$i" "$@"
}

K2PS() {
	"$B/bin/k2ps" --ca "$DC_DIR/client/ca.pem" --cert "$DC_DIR/client/client.pem" \
		--key "$DC_DIR/client/client.key" -H "$(host_list)" "$@"
}
MCCTL() {
	local i=$1
	shift
	"$B/bin/mcctl" -s "$DC_DIR/dc$i/run/middlecon.sock" "$@"
}

down() {
	local ns pid
	for pid in $(cat "$DC_DIR"/*.pids 2>/dev/null); do
		kill "$pid" 2>/dev/null || true
	done
	for ns in $(ip netns list 2>/dev/null | awk '/^k2idc-/ { print $1 }'); do
		for pid in $(ip netns pids "$ns" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
		sleep 0.2
		for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
		ip netns del "$ns" 2>/dev/null || true
	done
	ip link del "$BRIDGE" 2>/dev/null || true
	rm -rf "$DC_DIR"
}

# bg I NAME CMD...: starts CMD in host I in the background, logging to dcI/NAME.log.
bg() {
	local i=$1 name=$2
	shift 2
	in_host "$i" "$@" >"$DC_DIR/dc$i/$name.log" 2>&1 &
	echo $! >>"$DC_DIR/dc$i.pids"
}

wait_file() {
	for _ in $(seq 100); do
		[ -e "$1" ] && return 0
		sleep 0.05
	done
	die "timed out waiting for $1"
}

up() {
	local n=$1 i j peers
	[ -e "$DC_DIR/hosts" ] && die "already up ($DC_DIR); run '$0 down' first"
	mkdir -p "$DC_DIR"
	echo "$n" >"$DC_DIR/hosts"

	ip link add "$BRIDGE" type bridge
	ip addr add "$NET.1/24" dev "$BRIDGE"
	ip link set "$BRIDGE" up
	"$B/bin/k2i-certs" ca --name "datacenter CA" "$DC_DIR/ca" >/dev/null
	"$B/bin/k2i-certs" client --ca "$DC_DIR/ca" --out "$DC_DIR/client" operator >/dev/null
	for i in $(seq "$n"); do
		ip netns add "k2idc-dc$i"
		ip link add "k2idcv$i" type veth peer name eth0 netns "k2idc-dc$i"
		ip link set "k2idcv$i" master "$BRIDGE" up
		ip -n "k2idc-dc$i" addr add "$(ip_of "$i")/24" dev eth0
		ip -n "k2idc-dc$i" link set eth0 up
		ip -n "k2idc-dc$i" link set lo up
		mkdir -p "$DC_DIR/dc$i/run" "$DC_DIR/dc$i/state"
		"$B/bin/k2i-certs" node --ca "$DC_DIR/ca" --out "$DC_DIR/dc$i/tls" \
			--san "IP:$(ip_of "$i")" "dc$i" >/dev/null
		peers=
		for j in $(seq "$n"); do
			[ "$j" = "$i" ] || peers+="${peers:+, }$(ip_of "$j")"
		done
		cat >"$DC_DIR/dc$i/k2i.conf" <<-EOF
			listen = 0.0.0.0:9400
			tls_cert = $DC_DIR/dc$i/tls/node.pem
			tls_key = $DC_DIR/dc$i/tls/node.key
			tls_ca = $DC_DIR/dc$i/tls/ca.pem
		EOF
		cat >"$DC_DIR/dc$i/middlecon.conf" <<-EOF
			listen = 0.0.0.0
			peers = $peers
			tls_cert = $DC_DIR/dc$i/tls/node.pem
			tls_key = $DC_DIR/dc$i/tls/node.key
			tls_ca = $DC_DIR/dc$i/tls/ca.pem
		EOF
		bg "$i" k2i "$B/bin/k2i" --config "$DC_DIR/dc$i/k2i.conf" \
			--state-dir "$DC_DIR/dc$i/state" --rundir "$DC_DIR/dc$i/run"
		bg "$i" middlecon "$B/bin/middlecon" --config "$DC_DIR/dc$i/middlecon.conf" \
			--state-dir "$DC_DIR/dc$i/state" --rundir "$DC_DIR/dc$i/run"
	done
	for i in $(seq "$n"); do wait_file "$DC_DIR/dc$i/run/middlecon.sock"; done

	# Workloads under supervision: a sandboxed service on every host, one batch job on dc2.
	if [ -x "$B/bin/sandbox" ]; then
		for i in $(seq "$n"); do
			bg "$i" sandbox-web "$B/bin/sandbox" run --rundir "$DC_DIR/dc$i/run" \
				--id "web-$i" -- /bin/sh -c 'while :; do sleep 1; done'
		done
		[ "$n" -ge 2 ] && bg 2 sandbox-batch "$B/bin/sandbox" run \
			--rundir "$DC_DIR/dc2/run" --id batch-1 -- /bin/sleep 3600
	fi
	if [ -x "$B/bin/microvm" ] && [ -e "$B/guests/pauseguest.elf" ] && [ -w /dev/kvm ]; then
		cat >"$DC_DIR/dc1/vm.json" <<-EOF
			{"boot-source": {"kernel_image_path": "$PWD/$B/guests/pauseguest.elf",
			                 "boot_args": "console=ttyS0"},
			 "machine-config": {"vcpu_count": 1, "mem_size_mib": 32}}
		EOF
		bg 1 microvm "$B/bin/microvm" --api-sock "$DC_DIR/dc1/run/vm-1.api" --id vm-1 \
			--rundir "$DC_DIR/dc1/run" --config-file "$DC_DIR/dc1/vm.json"
	fi
	# The mesh forms within a second or two; the names are announced as soon as it has.
	sleep 2
}

show() {
	local n
	n=$(n_hosts)
	[ "$n" -gt 0 ] || die "not up: run '$0 up' first"
	echo "== The datacenter's hosts (k2ps --hosts-summary)"
	K2PS --hosts-summary || true
	echo
	echo "== Every sandbox and microVM (k2ps --sandboxes --vms)"
	K2PS --sandboxes --vms || true
	echo
	echo "== Their processes, datacenter-wide (k2ps --instance any -o host,pid,instance,comm,args)"
	K2PS --instance any -o host,pid,instance,comm,args --sort host,pid || true
	echo
	echo "== The middlecon mesh as dc1 sees it (mcctl peers)"
	MCCTL 1 peers || true
	if [ "$n" -ge 2 ] && MCCTL 1 list | grep -q '"sandbox.batch-1"'; then
		echo
		echo "== A call from dc1 to a sandbox on dc2 (mcctl call sandbox.batch-1@dc2 state)"
		MCCTL 1 call sandbox.batch-1@dc2 state || true
		echo
	fi
	cat <<-EOF

		Try:
		  B=$B $0 show
		  $B/bin/k2ps --ca $DC_DIR/client/ca.pem --cert $DC_DIR/client/client.pem \\
		      --key $DC_DIR/client/client.key -H $(host_list) --sort=-rss --limit 10
		  $B/bin/mcctl -s $DC_DIR/dc1/run/middlecon.sock call sandbox.web-2@dc2 pause
		  $B/bin/mcctl -s $DC_DIR/dc1/run/middlecon.sock call sandbox.web-2@dc2 resume
		  $0 down
	EOF
}

case "${1:-}" in
up)
	n=${2:-3}
	[[ $n =~ ^[1-9][0-9]?$ ]] || die "up takes a host count, 1..99"
	trap 'echo "datacenter: start failed, cleaning up" >&2; down' ERR
	up "$n"
	trap - ERR
	show
	;;
show) show ;;
down) down ;;
*)
	echo "usage: $0 up [N] | show | down" >&2
	exit 2
	;;
esac
