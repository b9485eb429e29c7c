#!/bin/bash
# SPDX-License-Identifier: MIT
#
# k2ps against three k2i on loopback ports that share one CA, plus a closed port, a k2i with a
# certificate from another CA, and a listener that never answers.
. "$(dirname "$0")/lib.sh"

need jq
K2PS=$B/bin/k2ps
[ -x "$K2PS" ] || skip_all "$K2PS is not built"
[ -x "$B/tests/blackhole" ] || skip_all "$B/tests/blackhole is not built"

# Three k2i with node certificates from the first one's CA.
k2i_start h1 || { not_ok "k2i h1 starts"; done_testing; exit 1; }
P1=$K2I_PORT PID1=$K2I_PID S1=$K2I_STATE
for n in 2 3; do
	mkdir -p "$T_TMP/h$n"
	cp "$S1/ca.pem" "$S1/ca.key" "$T_TMP/h$n/"
	k2i_start "h$n" || { not_ok "k2i h$n starts"; done_testing; exit 1; }
	eval "P$n=$K2I_PORT PID$n=$K2I_PID"
done
# A k2i with its own, unrelated CA.
k2i_start other || { not_ok "k2i other starts"; done_testing; exit 1; }
POTHER=$K2I_PORT
ok "three k2i on ports $P1 $P2 $P3 share one CA; another CA on $POTHER"

H="127.0.0.1:$P1,127.0.0.1:$P2,127.0.0.1:$P3"
TLS=(--ca "$S1/ca.pem" --cert "$S1/client.pem" --key "$S1/client.key")
k2ps() { "$K2PS" "${TLS[@]}" "$@"; }

out=$(k2ps -H "$H" 2>"$T_TMP/err"); rc=$?
check_eq "all hosts answer: exit 0" 0 "$rc"
check_eq "no errors on stderr" "" "$(cat "$T_TMP/err")"
check_eq "header like ps aux with HOST first" \
	"HOST USER PID %CPU %MEM VSZ RSS TTY STAT START TIME COMMAND" \
	"$(echo "$out" | head -n1 | tr -s ' ')"
for n in 1 2 3; do
	eval "p=\$P$n pid=\$PID$n"
	check "k2i $n's own pid $pid is listed with its host" \
		grep -qE "^127\.0\.0\.1:$p +[^ ]+ +$pid " <<<"$out"
done

json=$(k2ps -H "$H" --json)
check "--json: every line parses and has a host" \
	jq -se 'length > 0 and all(.[]; (.host | type) == "string" and (.pid | type) == "number")' \
	<<<"$json"
check_eq "--json: three hosts" 3 "$(jq -r .host <<<"$json" | sort -u | wc -l)"
check_eq "--json: k2i 2 is in its host's list" 1 \
	"$(jq -c "select(.host == \"127.0.0.1:$P2\" and .pid == $PID2)" <<<"$json" | wc -l)"

out=$(k2ps -H "$H" -o host,pid,comm --sort=-pid --no-headers)
check_eq "-o: three columns" 3 "$(awk '{print NF}' <<<"$out" | sort -u | head -n1)"
check_eq "--sort=-pid: merged list is sorted" "$(awk '{print $2}' <<<"$out" | sort -rn)" \
	"$(awk '{print $2}' <<<"$out")"
out=$(k2ps -H "$H" -o pid,%cpu --sort=-cpu,pid --json)
check "--sort=-cpu over hosts (JSON)" jq -se '[.[].cpu_percent] as $c | $c == ($c | sort | reverse)' <<<"$out"
check "-o asks only for the fields it needs" jq -se 'all(.[]; has("cmdline") | not)' <<<"$out"

out=$(k2ps -H "$H" -u root --json)
check "-u root: only root's processes" jq -se 'length > 0 and all(.[]; .user == "root")' <<<"$out"
out=$(k2ps -H "$H" -C k2i -o host,pid,comm --no-headers)
check "-C k2i: only k2i processes" awk '$3 != "k2i" { exit 1 }' <<<"$out"
check "-C k2i: each k2i with its own host" grep -qE "^127\.0\.0\.1:$P3 +$PID3 k2i$" <<<"$out"

check_eq "--limit 5: five rows" 5 "$(k2ps -H "$H" --limit 5 --sort=-cpu --no-headers | wc -l)"
check_eq "--limit 5 --json: five objects" 5 "$(k2ps -H "$H" --limit 5 --json | wc -l)"

out=$(k2ps -H "$H" --hosts-summary --no-headers)
check_eq "--hosts-summary: three lines" 3 "$(wc -l <<<"$out")"
check "--hosts-summary: process counts" awk '$3 > 0 { n++ } END { exit n != 3 }' <<<"$out"
out=$(k2ps -H "$H,$H" --hosts-summary --no-headers)
check_eq "a host named twice is asked once" 3 "$(wc -l <<<"$out")"

