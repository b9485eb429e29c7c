# SPDX-License-Identifier: MIT
# shellcheck shell=bash
#
# TAP helpers for the integration tests (after bubblewrap's tests/libtest.sh), and helpers that
# start a real k2i on an ephemeral loopback port with freshly generated certificates.

set -u
B=${B:-build}
TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$TOP" || exit 1
T_N=0
T_FAILED=0
T_TMP=$(mktemp -d /tmp/k2i-test.XXXXXX)
T_PIDS=()

cleanup() {
	for p in "${T_PIDS[@]}"; do
		kill "$p" 2>/dev/null
	done
	for p in "${T_PIDS[@]}"; do
		wait "$p" 2>/dev/null
	done
	rm -rf "$T_TMP"
}
trap cleanup EXIT

ok() {
	T_N=$((T_N + 1))
	echo "ok $T_N - $*"
}

not_ok() {
	T_N=$((T_N + 1))
	T_FAILED=$((T_FAILED + 1))
	echo "not ok $T_N - $*"
}

# check DESCRIPTION COMMAND...: one TAP line for whether COMMAND succeeds.
check() {
	local desc=$1
	shift
	if "$@" >/dev/null; then ok "$desc"; else not_ok "$desc"; fi
}

# check_eq DESCRIPTION EXPECTED ACTUAL
check_eq() {
	if [ "$2" = "$3" ]; then
		ok "$1"
	else
		not_ok "$1"
		echo "#   expected: '$2'"
		echo "#   actual:   '$3'"
	fi
}

skip() {
	T_N=$((T_N + 1))
	echo "ok $T_N - $1 # SKIP $2"
}

# skip_all REASON: the whole script is skipped (exit 77).
skip_all() {
	echo "1..0 # SKIP $*"
	exit 77
}

done_testing() {
	echo "1..$T_N"
	[ "$T_FAILED" -eq 0 ]
}

need() {
	for c in "$@"; do
		command -v "$c" >/dev/null 2>&1 || skip_all "'$c' is not installed"
	done
}

# k2i_start NAME [K2I OPTIONS...]: starts k2i on 127.0.0.1 with an ephemeral port and its own
# state directory; sets K2I_PORT, K2I_PID, K2I_STATE, K2I_URL, K2I_LOG.
k2i_start() {
	local name=$1 i
	shift
	K2I_STATE=$T_TMP/$name
	K2I_LOG=$K2I_STATE.log
	mkdir -p "$K2I_STATE"
	"$B/bin/k2i" --state-dir "$K2I_STATE" --rundir "$K2I_STATE/run" --listen 127.0.0.1:0 \
		--config /dev/null "$@" 2>"$K2I_LOG" &
	K2I_PID=$!
	T_PIDS+=("$K2I_PID")
	K2I_PORT=
	for i in $(seq 1 100); do
		K2I_PORT=$(sed -n 's#.*Listening on https://127\.0\.0\.1:\([0-9]*\)/.*#\1#p' "$K2I_LOG" | head -n1)
		[ -n "$K2I_PORT" ] && break
		kill -0 "$K2I_PID" 2>/dev/null || break
		sleep 0.1
	done
	if [ -z "$K2I_PORT" ]; then
		echo "# k2i did not start:"
		sed 's/^/#   /' "$K2I_LOG"
		return 1
	fi
	K2I_URL=https://127.0.0.1:$K2I_PORT
}

# kcurl ARGS...: curl with the state directory's CA and client certificate.
kcurl() {
	curl -sS --max-time 20 --cacert "$K2I_STATE/ca.pem" --cert "$K2I_STATE/client.pem" \
		--key "$K2I_STATE/client.key" "$@"
}

# status_of ARGS...: prints only the HTTP status of a kcurl request.
status_of() {
	kcurl -o /dev/null -w '%{http_code}' "$@"
}
