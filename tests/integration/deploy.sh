#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Deployment: k2i-certs end to end (a CA, node and client certificates used by a real k2i, k2ps,
# two linked middlecon relays and Prometheus, and refused when from another CA); `make install`
# into a DESTDIR (and not overwriting edited configuration files); the systemd units checked by
# systemd-analyze (with negative controls) and k2i run with exactly its unit's capabilities; the
# Kubernetes manifests parsed and cross-checked against the units, the tools and the daemons;
# the Prometheus scrape configuration checked by promtool.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_ports.sh"

need jq curl openssl
PY=/usr/bin/python3
CERTS=$B/bin/k2i-certs
for b in k2i k2ps middlecon mcctl k2i-certs; do
	[ -x "$B/bin/$b" ] || skip_all "$B/bin/$b is not built"
done
# Children that ptrace or change credentials do not get along with LeakSanitizer.
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0

# ===== k2i-certs =====
PKI=$T_TMP/pki
check "ca: creates a CA" "$CERTS" ca "$PKI/ca"
check_eq "ca: directory mode 0700, key 0600, certificate 0644" "700 600 644" \
	"$(stat -c %a "$PKI/ca" "$PKI/ca/ca.key" "$PKI/ca/ca.pem" | tr '\n' ' ' | sed 's/ $//')"
SUM=$(sha256sum "$PKI/ca/ca.pem" "$PKI/ca/ca.key")
"$CERTS" ca "$PKI/ca" >/dev/null 2>"$T_TMP/err"
check_eq "ca: a second run exits 1" 1 $?
check "ca: ... saying it does not overwrite" grep -q 'exists, not overwriting' "$T_TMP/err"
check_eq "ca: ... and leaves the CA as it was" "$SUM" "$(sha256sum "$PKI/ca/ca.pem" "$PKI/ca/ca.key")"

check "node: n1 (with IP and DNS SANs)" "$CERTS" node --ca "$PKI/ca" --out "$PKI/n1" \
	--san IP:127.0.0.1 --san DNS:localhost n1
check "node: n2" "$CERTS" node --ca "$PKI/ca" --out "$PKI/n2" --san IP:127.0.0.1 n2
check "client: k2ps@ops" "$CERTS" client --ca "$PKI/ca" --out "$PKI/ops" k2ps@ops
check_eq "node: node.key 0600, node.pem and ca.pem 0644" "600 644 644" \
	"$(stat -c %a "$PKI/n1/node.key" "$PKI/n1/node.pem" "$PKI/n1/ca.pem" | tr '\n' ' ' | sed 's/ $//')"
check "node: ca.pem is the CA's" cmp -s "$PKI/ca/ca.pem" "$PKI/n1/ca.pem"
check "node/client: openssl verifies them against the CA" \
	openssl verify -CAfile "$PKI/ca/ca.pem" "$PKI/n1/node.pem" "$PKI/n2/node.pem" "$PKI/ops/client.pem"
SHOW=$("$CERTS" show "$PKI/n1/node.pem")
check_eq "show: subject and names of n1" "subject: CN=n1
san: DNS:n1
san: IP:127.0.0.1
san: DNS:localhost
issuer: CN=k2i CA" "$(head -n 5 <<<"$SHOW")"
check_eq "show: n1 is for servers and clients, not a CA" \
	"ca: no|key_usage: digitalSignature|extended_key_usage: serverAuth|extended_key_usage: clientAuth" \
	"$(grep -E '^(ca|key_usage|extended_key_usage):' <<<"$SHOW" | paste -sd '|')"
check_eq "show: the client certificate is for clients only" "extended_key_usage: clientAuth" \
	"$("$CERTS" show "$PKI/ops/client.pem" | grep '^extended_key_usage')"
check_eq "show: validity (825 days, like k2i's own)" 825 \
	"$(($(($(date -d "$(sed -n 's/^not_after: //p' <<<"$SHOW")" +%s) - \
		$(date -d "$(sed -n 's/^not_before: //p' <<<"$SHOW")" +%s))) / 86400))"
check "show: the CA is a CA signing certificates" \
	bash -c "'$CERTS' show '$PKI/ca/ca.pem' | grep -qx 'key_usage: keyCertSign'"

SUM=$(sha256sum "$PKI/n1/node.pem" "$PKI/n1/node.key")
"$CERTS" node --ca "$PKI/ca" --out "$PKI/n1" n1 >/dev/null 2>"$T_TMP/err"
check_eq "node: re-issuing into the same place exits 1" 1 $?
check "node: ... saying it does not overwrite" grep -q 'exists, not overwriting' "$T_TMP/err"
check_eq "node: ... and leaves the files as they were" "$SUM" \
	"$(sha256sum "$PKI/n1/node.pem" "$PKI/n1/node.key")"
"$CERTS" node --ca "$PKI/nowhere" --out "$PKI/x" x >/dev/null 2>&1
check_eq "node: a missing CA exits 1" 1 $?
"$CERTS" show /etc/hostname >/dev/null 2>&1
check_eq "show: a file that is no certificate exits 1" 1 $?

