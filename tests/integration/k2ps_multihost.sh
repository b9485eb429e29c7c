#!/bin/bash
# SPDX-License-Identifier: MIT
#
# k2ps across several hosts, each a network namespace on this machine (lib_netns.sh) running its
# own k2i on 0.0.0.0:9400 with its own server certificate (an IP SAN for its address) from one CA,
# and its own host name (an unshared UTS namespace). The PID namespace is shared, so every host
# sees the same processes; what is checked is that k2ps asks every host and labels each answer
# with the host as given, and that every process living in a host's namespace (its k2i, a marker
# process) is in that host's answer. Then the failures: a host with nothing listening, a host
# whose certificate comes from another CA, and a host that accepts TCP but never answers, each
# reported on stderr as "k2ps: HOST: REASON" (exit 1) while the other hosts are still printed,
# within --timeout.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_netns.sh"
need curl jq openssl unshare ss timeout
K2PS=$B/bin/k2ps
[ -x "$K2PS" ] || skip_all "$K2PS is not built yet"
[ -x "$B/tests/blackhole" ] || skip_all "$B/tests/blackhole is not built (make all)"
[ "$(id -u)" -eq 0 ] || skip_all "network namespaces need root"

netns_setup 6 || { not_ok "six network namespaces on a bridge"; done_testing; exit 1; }
ok "six network namespaces on bridge $NS_BRIDGE, $NS_NET.0/24 (tag $NS_TAG)"
GOOD=(1 2 3)
DOWN=4
WRONG=5
HOLE=6
PORT=9400

# --- Certificates: one CA for the fleet, another for the impostor ---------------------------
PKI=$T_TMP/pki
pki_new_ca "$PKI/fleet" "k2ps test fleet CA $NS_TAG" &&
	pki_new_ca "$PKI/other" "k2ps test other CA $NS_TAG" &&
	pki_issue "$PKI/fleet" "$PKI/client" "k2ps-test-client" || {
	not_ok "certificates"
	done_testing
	exit 1
}
for i in "${GOOD[@]}"; do
	pki_issue "$PKI/fleet" "$PKI/h$i" "h$i" "IP:${NS_IPS[i]}" || not_ok "certificate of h$i"
done
pki_issue "$PKI/other" "$PKI/h$WRONG" "h$WRONG" "IP:${NS_IPS[WRONG]}" || not_ok "certificate of h$WRONG"
check "server certificates carry their host's IP SAN" bash -c \
	"openssl x509 -in $PKI/h1.pem -noout -ext subjectAltName | grep -q 'IP Address:${NS_IPS[1]}'"
KCERTS=(--ca "$PKI/fleet/ca.pem" --cert "$PKI/client.pem" --key "$PKI/client.key")

# --- The hosts -------------------------------------------------------------------------------
# start_k2i I CERT: k2i in host I's namespace, in its own UTS namespace named hI, serving CERT.
start_k2i() {
	local i=$1 cert=$2 st=$T_TMP/h$1
	mkdir -p "$st"
	ns_bg "$i" unshare --uts /bin/sh -c 'hostname "$1" && shift && exec "$@"' sh "h$i" \
		"$B/bin/k2i" --state-dir "$st" --rundir "$st/run" --listen "0.0.0.0:$PORT" \
		--config /dev/null --no-bpf --tls-cert "$cert.pem" --tls-key "$cert.key" \
		--tls-ca "$PKI/fleet/ca.pem" 2>"$st.log"
}
for i in "${GOOD[@]}"; do
	start_k2i "$i" "$PKI/h$i"
	# A marker that lives in this namespace, with a distinctive argv[0].
	ns_bg "$i" bash -c "exec -a k2ps-marker-$NS_TAG-h$i sleep 1000"
