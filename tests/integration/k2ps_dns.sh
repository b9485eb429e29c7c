#!/bin/bash
# SPDX-License-Identifier: MIT
#
# k2ps -d NAME, the Kubernetes headless-Service pattern: every A/AAAA record of NAME is a host,
# and each server certificate must name NAME (not the address). Three k2i listen on 127.0.0.2,
# .3 and .4 on one port, each in its own UTS namespace (host names h1, h2, h3) with a server
# certificate for DNS:k2i-headless.test only. k2ps runs in a private mount namespace where
# /etc/hosts (a bind mount of a temp file; the real one is untouched) maps the name to those
# addresses. Then the failures: an address with nothing listening, and a k2i (127.0.0.5) whose
# certificate, from the same CA, names another name: each reported on stderr as
# "k2ps: HOST: REASON" (exit 1) while the other hosts are still printed.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_ports.sh"
need curl jq openssl unshare mount ss timeout getent
K2PS=$B/bin/k2ps
[ -x "$K2PS" ] || skip_all "$K2PS is not built"
[ -x "$B/bin/k2i" ] || skip_all "$B/bin/k2i is not built"

NAME=k2i-headless.test
OTHER=k2i-other.test
GOOD=(2 3 4) # 127.0.0.X
DOWN=6
WRONG=5

# hosts_file FILE X...: FILE maps NAME to 127.0.0.X for each X, one line each.
hosts_file() {
	local f=$1 x
	shift
	for x in "$@"; do echo "127.0.0.$x $NAME"; done >"$f"
}
hosts_file "$T_TMP/hosts.good" "${GOOD[@]}"
hosts_file "$T_TMP/hosts.down" "${GOOD[0]}" "$DOWN" "${GOOD[1]}" "${GOOD[2]}"
hosts_file "$T_TMP/hosts.wrong" "${GOOD[0]}" "${GOOD[1]}" "$WRONG" "${GOOD[2]}"

# in_hosts_ns FILE CMD...: CMD in a private mount namespace whose /etc/hosts is FILE.
in_hosts_ns() {
	local f=$1
	shift
	unshare --mount /bin/sh -c 'mount --bind "$1" /etc/hosts && shift && exec "$@"' sh "$f" "$@"
}
in_hosts_ns "$T_TMP/hosts.good" true 2>"$T_TMP/unshare.err" ||
	skip_all "cannot bind-mount /etc/hosts in a private mount namespace:" \
		"$(head -n1 "$T_TMP/unshare.err")"
unshare --uts true 2>/dev/null || skip_all "unshare --uts is not permitted"

# glibc must return every line of the hosts file (Debian's /etc/host.conf has 'multi on').
check_eq "getaddrinfo in the namespace returns the three addresses of $NAME" \
	"127.0.0.2 127.0.0.3 127.0.0.4" \
	"$(in_hosts_ns "$T_TMP/hosts.good" getent ahostsv4 "$NAME" | awk '$2 == "STREAM" { print $1 }' | xargs)"
check_eq "the real /etc/hosts does not know $NAME" "" "$(getent ahosts "$NAME")"

# --- Certificates ---------------------------------------------------------------------------
PKI=$T_TMP/pki
pki_new_ca "$PKI/ca" "k2ps dns test CA" &&
	pki_issue "$PKI/ca" "$PKI/client" "k2ps-test-client" &&
	pki_issue "$PKI/ca" "$PKI/server" "$NAME" "DNS:$NAME" &&
	pki_issue "$PKI/ca" "$PKI/wrong" "$OTHER" "DNS:$OTHER" || {
	not_ok "certificates"
	done_testing
	exit 1
}
check "the server certificate names only DNS:$NAME" bash -c \
	"openssl x509 -in '$PKI/server.pem' -noout -ext subjectAltName | grep -qx ' *DNS:$NAME'"
TLS=(--ca "$PKI/ca/ca.pem" --cert "$PKI/client.pem" --key "$PKI/client.key")