# Usage errors: status 2 and a message naming the program, then the --help hint.
usage_case() {
	local desc=$1 rc
	shift
	"$CERTS" "$@" >/dev/null 2>"$T_TMP/usage"
	rc=$?
	if [ "$rc" = 2 ] && head -n 1 "$T_TMP/usage" | grep -q '^k2i-certs: ' &&
		[ "$(wc -l <"$T_TMP/usage")" = 2 ] && [ ! -e "$PKI/u" ]; then
		ok "usage error exits 2: $desc"
	else
		not_ok "usage error exits 2: $desc (status $rc)"
		sed 's/^/#   /' "$T_TMP/usage"
	fi
}
usage_case "no command"
usage_case "unknown command" frobnicate
usage_case "node without --ca" node --out "$PKI/u" u
usage_case "node without a name" node --ca "$PKI/ca" --out "$PKI/u"
usage_case "unknown option" node --ca "$PKI/ca" --out "$PKI/u" --frob u
usage_case "--san of an unknown type" node --ca "$PKI/ca" --out "$PKI/u" --san email:a@b u
usage_case "a node name with a blank" node --ca "$PKI/ca" --out "$PKI/u" "a b"
usage_case "--san on a client certificate" client --ca "$PKI/ca" --out "$PKI/u" --san DNS:x u
usage_case "show without a file" show
check "--help exits 0 and describes the commands" \
	bash -c "'$CERTS' --help | grep -q 'node --ca DIR --out OUTDIR'"

# A second CA, whose certificates every test below must refuse.
"$CERTS" ca --name "rogue CA" "$PKI/rogue" >/dev/null &&
	"$CERTS" node --ca "$PKI/rogue" --out "$PKI/r1" --san IP:127.0.0.1 r1 >/dev/null &&
	"$CERTS" client --ca "$PKI/rogue" --out "$PKI/rops" k2ps@rogue >/dev/null ||
	echo "# could not make the rogue CA's certificates"

# ===== k2i with a node certificate, k2ps with a client certificate =====
K2PS_TLS=(--ca "$PKI/ops/ca.pem" --cert "$PKI/ops/client.pem" --key "$PKI/ops/client.key")
if k2i_start k2i --tls-cert "$PKI/n1/node.pem" --tls-key "$PKI/n1/node.key" \
	--tls-ca "$PKI/n1/ca.pem"; then
	N1_PORT=$K2I_PORT N1_PID=$K2I_PID
	OUT=$("$B/bin/k2ps" -H "127.0.0.1:$K2I_PORT" "${K2PS_TLS[@]}" -p $$ -o pid,comm \
		--no-headers 2>&1)
	check_eq "k2ps with the client certificate reads k2i (node certificate n1)" \
		"$$ $(cat /proc/$$/comm)" "$(awk '{ print $1, $2 }' <<<"$OUT")"
	"$B/bin/k2ps" -H "127.0.0.1:$K2I_PORT" --ca "$PKI/rops/ca.pem" --cert "$PKI/rops/client.pem" \
		--key "$PKI/rops/client.key" -p $$ >/dev/null 2>"$T_TMP/err"
	check_eq "k2ps refuses k2i's certificate when it trusts another CA" 1 $?
	check "... with a certificate verification error" grep -q -i 'certificate' "$T_TMP/err"
	CODE=$(curl -sS --max-time 10 --cacert "$PKI/ca/ca.pem" --cert "$PKI/rops/client.pem" \
		--key "$PKI/rops/client.key" -o /dev/null -w '%{http_code}' "$K2I_URL/v1/proc" 2>/dev/null)
	case $CODE in
	000 | 401 | 403) ok "k2i refuses a client certificate from another CA ($CODE)" ;;
	*) not_ok "k2i refuses a client certificate from another CA (got HTTP $CODE)" ;;
	esac
	# What the Kubernetes probes rely on: /healthz over HTTPS without a client certificate.
	check_eq "/healthz answers 200 without a client certificate (the kubelet's probe)" 200 \
		"$(curl -sk --max-time 10 -o /dev/null -w '%{http_code}' "$K2I_URL/healthz")"
	check_eq "... while /v1/proc without one is refused" 401 \
		"$(curl -sk --max-time 10 -o /dev/null -w '%{http_code}' "$K2I_URL/v1/proc")"
else
	not_ok "k2i starts with the node certificate from k2i-certs"
fi

# ===== two middlecon relays linked by the node certificates =====
# mc_relay NAME CERTDIR [MIDDLECON OPTIONS...]: a relay with CERTDIR's node certificate and no
# node name of its own (it comes from the certificate); sets MC_PORT (its peer listener).
mc_relay() {
	local name=$1 dir=$2 d=$T_TMP/mc-$1
	shift 2
	mkdir -p "$d"
	printf 'tls_cert = %s\ntls_key = %s\ntls_ca = %s\npeer_heartbeat_ms = 200\npeer_timeout_ms = 1000\npeer_backoff_min_ms = 50\npeer_backoff_max_ms = 500\n' \
		"$dir/node.pem" "$dir/node.key" "$dir/ca.pem" >"$d/mc.conf"
	"$B/bin/middlecon" --config "$d/mc.conf" --rundir "$d/run" --state-dir "$d/state" \
		--listen 127.0.0.1:0 "$@" 2>"$d/log" &
	T_PIDS+=($!)
	MC_PORT=
	for _ in $(seq 100); do
		MC_PORT=$(sed -n 's/.*Listening for peer links on 127\.0\.0\.1:\([0-9]*\) .*/\1/p' "$d/log")
		[ -n "$MC_PORT" ] && [ -S "$d/run/middlecon.sock" ] && return 0
		sleep 0.05
	done
	echo "# relay $name did not start"
	sed 's/^/#   /' "$d/log"
	return 1
}
peers_of() { "$B/bin/mcctl" -s "$T_TMP/mc-$1/run/middlecon.sock" --json peers 2>/dev/null; }
link_up() { peers_of "$1" | jq -e --arg n "$2" '[.links[] | select(.node == $n and .state == "up")] | length == 1' >/dev/null; }