done
start_k2i "$WRONG" "$PKI/h$WRONG"
ns_bg "$HOLE" "$B/tests/blackhole" 0.0.0.0 "$PORT" 300 >/dev/null
for i in "${GOOD[@]}" "$WRONG" "$HOLE"; do
	if ! ns_wait_port "$i" "${NS_IPS[i]}" "$PORT"; then
		not_ok "host $i listens on :$PORT"
		sed 's/^/#   /' "$T_TMP/h$i.log" 2>/dev/null
		done_testing
		exit 1
	fi
done
ok "k2i listens in hosts ${GOOD[*]} and $WRONG, the black hole in host $HOLE; nothing in host $DOWN"

# Each good host, asked directly with curl: the certificate verifies for its IP, and it answers
# with its own host name (so the namespaces really are separate hosts as far as k2i knows).
names=
for i in "${GOOD[@]}"; do
	names+="$(curl -sS --max-time 10 --cacert "$PKI/fleet/ca.pem" --cert "$PKI/client.pem" \
		--key "$PKI/client.key" "https://${NS_IPS[i]}:$PORT/v1/host" | jq -r .hostname) "
done
check_eq "curl: each host's certificate verifies for its IP; each has its own host name" \
	"h1 h2 h3 " "$names"

# run_k2ps OUT ARGS...: k2ps ARGS (bounded by timeout 60) with stdout in OUT, stderr in OUT.err;
# sets RC and ELAPSED (seconds, 3 decimals).
run_k2ps() {
	local out=$1 t0 t1
	shift
	t0=$(date +%s%N)
	timeout --kill-after=5 60 "$K2PS" "$@" >"$out" 2>"$out.err"
	RC=$?
	t1=$(date +%s%N)
	ELAPSED=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
}
show_err() { [ -s "$1.err" ] && sed 's/^/#   stderr: /' "$1.err" | head -n 20; }

H3="${NS_IPS[1]},${NS_IPS[2]},${NS_IPS[3]}"

# --- All good hosts ------------------------------------------------------------------------
# Which processes live in each host's namespace, before and after the k2ps run: those present
# both times must be in that host's answer.
for i in "${GOOD[@]}"; do ip netns pids "${NS_NAMES[i]}" | sort >"$T_TMP/pids$i.before"; done
run_k2ps "$T_TMP/all.json" "${KCERTS[@]}" --port "$PORT" --timeout 10 --json -H "$H3"
for i in "${GOOD[@]}"; do ip netns pids "${NS_NAMES[i]}" | sort >"$T_TMP/pids$i.after"; done
check_eq "k2ps --json over three hosts: exit 0" 0 "$RC"
check_eq "k2ps --json over three hosts: nothing on stderr" "" "$(cat "$T_TMP/all.json.err")"
check "k2ps --json is NDJSON: one JSON object per line" \
	jq -e -s 'length > 0 and all(.[]; type == "object")' "$T_TMP/all.json"
check_eq "every answer is labelled with a host as given, and every host answered" \
	"$(tr , '\n' <<<"$H3" | sort)" "$(jq -r .host "$T_TMP/all.json" | sort -u)"
for i in "${GOOD[@]}"; do
	ip=${NS_IPS[i]}
	n=$(jq --arg h "$ip" 'select(.host == $h)' "$T_TMP/all.json" | jq -s length)
	total=$(ls -d /proc/[0-9]* | wc -l)
	# The hosts share one process table, so each must list about all of this machine's processes.
	check "host $ip answered with a whole process table ($n processes, $total in /proc now)" \
		test "$n" -ge $((total / 2))
	jq -r --arg h "$ip" 'select(.host == $h) | .pid' "$T_TMP/all.json" | sort >"$T_TMP/ans$i"
	comm -12 "$T_TMP/pids$i.before" "$T_TMP/pids$i.after" >"$T_TMP/live$i"
	missing=$(comm -23 "$T_TMP/live$i" "$T_TMP/ans$i" | xargs)
	check_eq "host $ip: every process in namespace ${NS_NAMES[i]} ($(xargs <"$T_TMP/live$i")) is in its answer" \
		"" "$missing"
	k2i_pid=$(for p in $(cat "$T_TMP/live$i"); do
		[ "$(cat "/proc/$p/comm" 2>/dev/null)" = k2i ] && echo "$p"; done | head -n1)
	check_eq "host $ip: its k2i (pid ${k2i_pid:-none}) is in its answer as k2i" "k2i" \
		"$(jq -r --arg h "$ip" --argjson p "${k2i_pid:-0}" \
			'select(.host == $h and .pid == $p) | .comm // .command // .COMMAND' "$T_TMP/all.json" |
			head -n1 | awk '{ print $1 }' | sed 's#.*/##')"
