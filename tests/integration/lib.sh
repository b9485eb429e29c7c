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

# Test PKI with the openssl CLI, for hosts whose certificates k2i does not generate itself.
# pki_new_ca DIR NAME: a self-signed EC P-256 CA in DIR/ca.pem, DIR/ca.key.
pki_new_ca() {
	mkdir -p "$1"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
		-subj "/CN=$2" -addext basicConstraints=critical,CA:TRUE \
		-addext keyUsage=critical,keyCertSign,cRLSign \
		-keyout "$1/ca.key" -out "$1/ca.pem" 2>/dev/null && chmod 600 "$1/ca.key"
}
# pki_issue CADIR OUT CN [SAN]: OUT.pem and OUT.key, an EC P-256 leaf signed by CADIR's CA, for both
# serverAuth and clientAuth, with SAN (e.g. DNS:name) as its subjectAltName if given.
pki_issue() {
	local ca=$1 out=$2 cn=$3 san=${4:-}
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$cn" \
		-keyout "$out.key" -out "$out.csr" 2>/dev/null || return 1
	chmod 600 "$out.key"
	{
		echo "basicConstraints=critical,CA:FALSE"
		echo "keyUsage=critical,digitalSignature"
		echo "extendedKeyUsage=serverAuth,clientAuth"
		[ -n "$san" ] && echo "subjectAltName=$san"
	} >"$out.ext"
	openssl x509 -req -in "$out.csr" -CA "$ca/ca.pem" -CAkey "$ca/ca.key" \
		-set_serial "0x$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')" -days 2 \
		-extfile "$out.ext" -out "$out.pem" 2>/dev/null
}

# wait_until TRIES CMD...: runs CMD every 0.1 s until it succeeds; fails after TRIES tries.
wait_until() {
	local tries=$1 _
	shift
	for _ in $(seq "$tries"); do
		"$@" && return 0
		sleep 0.1
	done
	return 1
}

# mc_start CONF: starts a middlecon relay with CONF (and debug logging) under $T_TMP and waits for
# its socket; sets RUN, SOCK, LOG and MC_PID. Exits the script if the relay does not start.
mc_start() {
	RUN=$T_TMP/run
	SOCK=$RUN/middlecon.sock
	LOG=$T_TMP/middlecon.log
	"$B/bin/middlecon" --config "$1" --rundir "$RUN" --state-dir "$T_TMP/state" \
		--log-level debug 2>"$LOG" &
	MC_PID=$!
	T_PIDS+=("$MC_PID")
	for _ in $(seq 1 100); do
		[ -S "$SOCK" ] && return 0
		sleep 0.05
	done
	echo "# middlecon did not start"
	sed 's/^/#   /' "$LOG"
	exit 1
}
