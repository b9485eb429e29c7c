#!/bin/bash
# SPDX-License-Identifier: MIT
#
# microvm end to end on /dev/kvm: boots the bootcheck test guest through --config-file and the
# API, through the 64-bit ELF, PVH and bzImage paths, with SMP, an initrd, pause/resume,
# Ctrl+Alt+Del, the boot timer and guests that misbehave; checks every API route and every kind
# of bad request, and the instance record.
source "$(dirname "$0")/lib.sh"

need curl jq perl
MICROVM=$B/bin/microvm
GUEST=$B/guests/bootcheck.elf
BZIMAGE=$B/guests/bootcheck.bzimage
[ -x "$MICROVM" ] && [ -f "$GUEST" ] && [ -f "$BZIMAGE" ] || skip_all "microvm or its guests not built"
[ -c /dev/kvm ] || skip_all "/dev/kvm is absent"
[ -r /dev/kvm ] && [ -w /dev/kvm ] || skip_all "/dev/kvm is not accessible to $(id -un)"

RUNDIR=$T_TMP/run
WAIT=60 # seconds: the emulating KVM of some hosts runs guests slowly

# api SOCK METHOD PATH [BODY]: prints "<status> <body>".
api() {
	local out
	out=$(curl -s --max-time 10 --unix-socket "$1" -X "$2" -w '\n%{http_code}' \
		${4:+-H 'Content-Type: application/json' --data-raw "$4"} "http://localhost$3")
	echo "$(tail -n 1 <<<"$out") $(sed '$d' <<<"$out")"
}

# wait_for FILE REGEX [SECONDS]: waits until FILE has a line matching REGEX.
wait_for() {
	local i
	for ((i = 0; i < ${3:-$WAIT} * 10; i++)); do
		grep -qE "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	echo "# timed out waiting for /$2/ in $1:"
	sed 's/^/#   /' "$1" 2>/dev/null | tail -n 20
	return 1
}

# wait_exit PID [SECONDS]: waits for PID to end; sets EXIT_CODE (124 on timeout).
wait_exit() {
	local i
	for ((i = 0; i < ${2:-$WAIT} * 10; i++)); do
		if ! kill -0 "$1" 2>/dev/null; then
			wait "$1"
			EXIT_CODE=$?
			return 0
		fi
		sleep 0.1
	done
	EXIT_CODE=124
	return 1
}

# vmm_start NAME [MICROVM ARGS...]: starts microvm with its API socket at $T_TMP/NAME.sock,
# console in $T_TMP/NAME.con and log in $T_TMP/NAME.log; sets VMM_PID and SOCK.
vmm_start() {
	local name=$1 i
	shift
	SOCK=$T_TMP/$name.sock
	"$MICROVM" --api-sock "$SOCK" --id "$name" --rundir "$RUNDIR" --console "$T_TMP/$name.con" \
		"$@" 2>"$T_TMP/$name.log" &
	VMM_PID=$!
	T_PIDS+=("$VMM_PID")
	for ((i = 0; i < 100; i++)); do
		[ -S "$SOCK" ] && return 0
		kill -0 "$VMM_PID" 2>/dev/null || break
		sleep 0.05
	done
	return 1
}

# config KERNEL ARGS VCPUS MEM [INITRD]: writes a --config-file to $T_TMP/cfg.json.
config() {
	jq -n --arg k "$1" --arg a "$2" --argjson c "$3" --argjson m "$4" --arg i "${5:-}" '
		{"boot-source": ({kernel_image_path: $k, boot_args: $a} +
			(if $i == "" then {} else {initrd_path: $i} end)),
		 "machine-config": {vcpu_count: $c, mem_size_mib: $m}}' >"$T_TMP/cfg.json"
}

# Probe: can this host run a VM at all?
config "$GUEST" "mode=check" 1 32
if ! timeout 30 "$MICROVM" --api-sock "$T_TMP/probe.sock" --rundir "$RUNDIR" \
	--config-file "$T_TMP/cfg.json" --console /dev/null 2>"$T_TMP/probe.log"; then
	if grep -qE "/dev/kvm|KVM lacks|KVM API|KVM_CREATE_VM" "$T_TMP/probe.log"; then
		skip_all "KVM is unusable here: $(grep -oE 'cannot open /dev/kvm.*|KVM lacks.*|KVM API.*|KVM_CREATE_VM.*' "$T_TMP/probe.log" | head -n 1)"
	fi
fi