done
[ "$RC" -eq 0 ] || show_err "$T_TMP/all.json"

# Host given with its port: labelled as given.
run_k2ps "$T_TMP/port.json" "${KCERTS[@]}" --timeout 10 --json -H "${NS_IPS[1]}:$PORT"
check_eq "-H IP:PORT: exit 0, labelled 'IP:PORT'" "0 ${NS_IPS[1]}:$PORT" \
	"$RC $(jq -r .host "$T_TMP/port.json" | sort -u | xargs)"

# Default table: ps-like columns with HOST first, every host's rows.
run_k2ps "$T_TMP/all.txt" "${KCERTS[@]}" --port "$PORT" --timeout 10 -H "$H3"
check_eq "table: exit 0" 0 "$RC"
check_eq "table: default columns" "HOST USER PID %CPU %MEM VSZ RSS TTY STAT START TIME COMMAND" \
	"$(head -n1 "$T_TMP/all.txt" | xargs)"
check_eq "table: rows from every host" "$(tr , '\n' <<<"$H3" | sort)" \
	"$(tail -n +2 "$T_TMP/all.txt" | awk '{ print $1 }' | sort -u)"
for i in "${GOOD[@]}"; do
	k=$(awk '$1 == "'"${NS_IPS[i]}"'" && $3 ~ /^[0-9]+$/ { print $3 }' "$T_TMP/all.txt" | sort |
		comm -13 - "$T_TMP/live$i" | xargs)
	check_eq "table: host ${NS_IPS[i]}'s rows hold every process of its namespace" "" "$k"
done
# The markers only: the machine's other processes come and go between two runs.
# (-C sleep: the markers are sleeps; k2ps's own command line holds the pattern too.)
run_k2ps "$T_TMP/mh.txt" "${KCERTS[@]}" --port "$PORT" --timeout 10 -H "$H3" \
	--match "k2ps-marker-$NS_TAG-h" -C sleep
run_k2ps "$T_TMP/nh.txt" "${KCERTS[@]}" --port "$PORT" --timeout 10 --no-headers -H "$H3" \
	--match "k2ps-marker-$NS_TAG-h" -C sleep
check_eq "--no-headers: the same rows without the header" "$(tail -n +2 "$T_TMP/mh.txt" | grep -c .)" \
	"$(grep -c -v '^HOST ' "$T_TMP/nh.txt")"
check "--no-headers: no header line" eval "! grep -q '^HOST ' '$T_TMP/nh.txt'"

# Hosts from a file, and a filter pushed to the servers: each host lists the three markers.
tr , '\n' <<<"$H3" >"$T_TMP/hosts"
run_k2ps "$T_TMP/m.json" "${KCERTS[@]}" --port "$PORT" --timeout 10 --json -f "$T_TMP/hosts" \
	--match "k2ps-marker-$NS_TAG-h"
