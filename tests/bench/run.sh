#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Runs every benchmark in tests/bench/ (or those whose name contains FILTER). Benchmarks report
# numbers; they do not pass or fail on them. Results are also appended to $B/bench/results.txt.
#
#   B=build tests/bench/run.sh [FILTER]
set -u
cd "$(dirname "$0")/../.."
B=${B:-build}
export B
mkdir -p "$B/bench"
status=0
for b in tests/bench/bench_*.sh; do
	[ -n "${1:-}" ] && [[ $b != *"$1"* ]] && continue
	echo "=== $(basename "$b" .sh) ($(date -u +%FT%TZ), $(nproc) CPUs, $(uname -r))"
	bash "$b" 2>&1 | tee -a "$B/bench/results.txt" || status=1
done
exit $status