# --- The servers: all on one port, on 127.0.0.2..5 ------------------------------------------
# start_k2i X CERT: k2i on 127.0.0.X:$PORT in its own UTS namespace named hX-1 (h1 for .2 ...),
# serving CERT; its pid (the real k2i: unshare and sh exec it) is appended to T_PIDS and PIDS.
PIDS=()
start_k2i() {
	local x=$1 cert=$2 st=$T_TMP/k2i-$1
	mkdir -p "$st"
	(exec unshare --uts /bin/sh -c 'hostname "$1" && shift && exec "$@"' sh "h$((x - 1))" \
		"$B/bin/k2i" --config /dev/null --no-bpf --state-dir "$st" --rundir "$st/run" \
		--listen "127.0.0.$x:$PORT" --tls-cert "$cert.pem" --tls-key "$cert.key" \
		--tls-ca "$PKI/ca/ca.pem" 2>"$st.log") &
	T_PIDS+=("$!")
	PIDS[x]=$!
}
# listening X: k2i on 127.0.0.X has logged that it listens on $PORT.
listening() { grep -q "Listening on https://127\.0\.0\.$1:$PORT/" "$T_TMP/k2i-$1.log" 2>/dev/null; }
started=
for try in 1 2 3; do
	PORT=$(free_port_base 1) || break
	for x in "${GOOD[@]}"; do start_k2i "$x" "$PKI/server"; done
	start_k2i "$WRONG" "$PKI/wrong"
	for _ in $(seq 100); do
		n=0 dead=0
		for x in "${GOOD[@]}" "$WRONG"; do
			listening "$x" && n=$((n + 1))
			kill -0 "${PIDS[x]}" 2>/dev/null || dead=1
		done
		[ "$n" -eq 4 ] || [ "$dead" -eq 1 ] && break
		sleep 0.1
	done
	if [ "$n" -eq 4 ]; then
		started=1
		break
	fi
	echo "# port $PORT: not every k2i started (try $try):"
	for x in "${GOOD[@]}" "$WRONG"; do
		kill "${PIDS[x]}" 2>/dev/null
		wait "${PIDS[x]}" 2>/dev/null
		tail -n 2 "$T_TMP/k2i-$x.log" | sed "s/^/#   127.0.0.$x: /"
	done
done
if [ -z "$started" ]; then
	not_ok "four k2i on one free port"
	done_testing
	exit 1
fi
ok "k2i on 127.0.0.2, .3, .4 (cert for $NAME) and .5 (cert for $OTHER), all on port $PORT"

# Asked directly with curl by name: each good server's certificate verifies for NAME and each
# has its own host name (so the answers really come from three different "hosts").
names=
for x in "${GOOD[@]}"; do
	names+="$(curl -sS --max-time 10 --cacert "$PKI/ca/ca.pem" --cert "$PKI/client.pem" \
		--key "$PKI/client.key" --resolve "$NAME:$PORT:127.0.0.$x" \
		"https://$NAME:$PORT/v1/host" | jq -r .hostname) "
done
check_eq "curl: each server verifies as $NAME and has its own host name" "h1 h2 h3 " "$names"
s=$(curl -s --max-time 10 --cacert "$PKI/ca/ca.pem" --cert "$PKI/client.pem" \
	--key "$PKI/client.key" --resolve "$OTHER:$PORT:127.0.0.$WRONG" -o /dev/null \
	-w '%{http_code}' "https://$OTHER:$PORT/v1/host")
check_eq "curl: the 127.0.0.$WRONG server is a working k2i for $OTHER" 200 "$s"

# dns_k2ps HOSTSFILE OUT ARGS...: k2ps -d NAME --port PORT ARGS in a mount namespace whose
# /etc/hosts is HOSTSFILE; stdout in OUT, stderr in OUT.err; sets RC.
dns_k2ps() {
	local f=$1 out=$2
	shift 2
	timeout --kill-after=5 20 unshare --mount /bin/sh -c \
		'mount --bind "$1" /etc/hosts && shift && exec "$@"' sh "$f" \
		"$K2PS" -d "$NAME" --port "$PORT" "${TLS[@]}" --timeout 5 "$@" >"$out" 2>"$out.err"
	RC=$?
}
show_err() { [ -s "$1.err" ] && sed 's/^/#   stderr: /' "$1.err" | head -n 20; }
LABELS=$(for x in "${GOOD[@]}"; do echo "127.0.0.$x:$PORT"; done)

# --- All good ----------------------------------------------------------------------------------
dns_k2ps "$T_TMP/hosts.good" "$T_TMP/all.json" --json
check_eq "-d $NAME --json: exit 0" 0 "$RC"
check_eq "-d $NAME --json: nothing on stderr" "" "$(cat "$T_TMP/all.json.err")"
[ "$RC" -eq 0 ] || show_err "$T_TMP/all.json"
check "--json is NDJSON with a host and a pid on every line" \
	jq -se 'length > 0 and all(.[]; (.host | type) == "string" and (.pid | type) == "number")' \
	"$T_TMP/all.json"
check_eq "processes from every address of $NAME, labelled ADDR:PORT" "$LABELS" \
	"$(jq -r .host "$T_TMP/all.json" | sort -u)"