if mc_relay b "$PKI/n2" && PORT_B=$MC_PORT && mc_relay a "$PKI/n1" --peer "127.0.0.1:$PORT_B"; then
	PORT_A=$MC_PORT
	check "middlecon: n1 dials n2 and the link comes up" wait_until 100 link_up a n2
	check "middlecon: n2 sees the link from n1" wait_until 50 link_up b n1
	check_eq "middlecon: the node names came from the certificates" "n1 n2" \
		"$(peers_of a | jq -r .node) $(peers_of b | jq -r .node)"
	"$B/bin/mcctl" -s "$T_TMP/mc-b/run/middlecon.sock" serve deploy.echo -- tr a-z A-Z \
		>/dev/null 2>&1 &
	T_PIDS+=($!)
	has_route() { "$B/bin/mcctl" -s "$T_TMP/mc-a/run/middlecon.sock" list 2>/dev/null |
		jq -e '[.[] | select(.name == "deploy.echo" and .node == "n2")] | length == 1' >/dev/null; }
	wait_until 50 has_route
	check_eq "middlecon: a call from n1 is answered on n2 over the link" HELLO \
		"$("$B/bin/mcctl" -s "$T_TMP/mc-a/run/middlecon.sock" -t 5000 call deploy.echo hello 2>&1)"

	# A relay whose certificate comes from another CA dials n1: refused, in both directions.
	if mc_relay r "$PKI/r1" --peer "127.0.0.1:$PORT_A"; then
		sleep 1.5
		check "middlecon: n1 links to no node of another CA" \
			bash -c "'$B/bin/mcctl' -s '$T_TMP/mc-a/run/middlecon.sock' --json peers |
				jq -e '[.links[] | select(.node != \"n2\")] | length == 0' >/dev/null"
		check "middlecon: the relay of another CA has no link up" \
			bash -c "'$B/bin/mcctl' -s '$T_TMP/mc-r/run/middlecon.sock' --json peers |
				jq -e '[.links[] | select(.state == \"up\")] | length == 0' >/dev/null"
		check "middlecon: n1 counts the failed handshakes" \
			bash -c "'$B/bin/mcctl' -s '$T_TMP/mc-a/run/middlecon.sock' --json peers |
				jq -e '.handshakes_failed >= 1' >/dev/null"
		check "middlecon: the relay of another CA counts failed dials to n1" \
			bash -c "'$B/bin/mcctl' -s '$T_TMP/mc-r/run/middlecon.sock' --json peers |
				jq -e '[.peers[] | select(.failures >= 1)] | length == 1' >/dev/null"
	else
		not_ok "a relay with another CA's certificate starts"
	fi
else
	not_ok "two middlecon relays start with k2i-certs node certificates"
fi

# ===== make install =====
# The suite runs after `make all` (make test depends on it): `-o all` installs what is built
# instead of rebuilding the tree from inside a test, which would race with a parallel outer make.
MAKEVARS=(BUILD="$B")
case $B in
*/asan) MAKEVARS=(BUILD="${B%/asan}" "SANITIZE=address,undefined") ;;
*/fuzz) MAKEVARS=(BUILD="${B%/fuzz}" FUZZ=1) ;;
esac
ROOT=$T_TMP/root
# While another component of the tree does not build, its binary is missing and the install
# recipe stops at it; then the deployment's own binaries are installed (and the gap reported).
DEPLOY_BINS="$B/bin/k2i $B/bin/k2ps $B/bin/middlecon $B/bin/mcctl $B/bin/k2i-certs"
do_install() {
	local m=(make --no-print-directory -s -o all "${MAKEVARS[@]}" install DESTDIR="$1"
		PREFIX="${2:-/usr}" "${@:3}")
	"${m[@]}" >"$T_TMP/install.log" 2>&1 && return 0
	grep -q "cannot stat '$B/bin/" "$T_TMP/install.log" || return 1
	echo "# not built: $(sed -n "s#.*cannot stat '\($B/bin/[^']*\)'.*#\1#p" "$T_TMP/install.log" |
		paste -sd ' '); installing the deployment's binaries only"
	"${m[@]}" BINS="$DEPLOY_BINS" >"$T_TMP/install.log" 2>&1
}
if do_install "$ROOT"; then
	ok "make install DESTDIR=... PREFIX=/usr"
else
	not_ok "make install DESTDIR=... PREFIX=/usr"
	sed 's/^/#   /' "$T_TMP/install.log" | tail -n 20
fi
for f in bin/k2i bin/middlecon bin/mcctl bin/k2ps bin/k2i-certs; do
	check "installed /usr/$f (executable)" test -x "$ROOT/usr/$f"
done
check "installed the units into /usr/lib/systemd/system" \
	test -f "$ROOT/usr/lib/systemd/system/k2i.service" -a \
	-f "$ROOT/usr/lib/systemd/system/middlecon.service"
check "installed sysusers.d/k2i.conf and tmpfiles.d/k2i.conf" \
	test -f "$ROOT/usr/lib/sysusers.d/k2i.conf" -a -f "$ROOT/usr/lib/tmpfiles.d/k2i.conf"
check "installed /etc/k2i/k2i.conf and /etc/k2i/middlecon.conf" \
	test -f "$ROOT/etc/k2i/k2i.conf" -a -f "$ROOT/etc/k2i/middlecon.conf"