out=$(k2ps -H "127.0.0.1:$P1" --http1 --json -C k2i)
check "--http1: the HTTP/1.1 path returns the list" jq -se 'length >= 1' <<<"$out"
out=$(k2ps -H "127.0.0.1:$P1" --http1 --hosts-summary --no-headers)
check_eq "--http1: /v1/host too" 1 "$(wc -l <<<"$out")"

# A closed port: reported, the others still print.
closed=$("$B/tests/blackhole" 127.0.0.1 0 1)
sleep 1.2
out=$(k2ps -H "$H,127.0.0.1:$closed" -o host,pid --no-headers 2>"$T_TMP/err"); rc=$?
check_eq "a down host: exit status 1" 1 "$rc"
check_eq "a down host: one line on stderr" \
	"k2ps: 127.0.0.1:$closed: connection refused" "$(cat "$T_TMP/err")"
check_eq "a down host: the others still print" 3 "$(awk '{print $1}' <<<"$out" | sort -u | wc -l)"

# A certificate from another CA.
out=$(k2ps -H "$H,127.0.0.1:$POTHER" -o host,pid --no-headers 2>"$T_TMP/err"); rc=$?
check_eq "another CA: exit status 1" 1 "$rc"
check "another CA: certificate verify failure reported" \
	grep -q "^k2ps: 127.0.0.1:$POTHER: TLS: certificate verify failed" "$T_TMP/err"
check_eq "another CA: the others still print" 3 "$(awk '{print $1}' <<<"$out" | sort -u | wc -l)"

# A listener that never answers: the timeout holds, the others still print.
exec 3< <("$B/tests/blackhole" 127.0.0.1 0 30)
read -r hole <&3
start=$(date +%s%N)
out=$(k2ps -H "$H,127.0.0.1:$hole" --timeout 2 -o host,pid --no-headers 2>"$T_TMP/err"); rc=$?
elapsed=$((($(date +%s%N) - start) / 1000000))
check_eq "a silent host: exit status 1" 1 "$rc"
check_eq "a silent host: timed out" "k2ps: 127.0.0.1:$hole: timed out after 2 s" "$(cat "$T_TMP/err")"
check "a silent host: within 5 s (took $elapsed ms)" test "$elapsed" -lt 5000
check_eq "a silent host: the others still print" 3 "$(awk '{print $1}' <<<"$out" | sort -u | wc -l)"
out=$(k2ps -H "$H,127.0.0.1:$hole" --timeout 2 --http1 -o host --no-headers 2>"$T_TMP/err")
check "a silent host over --http1 also times out" grep -q "timed out after 2 s" "$T_TMP/err"

# Fan-out of one still gets every host.
check_eq "--fanout 1: three hosts" 3 \
	"$(k2ps -H "$H" --fanout 1 -o host --no-headers | sort -u | wc -l)"

# Defaults from --state-dir.
check_eq "--state-dir supplies CA and client certificate" 0 \
	"$("$K2PS" --state-dir "$S1" -H "127.0.0.1:$P1" >/dev/null 2>&1; echo $?)"

# Usage errors.
"$K2PS" --bogus >/dev/null 2>"$T_TMP/err"; rc=$?
check_eq "unknown option: exit 2" 2 "$rc"
check "unknown option: hint to --help" grep -q -- "--help" "$T_TMP/err"
"$K2PS" -H "a:99999" >/dev/null 2>&1; rc=$?
check_eq "bad port: exit 2" 2 "$rc"
"$K2PS" -o nosuchcol >/dev/null 2>&1; rc=$?
check_eq "unknown column: exit 2" 2 "$rc"

# --events: the merged feed shows a process started on host 2.
"$K2PS" "${TLS[@]}" -H "$H" --events --json >"$T_TMP/events" 2>"$T_TMP/events.err" &
EV=$!
T_PIDS+=("$EV")
# Until every host's stream is up (all three k2i see the same processes), under any load.
for i in $(seq 1 100); do
	/bin/true
	[ "$(jq -r .host "$T_TMP/events" 2>/dev/null | sort -u | wc -l)" -ge 3 ] && break
	sleep 0.1
done
kill -INT "$EV"
wait "$EV"; rc=$?
check_eq "--events: SIGINT ends it with status 0" 0 "$rc"
check "--events: NDJSON events with hosts" \
	jq -se 'length > 0 and all(.[]; (.host | type) == "string")' "$T_TMP/events"

# --watch: at least one frame, ended by SIGINT.
"$K2PS" "${TLS[@]}" -H "$H" --watch=0.5 >"$T_TMP/watch" 2>&1 &
W=$!
T_PIDS+=("$W")
sleep 1.5
kill -INT "$W"
wait "$W"; rc=$?
check_eq "--watch: SIGINT ends it with status 0" 0 "$rc"
check "--watch: frames with the table" grep -q "HOST .*COMMAND" "$T_TMP/watch"

done_testing