INITRD=$T_TMP/initrd.img
perl -e 'print join("", map { chr(($_ * 131 + 7) & 255) } 0 .. 20000)' >"$INITRD"
TOKEN=tok$RANDOM$RANDOM

# boot_check NAME ENTRY KERNEL VCPUS MEM: a --config-file boot of the check mode.
boot_check() {
	local name=$1 entry=$2 kernel=$3 cpus=$4 mem=$5
	config "$kernel" "console=ttyS0 mode=check token=$TOKEN mem_mib=$mem cpus=$cpus initrd_size=20001" \
		"$cpus" "$mem" "$INITRD"
	vmm_start "$name" --config-file "$T_TMP/cfg.json" --boot-entry "$entry"
	wait_exit "$VMM_PID"
	check_eq "$name: microvm exits 0 after the guest's i8042 reset" 0 "$EXIT_CODE"
	check "$name: every boot check passed" grep -q "bootcheck: all passed" "$T_TMP/$name.con"
	check "$name: no FAIL line" bash -c "! grep -q '^FAIL' '$T_TMP/$name.con'"
	check "$name: the guest saw the command line token" grep -q "^token=$TOKEN" "$T_TMP/$name.con"
	check "$name: initrd content checked" grep -q "PASS initrd content pattern" "$T_TMP/$name.con"
	check "$name: guest exit 0 printed" grep -q "guest exit 0" "$T_TMP/$name.con"
	if [ "$EXIT_CODE" != 0 ] || grep -q '^FAIL' "$T_TMP/$name.con"; then
		sed 's/^/#   /' "$T_TMP/$name.con" "$T_TMP/$name.log" | tail -n 30
	fi
}

# --- boot paths ---
boot_check elf64 linux64 "$GUEST" 1 64
check "elf64: entered through the 64-bit Linux entry" grep -q "entry=linux64" "$T_TMP/elf64.con"
check "elf64: the zero page is sane" grep -q "PASS zero page header HdrS" "$T_TMP/elf64.con"
check "elf64: RAM in the E820 map matches mem_size_mib" grep -q "PASS RAM total matches mem_mib" "$T_TMP/elf64.con"

boot_check pvh pvh "$GUEST" 1 64
check "pvh: entered through the PVH entry" grep -q "entry=pvh" "$T_TMP/pvh.con"
check "pvh: the PVH memory map matches mem_size_mib" grep -q "PASS RAM ends at mem_mib" "$T_TMP/pvh.con"

boot_check auto auto "$GUEST" 1 64
check "auto: an ELF with the PVH note boots through PVH (Firecracker's choice)" grep -q "entry=pvh" "$T_TMP/auto.con"

boot_check bzimage auto "$BZIMAGE" 1 64
check "bzimage: entered through the 64-bit entry with the image's setup header" grep -q "entry=linux64" "$T_TMP/bzimage.con"
check "bzimage: logged as a bzImage" grep -q "(bzImage)" "$T_TMP/bzimage.log"

boot_check smp linux64 "$GUEST" 2 128
check "smp: the MP table lists 2 CPUs" grep -q "PASS MP table CPU count" "$T_TMP/smp.con"

boot_check highmem linux64 "$GUEST" 4 3584
check "highmem: RAM split around the MMIO gap" grep -q "0x100000000 +0x20000000 type 1" "$T_TMP/highmem.con"

# PVH with a bzImage is refused, and microvm exits 1.
config "$BZIMAGE" "x" 1 32
vmm_start pvhbz --config-file "$T_TMP/cfg.json" --boot-entry pvh
wait_exit "$VMM_PID"
check_eq "pvh + bzImage: start-up fails with status 1" 1 "$EXIT_CODE"
check "pvh + bzImage: the reason is logged" grep -q "PVH boot needs an ELF kernel" "$T_TMP/pvhbz.log"