for x in "${GOOD[@]}"; do
	check_eq "127.0.0.$x lists its own k2i (pid ${PIDS[x]})" 1 \
		"$(jq -c --arg h "127.0.0.$x:$PORT" --argjson p "${PIDS[x]}" \
			'select(.host == $h and .pid == $p)' "$T_TMP/all.json" | wc -l)"
done

dns_k2ps "$T_TMP/hosts.good" "$T_TMP/sum.json" --hosts-summary --json
check_eq "--hosts-summary --json: exit 0" 0 "$RC"
check_eq "--hosts-summary: each address answers with its own host name" \
	"127.0.0.2:$PORT h1 127.0.0.3:$PORT h2 127.0.0.4:$PORT h3" \
	"$(jq -r '"\(.host) \(.hostname)"' "$T_TMP/sum.json" | sort | xargs)"

dns_k2ps "$T_TMP/hosts.good" "$T_TMP/all.txt" -o host,pid,comm --no-headers
check_eq "table: exit 0" 0 "$RC"
check_eq "table: HOST column holds every address" "$LABELS" \
	"$(awk '{ print $1 }' "$T_TMP/all.txt" | sort -u)"

# Without -d the same servers are asked by address, which their certificates do not name: so
# what -d checks is really the name.
timeout 20 "$K2PS" "${TLS[@]}" --timeout 5 --json -H "127.0.0.2:$PORT" >"$T_TMP/ip.json" \
	2>"$T_TMP/ip.json.err"
RC=$?
check_eq "-H 127.0.0.2:$PORT (by address, no IP SAN): exit 1, nothing printed" "1 0" \
	"$RC $(wc -l <"$T_TMP/ip.json")"
check "-H by address: refused for its certificate" \
	grep -q -i -E "^k2ps: 127\.0\.0\.2:$PORT: .*(certif|verif|x509|mismatch|name)" "$T_TMP/ip.json.err"

# --- An address with nothing listening ---------------------------------------------------------
dns_k2ps "$T_TMP/hosts.down" "$T_TMP/down.json" --json
check_eq "a fourth address with nothing listening: exit 1" 1 "$RC"
check_eq "the down address is reported once on stderr as 'k2ps: HOST: REASON'" 1 \
	"$(grep -c -E "^k2ps: 127\.0\.0\.$DOWN:$PORT: .+" "$T_TMP/down.json.err")"
check_eq "stderr names only the down address" 1 "$(grep -c . "$T_TMP/down.json.err")"
show_err "$T_TMP/down.json"
check_eq "the three others are still printed" "$LABELS" "$(jq -r .host "$T_TMP/down.json" | sort -u)"

# --- A server whose certificate names another name ---------------------------------------------
dns_k2ps "$T_TMP/hosts.wrong" "$T_TMP/wrong.json" --json
check_eq "a server with a certificate for $OTHER: exit 1" 1 "$RC"
check_eq "it is reported once on stderr" 1 \
	"$(grep -c -E "^k2ps: 127\.0\.0\.$WRONG:$PORT: .+" "$T_TMP/wrong.json.err")"
check "the reason is about its certificate" grep -q -i -E \
	"^k2ps: 127\.0\.0\.$WRONG:$PORT: .*(certif|verif|x509|mismatch|name)" "$T_TMP/wrong.json.err"
check_eq "stderr names only that server" 1 "$(grep -c . "$T_TMP/wrong.json.err")"
show_err "$T_TMP/wrong.json"
check_eq "nothing from it is printed, the three others are" "$LABELS" \
	"$(jq -r .host "$T_TMP/wrong.json" | sort -u)"

# --- Resolution failure ------------------------------------------------------------------------
# An empty hosts file, and a resolv.conf pointing at a closed local port, so nothing leaves the
# machine and the lookup fails at once.
: >"$T_TMP/hosts.empty"
echo "nameserver 127.0.0.1" >"$T_TMP/resolv.conf"
timeout --kill-after=5 20 unshare --mount /bin/sh -c \
	'mount --bind "$1" /etc/hosts && mount --bind "$2" /etc/resolv.conf && shift 2 && exec "$@"' \
	sh "$T_TMP/hosts.empty" "$T_TMP/resolv.conf" \
	"$K2PS" -d "$NAME" --port "$PORT" "${TLS[@]}" --timeout 5 --json >"$T_TMP/nx.json" \
	2>"$T_TMP/nx.json.err"
RC=$?
check "a name that does not resolve: exit 1 or 2 ($RC), reported on stderr, nothing printed" \
	test \( "$RC" -eq 1 -o "$RC" -eq 2 \) -a -s "$T_TMP/nx.json.err" -a ! -s "$T_TMP/nx.json"
show_err "$T_TMP/nx.json"

done_testing
