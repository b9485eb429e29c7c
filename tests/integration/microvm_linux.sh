#!/bin/bash
# SPDX-License-Identifier: MIT
#
# microvm boots a real Linux: Debian's cloud kernel (the package linux-image-cloud-amd64 depends
# on), fetched with apt-get download and cached outside the repository. The bzImage's LZ4
# payload is unpacked to the ELF vmlinux, which is booted through the PVH entry (via the API) and
# the 64-bit Linux entry (via --config-file); the serial console must show "Linux version" and
# the exact command line. Some hosts' KVM cannot finish a Linux boot: only the first lines are
# required, and the VMM must survive whatever happens next. Then the kernel with an initramfs the
# test builds: on a KVM that runs Linux, its /init must run (and reboot the VM); where the KVM
# faults first, that check is skipped with the fault, and QEMU's emulator shows the same kernel
# and initramfs do reach /init.
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

# To /init of an initramfs: the cpio (newc) holds /dev/console and a static /init
# (tests/integration/vm_init.c) that prints the token it got from the command line and restarts
# the machine (reboot=k: an i8042 reset, after which microvm exits 0). A KVM that cannot run a
# whole Linux boot (such as the emulating one of some CI hosts) stops the kernel earlier: the
# VM is then Faulted, and reaching /init is skipped with the fault microvm logged.
if [ -x "$B/tests/vm_init" ]; then
	python3 - "$B/tests/vm_init" "$T_TMP/initramfs.cpio" <<'EOF'
import os, sys
init = open(sys.argv[1], "rb").read()
out = open(sys.argv[2], "wb")
ino = 1
def entry(name, mode, data=b"", rdev=(0, 0)):
    global ino
    name = name.encode() + b"\0"
    hdr = "070701" + "".join("%08x" % v for v in (
        ino, mode, 0, 0, 2 if mode & 0o40000 else 1, 0, len(data), 0, 0,
        rdev[0], rdev[1], len(name), 0))
    ino += 1
    out.write(hdr.encode() + name + b"\0" * (-(110 + len(name)) % 4))
    out.write(data + b"\0" * (-len(data) % 4))
entry("dev", 0o40755)
entry("dev/console", 0o20600, rdev=(5, 1))
entry("init", 0o100755, init)
entry("TRAILER!!!", 0)
EOF
	INIT_CMDLINE="console=ttyS0 reboot=k panic=-1 pci=off nomodule earlyprintk=serial,ttyS0 rdinit=/init k2itest=$RANDOM$RANDOM"
	marker="k2i-vm-init: /init is running as pid 1, k2itest=${INIT_CMDLINE##*k2itest=}"
	# The control: QEMU's emulator (TCG, no KVM) boots the same vmlinux (PVH) and initramfs
	# to /init, so a microVM that does not get there is microvm's or its KVM's doing.
	if command -v qemu-system-x86_64 >/dev/null; then
		timeout 300 qemu-system-x86_64 -accel tcg -m 256 -nographic -no-reboot \
			-kernel "$vmlinux" -initrd "$T_TMP/initramfs.cpio" -append "$INIT_CMDLINE" \
			>"$T_TMP/qemu.con" 2>&1 </dev/null
		check "initramfs: QEMU (TCG) boots the same kernel and initramfs to /init" \
			grep -qF -- "$marker" "$T_TMP/qemu.con"
	else
		skip "initramfs: QEMU (TCG) boots the same kernel and initramfs to /init" \
			"qemu-system-x86_64 is not installed"
	fi
	jq -n --arg k "$vmlinux" --arg i "$T_TMP/initramfs.cpio" --arg a "$INIT_CMDLINE" \
		'{"boot-source": {kernel_image_path: $k, initrd_path: $i, boot_args: $a},
		  "machine-config": {vcpu_count: 2, mem_size_mib: 256}}' >"$T_TMP/init.json"
	"$MICROVM" --api-sock "$T_TMP/init.sock" --id linuxinit --rundir "$RUNDIR" \
		--console "$T_TMP/init.con" --config-file "$T_TMP/init.json" 2>"$T_TMP/init.log" &
	pid=$!
	T_PIDS+=("$pid")
	check "initramfs: the kernel prints its banner" wait_for "$T_TMP/init.con" "Linux version "
	state=
	for ((i = 0; i < WAIT * 10; i++)); do
		grep -qF -- "$marker" "$T_TMP/init.con" && break
		kill -0 "$pid" 2>/dev/null || break
		state=$(api "$T_TMP/init.sock" GET / | cut -d' ' -f2- | jq -r .state 2>/dev/null)
		[ "$state" = Faulted ] && break
		sleep 0.1
	done
	if grep -qF -- "$marker" "$T_TMP/init.con"; then
		ok "initramfs: /init runs as PID 1 with our command line's token"
		wait_until 300 eval "! kill -0 $pid 2>/dev/null"
		wait "$pid"
		check_eq "initramfs: /init restarts the machine and microvm exits 0" 0 "$?"
	elif [ "$state" = Faulted ]; then
		skip "initramfs: /init runs as PID 1" \
			"this KVM stopped the kernel before /init: $(grep -m1 -iE 'fault|emulation' "$T_TMP/init.log" | cut -c1-200)"
		kill "$pid"
		wait "$pid"
		check_eq "initramfs: microvm exits 0 on SIGTERM after the fault" 0 "$?"
	else
		not_ok "initramfs: /init runs as PID 1 (state '$state', no marker within $WAIT s)"
		tail -n 20 "$T_TMP/init.con" | sed 's/^/#   /'
	fi
else
	skip "initramfs: /init runs as PID 1" "$B/tests/vm_init is not built"
fi

done_testing