# --- the API: a full boot, SMP threads, pause/resume, the instance record ---
vmm_start api
check "api: socket ready" test -S "$SOCK"
r=$(api "$SOCK" GET /)
check_eq "GET / before start: 200" 200 "${r%% *}"
check_eq "GET / before start: state" '"Not started"' "$(jq .state <<<"${r#* }")"
check_eq "GET / before start: id" '"api"' "$(jq .id <<<"${r#* }")"
check "GET / has vmm_version and app_name" jq -e '.vmm_version and .app_name == "microvm"' <<<"${r#* }"
r=$(api "$SOCK" GET /machine-config)
check_eq "GET /machine-config defaults" '200 {"vcpu_count":1,"mem_size_mib":128,"smt":false}' "$r"
r=$(api "$SOCK" GET /metrics)
check_eq "GET /metrics before start: 200" 200 "${r%% *}"
check_eq "PUT /boot-source: 204" 204 "$(api "$SOCK" PUT /boot-source "{\"kernel_image_path\":\"$GUEST\",\"boot_args\":\"mode=count token=$TOKEN\"}" | cut -d' ' -f1)"
check_eq "PUT /machine-config: 204" 204 "$(api "$SOCK" PUT /machine-config '{"vcpu_count":2,"mem_size_mib":64}' | cut -d' ' -f1)"
check_eq "GET /machine-config reflects it" '200 {"vcpu_count":2,"mem_size_mib":64,"smt":false}' "$(api "$SOCK" GET /machine-config)"
r=$(api "$SOCK" GET /vm/config)
check "GET /vm/config: the effective configuration" jq -e --arg k "$GUEST" \
	'."boot-source".kernel_image_path == $k and ."machine-config".vcpu_count == 2 and .drives == []' <<<"${r#* }"
check "instance record written" test -f "$RUNDIR/instances/api.json"
check "instance record fields" jq -e --arg s "$SOCK" --argjson p "$VMM_PID" \
	'.id == "api" and .kind == "vm" and .pid == $p and .api_socket == $s' "$RUNDIR/instances/api.json"
check_eq "InstanceStart: 204" 204 "$(api "$SOCK" PUT /actions '{"action_type":"InstanceStart"}' | cut -d' ' -f1)"
check "the guest runs: ticks on the console" wait_for "$T_TMP/api.con" "^tick 3"
r=$(api "$SOCK" GET /)
check_eq "GET / after start: Running" '"Running"' "$(jq .state <<<"${r#* }")"
threads=$(cat /proc/"$VMM_PID"/task/*/comm 2>/dev/null | grep -c '^vcpu')
check_eq "two vCPU threads" 2 "$threads"
r=$(api "$SOCK" GET /metrics)
check_eq "metrics: vcpu_count" 2 "$(jq .vcpu_count <<<"${r#* }")"
check "metrics: I/O exits counted" jq -e '.exits.io > 0 and .devices.serial.tx_bytes > 0' <<<"${r#* }"

check_eq "PATCH /vm Paused: 204" 204 "$(api "$SOCK" PATCH /vm '{"state":"Paused"}' | cut -d' ' -f1)"
r=$(api "$SOCK" GET /)
check_eq "GET / while paused: Paused" '"Paused"' "$(jq .state <<<"${r#* }")"
n1=$(wc -l <"$T_TMP/api.con")
sleep 1
n2=$(wc -l <"$T_TMP/api.con")
check_eq "paused: the console stops" "$n1" "$n2"
check_eq "PATCH /vm Paused twice: 400" 400 "$(api "$SOCK" PATCH /vm '{"state":"Paused"}' | cut -d' ' -f1)"
check_eq "PATCH /vm Resumed: 204" 204 "$(api "$SOCK" PATCH /vm '{"state":"Resumed"}' | cut -d' ' -f1)"
check "resumed: the console continues" wait_for "$T_TMP/api.con" "^tick $((n2 + 3))\s"
check_eq "PATCH /vm Resumed while running: 400" 400 "$(api "$SOCK" PATCH /vm '{"state":"Resumed"}' | cut -d' ' -f1)"

# Bad state after start.
r=$(api "$SOCK" PUT /actions '{"action_type":"InstanceStart"}')
check_eq "InstanceStart twice: 400" 400 "${r%% *}"
check "InstanceStart twice: fault_message" jq -e '.fault_message | test("already started")' <<<"${r#* }"
r=$(api "$SOCK" PUT /boot-source "{\"kernel_image_path\":\"$GUEST\"}")
check_eq "PUT /boot-source after start: 400" 400 "${r%% *}"
check "PUT /boot-source after start: fault_message" jq -e '.fault_message | test("after starting")' <<<"${r#* }"
check_eq "SendCtrlAltDel while running: 204" 204 "$(api "$SOCK" PUT /actions '{"action_type":"SendCtrlAltDel"}' | cut -d' ' -f1)"
r=$(api "$SOCK" GET /metrics)
check "SendCtrlAltDel: counted, and IRQ 1 raised" jq -e '.devices.i8042.ctrl_alt_del == 1 and .devices.i8042.irqs >= 1' <<<"${r#* }"
check_eq "PUT /machine-config after start: 400" 400 "$(api "$SOCK" PUT /machine-config '{"vcpu_count":1,"mem_size_mib":64}' | cut -d' ' -f1)"
kill "$VMM_PID"
wait_exit "$VMM_PID"
check_eq "SIGTERM: microvm exits 0" 0 "$EXIT_CODE"
check "instance record removed at exit" test ! -e "$RUNDIR/instances/api.json"
check "API socket removed at exit" test ! -e "$SOCK"

# --- bad requests before start ---
vmm_start bad
bad() { # DESCRIPTION METHOD PATH [BODY]
	local r
	r=$(api "$SOCK" "$2" "$3" "${4:-}")
	if [ "${r%% *}" = 400 ] && jq -e '.fault_message | length > 0' <<<"${r#* }" >/dev/null 2>&1; then
		ok "$1: 400 with fault_message"
	else
		not_ok "$1: 400 with fault_message"
		echo "#   got: $r"
	fi
}
bad "malformed JSON" PUT /machine-config '{"vcpu_count": 1,'
bad "body not an object" PUT /machine-config '[1, 2]'
bad "missing body" PUT /boot-source
bad "unknown field" PUT /machine-config '{"vcpu_count":1,"mem_size_mib":64,"cpu_template":"T2"}'
bad "wrong type (string for integer)" PUT /machine-config '{"vcpu_count":"1","mem_size_mib":64}'
bad "wrong type (integer for string)" PUT /boot-source '{"kernel_image_path":42}'
bad "wrong type (string for boolean)" PUT /drives/root '{"drive_id":"root","path_on_host":"/dev/null","is_root_device":"yes"}'
bad "missing required field" PUT /machine-config '{"vcpu_count":1}'
bad "vcpu_count out of range" PUT /machine-config '{"vcpu_count":64,"mem_size_mib":64}'
bad "mem_size_mib out of range" PUT /machine-config '{"vcpu_count":1,"mem_size_mib":1}'
bad "nonexistent kernel path" PUT /boot-source '{"kernel_image_path":"/nonexistent/vmlinux"}'
bad "nonexistent initrd path" PUT /boot-source "{\"kernel_image_path\":\"$GUEST\",\"initrd_path\":\"/nonexistent\"}"
bad "kernel path is a directory" PUT /boot-source "{\"kernel_image_path\":\"$T_TMP\"}"
bad "drive id differs from the path" PUT /drives/a '{"drive_id":"b","path_on_host":"/dev/null","is_root_device":false}'
bad "nonexistent drive file" PUT /drives/a '{"drive_id":"a","path_on_host":"/nonexistent","is_root_device":false}'
bad "bad guest_mac" PUT /network-interfaces/eth0 '{"iface_id":"eth0","host_dev_name":"tap0","guest_mac":"nope"}'
bad "unknown action" PUT /actions '{"action_type":"FlushEverything"}'
bad "bad vm state" PATCH /vm '{"state":"Running"}'
bad "PATCH /vm before start" PATCH /vm '{"state":"Paused"}'
bad "SendCtrlAltDel before start" PUT /actions '{"action_type":"SendCtrlAltDel"}'
bad "InstanceStart without a boot source" PUT /actions '{"action_type":"InstanceStart"}'
bad "unknown route" GET /no/such/route
bad "wrong method on a known route" DELETE /machine-config
bad "GET on a PUT-only route" GET /boot-source
bad "duplicate JSON key" PUT /machine-config '{"vcpu_count":1,"vcpu_count":2,"mem_size_mib":64}'
check_eq "config unchanged by bad requests" '200 {"vcpu_count":1,"mem_size_mib":128,"smt":false}' "$(api "$SOCK" GET /machine-config)"
# A kernel that is not a kernel fails at InstanceStart, and the API goes on.
echo "not a kernel" >"$T_TMP/junk"
api "$SOCK" PUT /boot-source "{\"kernel_image_path\":\"$T_TMP/junk\"}" >/dev/null
bad "InstanceStart with an unloadable kernel" PUT /actions '{"action_type":"InstanceStart"}'
check_eq "still Not started after a failed InstanceStart" '"Not started"' "$(api "$SOCK" GET / | cut -d' ' -f2- | jq .state)"
kill "$VMM_PID"
wait_exit "$VMM_PID"

# --- Ctrl+Alt+Del ---
config "$GUEST" "mode=cad" 1 32
vmm_start cad --config-file "$T_TMP/cfg.json"
check "cad: guest waits for the keys" wait_for "$T_TMP/cad.con" "waiting for ctrl-alt-del"
check_eq "SendCtrlAltDel: 204" 204 "$(api "$SOCK" PUT /actions '{"action_type":"SendCtrlAltDel"}' | cut -d' ' -f1)"
wait_exit "$VMM_PID"
check "cad: the guest read the Ctrl+Alt+Del scancodes" grep -q "got ctrl-alt-del" "$T_TMP/cad.con"
check_eq "cad: the guest rebooted and microvm exited 0" 0 "$EXIT_CODE"

# --- misbehaving guests ---
config "$GUEST" "mode=triple" 1 32
vmm_start triple --config-file "$T_TMP/cfg.json"
check "triple: the guest fault is logged" wait_for "$T_TMP/triple.log" "guest fault: "
check "triple: microvm is still alive" kill -0 "$VMM_PID"
r=$(api "$SOCK" GET /)
check_eq "triple: GET / answers Faulted" '"Faulted"' "$(jq .state <<<"${r#* }")"
check "triple: GET / carries the reason" jq -e '.fault | length > 0' <<<"${r#* }"
bad "triple: PATCH /vm on a faulted VM" PATCH /vm '{"state":"Paused"}'
r=$(api "$SOCK" GET /metrics)
check "triple: metrics still served" jq -e '.state == "Faulted"' <<<"${r#* }"
kill "$VMM_PID"
wait_exit "$VMM_PID"
check_eq "triple: exits 0 on SIGTERM" 0 "$EXIT_CODE"

config "$GUEST" "mode=badmmio" 1 32
vmm_start badmmio --config-file "$T_TMP/cfg.json"
wait_exit "$VMM_PID"
check "badmmio: unknown MMIO logged" grep -q "unknown MMIO address 0xdf000000" "$T_TMP/badmmio.log"
check "badmmio: the guest continued (reads as zero)" grep -q "badmmio: survived, read 0x0" "$T_TMP/badmmio.con"
check_eq "badmmio: microvm exits 0" 0 "$EXIT_CODE"

# --- console input (--stdin) ---
config "$GUEST" "mode=echo" 1 32
mkfifo "$T_TMP/in.fifo"
# microvm's stdin is the FIFO: the shell's open of it completes once fd 7 opens the other end.
"$MICROVM" --api-sock "$T_TMP/echo.sock" --id echo --rundir "$RUNDIR" --console "$T_TMP/echo.con" \
	--config-file "$T_TMP/cfg.json" --stdin <"$T_TMP/in.fifo" 2>"$T_TMP/echo.log" &
pid=$!
T_PIDS+=("$pid")
exec 7>"$T_TMP/in.fifo"
check "echo: the guest waits for input" wait_for "$T_TMP/echo.con" "echo: ready"
printf 'hello k2i\n' >&7
exec 7>&-
check "echo: standard input reached the guest's UART" wait_for "$T_TMP/echo.con" "echo: HELLO K2I"
wait_exit "$pid"
check_eq "echo: microvm exits 0" 0 "$EXIT_CODE"

# --- boot timer ---
config "$GUEST" "mode=boottimer" 1 32
vmm_start boottimer --config-file "$T_TMP/cfg.json" --boot-timer
wait_exit "$VMM_PID"
check "boot timer: Guest-boot-time logged" grep -q "Guest-boot-time = [0-9]* us" "$T_TMP/boottimer.log"
config "$GUEST" "mode=boottimer" 1 32
vmm_start noboottimer --config-file "$T_TMP/cfg.json"
wait_exit "$VMM_PID"
check "no --boot-timer: the page is unknown MMIO" grep -q "unknown MMIO address 0xc0000000" "$T_TMP/noboottimer.log"

# --- default socket path and usage errors ---
"$MICROVM" --id dflt --rundir "$RUNDIR" 2>"$T_TMP/dflt.log" &
pid=$!
T_PIDS+=("$pid")
for ((i = 0; i < 100; i++)); do [ -S "$RUNDIR/instances/dflt.sock" ] && break; sleep 0.05; done
check "default socket is <rundir>/instances/<id>.sock" test -S "$RUNDIR/instances/dflt.sock"
kill "$pid"
wait_exit "$pid"
"$MICROVM" --bogus >/dev/null 2>&1
check_eq "unknown option: exit 2" 2 "$?"
"$MICROVM" --id 'bad id!' >/dev/null 2>&1
check_eq "invalid id: exit 2" 2 "$?"
"$MICROVM" --boot-entry bios >/dev/null 2>&1
check_eq "invalid boot entry: exit 2" 2 "$?"

done_testing
