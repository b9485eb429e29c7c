#!/bin/bash
# SPDX-License-Identifier: MIT
#
# microvm SMP bring-up on /dev/kvm: the smp test guest starts every application processor with
# INIT + SIPI + SIPI through its local APIC (xAPIC MMIO and x2APIC MSRs); each AP runs a real-mode
# trampoline that reports its APIC id. Booted through --config-file with 1, 2 and 4 vCPUs. Also
# measures that AP vCPU threads waiting for their SIPI sleep in the kernel instead of spinning.
source "$(dirname "$0")/lib.sh"

need jq timeout
MICROVM=$B/bin/microvm
GUEST=$B/guests/smp.elf
[ -x "$MICROVM" ] && [ -f "$GUEST" ] || skip_all "microvm or the smp guest not built"
[ -c /dev/kvm ] || skip_all "/dev/kvm is absent"
[ -r /dev/kvm ] && [ -w /dev/kvm ] || skip_all "/dev/kvm is not accessible to $(id -un)"

RUNDIR=$T_TMP/run
WAIT=30 # seconds per boot: the emulating KVM of some hosts runs guests slowly

# config ARGS VCPUS: writes a --config-file to $T_TMP/cfg.json.
config() {
	jq -n --arg k "$GUEST" --arg a "console=ttyS0 $1" --argjson c "$2" '
		{"boot-source": {kernel_image_path: $k, boot_args: $a},
		 "machine-config": {vcpu_count: $c, mem_size_mib: 32}}' >"$T_TMP/cfg.json"
}

# Probe: can this host run a VM at all? (microvm.sh's test)
config "" 1
if ! timeout "$WAIT" "$MICROVM" --api-sock "$T_TMP/probe.sock" --rundir "$RUNDIR" \
	--config-file "$T_TMP/cfg.json" --console /dev/null 2>"$T_TMP/probe.log"; then
	if grep -qE "/dev/kvm|KVM lacks|KVM API|KVM_CREATE_VM" "$T_TMP/probe.log"; then
		skip_all "KVM is unusable here: $(grep -oE 'cannot open /dev/kvm.*|KVM lacks.*|KVM API.*|KVM_CREATE_VM.*' "$T_TMP/probe.log" | head -n 1)"
	fi
fi

# wait_for FILE REGEX [SECONDS]: waits until FILE has a line matching REGEX.
wait_for() {
	local i
	for ((i = 0; i < ${3:-$WAIT} * 10; i++)); do
		grep -qE "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	echo "# timed out waiting for /$2/ in $1"
	return 1
}

# check_smp NAME VCPUS: the assertions on a finished boot's console $T_TMP/NAME.con, given
# microvm's exit status in $EXIT_CODE.
check_smp() {
	local name=$1 n=$2 con=$T_TMP/$1.con id
	check_eq "$name: microvm exits 0 after the guest's i8042 reset" 0 "$EXIT_CODE"
	check "$name: every AP started ($((n - 1)) of $((n - 1)))" \
		grep -q "^smp: $((n - 1)) of $((n - 1)) application processors started" "$con"
	for ((id = 1; id < n; id++)); do
		check "$name: the AP with APIC id $id ran the trampoline and reported id $id" \
			grep -qE "^smp: cpu $id up after ~[0-9]+ ms, reports apic id $id\s*$" "$con"
	done
	check "$name: AP APIC ids distinct" grep -q "^PASS AP APIC ids distinct" "$con"
	check "$name: AP APIC ids match the MP table" grep -q "^PASS AP APIC ids match the MP table" "$con"
	check "$name: the BSP's APIC id matches the MP table" grep -q "^PASS BSP APIC id matches" "$con"
	check "$name: no FAIL line" bash -c "! grep -q '^FAIL' '$con'"
	check "$name: smp: all passed" grep -q "^smp: all passed" "$con"
	check "$name: guest exit 0 printed" grep -q "^guest exit 0" "$con"
	if [ "$EXIT_CODE" != 0 ] || ! grep -q "^smp: all passed" "$con"; then
		sed 's/^/#   /' "$con" "$T_TMP/$name.log" | tail -n 30
	fi
}

# boot NAME VCPUS ARGS [MICROVM ARGS...]: a --config-file boot, bounded by $WAIT; sets EXIT_CODE
# (124 on timeout).
boot() {
	local name=$1 n=$2 args=$3
	shift 3
	config "$args" "$n"
	timeout --kill-after=5 "$WAIT" "$MICROVM" --api-sock "$T_TMP/$name.sock" --id "$name" \
		--rundir "$RUNDIR" --console "$T_TMP/$name.con" --config-file "$T_TMP/cfg.json" \
		"$@" 2>"$T_TMP/$name.log"
	EXIT_CODE=$?
}

