#!/bin/bash
# SPDX-License-Identifier: MIT
#
# The process-event sources of k2i/proctrace.c, through $(B)/tests/proctrace_dump. For the BPF
# source (both of its exit programs) and the process connector: a burst of short-lived
# processes, each of whose fork, exec and exit must arrive with the right PIDs and exit codes and
# nothing lost; the start ticks of a long-lived process as /proc/<pid>/stat shows them; one exit,
# with the group's exit code, for a multi-threaded process whose leader leaves first. For the
# /proc poll source: a process seen to appear and disappear, and a zombie's exit code. A source
# the kernel or our privileges do not allow is skipped with the reason.
. "$(dirname "$0")/lib.sh"
need awk

N=${PROCTRACE_BURST:-1000}
for p in proctrace_dump burst exit_with; do
	[ -x "$B/tests/$p" ] || skip_all "$B/tests/$p is not built"
done

# dump_start NAME ARGS...: starts proctrace_dump ARGS and waits for it to be ready. Sets DUMP_PID
# and DUMP_OUT. Returns 77 (with the reason in DUMP_WHY) if the source is unavailable.
dump_start() {
	local name=$1 i
	shift
	DUMP_OUT=$T_TMP/$name.events
	DUMP_WHY=
	"$B/tests/proctrace_dump" "$@" >"$DUMP_OUT" 2>"$T_TMP/$name.log" &
	DUMP_PID=$!
	T_PIDS+=("$DUMP_PID")
	for i in $(seq 1 100); do
		grep -q '^ready ' "$DUMP_OUT" && return 0
		if ! kill -0 "$DUMP_PID" 2>/dev/null; then
			wait "$DUMP_PID"
			DUMP_WHY=$(sed -n 's/^unavailable //p' "$DUMP_OUT")
			[ -n "$DUMP_WHY" ] && return 77
			sed 's/^/#   /' "$T_TMP/$name.log"
			return 1
		fi
		sleep 0.1
	done
	return 1
}

# dump_wait_for REGEX: waits up to 10 s for an event line matching REGEX.
dump_wait_for() {
	local i
	for i in $(seq 1 200); do
		grep -q -E "$1" "$DUMP_OUT" && return 0
		sleep 0.05
	done
	return 1
}

# dump_stop: SIGTERM, then the final "stats" line is in DUMP_OUT.
dump_stop() {
	kill -TERM "$DUMP_PID" 2>/dev/null
	wait "$DUMP_PID"
}

# start_ticks PID: field 22 of /proc/PID/stat (after the comm, which may hold spaces).
start_ticks() {
	sed 's/.*) //' "/proc/$1/stat" | awk '{ print $20 }'
}

# event_field TYPE PID FIELD: FIELD (1-based, see proctrace_dump.c) of the first TYPE event of
# PID.
event_field() {
	awk -v t="$1" -v p="$2" -v f="$3" '$1 == t && $2 == p { print $f; exit }' "$DUMP_OUT"
}

# wait_exec PID COMM: waits until PID runs COMM (its exec is done).
wait_exec() {
	local i
	for i in $(seq 1 100); do
		[ "$(cat "/proc/$1/comm" 2>/dev/null)" = "$2" ] && return 0
		sleep 0.01
	done
	return 1
}

# median_of FILE: the median of the numbers in FILE, one a line (999999 if there are none).
median_of() {
	sort -n "$1" 2>/dev/null | awk '{ v[NR] = $1 } END { print NR ? v[int((NR + 1) / 2)] : 999999 }'
}

