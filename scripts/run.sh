#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Starts the whole system on this machine with working defaults: k2i (HTTPS on :9400,
# certificates generated on first run in the state directory) and middlecon (on
# <rundir>/middlecon.sock), then a sandboxed program and, where /dev/kvm works, a microVM, both
# under supervision (registered with middlecon, reported by k2i); shows them and this host's
# process table through k2ps, calls them through middlecon, and keeps everything running until
# Ctrl-C. K2I_LISTEN overrides k2i's address.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${B:-build}
LISTEN=${K2I_LISTEN:-:9400}
if [ "$(id -u)" -eq 0 ]; then
	STATE=/var/lib/k2i RUNDIR=/run/k2i
else
	# As libcommon/paths.c: $XDG_RUNTIME_DIR/k2i, else /tmp/k2i-<uid>.
	STATE=${XDG_STATE_HOME:-$HOME/.local/state}/k2i
	RUNDIR=${XDG_RUNTIME_DIR:+$XDG_RUNTIME_DIR/k2i}
	RUNDIR=${RUNDIR:-/tmp/k2i-$(id -u)}
fi
PORT=${LISTEN##*:}

"$B/bin/k2i" --listen "$LISTEN" --state-dir "$STATE" "$@" &
K2I=$!
"$B/bin/middlecon" --rundir "$RUNDIR" &
MC=$!
SERVE= SBX= VM=
trap 'kill $SBX $VM $SERVE $K2I $MC 2>/dev/null; wait 2>/dev/null' EXIT INT TERM

CURL=(curl -sS --cacert "$STATE/ca.pem" --cert "$STATE/client.pem" --key "$STATE/client.key")
for _ in $(seq 50); do
	"${CURL[@]}" -o /dev/null "https://localhost:$PORT/healthz" 2>/dev/null && break
	kill -0 $K2I 2>/dev/null || exit 1
	sleep 0.1
done

echo
echo "k2i is serving https://localhost:$PORT/ (HTTP/2 and HTTP/1.1, mutual TLS)."
echo "The busiest processes, as k2ps sees them over HTTPS (k2ps --sort=-cpu --limit 10):"
echo
"$B/bin/k2ps" --state-dir "$STATE" -H "localhost:$PORT" --sort=-cpu --limit 10
echo
echo "Try:  $B/bin/k2ps --state-dir $STATE -H localhost:$PORT -u root --sort=-rss --limit 5"
echo "      $B/bin/k2ps --state-dir $STATE -H localhost:$PORT --events      # live exec/exit feed"

# middlecon: a responder answering with this host's uptime, and one call to it.
SOCK=$RUNDIR/middlecon.sock
for _ in $(seq 50); do
	[ -S "$SOCK" ] && break
	sleep 0.1
done
"$B/bin/mcctl" --socket "$SOCK" serve demo.uptime -- cat /proc/uptime &
SERVE=$!
sleep 0.3
echo "middlecon is relaying on $SOCK; mcctl call demo.uptime answers:"
"$B/bin/mcctl" --socket "$SOCK" call demo.uptime </dev/null
echo "Try:  $B/bin/mcctl --socket $SOCK list"
echo

# Instances under supervision: a sandboxed program, and a microVM booting the test guest.
if [ -x "$B/bin/sandbox" ]; then
	"$B/bin/sandbox" run --rundir "$RUNDIR" --id demo-sandbox -- \
		/bin/sh -c 'while :; do sleep 1; done' &
	SBX=$!
fi
if [ -x "$B/bin/microvm" ] && [ -f "$B/guests/bootcheck.elf" ] && [ -w /dev/kvm ]; then
	cat >"$RUNDIR/demo-vm.json" <<-EOF
		{"boot-source": {"kernel_image_path": "$PWD/$B/guests/bootcheck.elf",
		                 "boot_args": "console=ttyS0 mode=count"},
		 "machine-config": {"vcpu_count": 1, "mem_size_mib": 32}}
	EOF
	"$B/bin/microvm" --rundir "$RUNDIR" --id demo-vm --config-file "$RUNDIR/demo-vm.json" \
		--console "$RUNDIR/demo-vm.console" &
	VM=$!
else
	echo "(no usable /dev/kvm here: no microVM)"
fi
if [ -n "$SBX$VM" ]; then
	sleep 1.5
	echo "Sandboxes and microVMs, as k2ps sees them (k2ps --sandboxes --vms):"
	echo
	"$B/bin/k2ps" --state-dir "$STATE" -H "localhost:$PORT" --sandboxes --vms
	echo
	echo "Their processes (k2ps --instance any -o pid,instance,stat,comm,args):"
	echo
	"$B/bin/k2ps" --state-dir "$STATE" -H "localhost:$PORT" --instance any \
		-o pid,instance,stat,comm,args
	echo
	[ -n "$SBX" ] && echo "mcctl call sandbox.demo-sandbox state:" &&
		"$B/bin/mcctl" --socket "$SOCK" call sandbox.demo-sandbox state | head -c 300 && echo
	[ -n "$VM" ] && echo "mcctl call vm.demo-vm pause:" &&
		"$B/bin/mcctl" --socket "$SOCK" call vm.demo-vm pause && echo &&
		"$B/bin/mcctl" --socket "$SOCK" call vm.demo-vm resume >/dev/null
	echo "Try:  $B/bin/mcctl --socket $SOCK call vm.demo-vm stats"
	echo "      $B/bin/k2ps --state-dir $STATE -H localhost:$PORT --vms --sandboxes"
	echo "      scripts/datacenter.sh up 3      # several hosts, one mesh (README)"
	echo
fi
echo "Everything keeps running; press Ctrl-C to stop it."
wait $K2I