# --- bring-up: xAPIC MMIO (the default) through the default (PVH) entry ---
boot up1 1 ""
check_smp up1 1
check "up1: no AP, nothing to start (the degenerate case still reports)" \
	grep -q "^smp: 0 of 0 application processors started" "$T_TMP/up1.con"
boot up2 2 ""
check_smp up2 2
boot up4 4 ""
check_smp up4 4
check "up4: the BSP drove its xAPIC through MMIO" grep -q "using xapic (MMIO)" "$T_TMP/up4.con"
check "up4: microvm logged 4 vCPUs" grep -q "4 vCPU(s)" "$T_TMP/up4.log"

# --- x2APIC (MSRs 0x800+) through the 64-bit Linux entry ---
boot x2 4 "apic=x2apic" --boot-entry linux64
if grep -q "smp: x2apic unsupported" "$T_TMP/x2.con"; then
	skip "x2: IPIs through x2APIC MSRs" "the vCPU's CPUID does not offer x2APIC"
else
	check "x2: the BSP switched to x2APIC" grep -q "using x2apic (MSRs)" "$T_TMP/x2.con"
	check_smp x2 4
fi

# --- APs waiting for their SIPI must sleep in KVM_RUN, not spin ---
# The guest holds its APs in wait-for-SIPI for 3 s, spinning on the BSP meanwhile; over 1 s of
# that, each vCPU thread's CPU time (utime + stime, clock ticks) is sampled from /proc.
# thread_ticks PID COMM: prints utime+stime of PID's thread named COMM.
thread_ticks() {
	local t
	for t in /proc/"$1"/task/*; do
		if [ "$(cat "$t/comm" 2>/dev/null)" = "$2" ]; then
			# Fields after the ")" that closes comm: state is 1st, utime 12th, stime 13th.
			sed 's/.*) //' "$t/stat" | awk '{print $12 + $13}'
			return 0
		fi
	done
	return 1
}
# thread_state PID COMM: prints the state letter of PID's thread named COMM.
thread_state() {
	local t
	for t in /proc/"$1"/task/*; do
		if [ "$(cat "$t/comm" 2>/dev/null)" = "$2" ]; then
			sed 's/.*) //' "$t/stat" | awk '{print $1}'
			return 0
		fi
	done
	return 1
}

config "hold_ms=3000" 4
"$MICROVM" --api-sock "$T_TMP/hold.sock" --id hold --rundir "$RUNDIR" --console "$T_TMP/hold.con" \
	--config-file "$T_TMP/cfg.json" 2>"$T_TMP/hold.log" &
pid=$!
T_PIDS+=("$pid")
hz=$(getconf CLK_TCK)
if wait_for "$T_TMP/hold.con" "^smp: holding the APs"; then
	declare -A t0 t1 st
	for c in vcpu0 vcpu1 vcpu2 vcpu3; do t0[$c]=$(thread_ticks "$pid" "$c"); done
	sleep 1
	for c in vcpu0 vcpu1 vcpu2 vcpu3; do
		t1[$c]=$(thread_ticks "$pid" "$c")
		st[$c]=$(thread_state "$pid" "$c")
	done
	held=$(grep -c "^smp: cpu .* up" "$T_TMP/hold.con")
	check_eq "hold: no AP started during the sample" 0 "$held"
	bsp=$((${t1[vcpu0]:-0} - ${t0[vcpu0]:-0}))
	echo "# CPU time over 1 s (clock ticks, $hz/s): vcpu0 (spinning BSP) $bsp," \
		"vcpu1 $((${t1[vcpu1]:-0} - ${t0[vcpu1]:-0}))," \
		"vcpu2 $((${t1[vcpu2]:-0} - ${t0[vcpu2]:-0})), vcpu3 $((${t1[vcpu3]:-0} - ${t0[vcpu3]:-0}))"
	# The spinning BSP shows the sampling sees CPU time at all (it may share a busy host).
	check "hold: the spinning BSP thread used CPU (>= 10 % of 1 s)" test "$bsp" -ge $((hz / 10))
	for c in vcpu1 vcpu2 vcpu3; do
		d=$((${t1[$c]:-999} - ${t0[$c]:-0}))
		check "hold: $c waiting for SIPI used <= 5 % CPU ($d ticks)" test "$d" -le $((hz / 20))
		check_eq "hold: $c sleeps (state S) while waiting for SIPI" S "${st[$c]:-}"
	done
else
	not_ok "hold: the guest reached the hold"
fi
EXIT_CODE=124
for ((i = 0; i < WAIT * 10; i++)); do
	if ! kill -0 "$pid" 2>/dev/null; then
		wait "$pid"
		EXIT_CODE=$?
		break
	fi
	sleep 0.1
done
check_smp hold 4

done_testing