want=$(for h in $(cat "$T_TMP/hosts"); do for i in "${GOOD[@]}"; do echo "$h k2ps-marker-$NS_TAG-h$i"; done; done | sort)
check_eq "-f FILE --match: every host lists the three markers, nothing else" "$want" \
	"$(jq -r '"\(.host) \(if .cmdline | type == "array" then .cmdline[0] else (.cmdline // .command // .COMMAND | split(" ")[0]) end)"' \
		"$T_TMP/m.json" | grep -v -E '(k2ps|timeout)$' | sort)"

run_k2ps "$T_TMP/sum.txt" "${KCERTS[@]}" --port "$PORT" --timeout 10 --hosts-summary -H "$H3"
check_eq "--hosts-summary: exit 0" 0 "$RC"
for i in "${GOOD[@]}"; do
	check "--hosts-summary names host ${NS_IPS[i]}" grep -q -F "${NS_IPS[i]}" "$T_TMP/sum.txt"
done
sed 's/^/#   /' "$T_TMP/sum.txt" | head -n 8

# --- Failing hosts -------------------------------------------------------------------------
# Down (nothing listens: refused), wrong CA (TLS verification fails), black hole (TCP accepted,
# never answered): all reported, exit 1, the good hosts still printed, within the timeout.
HALL="${NS_IPS[1]},${NS_IPS[DOWN]},${NS_IPS[2]},${NS_IPS[WRONG]},${NS_IPS[3]},${NS_IPS[HOLE]}"
run_k2ps "$T_TMP/mix.json" "${KCERTS[@]}" --port "$PORT" --timeout 2 --json -H "$HALL"
check_eq "three failing hosts among six: exit 1" 1 "$RC"
check "all six hosts within --timeout 2: ${ELAPSED}s < 5 s" awk -v e="$ELAPSED" 'BEGIN { exit !(e < 5) }'
check_eq "the good hosts are still printed" "$(tr , '\n' <<<"$H3" | sort)" \
	"$(jq -r .host "$T_TMP/mix.json" | sort -u)"
for i in "$DOWN" "$WRONG" "$HOLE"; do
	check_eq "host ${NS_IPS[i]} reported once on stderr as 'k2ps: HOST: REASON'" 1 \
		"$(grep -c -E "^k2ps: ${NS_IPS[i]//./\\.}: .+" "$T_TMP/mix.json.err")"
done
check_eq "stderr names only the failing hosts" 3 "$(grep -c . "$T_TMP/mix.json.err")"
sed 's/^/#   /' "$T_TMP/mix.json.err"
check "the wrong-CA host's reason is about its certificate" \
	grep -q -i -E "^k2ps: ${NS_IPS[WRONG]//./\\.}: .*(certif|verif|x509|issuer|trust)" "$T_TMP/mix.json.err"
check "the black hole's reason is a timeout" \
	grep -q -i -E "^k2ps: ${NS_IPS[HOLE]//./\\.}: .*(time|timed)" "$T_TMP/mix.json.err"

run_k2ps "$T_TMP/hole.json" "${KCERTS[@]}" --port "$PORT" --timeout 2 --json -H "${NS_IPS[HOLE]}"
check "black hole alone: exit 1 after the timeout (${ELAPSED}s, within 1.5..5 s)" \
	awk -v e="$ELAPSED" -v rc="$RC" 'BEGIN { exit !(rc == 1 && e >= 1.5 && e < 5) }'
run_k2ps "$T_TMP/down.json" "${KCERTS[@]}" --port "$PORT" --timeout 2 --json -H "${NS_IPS[DOWN]}"
check "down host alone: exit 1, reported at once (${ELAPSED}s < 1.5 s)" \
	awk -v e="$ELAPSED" -v rc="$RC" 'BEGIN { exit !(rc == 1 && e < 1.5) }'
check_eq "down host alone: nothing on stdout" "" "$(cat "$T_TMP/down.json")"

# The wrong-CA host really is a working k2i: with its own CA it answers (so what k2ps refused was
# the certificate, not a dead server).
s=$(curl -s --max-time 10 --cacert "$PKI/other/ca.pem" --cert "$PKI/client.pem" \
	--key "$PKI/client.key" -o /dev/null -w '%{http_code}' "https://${NS_IPS[WRONG]}:$PORT/v1/host")
check_eq "the wrong-CA host answers a client that trusts its CA" 200 "$s"

done_testing
