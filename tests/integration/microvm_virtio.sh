#!/bin/bash
# SPDX-License-Identifier: MIT
#
# microvm's virtio-mmio devices end to end, with the test guests of sandbox/microvm/guests/:
#   - virtio-blk read-write: the guest reads a pattern the test wrote into the image, writes a
#     sector, flushes, reads it back; the test finds the sector in the image file. The first
#     completion must reach the guest's local APIC through the irqfd and the IOAPIC. The guest
#     also posts a descriptor loop: the device must ask for a reset (one log line), not crash,
#     and work again after the reset.
#   - virtio-blk read-only: the device offers VIRTIO_BLK_F_RO, the write fails with IOERR in
#     the guest, and the image file is unchanged.
#   - GET /metrics on the API socket, while a guest keeps reading: the device's counters, and
#     no queue notification took the MMIO-exit path (KVM's ioeventfd caught them all).
#   - virtio-net: in a fresh network namespace with a tap device, the guest sends a frame that a
#     packet socket on the tap captures; the test answers with a frame the guest must receive.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=tests/integration/lib_netns.sh
. "$(dirname "$0")/lib_netns.sh"

MICROVM=$B/bin/microvm
GUESTS=$B/guests
VM_TIMEOUT=${VM_TIMEOUT:-60}

[ -x "$MICROVM" ] || skip_all "$MICROVM is not built"
[ -e /dev/kvm ] || skip_all "/dev/kvm is absent"
if ! [ -r /dev/kvm ] || ! [ -w /dev/kvm ]; then
	skip_all "/dev/kvm is not accessible to $(id -un)"
fi
if ! [ -f "$GUESTS/virtio_blk.elf" ] || ! [ -f "$GUESTS/virtio_net.elf" ]; then
	skip_all "the virtio test guests are not built"
fi
need python3

# make_image FILE: 16 sectors; sectors 1 and 2 hold byte[i] = ((i ^ 0xa5) + sector) & 0xff, the
# rest zeroes (what guests/virtio_blk.c checks).
make_image() {
	python3 - "$1" <<'EOF'
import sys
img = bytearray(16 * 512)
for s in (1, 2):
    for i in range(512):
        img[s * 512 + i] = ((i ^ 0xa5) + s) & 0xff
open(sys.argv[1], "wb").write(img)
EOF
}

# sector_is FILE SECTOR KIND: whether the sector holds the guest's write pattern (KIND=written,
# byte[i] = (i * 3 + 0x5a) & 0xff) or zeroes (KIND=zero).
sector_is() {
	python3 - "$@" <<'EOF'
import sys
path, sector, kind = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with open(path, "rb") as f:
    f.seek(sector * 512)
    data = f.read(512)
want = bytes((i * 3 + 0x5a) & 0xff for i in range(512)) if kind == "written" else bytes(512)
sys.exit(0 if data == want else 1)
EOF
}

# write_config FILE KERNEL BOOT_ARGS DRIVES_JSON NETS_JSON
write_config() {
	cat >"$1" <<EOF
{
  "boot-source": { "kernel_image_path": "$2", "boot_args": "$3" },
  "machine-config": { "vcpu_count": 1, "mem_size_mib": 64 },
  "drives": $4,
  "network-interfaces": $5
}
EOF
}

# run_vm NAME CONFIG [PREFIX...]: boots a VM from CONFIG (optionally under a command prefix such
# as "ip netns exec NS") until the guest reboots, at most VM_TIMEOUT seconds. The console goes
# to $T_TMP/NAME.console, the VMM's log to $T_TMP/NAME.log. Returns microvm's exit status.
run_vm() {
	local name=$1 config=$2 rc
	shift 2
	timeout --kill-after=5 "$VM_TIMEOUT" "$@" "$MICROVM" --api-sock "$T_TMP/$name.sock" \
		--id "vio$name" --config-file "$config" >"$T_TMP/$name.console" 2>"$T_TMP/$name.log"
	rc=$?
	if [ "$rc" -ne 0 ]; then
		echo "# microvm exited with $rc; console and log:"
		sed 's/^/#   /' "$T_TMP/$name.console" "$T_TMP/$name.log" | tail -n 40
	fi
	return "$rc"
}