check_eq "the installed units start the installed binaries" \
	"ExecStart=/usr/bin/k2i --config /etc/k2i/k2i.conf|ExecStart=/usr/bin/middlecon --config /etc/k2i/middlecon.conf" \
	"$(grep -h '^ExecStart=' "$ROOT/usr/lib/systemd/system/"{k2i,middlecon}.service | paste -sd '|')"
check "the installed default configurations pass --check-config" bash -c \
	"'$B/bin/k2i' --config '$ROOT/etc/k2i/k2i.conf' --check-config >/dev/null &&
	 '$B/bin/middlecon' --config '$ROOT/etc/k2i/middlecon.conf' --check-config >/dev/null"
echo "log_level = debug # edited" >>"$ROOT/etc/k2i/k2i.conf"
echo "log_level = debug # edited" >>"$ROOT/etc/k2i/middlecon.conf"
do_install "$ROOT"
check "a second make install succeeds" test $? = 0
check "... and keeps the edited k2i.conf and middlecon.conf" bash -c \
	"grep -q '# edited' '$ROOT/etc/k2i/k2i.conf' && grep -q '# edited' '$ROOT/etc/k2i/middlecon.conf'"
ROOT2=$T_TMP/root2
do_install "$ROOT2" /usr/local SYSTEMDUNITDIR=/etc/systemd/system
check_eq "PREFIX=/usr/local SYSTEMDUNITDIR=/etc/systemd/system: the unit follows both" \
	"ExecStart=/usr/local/bin/k2i --config /etc/k2i/k2i.conf" \
	"$(grep -h '^ExecStart=' "$ROOT2/etc/systemd/system/k2i.service" 2>&1)"

