#!/bin/bash
# SPDX-License-Identifier: MIT
#
# sandbox against bubblewrap and gVisor (runsc do), in one run, on the same programs:
#   1. start-up: wall time of running /bin/true, median of N runs (timed by one python3
#      process around each run, so the timer's own cost is the same for every tool);
#   2. an untrapped syscall: getppid() in a loop, ns/call, against native;
#   3. a trapped open()+close() of /etc/passwd, ns/pair (our supervisor performs every open);
#   4. a trapped send: sendto() of 32 bytes to a UDP address on 127.0.0.1 and its recv(),
#      ns/pair (a send that names a destination is judged and performed by the supervisor).
# runsc is tried rootless, then as root with the ptrace platform (its KVM platform spins under
# nested virtualization on these VMs). Prints the figures and the ratios the issue names.
# Targets: start-up within 2x of bwrap and 10x faster than runsc; getppid within 10 % of
# native; open+close 10x faster than runsc.
#
#   BENCH_RUNS=30 BENCH_SYSCALLS=2000000 BENCH_OPENS=100000 tests/bench/bench_sandbox.sh
set -u
cd "$(dirname "$0")/../.."
B=${B:-build}
N=${BENCH_RUNS:-30}
CALLS=${BENCH_SYSCALLS:-2000000}
OPENS=${BENCH_OPENS:-100000}
SENDS=${BENCH_SENDS:-50000}
SBX=$PWD/$B/bin/sandbox
HELP=$PWD/$B/tests/sbx_bench
TMP=$(mktemp -d /tmp/sbx-bench.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

if [ ! -x "$SBX" ] || [ ! -x "$HELP" ]; then
	echo "sandbox or sbx_bench is not built (make BUILD=$B)"
	exit 1
fi

# The command prefixes of the tools; each runs its argument vector.
SBX_CMD=("$SBX" run --rundir "$TMP/run" --ro-bind "$(dirname "$HELP")" /t --exec /t --)
BWRAP_CMD=(bwrap --unshare-all --die-with-parent --ro-bind /usr /usr --ro-bind /etc /etc
	--symlink usr/bin /bin --symlink usr/lib /lib --symlink usr/lib64 /lib64
	--symlink usr/sbin /sbin --proc /proc --dev /dev --tmpfs /tmp
	--ro-bind "$(dirname "$HELP")" /t --)
RUNSC_CMD=()
RUNSC_WHY="runsc is not installed"
if command -v runsc >/dev/null; then
	for flags in "--rootless --network=none" "--platform=ptrace --network=none"; do
		# shellcheck disable=SC2086
		if out=$(timeout 60 runsc $flags --root "$TMP/runsc" do /bin/true 2>&1); then
			# shellcheck disable=SC2206
			RUNSC_CMD=(runsc $flags --root "$TMP/runsc" do)
			RUNSC_WHY=
			break
		fi
		RUNSC_WHY="runsc $flags do failed: $(echo "$out" | tail -n1)"
	done
fi
HAVE_BWRAP=1
command -v bwrap >/dev/null || HAVE_BWRAP=0

# startup_ms CMD...: median wall time in ms of N runs of CMD /bin/true.
startup_ms() {
	/usr/bin/python3 - "$N" "$@" <<'EOF'
import statistics, subprocess, sys, time
n = int(sys.argv[1]); cmd = sys.argv[2:] + ["/bin/true"]
subprocess.run(cmd, check=True)  # warm the page cache
ts = []
for _ in range(n):
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL)
    ts.append((time.perf_counter() - t) * 1000)
print("%.2f" % statistics.median(ts))
EOF
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

echo "start-up of /bin/true, median of $N runs (ms):"
native_ms=$(startup_ms)
sbx_ms=$(startup_ms "${SBX_CMD[@]}")
echo "  native           $native_ms"
echo "  sandbox          $sbx_ms"
if [ "$HAVE_BWRAP" = 1 ]; then
	bwrap_ms=$(startup_ms "${BWRAP_CMD[@]}")
	echo "  bwrap            $bwrap_ms"
	echo "  sandbox/bwrap    $(ratio "$sbx_ms" "$bwrap_ms")x   (target <= 2)"
else
	echo "  bwrap: not installed"
fi
if [ ${#RUNSC_CMD[@]} -gt 0 ]; then
	runsc_ms=$(startup_ms "${RUNSC_CMD[@]}")
	echo "  runsc (${RUNSC_CMD[*]:1:2})  $runsc_ms"
	echo "  runsc/sandbox    $(ratio "$runsc_ms" "$sbx_ms")x   (target >= 10)"
else
	echo "  runsc: $RUNSC_WHY"
fi

# inside CMD... -- ARGS: runs the helper under a tool (the path differs per tool).
echo
echo "getppid(), $CALLS calls (ns/call):"
native_pp=$("$HELP" getppid "$CALLS")
sbx_pp=$("${SBX_CMD[@]}" /t/sbx_bench getppid "$CALLS")
echo "  native           $native_pp"
echo "  sandbox          $sbx_pp   ($(ratio "$sbx_pp" "$native_pp")x native, target <= 1.10)"
if [ "$HAVE_BWRAP" = 1 ]; then
	bwrap_pp=$("${BWRAP_CMD[@]}" /t/sbx_bench getppid "$CALLS")
	echo "  bwrap            $bwrap_pp   ($(ratio "$bwrap_pp" "$native_pp")x native)"
fi
if [ ${#RUNSC_CMD[@]} -gt 0 ]; then
	runsc_pp=$("${RUNSC_CMD[@]}" "$HELP" getppid "$CALLS" 2>/dev/null | tail -n1)
	echo "  runsc            $runsc_pp   ($(ratio "$runsc_pp" "$native_pp")x native)"
fi

echo
echo "open()+close() of /etc/passwd, $OPENS pairs (ns/pair):"
native_oc=$("$HELP" openclose "$OPENS" /etc/passwd)
sbx_oc=$("${SBX_CMD[@]}" /t/sbx_bench openclose "$OPENS" /etc/passwd)
echo "  native           $native_oc"
echo "  sandbox          $sbx_oc   ($(ratio "$sbx_oc" "$native_oc")x native; every open is performed by the supervisor)"
if [ "$HAVE_BWRAP" = 1 ]; then
	bwrap_oc=$("${BWRAP_CMD[@]}" /t/sbx_bench openclose "$OPENS" /etc/passwd)
	echo "  bwrap            $bwrap_oc   ($(ratio "$bwrap_oc" "$native_oc")x native)"
fi
if [ ${#RUNSC_CMD[@]} -gt 0 ]; then
	runsc_oc=$("${RUNSC_CMD[@]}" "$HELP" openclose "$OPENS" /etc/passwd 2>/dev/null | tail -n1)
	echo "  runsc            $runsc_oc"
	echo "  runsc/sandbox    $(ratio "$runsc_oc" "$sbx_oc")x   (target >= 10)"
fi

echo
echo "sendto()+recv() of 32 bytes over UDP on 127.0.0.1, $SENDS pairs (ns/pair):"
native_us=$("$HELP" udpsend "$SENDS")
sbx_us=$("${SBX_CMD[@]}" /t/sbx_bench udpsend "$SENDS")
echo "  native           $native_us"
echo "  sandbox          $sbx_us   ($(ratio "$sbx_us" "$native_us")x native; every sendto with an address is performed by the supervisor)"
if [ ${#RUNSC_CMD[@]} -gt 0 ]; then
	runsc_us=$("${RUNSC_CMD[@]}" "$HELP" udpsend "$SENDS" 2>/dev/null | tail -n1)
	echo "  runsc            $runsc_us   (runsc/sandbox $(ratio "$runsc_us" "$sbx_us")x)"
fi
