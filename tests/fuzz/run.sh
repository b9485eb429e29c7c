#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Runs every libFuzzer target built by `make fuzz` for FUZZ_SECONDS, starting from the committed
# corpus (tests/fuzz/corpus/NAME, read only) and growing a scratch corpus under $B/corpus/NAME.
# Crashing inputs land in $B/artifacts/; add them to the committed corpus (named by SHA-256)
# once fixed. Exits 1 if any target found a crash.
set -u
cd "$(dirname "$0")/../.."
B=${B:-build/fuzz}
FUZZ_SECONDS=${FUZZ_SECONDS:-30}
status=0
mkdir -p "$B/artifacts"
for t in "$B"/fuzz/fuzz_*; do
	[ -x "$t" ] || continue
	name=$(basename "$t")
	name=${name#fuzz_}
	mkdir -p "$B/corpus/$name"
	echo "=== fuzz_$name for ${FUZZ_SECONDS}s"
	if ! "$t" -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 \
		-artifact_prefix="$B/artifacts/${name}-" "$B/corpus/$name" "tests/fuzz/corpus/$name" \
		2>"$B/$name.log"; then
		echo "fuzz_$name FAILED:"
		tail -n 30 "$B/$name.log"
		status=1
	else
		tail -n 1 "$B/$name.log"
	fi
done
exit $status
