#!/bin/bash
# SPDX-License-Identifier: MIT
#
# mcctl and libmiddlecon against a real relay: serve/call through a command, the exit status of
# a status, DATA on stdin, $sys.list/$sys.stats, pub/sub, and 100 concurrent async calls on one
# event base (the library's example program).
. "$(dirname "$0")/lib.sh"

[ -x "$B/bin/middlecon" ] || skip_all "$B/bin/middlecon is not built"
[ -x "$B/bin/mcctl" ] || skip_all "$B/bin/mcctl is not built"
need jq

RUN=$T_TMP/run
SOCK=$RUN/middlecon.sock
mkdir -p "$RUN"
"$B/bin/middlecon" --rundir "$RUN" --config /dev/null 2>"$T_TMP/middlecon.log" &
T_PIDS+=("$!")
for _ in $(seq 1 100); do
	[ -S "$SOCK" ] && break
	sleep 0.05
done
if [ ! -S "$SOCK" ]; then
	echo "# middlecon did not start:"
	sed 's/^/#   /' "$T_TMP/middlecon.log"
	not_ok "middlecon starts"
	done_testing
	exit 1
fi

mc() { timeout 20 "$B/bin/mcctl" --socket "$SOCK" "$@"; }

# wait_registered NAME: until $sys.list mentions NAME (a responder has registered).
wait_registered() {
	for _ in $(seq 1 100); do
		mc list 2>/dev/null | grep -q -F "\"$1\"" && return 0
		sleep 0.05
	done
	return 1
}

"$B/bin/mcctl" --socket "$SOCK" serve echo.upper -- tr a-z A-Z 2>"$T_TMP/serve.log" &
T_PIDS+=("$!")
check "the responder registers" wait_registered echo.upper

check_eq "call through a command" "HELLO" "$(mc call echo.upper hello)"
check_eq "DATA from stdin" "FROM STDIN" "$(printf 'from stdin' | mc call echo.upper)"
check_eq "a 100 kB body" "$(head -c 100000 /dev/zero | tr '\0' 'A' | md5sum)" \
	"$(head -c 100000 /dev/zero | tr '\0' 'a' | mc call echo.upper | md5sum)"

out=$(mc call nobody.here x 2>"$T_TMP/err")
rc=$?
check_eq "NO_RESPONDERS exit status" 11 "$rc"
check "NO_RESPONDERS named on stderr" grep -q '^NO_RESPONDERS' "$T_TMP/err"
check_eq "no body on NO_RESPONDERS" "" "$out"

head -c 2097152 /dev/zero | mc call echo.upper >/dev/null 2>"$T_TMP/err"
check_eq "a 2 MiB request is refused locally: TOO_LARGE" 14 "$?"
check "TOO_LARGE named on stderr" grep -q '^TOO_LARGE' "$T_TMP/err"

"$B/bin/mcctl" --socket "$SOCK" serve fail.cmd -- false 2>/dev/null &
T_PIDS+=("$!")
wait_registered fail.cmd
mc call fail.cmd x 2>"$T_TMP/err" >/dev/null
check_eq "a failing command answers BAD_REQUEST" 16 "$?"

"$B/bin/mcctl" --socket "$SOCK" serve slow.cmd -- sleep 5 2>/dev/null &
T_PIDS+=("$!")
wait_registered slow.cmd
mc --timeout 200 call slow.cmd x 2>"$T_TMP/err" >/dev/null
check_eq "DEADLINE_EXCEEDED exit status" 12 "$?"

check "list is JSON" sh -c "'$B/bin/mcctl' --socket '$SOCK' list | jq -e . "
check "list names echo.upper" sh -c "'$B/bin/mcctl' --socket '$SOCK' list | grep -q echo.upper"
check "stats is JSON" sh -c "'$B/bin/mcctl' --socket '$SOCK' stats | jq -e . "

"$B/bin/mcctl" --socket "$SOCK" sub 'news.>' >"$T_TMP/sub.out" 2>"$T_TMP/sub.log" &
T_PIDS+=("$!")
got=
for i in $(seq 1 50); do
	mc pub news.today "edition $i"
	if [ -s "$T_TMP/sub.out" ]; then
		got=1
		break
	fi
	sleep 0.1
done
check_eq "sub receives a publication" 1 "$got"
mc pub news.sport "last edition"
mc pub other.topic "not for us"
for _ in $(seq 1 50); do
	grep -q "last edition" "$T_TMP/sub.out" && break
	sleep 0.05
done
check "one line per message" grep -q -x "last edition" "$T_TMP/sub.out"
check "a non-matching name is not delivered" sh -c "! grep -q 'not for us' '$T_TMP/sub.out'"
printf 'piped\n' | mc pub news.pipe
for _ in $(seq 1 50); do
	grep -q -x piped "$T_TMP/sub.out" && break
	sleep 0.05
done
check "pub DATA from stdin" grep -q -x piped "$T_TMP/sub.out"

mc bogus >/dev/null 2>"$T_TMP/err"
check_eq "usage error exits 2" 2 "$?"
check "usage error hints at --help" grep -q -- --help "$T_TMP/err"
check "--help documents the exit statuses" sh -c "'$B/bin/mcctl' --help | grep -q '11 NO_RESPONDERS'"

out=$(timeout 30 "$B/examples/mc_echo" "$SOCK" 100)
check_eq "100 concurrent async calls on one event base" "100/100 replies OK" "$out"

done_testing
