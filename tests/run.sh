#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Runs every test suite and counts TAP results: cmocka unit tests, integration scripts and fuzz
# corpus replays. A suite that dies without reporting a failure (a crash, a timeout) counts as
# one failure. Ends with the line "N passed, N failed, N skipped"; exits 1 if anything failed.
#
#   B=build tests/run.sh [FILTER]     FILTER: substring of the suite names to run
set -u
cd "$(dirname "$0")/.."
B=${B:-build}
FILTER=${1:-}
TEST_TIMEOUT=${TEST_TIMEOUT:-600}
export B
LOGDIR=$B/test-logs
mkdir -p "$LOGDIR"

passed=0 failed=0 skipped=0
failed_names=()

# run_suite NAME CMD...: runs CMD, echoes its TAP to the log, and counts.
run_suite() {
	local name=$1 log rc p f s
	shift
	[ -n "$FILTER" ] && [[ $name != *"$FILTER"* ]] && return
	log="$LOGDIR/$(echo "$name" | tr '/ ' '__').log"
	timeout --kill-after=10 "$TEST_TIMEOUT" "$@" >"$log" 2>&1
	rc=$?
	p=$(grep -c -E '^ok [0-9]+' "$log" | tr -d ' ')
	s=$(grep -c -i -E '^ok [0-9]+.*# *skip' "$log" | tr -d ' ')
	f=$(grep -c -E '^not ok [0-9]+' "$log" | tr -d ' ')
	p=$((p - s))
	if [ "$rc" -eq 77 ] && [ "$p" -eq 0 ] && [ "$f" -eq 0 ]; then
		s=$((s + 1))
		echo "SKIP  $name: $(grep -m1 -i -E 'skip' "$log" | head -c 200)"
	elif [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		f=1
		echo "FAIL  $name: exited with status $rc without a TAP failure (see $log)"
		tail -n 20 "$log" | sed 's/^/      /'
	elif [ "$f" -gt 0 ]; then
		echo "FAIL  $name: $p passed, $f failed (see $log)"
		grep -E -A5 '^not ok' "$log" | head -n 40 | sed 's/^/      /'
	else
		echo "ok    $name: $p passed$([ "$s" -gt 0 ] && echo ", $s skipped")"
		grep -i -E '^ok [0-9]+.*# *skip' "$log" | head -n 5 | sed 's/^/      /'
	fi
	[ "$f" -gt 0 ] && failed_names+=("$name")
	passed=$((passed + p))
	failed=$((failed + f))
	skipped=$((skipped + s))
}

for t in "$B"/tests/test_*; do
	[ -x "$t" ] || continue
	CMOCKA_MESSAGE_OUTPUT=TAP run_suite "unit/$(basename "$t")" "$t"
done

for t in tests/integration/*.sh; do
	[ -e "$t" ] || continue
	case $(basename "$t") in lib*.sh) continue ;; esac
	run_suite "integration/$(basename "$t" .sh)" bash "$t"
done

for t in "$B"/fuzz/fuzz_*; do
	[ -x "$t" ] || continue
	name=$(basename "$t")
	corpus=tests/fuzz/corpus/${name#fuzz_}
	[ -d "$corpus" ] || continue
	run_suite "fuzz-replay/$name" "$t" "$corpus"
done

if [ ${#failed_names[@]} -gt 0 ]; then
	echo "failed suites: ${failed_names[*]}"
fi
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