# console_has NAME LINE: whether the guest printed LINE (the UART sends "\r\n").
console_has() {
	tr -d '\r' <"$T_TMP/$1.console" | grep -q -F -x -- "$2"
}

# ---- virtio-blk, read-write ----
IMG=$T_TMP/disk.img
make_image "$IMG"
write_config "$T_TMP/rw.json" "$GUESTS/virtio_blk.elf" \
	"console=ttyS0 blk_id=disk0 blk_write=3 blk_bad=1" \
	"[{\"drive_id\": \"disk0\", \"path_on_host\": \"$IMG\", \"is_root_device\": false, \"is_read_only\": false}]" \
	"[]"
run_vm rw "$T_TMP/rw.json"
check_eq "blk rw: microvm exits 0 when the guest reboots" 0 "$?"
for line in "irq 5" "PASS no interrupt pending before the first request" "PASS read sector 1" \
	"PASS interrupt pending in the local APIC" "PASS interrupt status set and acknowledged" \
	"PASS read sectors 1-2 in one request" "PASS get id" \
	"PASS read past the end is IOERR" "PASS write sector" "PASS flush" \
	"PASS read back written sector" "PASS bad chain sets DEVICE_NEEDS_RESET" \
	"PASS config-change interrupt raised" "PASS bad chain not consumed" \
	"PASS read after reset" "guest exit 0"; do
	check "blk rw: guest says '$line'" console_has rw "$line"
done
check "blk rw: the guest's write reached sector 3 of the image" sector_is "$IMG" 3 written
check "blk rw: sector 4 untouched" sector_is "$IMG" 4 zero
check_eq "blk rw: the descriptor loop is logged once as needing a reset" 1 \
	"$(grep -c 'device needs reset' "$T_TMP/rw.log")"

# ---- virtio-blk, read-only ----
IMG_RO=$T_TMP/ro.img
make_image "$IMG_RO"
SUM_BEFORE=$(sha256sum <"$IMG_RO")
write_config "$T_TMP/ro.json" "$GUESTS/virtio_blk.elf" "console=ttyS0 blk_ro=1 blk_write=3" \
	"[{\"drive_id\": \"ro0\", \"path_on_host\": \"$IMG_RO\", \"is_root_device\": false, \"is_read_only\": true}]" \
	"[]"
run_vm ro "$T_TMP/ro.json"
check_eq "blk ro: microvm exits 0" 0 "$?"
for line in "PASS read-only offered" "PASS read sector 1" "PASS write to read-only drive is IOERR" \
	"guest exit 0"; do
	check "blk ro: guest says '$line'" console_has ro "$line"
done
check_eq "blk ro: the image is unchanged" "$SUM_BEFORE" "$(sha256sum <"$IMG_RO")"

# ---- counters in GET /metrics while the guest runs ----
metrics_test() {
	local img=$T_TMP/m.img pid
	if ! command -v curl >/dev/null; then
		skip "metrics" "'curl' is not installed"
		return
	fi
	make_image "$img"
	# blk_bench keeps the guest reading (one request in flight) long after its checks.
	write_config "$T_TMP/m.json" "$GUESTS/virtio_blk.elf" "console=ttyS0 blk_bench=100000000" \
		"[{\"drive_id\": \"m0\", \"path_on_host\": \"$img\", \"is_root_device\": false, \"is_read_only\": false}]" \
		"[]"
	"$MICROVM" --api-sock "$T_TMP/m.sock" --id viom --config-file "$T_TMP/m.json" \
		>"$T_TMP/m.console" 2>"$T_TMP/m.log" &
	pid=$!
	T_PIDS+=("$pid")
	for _ in $(seq 100); do
		console_has m "PASS read back written sector" && break
		sleep 0.1
	done
	check "metrics: the guest got to its bench loop" console_has m "PASS read back written sector"
	curl -s --max-time 10 --unix-socket "$T_TMP/m.sock" http://localhost/metrics >"$T_TMP/m.json.out"
	check "metrics: virtio-blk counters (kind, reads going on, one write, ioeventfd notifies)" \
		python3 - "$T_TMP/m.json.out" <<'EOF2'
import json, sys
d = json.load(open(sys.argv[1]))["devices"]["virtio"][0]
ok = (d["kind"] == "blk" and d["id"] == "m0" and d["read_ops"] >= 3 and d["write_ops"] == 1
      and d["flush_ops"] == 1 and d["notifications"] >= d["read_ops"]
      and d["notify_mmio_exits"] == 0 and d["interrupts"] > 0 and not d["needs_reset"])
sys.exit(0 if ok else 1)
EOF2
	kill "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
}
metrics_test

