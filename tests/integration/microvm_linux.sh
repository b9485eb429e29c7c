#!/bin/bash
# SPDX-License-Identifier: MIT
#
# microvm boots a real Linux: Debian's cloud kernel (the package linux-image-cloud-amd64 depends
# on), fetched with apt-get download and cached outside the repository. The bzImage's LZ4
# payload is unpacked to the ELF vmlinux, which is booted through the PVH entry (via the API) and
# the 64-bit Linux entry (via --config-file); the serial console must show "Linux version" and
# the exact command line. Some hosts' KVM cannot finish a Linux boot: only the first lines are
# required, and the VMM must survive whatever happens next.
source "$(dirname "$0")/lib.sh"

need curl jq
MICROVM=$B/bin/microvm
[ -x "$MICROVM" ] || skip_all "microvm not built"
[ -c /dev/kvm ] && [ -r /dev/kvm ] && [ -w /dev/kvm ] || skip_all "/dev/kvm is absent or not accessible"
for c in apt-get apt-cache dpkg-deb lz4 grep; do
	command -v "$c" >/dev/null 2>&1 || skip_all "'$c' is not installed"
done

CACHE=${K2I_TEST_CACHE:-/var/cache/k2i-test}
mkdir -p "$CACHE" 2>/dev/null && [ -w "$CACHE" ] || CACHE=$T_TMP/cache
mkdir -p "$CACHE"
WAIT=90

pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
	awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
[ -n "$pkg" ] || skip_all "apt knows no linux-image-cloud-amd64 (run apt-get update?)"
deb=$(ls "$CACHE/${pkg}"_*.deb 2>/dev/null | head -n 1)
if [ -z "$deb" ]; then
	(cd "$CACHE" && timeout 300 apt-get download "$pkg" >"$T_TMP/apt.log" 2>&1) ||
		skip_all "cannot download $pkg: $(tail -n 1 "$T_TMP/apt.log")"
	deb=$(ls "$CACHE/${pkg}"_*.deb 2>/dev/null | head -n 1)
fi
[ -n "$deb" ] || skip_all "no .deb for $pkg in $CACHE"

vmlinux=$CACHE/${pkg}.vmlinux
if [ ! -s "$vmlinux" ]; then
	dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$T_TMP" --wildcards './boot/vmlinuz-*' ||
		skip_all "no vmlinuz in $deb"
	vmlinuz=$(ls "$T_TMP"/boot/vmlinuz-* | head -n 1)
	# The bzImage payload is LZ4 (legacy frame, magic 02 21 4c 18). lz4 stops with an error at
	# the data after the stream (the kernel's size trailer), after writing everything.
	off=$(LC_ALL=C grep -obUaP '\x02\x21\x4c\x18' "$vmlinuz" | head -n 1 | cut -d: -f1)
	[ -n "$off" ] || skip_all "no LZ4 payload in $vmlinuz (another compression?)"
	tail -c +$((off + 1)) "$vmlinuz" | lz4 -dc >"$vmlinux.tmp" 2>/dev/null
	[ "$(head -c 4 "$vmlinux.tmp" | od -An -tx1 | tr -d ' ')" = 7f454c46 ] ||
		skip_all "the LZ4 payload of $vmlinuz is not an ELF"
	mv "$vmlinux.tmp" "$vmlinux"
fi
ok "got the ELF vmlinux of $pkg ($(stat -c %s "$vmlinux") bytes)"

RUNDIR=$T_TMP/run

# api SOCK METHOD PATH [BODY]: prints "<status> <body>".
api() {
	local out
	out=$(curl -s --max-time 10 --unix-socket "$1" -X "$2" -w '\n%{http_code}' \
		${4:+-H 'Content-Type: application/json' --data-raw "$4"} "http://localhost$3")
	echo "$(tail -n 1 <<<"$out") $(sed '$d' <<<"$out")"
}

wait_for() { # FILE FIXED-STRING
	local i
	for ((i = 0; i < WAIT * 10; i++)); do
		grep -qF -- "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	echo "# timed out waiting for '$2' in $1:"
	head -c 2000 "$1" | sed 's/^/#   /'
	return 1
}

CMDLINE="console=ttyS0 reboot=k panic=1 pci=off nomodule earlyprintk=serial,ttyS0 k2itest=$RANDOM$RANDOM"

# Through the API, PVH entry (what Firecracker picks for this kernel: it has the Xen note).
sock=$T_TMP/pvh.sock
"$MICROVM" --api-sock "$sock" --id linuxpvh --rundir "$RUNDIR" --console "$T_TMP/pvh.con" \
	2>"$T_TMP/pvh.log" &
pid=$!
T_PIDS+=("$pid")
for ((i = 0; i < 100; i++)); do [ -S "$sock" ] && break; sleep 0.05; done
body=$(jq -n --arg k "$vmlinux" --arg a "$CMDLINE" '{kernel_image_path: $k, boot_args: $a}')
check_eq "PUT /boot-source with the Debian kernel" 204 "$(api "$sock" PUT /boot-source "$body" | cut -d' ' -f1)"
check_eq "PUT /machine-config" 204 "$(api "$sock" PUT /machine-config '{"vcpu_count":1,"mem_size_mib":256}' | cut -d' ' -f1)"
check_eq "InstanceStart" 204 "$(api "$sock" PUT /actions '{"action_type":"InstanceStart"}' | cut -d' ' -f1)"
check "PVH: the kernel prints its banner" wait_for "$T_TMP/pvh.con" "Linux version "
check "PVH: the kernel prints the exact command line" wait_for "$T_TMP/pvh.con" "Command line: $CMDLINE"
check "PVH: booted through the PVH entry" grep -q "through the PVH entry" "$T_TMP/pvh.log"
# Printed after the command line: wait for it too.
check "PVH: the kernel read our E820 map" wait_for "$T_TMP/pvh.con" "BIOS-e820: [mem 0x0000000000100000-0x000000000fffffff] usable"
r=$(api "$sock" GET /)
check "PVH: the API answers during the boot" jq -e '.state == "Running" or .state == "Faulted"' <<<"${r#* }"
kill "$pid"
wait "$pid"
check_eq "PVH: microvm exits 0 on SIGTERM" 0 "$?"

# Through --config-file, 64-bit Linux entry.
jq -n --arg k "$vmlinux" --arg a "$CMDLINE" '{"boot-source": {kernel_image_path: $k, boot_args: $a},
	"machine-config": {vcpu_count: 2, mem_size_mib: 256}}' >"$T_TMP/cfg.json"
"$MICROVM" --api-sock "$T_TMP/l64.sock" --id linux64 --rundir "$RUNDIR" --console "$T_TMP/l64.con" \
	--config-file "$T_TMP/cfg.json" --boot-entry linux64 2>"$T_TMP/l64.log" &
pid=$!
T_PIDS+=("$pid")
check "linux64: the kernel prints its banner" wait_for "$T_TMP/l64.con" "Linux version "
check "linux64: the kernel prints the exact command line" wait_for "$T_TMP/l64.con" "Command line: $CMDLINE"
check "linux64: booted through the 64-bit entry" grep -q "through the 64-bit entry" "$T_TMP/l64.log"
kill "$pid"
wait "$pid"
check_eq "linux64: microvm exits 0 on SIGTERM" 0 "$?"

done_testing