# ===== the systemd units =====
if command -v systemd-analyze >/dev/null && [ -d /lib/systemd/system ]; then
	# A root for --root= checks: the installed tree, plus the targets and slices the units'
	# default dependencies name (taken from this machine's systemd), plus the k2i user.
	V=$T_TMP/vroot
	cp -a "$ROOT" "$V"
	cp -a /lib/systemd/system/*.target /lib/systemd/system/*.slice "$V/usr/lib/systemd/system/" \
		2>/dev/null
	command -v systemd-sysusers >/dev/null &&
		systemd-sysusers --root="$V" "$V/usr/lib/sysusers.d/k2i.conf" >/dev/null 2>&1
	check_eq "sysusers.d: creates the user k2i with no login shell" "k2i:/var/lib/k2i:/usr/sbin/nologin" \
		"$(awk -F: '$1 == "k2i" { print $1 ":" $6 ":" $7 }' "$V/etc/passwd" 2>/dev/null)"
	# verify's exit status ignores unknown keys and unparsable values (it only warns), so any
	# output at all counts as a failure.
	verify() {
		local out rc
		out=$(cd "$V" && systemd-analyze verify --root="$V" "$@" 2>&1)
		rc=$?
		[ -n "$out" ] && sed 's/^/#   /' <<<"$out"
		[ "$rc" = 0 ] && [ -z "$out" ]
	}
	if verify k2i.service middlecon.service; then
		ok "systemd-analyze verify: k2i.service and middlecon.service, no warning"
	else not_ok "systemd-analyze verify: k2i.service and middlecon.service, no warning"; fi
	U=$V/usr/lib/systemd/system
	sed 's/^ProtectHome=/ProtectHme=/' "$U/k2i.service" >"$U/k2i-typo.service"
	if verify k2i-typo.service >/dev/null; then
		not_ok "negative control: a unit with a misspelt option fails the check"
	else ok "negative control: a unit with a misspelt option fails the check"; fi
	sed 's/^SystemCallFilter=bpf$/SystemCallFilter=bfp/' "$U/k2i.service" >"$U/k2i-sys.service"
	if verify k2i-sys.service >/dev/null; then
		not_ok "negative control: a unit with an unknown system call fails the check"
	else ok "negative control: a unit with an unknown system call fails the check"; fi
	sed 's|^ExecStart=/usr/bin/k2i |ExecStart=/usr/bin/k2i-missing |' "$U/k2i.service" \
		>"$U/k2i-exec.service"
	if verify k2i-exec.service >/dev/null; then
		not_ok "negative control: a unit whose binary is not in the root fails the check"
	else ok "negative control: a unit whose binary is not in the root fails the check"; fi
	rm -f "$U"/k2i-{typo,sys,exec}.service

	# The exposure score of `systemd-analyze security` (0 = locked down, 10 = unprotected).
	for unit in k2i:3.0 middlecon:1.5; do
		name=${unit%%:*} max=${unit##*:}
		score=$(cd "$V" && systemd-analyze security --offline=true --root="$V" "$name.service" 2>&1 |
			sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
		echo "# systemd-analyze security: $name.service exposure $score"
		check "$name.service exposure level ${score:-?} <= $max" \
			awk -v s="${score:-99}" -v m="$max" 'BEGIN { exit !(s <= m) }'
	done
	command -v systemd-tmpfiles >/dev/null &&
		systemd-tmpfiles --root="$V" --create "$V/usr/lib/tmpfiles.d/k2i.conf" >/dev/null 2>&1
	check_eq "tmpfiles.d: /run/k2i 0755 owned by k2i" \
		"755 $(awk -F: '$1 == "k2i" { print $3 }' "$V/etc/passwd" 2>/dev/null)" \
		"$(stat -c '%a %u' "$V/run/k2i" 2>/dev/null)"
	check_eq "tmpfiles.d: /run/k2i/instances 0775 root:k2i" \
		"775 0 $(awk -F: '$1 == "k2i" { print $3 }' "$V/etc/group" 2>/dev/null)" \
		"$(stat -c '%a %u %g' "$V/run/k2i/instances" 2>/dev/null)"
else
	skip "systemd-analyze verify" "systemd-analyze is not installed"
fi

# ===== k2i with exactly its unit's capabilities =====
UNIT=deploy/systemd/k2i.service
AMB=$(sed -n 's/^AmbientCapabilities=//p' "$UNIT")
BND=$(sed -n 's/^CapabilityBoundingSet=//p' "$UNIT")
check_eq "k2i.service: the ambient set is the bounding set" "$BND" "$AMB"
check_eq "middlecon.service: no capability" "CapabilityBoundingSet=|AmbientCapabilities=" \
	"$(grep -E '^(CapabilityBoundingSet|AmbientCapabilities)=' deploy/systemd/middlecon.service | paste -sd '|')"
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
	CAPS=$(tr ' ' '\n' <<<"$AMB" | sed -n 's/^CAP_\(.*\)/+\L\1/p' | paste -sd ,)
	# A root-owned process whose /proc/<pid>/exe needs CAP_SYS_PTRACE to be read by another uid.
	sleep 60 &
	SLEEPER=$!
	T_PIDS+=("$SLEEPER")
	D=$T_TMP/caps
	mkdir -p "$D"
	cp "$PKI/n1/node.pem" "$PKI/n1/node.key" "$PKI/n1/ca.pem" "$D/"
	chown -R 65534:65534 "$D"
	chmod 0755 "$T_TMP"
	# run_as_nobody NAME SETPRIV-CAP-ARGS... -- K2I-ARGS...: starts k2i as uid 65534 under
	# setpriv; prints its /v1/host event source and the exe it reports for the sleeper.
	run_as_nobody() {
		local name=$1 pid port
		local -a sp=() args=()
		shift
		while [ $# -gt 0 ] && [ "$1" != -- ]; do sp+=("$1"); shift; done
		shift
		args=("$@")
		setpriv --reuid=65534 --regid=65534 --clear-groups --no-new-privs "${sp[@]}" \
			"$B/bin/k2i" --config /dev/null --state-dir "$D/state-$name" --rundir "$D/run-$name" \
			--listen 127.0.0.1:0 --tls-cert "$D/node.pem" --tls-key "$D/node.key" \
			--tls-ca "$D/ca.pem" "${args[@]}" 2>"$D/$name.log" &
		pid=$!
		T_PIDS+=("$pid")
		port=
		for _ in $(seq 100); do
			port=$(sed -n 's#.*Listening on https://127\.0\.0\.1:\([0-9]*\)/.*#\1#p' "$D/$name.log")
			[ -n "$port" ] && break
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if [ -z "$port" ]; then
			sed 's/^/#   /' "$D/$name.log"
			echo "none none"
			return
		fi
		local c=(curl -sS --max-time 10 --cacert "$PKI/ops/ca.pem" --cert "$PKI/ops/client.pem"
			--key "$PKI/ops/client.key")
		echo "$("${c[@]}" "https://127.0.0.1:$port/v1/host" | jq -r .event_source)" \
			"$("${c[@]}" "https://127.0.0.1:$port/v1/proc/$SLEEPER?fields=exe" | jq -r .exe)"
		kill "$pid"
		wait "$pid" 2>/dev/null
	}
	R=$(run_as_nobody unit --inh-caps="-all,$CAPS" --ambient-caps="-all,$CAPS" \
		--bounding-set="-all,$CAPS" --)
	echo "# as uid 65534 with $CAPS: event source and exe: $R"
	check_eq "k2i as an unprivileged user with the unit's capabilities reads root's /proc/<pid>/exe" \
		"$(command -v sleep | xargs readlink -f)" "${R#* }"
	# BPF must work with these capabilities wherever it works for root.
	if k2i_start k2i-root; then
		ROOT_SRC=$(kcurl "$K2I_URL/v1/host" | jq -r .event_source)
	fi
	check_eq "... and gets the same event source as root (${ROOT_SRC:-?})" "${ROOT_SRC:-?}" "${R%% *}"
	R=$(run_as_nobody netlink --inh-caps="-all,$CAPS" --ambient-caps="-all,$CAPS" \
		--bounding-set="-all,$CAPS" -- --no-bpf)
	# (Older kernels let only CAP_NET_ADMIN join the process connector; newer ones let anyone.)
	check_eq "... and with --no-bpf the process connector" netlink "${R%% *}"
	R=$(run_as_nobody none --inh-caps=-all --bounding-set=-all --)
	echo "# as uid 65534 without capabilities: $R"
	check_eq "control: without them, k2i cannot read root's exe" null "${R#* }"
	check "control: ... nor load BPF" test "${R%% *}" != bpf
else
	skip "k2i with the unit's capabilities" "needs root and setpriv"
fi

# ===== Kubernetes manifests =====
if "$PY" -c 'import yaml' 2>/dev/null; then
	KOUT=$T_TMP/k8s
	mkdir -p "$KOUT"
	UNIT_CAPS=$(tr ' ' '\n' <<<"$AMB" | sed 's/^CAP_//' | sort | paste -sd ,)
	"$PY" - deploy/kubernetes "$KOUT" "$UNIT_CAPS" >"$KOUT/tap" 2>&1 <<'EOF'
import glob, os, sys, yaml

kdir, out, unit_caps = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
docs = []
for f in sorted(glob.glob(os.path.join(kdir, "*.yaml"))):
    if os.path.basename(f) == "kustomization.yaml":
        continue
    with open(f) as fh:
        docs += [d for d in yaml.safe_load_all(fh) if d]
by = {}
for d in docs:
    by.setdefault(d["kind"], []).append(d)

def check(desc, cond):
    print(("ok" if cond else "not ok") + " - " + desc)

def one(kind):
    return by.get(kind, [None])[0]

check("kinds: Namespace, Service, ConfigMap, DaemonSet",
      all(k in by for k in ("Namespace", "Service", "ConfigMap", "DaemonSet")))
check("no RBAC objects (neither daemon uses the API)",
      not any(k in by for k in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")))
ns = one("Namespace")["metadata"]["name"]
check("every object is in namespace " + ns,
      all(d["metadata"].get("namespace") == ns for d in docs if d["kind"] != "Namespace"))
svc, ds, cm = one("Service"), one("DaemonSet"), one("ConfigMap")
fqdn = "%s.%s.svc.cluster.local" % (svc["metadata"]["name"], ns)
check("Service is headless (clusterIP: None)", svc["spec"].get("clusterIP") == "None")
check("Service publishes not-ready addresses", svc["spec"].get("publishNotReadyAddresses") is True)
check("Service ports https 9400 and mesh 9401",
      sorted((p["name"], p["port"]) for p in svc["spec"]["ports"]) == [("https", 9400), ("mesh", 9401)])
tpl = ds["spec"]["template"]
pod = tpl["spec"]
check("Service selects the DaemonSet's pods",
      all(tpl["metadata"]["labels"].get(k) == v for k, v in svc["spec"]["selector"].items()))
check("DaemonSet selector matches its template",
      all(tpl["metadata"]["labels"].get(k) == v for k, v in ds["spec"]["selector"]["matchLabels"].items()))
check("DaemonSet hostPID: true", pod.get("hostPID") is True)
check("DaemonSet hostNetwork: true, dnsPolicy ClusterFirstWithHostNet",
      pod.get("hostNetwork") is True and pod.get("dnsPolicy") == "ClusterFirstWithHostNet")
check("DaemonSet tolerates every taint", {"operator": "Exists"} in pod.get("tolerations", []))
check("no service account token mounted", pod.get("automountServiceAccountToken") is False)
cs = {c["name"]: c for c in pod["containers"]}
inits = {c["name"]: c for c in pod.get("initContainers", [])}
check("containers k2i and middlecon", sorted(cs) == ["k2i", "middlecon"])
check("one image for all containers", len({c["image"] for c in list(cs.values()) + list(inits.values())}) == 1)
allc = list(cs.values()) + list(inits.values())
check("no container is privileged or may escalate",
      all(c["securityContext"].get("privileged") is False and
          c["securityContext"].get("allowPrivilegeEscalation") is False for c in allc))
check("every container drops ALL capabilities",
      all(c["securityContext"]["capabilities"]["drop"] == ["ALL"] for c in allc))
k2i_caps = sorted(cs["k2i"]["securityContext"]["capabilities"].get("add", []))
check("k2i adds exactly the systemd unit's capabilities (%s)" % ",".join(k2i_caps), k2i_caps == sorted(unit_caps))
check("middlecon and the init container add none",
      not cs["middlecon"]["securityContext"]["capabilities"].get("add") and
      all(not c["securityContext"]["capabilities"].get("add") for c in inits.values()))
check("every container has requests and limits",
      all(c.get("resources", {}).get("requests") and c.get("resources", {}).get("limits") for c in allc))
for kind in ("readinessProbe", "livenessProbe"):
    g = cs["k2i"].get(kind, {}).get("httpGet", {})
    check("k2i %s: GET /healthz on 9400 over HTTPS" % kind,
          g.get("path") == "/healthz" and g.get("port") == 9400 and g.get("scheme") == "HTTPS")
    e = cs["middlecon"].get(kind, {}).get("exec", {}).get("command", [])
    check("middlecon %s: mcctl on its socket" % kind,
          len(e) > 2 and e[0].endswith("/mcctl") and "/run/k2i/middlecon.sock" in e)
    with open(os.path.join(out, "probe.cmd"), "w") as fh:
        fh.write("\n".join(e) + "\n")
vols = {v["name"]: v for v in pod["volumes"]}
mounts = [(c["name"], m) for c in allc for m in c.get("volumeMounts", [])]
check("every volumeMount has a volume", all(m["name"] in vols for _, m in mounts))
check("every volume is mounted", all(any(m["name"] == v for _, m in mounts) for v in vols))
def mount(c, path):
    return next((m for m in c.get("volumeMounts", []) if m["mountPath"] == path), None)
run = vols.get("run", {}).get("hostPath", {})
check("/run/k2i is the host's, shared by both containers",
      run.get("path") == "/run/k2i" and all(mount(cs[n], "/run/k2i") for n in cs))
check("middlecon may write /run/k2i, k2i only reads it",
      not mount(cs["middlecon"], "/run/k2i").get("readOnly") and mount(cs["k2i"], "/run/k2i").get("readOnly") is True)
btf = mount(cs["k2i"], "/sys/kernel/btf")
check("k2i mounts /sys/kernel/btf read-only from the host",
      btf and btf.get("readOnly") is True and vols[btf["name"]]["hostPath"]["path"] == "/sys/kernel/btf")
ca_vol = [n for n, v in vols.items() if "secret" in v]
check("the CA Secret is mounted by the init container only",
      len(ca_vol) == 1 and [c for c, m in mounts if m["name"] == ca_vol[0]] == list(inits))
conf = cm["data"]
check("ConfigMap holds k2i.conf and middlecon.conf", set(conf) >= {"k2i.conf", "middlecon.conf"})
kv = {}
for line in conf["middlecon.conf"].splitlines():
    if "=" in line and not line.lstrip().startswith("#"):
        k, v = line.split("=", 1)
        kv[k.strip()] = v.strip()
check("middlecon's peer_dns is the Service's FQDN (%s)" % fqdn, kv.get("peer_dns") == fqdn)
cfgm = [m for c in cs.values() for m in c["volumeMounts"] if vols[m["name"]].get("configMap")]
check("both daemons read the ConfigMap at /etc/k2i",
      len(cfgm) == 2 and all(m["mountPath"] == "/etc/k2i" for m in cfgm) and
      all(vols[m["name"]]["configMap"]["name"] == cm["metadata"]["name"] for m in cfgm))
check("the daemons run with --config /etc/k2i/<name>.conf",
      cs["k2i"]["command"][-2:] == ["--config", "/etc/k2i/k2i.conf"] and
      cs["middlecon"]["command"][-2:] == ["--config", "/etc/k2i/middlecon.conf"])
init = list(inits.values())[0]
check("the init container's certificate names the Service's FQDN",
      "DNS:" + fqdn in init["command"])
for name in ("k2i.conf", "middlecon.conf"):
    with open(os.path.join(out, name), "w") as fh:
        fh.write(conf[name])
with open(os.path.join(out, "init.cmd"), "w") as fh:
    fh.write("\n".join(init["command"]) + "\n")
EOF
	while IFS= read -r line; do
		case $line in
		"ok - "*) ok "k8s: ${line#ok - }" ;;
		"not ok - "*) not_ok "k8s: ${line#not ok - }" ;;
		*) echo "# $line" ;;
		esac
	done <"$KOUT/tap"
	# The ConfigMap's files, as the daemons read them (TLS paths are only checked at start).
	check "k8s: the ConfigMap's k2i.conf passes k2i --check-config" \
		"$B/bin/k2i" --config "$KOUT/k2i.conf" --check-config
	check "k8s: the ConfigMap's middlecon.conf passes middlecon --check-config" \
		"$B/bin/middlecon" --config "$KOUT/middlecon.conf" --check-config
	# The ConfigMap's files run the daemons with the pod's read-only root: with TLS material
	# configured neither may touch its state directory (here one that cannot be created).
	mkdir -p "$KOUT/run"
	"$CERTS" node --ca "$PKI/ca" --out "$KOUT/pod-tls" --san IP:127.0.0.1 pod-node >/dev/null
	for f in k2i middlecon; do
		sed -e "s#/tls/#$KOUT/pod-tls/#" -e "s#/run/k2i#$KOUT/run#" \
			-e 's/^listen = :\(940[01]\)$/listen = 127.0.0.1:0/' -e 's/^peer_dns = .*/peer_dns = localhost:1/' \
			"$KOUT/$f.conf" >"$KOUT/$f-local.conf"
		echo "state_dir = /proc/k2i-no-such-dir" >>"$KOUT/$f-local.conf"
		"$B/bin/$f" --config "$KOUT/$f-local.conf" 2>"$KOUT/$f.log" &
		T_PIDS+=($!)
	done
	ready() { grep -q ' ready (pid' "$KOUT/k2i.log" && grep -q ' ready (pid' "$KOUT/middlecon.log"; }
	if wait_until 100 ready; then
		ok "k8s: both daemons start from the ConfigMap's files without a writable state directory"
	else
		not_ok "k8s: both daemons start from the ConfigMap's files without a writable state directory"
		sed 's/^/#   /' "$KOUT/k2i.log" "$KOUT/middlecon.log" | tail -n 20
	fi
	# The init container's command, run here with its variables and volumes substituted.
	if [ -s "$KOUT/init.cmd" ]; then
		mapfile -t INIT <"$KOUT/init.cmd"
		INIT=("${INIT[@]//\$(NODE_NAME)/node-7.example}")
		INIT=("${INIT[@]//\$(NODE_IP)/10.1.2.3}")
		INIT=("${INIT[@]/#\/ca/$PKI/ca}")
		INIT=("${INIT[@]/#\/tls/$KOUT/tls}")
		INIT[0]=$CERTS
		"${INIT[@]}" >/dev/null 2>"$T_TMP/err"
		check "k8s: the init container's k2i-certs command works" test $? = 0
		check_eq "k8s: ... issuing node-7.example's certificate for its name, the Service and its IP" \
			"subject: CN=node-7.example|san: DNS:node-7.example|san: DNS:k2i.k2i.svc.cluster.local|san: IP:10.1.2.3" \
			"$("$CERTS" show "$KOUT/tls/node.pem" 2>&1 | head -n 4 | paste -sd '|')"
	fi
	# The exec probe against a live relay, and against none.
	if [ -s "$KOUT/probe.cmd" ] && [ -S "$T_TMP/mc-a/run/middlecon.sock" ]; then
		mapfile -t PROBE <"$KOUT/probe.cmd"
		PROBE=("${PROBE[@]//\/run\/k2i/$T_TMP/mc-a/run}")
		PROBE[0]=$B/bin/mcctl
		check "k8s: middlecon's probe command succeeds against a running relay" "${PROBE[@]}"
		PROBE=("${PROBE[@]//$T_TMP\/mc-a\/run/$T_TMP/nowhere}")
		if "${PROBE[@]}" >/dev/null 2>&1; then
			not_ok "k8s: ... and fails without one"
		else ok "k8s: ... and fails without one"; fi
	fi
	if command -v kubectl >/dev/null; then
		check_eq "k8s: kubectl kustomize renders the four objects" \
			"ConfigMap DaemonSet Namespace Service" \
			"$(kubectl kustomize deploy/kubernetes 2>&1 | sed -n 's/^kind: //p' | sort | paste -sd ' ')"
	fi