# ---- virtio-net ----
net_test() {
	local ns=k2i${NS_TAG}vio tap=viotap0 gmac=02:00:00:00:00:10
	[ "$(id -u)" -eq 0 ] || { skip "virtio-net" "needs root for a network namespace"; return; }
	command -v ip >/dev/null || { skip "virtio-net" "'ip' is not installed"; return; }
	if ! ip netns add "$ns" 2>/dev/null; then
		skip "virtio-net" "cannot create a network namespace"
		return
	fi
	NS_NAMES+=("$ns")
	if ! ip -n "$ns" tuntap add dev "$tap" mode tap; then
		skip "virtio-net" "cannot create a tap device"
		return
	fi
	# No IPv6 chatter on the tap; the guest skips stray frames anyway.
	ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 2>/dev/null
	ip netns exec "$ns" sysctl -qw "net.ipv6.conf.$tap.disable_ipv6=1" 2>/dev/null
	ip -n "$ns" link set "$tap" up

	# The host end: a packet socket on the tap captures the guest's frame (EtherType 0x88b5,
	# "microvm-virtio-net ping") and answers to the sender's MAC with "... pong".
	cat >"$T_TMP/responder.py" <<'EOF'
import socket, sys, time
tap, deadline = sys.argv[1], time.time() + float(sys.argv[2])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x88b5))
s.bind((tap, 0))
print("ready", flush=True)
while time.time() < deadline:
    s.settimeout(max(0.1, deadline - time.time()))
    try:
        frame = s.recv(2048)
    except socket.timeout:
        break
    if frame[12:14] != b"\x88\xb5" or not frame[14:].startswith(b"microvm-virtio-net ping"):
        continue
    src = frame[6:12]
    print("got ping from %s len %d" % (":".join("%02x" % b for b in src), len(frame)), flush=True)
    reply = src + bytes.fromhex("020000000001") + b"\x88\xb5" + b"microvm-virtio-net pong"
    s.send(reply.ljust(60, b"\0"))
    print("sent pong", flush=True)
    sys.exit(0)
print("no ping", flush=True)
sys.exit(1)
EOF
	ip netns exec "$ns" python3 "$T_TMP/responder.py" "$tap" "$VM_TIMEOUT" >"$T_TMP/responder.out" \
		2>&1 &
	local rpid=$!
	T_PIDS+=("$rpid")
	for _ in $(seq 50); do
		grep -q ready "$T_TMP/responder.out" && break
		sleep 0.1
	done

	write_config "$T_TMP/net.json" "$GUESTS/virtio_net.elf" "console=ttyS0" "[]" \
		"[{\"iface_id\": \"eth0\", \"host_dev_name\": \"$tap\", \"guest_mac\": \"$gmac\"}]"
	run_vm net "$T_TMP/net.json" ip netns exec "$ns"
	check_eq "net: microvm exits 0" 0 "$?"
	wait "$rpid"
	check_eq "net: the host captured the guest's frame and answered" 0 "$?"
	check "net: the frame came from the configured MAC" \
		grep -q -F "got ping from $gmac len 60" "$T_TMP/responder.out"
	for line in "mac $gmac" "PASS tx frame sent" "PASS rx frame received" \
		"rx num_buffers 1" "guest exit 0"; do
		check "net: guest says '$line'" console_has net "$line"
	done
	check "net: the guest saw the host's MAC as the sender" \
		grep -q -F "rx from 02:00:00:00:00:01 len 60" "$T_TMP/net.console"
}
net_test

done_testing
