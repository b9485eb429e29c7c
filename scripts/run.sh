#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Starts both daemons with working defaults: k2i (HTTPS on :9400, certificates generated on first
# run in the state directory) and middlecon (on <rundir>/middlecon.sock); shows this host's
# process table through k2ps and a request/reply through middlecon, and keeps both running until
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
SERVE=
trap 'kill $K2I $MC $SERVE 2>/dev/null; wait 2>/dev/null' EXIT INT TERM

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
echo "k2i and middlecon keep running; press Ctrl-C to stop them."
wait $K2I