else
	skip "Kubernetes manifests" "$PY has no yaml module (python3-yaml)"
fi

# ===== Prometheus =====
if command -v promtool >/dev/null; then
	P=$T_TMP/prom
	mkdir -p "$P"
	"$CERTS" client --ca "$PKI/ca" --out "$P/certs" prometheus >/dev/null
	sed "s#/etc/prometheus/k2i/#$P/certs/#" deploy/prometheus/k2i-scrape.yml >"$P/scrape.yml"
	if promtool check config "$P/scrape.yml" >"$P/check.log" 2>&1; then
		ok "promtool check config deploy/prometheus/k2i-scrape.yml"
	elif grep -q 'field kubernetes_sd_configs not found' "$P/check.log"; then
		# Debian's Prometheus is built without Kubernetes service discovery: check the rest of
		# the file with that one block replaced by a static list.
		echo "# this promtool has no kubernetes_sd_configs; checking the file without it"
		"$PY" - "$P/scrape.yml" "$P/scrape-nok8s.yml" <<-'EOF'
			import sys, yaml
			d = yaml.safe_load(open(sys.argv[1]))
			for j in d["scrape_configs"]:
			    if j.pop("kubernetes_sd_configs", None) is not None:
			        j["static_configs"] = [{"targets": ["10.0.0.1:9400"]}]
			yaml.safe_dump(d, open(sys.argv[2], "w"))
		EOF
		check "promtool check config deploy/prometheus/k2i-scrape.yml (kubernetes_sd replaced)" \
			promtool check config "$P/scrape-nok8s.yml"
		check "... whose Kubernetes job discovers the headless Service's endpoints" "$PY" -c '
