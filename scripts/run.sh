#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Starts k2i with working defaults (HTTPS on :9400, certificates generated on first run in the
# state directory), shows this host's process table through it, and keeps it running in the
# foreground until Ctrl-C. K2I_LISTEN overrides the address.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${B:-build}
LISTEN=${K2I_LISTEN:-:9400}
if [ "$(id -u)" -eq 0 ]; then STATE=/var/lib/k2i; else STATE=${XDG_STATE_HOME:-$HOME/.local/state}/k2i; fi
PORT=${LISTEN##*:}

"$B/bin/k2i" --listen "$LISTEN" --state-dir "$STATE" "$@" &
K2I=$!
trap 'kill $K2I 2>/dev/null; wait $K2I 2>/dev/null' EXIT INT TERM

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
echo "k2i keeps running; press Ctrl-C to stop it."
wait $K2I