# burst_case NAME ARGS...: the burst, long-lived and threaded checks against one source.
burst_case() {
	local name=$1 r lp lp_ticks tp tcode marker stats summary
	shift
	dump_start "$name" "$@"
	r=$?
	if [ "$r" -eq 77 ]; then
		skip "$name: source unavailable" "$DUMP_WHY"
		return
	elif [ "$r" -ne 0 ]; then
		not_ok "$name: proctrace_dump starts"
		return
	fi
	ok "$name: proctrace_dump starts"

	sleep 30 &
	lp=$!
	wait_exec "$lp" sleep
	lp_ticks=$(start_ticks "$lp")
	"$B/tests/burst" -n "$N" -x "$B/tests/exit_with" >"$T_TMP/$name.burst" \
		2>"$T_TMP/$name.burst.log"
	check_eq "$name: burst of $N children" "0 $N" \
		"$? $(wc -l <"$T_TMP/$name.burst" | tr -d ' ')"
	echo "# $(cat "$T_TMP/$name.burst.log")"
	"$B/tests/burst" -T 77 >"$T_TMP/$name.threaded"
	read -r tp tcode <"$T_TMP/$name.threaded"
	kill "$lp"
	wait "$lp" 2>/dev/null
	"$B/tests/exit_with" 42 &
	marker=$!
	wait "$marker"
	check "$name: the last process's exit arrives" dump_wait_for "^exit $marker "
	dump_stop

	# Per burst child: exactly one fork, exec and exit; the exit code; start ticks equal in all
	# three; exec'd program and comm; lifetime from fork to exit.
	summary=$(awk -v prog="$B/tests/exit_with" -v lives="$T_TMP/$name.lifetimes" \
		-v forklives="$T_TMP/$name.forklifetimes" '
		FNR == NR { code[$1] = $2; n++; next }
		!($2 in code) { next }
		$1 == "fork" { forks[$2]++; ft[$2] = $9; ticks[$2] = $8 }
		$1 == "exec" { execs[$2]++; et[$2] = $9
			       if ($11 == prog && $10 == "exit_with") named++
			       if ($8 != ticks[$2]) tickbad++ }
		$1 == "exit" { exits[$2]++; if ($6 == code[$2] && $7 == 0) codes++
			       if ($8 != ticks[$2]) tickbad++
			       if ($2 in et) printf "%.0f\n", ($9 - et[$2]) / 1000 >lives
			       if ($2 in ft) printf "%.0f\n", ($9 - ft[$2]) / 1000 >forklives }
		END {
			for (p in code) {
				f += forks[p] == 1; e += execs[p] == 1; x += exits[p] == 1
			}
			print n, f, e, x, codes + 0, named + 0, tickbad + 0
		}' "$T_TMP/$name.burst" "$DUMP_OUT")
	read -r n f e x codes named tickbad <<<"$summary"
	median=$(median_of "$T_TMP/$name.lifetimes")
	check_eq "$name: one fork event per child" "$N" "$f"
	check_eq "$name: one exec event per child" "$N" "$e"
	check_eq "$name: one exit event per child" "$N" "$x"
	check_eq "$name: every exit code is right" "$N" "$codes"
	# From fork, a child also waits for a CPU while the burst forks the next ones.
	echo "# $name: median time from exec to exit $median us, from fork to exit" \
		"$(median_of "$T_TMP/$name.forklifetimes") us"
	# Whether the burst made processes short-lived enough to test what it is meant to (events of
	# sub-millisecond processes) depends on the machine's load, not on the event source: a
	# loaded machine makes this a weaker test, which is said, not failed.
	if [ "$median" -lt 1000 ]; then
		ok "$name: each program lived under 1 ms (median ${median} us from exec to exit)"
	else
		skip "$name: programs lived under 1 ms" \
			"median ${median} us from exec to exit: the machine is too loaded for that"
	fi
	if [[ $name == bpf* ]]; then
		check_eq "$name: exec events name the program and comm" "$N" "$named"
		check_eq "$name: start ticks agree in fork, exec and exit" "0" "${tickbad:-0}"
	fi

	check_eq "$name: long-lived child: exec start_ticks = /proc/pid/stat field 22" "$lp_ticks" \
		"$(event_field exec "$lp" 8)"
	check_eq "$name: long-lived child: fork start_ticks" "$lp_ticks" "$(event_field fork "$lp" 8)"
	if [[ $name == bpf* ]]; then
		check_eq "$name: long-lived child: exit start_ticks" "$lp_ticks" \
			"$(event_field exit "$lp" 8)"
	fi
	check_eq "$name: long-lived child killed by SIGTERM" "0 15" \
		"$(event_field exit "$lp" 6) $(event_field exit "$lp" 7)"

	check_eq "$name: threaded process: one exit, with the group's code" "1 $tcode 0" \
		"$(awk -v p="$tp" '$1 == "exit" && $2 == p { n++; c = $6 " " $7 }
			END { print n + 0, c }' "$DUMP_OUT")"
	check_eq "$name: threaded process: its threads are not forks" "1" \
		"$(awk -v p="$tp" '$1 == "fork" && $2 == p { n++ } END { print n + 0 }' "$DUMP_OUT")"

	stats=$(grep '^stats ' "$DUMP_OUT")
	echo "# $name: $stats"
	check_eq "$name: no event lost" "0" "$(awk '{ print $5 }' <<<"$stats")"
	check "$name: received at least 3 events per child" \
		test "$(awk '{ print $3 }' <<<"$stats")" -ge $((3 * N))
}

# lost_case NAME ARGS...: a consumer stopped during a burst, with the smallest buffer, must count
# what the kernel could not hand over.
lost_case() {
	local name=$1 r stats received lost marker
	shift
	dump_start "$name" "$@" --buffer-size 65536
	r=$?
	if [ "$r" -eq 77 ]; then
		skip "$name: source unavailable" "$DUMP_WHY"
		return
	elif [ "$r" -ne 0 ]; then
		not_ok "$name: proctrace_dump starts"
		return
	fi
	kill -STOP "$DUMP_PID"
	"$B/tests/burst" -n "$N" -x "$B/tests/exit_with" >/dev/null 2>&1
	kill -CONT "$DUMP_PID"
	sleep 0.3
	"$B/tests/exit_with" 0 &
	marker=$!
	wait "$marker"
	dump_wait_for "^exit $marker " >/dev/null
	dump_stop
	stats=$(grep '^stats ' "$DUMP_OUT")
	echo "# $name: $stats"
	read -r received lost < <(awk '{ print $3, $5 }' <<<"$stats")
	check "$name: a stalled consumer's losses are counted" test "${lost:-0}" -gt 0
	if [[ $name == bpf* ]]; then
		check "$name: every record is received or counted lost" \
			test $((received + lost)) -ge $((3 * N))
	fi
}

burst_case bpf --source bpf
burst_case bpf-live-count --source bpf --bpf-exit-live
burst_case netlink --source netlink
lost_case bpf-lost --source bpf
lost_case netlink-lost --source netlink

# --- /proc polling -------------------------------------------------------------------------
if dump_start poll --source poll --poll-interval-ms 50; then
	ok "poll: proctrace_dump starts"
	sleep 30 &
	lp=$!
	wait_exec "$lp" sleep
	lp_ticks=$(start_ticks "$lp")
	check "poll: a new process appears" dump_wait_for "^fork $lp "
	check_eq "poll: its start_ticks = /proc/pid/stat field 22" "$lp_ticks" \
		"$(event_field fork "$lp" 8)"
	check_eq "poll: it is seen to have exec'd sleep" "sleep" "$(event_field exec "$lp" 10)"
	kill "$lp"
	wait "$lp" 2>/dev/null
	check "poll: it disappears" dump_wait_for "^exit $lp "
	# A zombie for 2 s: its parent execs sleep and never reaps it.
	("$B/tests/exit_with" 7 &
		echo $! >"$T_TMP/zombie.pid"
		exec sleep 2)
	zp=$(cat "$T_TMP/zombie.pid")
	check "poll: a zombie's exit is seen" dump_wait_for "^exit $zp "
	check_eq "poll: with its exit code" "7 0" \
		"$(event_field exit "$zp" 6) $(event_field exit "$zp" 7)"
	dump_stop
	check_eq "poll: no process exit reported twice" "" \
		"$(awk '$1 == "exit" { n[$2 " " $8]++ } END { for (k in n) if (n[k] > 1) print k }' \
			"$DUMP_OUT")"
else
	not_ok "poll: proctrace_dump starts"
fi

done_testing