import sys, yaml
j = [j for j in yaml.safe_load(open(sys.argv[1]))["scrape_configs"] if "kubernetes_sd_configs" in j][0]
sd = j["kubernetes_sd_configs"][0]
keep = [r for r in j["relabel_configs"] if r.get("action") == "keep"][0]
assert sd["role"] == "endpoints" and sd["namespaces"]["names"] == ["k2i"]
assert keep["regex"] == "k2i;https" and j["scheme"] == "https"
assert j["tls_config"]["server_name"] == "k2i.k2i.svc.cluster.local"
' "$P/scrape.yml"
	else
		not_ok "promtool check config deploy/prometheus/k2i-scrape.yml"
		sed 's/^/#   /' "$P/check.log"
	fi
	sed 's/scheme: https/scheme: htps/' "$P/scrape.yml" >"$P/bad.yml"
	if promtool check config "$P/bad.yml" >/dev/null 2>&1; then
		not_ok "negative control: promtool rejects a broken copy"
	else ok "negative control: promtool rejects a broken copy"; fi

	# A real scrape: Prometheus with the static job pointed at the k2i started above.
	if command -v prometheus >/dev/null && [ -n "${N1_PORT:-}" ] && kill -0 "${N1_PID:-0}" 2>/dev/null &&
		WEB=$(free_port_base 1); then
		"$PY" - "$P/scrape.yml" "$P/live.yml" "127.0.0.1:$N1_PORT" <<-'EOF'
			import sys, yaml
			d = yaml.safe_load(open(sys.argv[1]))
			d["global"]["scrape_interval"] = "1s"
			d["global"]["scrape_timeout"] = "1s"
			d["scrape_configs"] = [j for j in d["scrape_configs"] if j["job_name"] == "k2i"]
			d["scrape_configs"][0]["static_configs"] = [{"targets": [sys.argv[3]]}]
			yaml.safe_dump(d, open(sys.argv[2], "w"))
		EOF
		prometheus --config.file="$P/live.yml" --storage.tsdb.path="$P/data" \
			--web.listen-address="127.0.0.1:$WEB" >"$P/prometheus.log" 2>&1 &
		T_PIDS+=($!)
		scraped() {
			curl -s --max-time 2 "http://127.0.0.1:$WEB/api/v1/query?query=up%7Bjob%3D%22k2i%22%7D" |
				jq -e '.data.result[0].value[1] == "1"' >/dev/null
		}
		check "Prometheus scrapes k2i's /metrics with the client certificate (up == 1)" \
			wait_until 300 scraped
		k2i_series() {
			curl -s --max-time 2 "http://127.0.0.1:$WEB/api/v1/label/__name__/values" 2>/dev/null |
				jq -e '[.data[] | select(startswith("k2i_"))] | length > 0' >/dev/null 2>&1
		}
		check "... and stores k2i's own series" wait_until 50 k2i_series
	fi
else
	skip "promtool check config" "promtool is not installed (Debian package prometheus)"
fi

done_testing
