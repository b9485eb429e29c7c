#!/bin/bash
# SPDX-License-Identifier: MIT
#
# microvm against QEMU's `-M microvm` machine, booting the same test guest
# ($B/guests/bootcheck.elf, a PVH ELF QEMU accepts with -kernel) in one run:
#   - time from exec to the API socket accepting connections (microvm; Firecracker: ~6-60 ms)
#   - time from exec to the guest's first console byte (both boot without API calls: microvm
#     with --config-file, QEMU from its command line)
#   - time from exec to the end of the guest's boot checks and the VMM's exit
#   - VMM memory beyond guest RAM: the RSS of every mapping except the guest-RAM one (recognised
#     by its size), as Firecracker's MemoryMonitor counts it, with the guest idle-looping
# Medians over BENCH_ROUNDS runs (default 10). Targets: API ready < 10 ms, first output >= 5x
# sooner than QEMU, <= 5 MiB overhead.
#
#   BENCH_ROUNDS=10 tests/bench/bench_microvm.sh
set -u
cd "$(dirname "$0")/../.."
B=${B:-build}
R=${BENCH_ROUNDS:-10}
MICROVM=$B/bin/microvm
GUEST=$B/guests/bootcheck.elf
QEMU=$(command -v qemu-system-x86_64 || true)
if [ ! -x "$MICROVM" ] || [ ! -f "$GUEST" ]; then
	echo "SKIP: build microvm and its guests first"
	exit 0
fi
if [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
	echo "SKIP: /dev/kvm is not usable"
	exit 0
fi
[ -n "$QEMU" ] || echo "note: qemu-system-x86_64 not installed, microvm figures only"
TMP=$(mktemp -d /tmp/k2i-bench.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

exec python3 - "$MICROVM" "$GUEST" "${QEMU:-}" "$R" "$TMP" <<'PY'
import json, os, select, socket, statistics, subprocess, sys, time

microvm, guest, qemu, rounds, tmp = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
MEM_MIB = 128
ARGS = "mode=check token=bench mem_mib=%d" % MEM_MIB
cfg = os.path.join(tmp, "cfg.json")

def write_cfg(args):
    with open(cfg, "w") as f:
        json.dump({"boot-source": {"kernel_image_path": guest, "boot_args": args},
                   "machine-config": {"vcpu_count": 1, "mem_size_mib": MEM_MIB}}, f)

def microvm_cmd(sock, with_cfg=True):
    c = [microvm, "--api-sock", sock, "--rundir", os.path.join(tmp, "run"), "--log-level", "err"]
    return c + (["--config-file", cfg] if with_cfg else [])

def qemu_cmd(args):
    return [qemu, "-M", "microvm,x-option-roms=off,pit=off,pic=off,rtc=off,isa-serial=on",
            "-enable-kvm", "-cpu", "host", "-m", str(MEM_MIB), "-smp", "1", "-nodefaults",
            "-no-user-config", "-nographic", "-serial", "stdio", "-no-reboot",
            "-device", "isa-debug-exit,iobase=0xf4,iosize=1", "-kernel", guest, "-append", args]

def api_ready():
    sock = os.path.join(tmp, "api.sock")
    t0 = time.monotonic()
    p = subprocess.Popen(microvm_cmd(sock, False), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while time.monotonic() - t0 < 5:
            s = socket.socket(socket.AF_UNIX)
            try:
                s.connect(sock)
                return time.monotonic() - t0
            except OSError:
                time.sleep(0.0002)
            finally:
                s.close()
        return None
    finally:
        p.terminate(); p.wait()

def first_byte_and_exit(cmd):
    """Seconds from exec to the first console byte and to the process exit (or None)."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    first = None
    try:
        while time.monotonic() - t0 < 30:
            r, _, _ = select.select([p.stdout], [], [], 0.5)
            if r:
                b = os.read(p.stdout.fileno(), 65536)
                if not b:
                    break
                if first is None:
                    first = time.monotonic() - t0
        p.wait(timeout=30)
        return first, time.monotonic() - t0
    except Exception:
        p.kill(); p.wait()
        return first, None

def overhead_kib(pid):
    """RSS of all mappings except the guest RAM one (size within [mem, mem + 4 MiB])."""
    total = guest_rss = 0
    size = None
    with open("/proc/%d/smaps" % pid) as f:
        for line in f:
            parts = line.split()
            if "-" in parts[0] and len(parts) >= 5 and ":" not in parts[0]:
                a, b = (int(x, 16) for x in parts[0].split("-"))
                size = (b - a) // 1024
            elif parts[0] == "Rss:":
                rss = int(parts[1])
                total += rss
                if size is not None and MEM_MIB * 1024 <= size <= MEM_MIB * 1024 + 4096:
                    guest_rss += rss
    return total - guest_rss, guest_rss

def memory(cmd):
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        # Wait for the guest to print, then let it settle in its loop.
        t0 = time.monotonic()
        while time.monotonic() - t0 < 30:
            r, _, _ = select.select([p.stdout], [], [], 0.5)
            if r and os.read(p.stdout.fileno(), 65536):
                break
        time.sleep(1.0)
        return overhead_kib(p.pid)
    finally:
        p.kill(); p.wait()

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None

def ms(x):
    return "n/a" if x is None else "%.2f ms" % (x * 1000)

api = med([api_ready() for _ in range(rounds)])
print("microvm: exec -> API socket ready: %s (median of %d; target < 10 ms)" % (ms(api), rounds))

write_cfg(ARGS)
mv = [first_byte_and_exit(microvm_cmd(os.path.join(tmp, "b.sock"))) for _ in range(rounds)]
mv_first, mv_exit = med([m[0] for m in mv]), med([m[1] for m in mv])
print("microvm: exec -> first guest console byte: %s; -> boot checks done and VMM exited: %s" % (ms(mv_first), ms(mv_exit)))
if qemu:
    qm = [first_byte_and_exit(qemu_cmd(ARGS)) for _ in range(rounds)]
    q_first, q_exit = med([m[0] for m in qm]), med([m[1] for m in qm])
    print("qemu -M microvm: exec -> first guest console byte: %s; -> boot checks done and exit: %s" % (ms(q_first), ms(q_exit)))
    if mv_first and q_first:
        print("ratio first output qemu/microvm: %.1fx (target >= 5x)" % (q_first / mv_first))
    if mv_exit and q_exit:
        print("ratio whole run qemu/microvm: %.1fx" % (q_exit / mv_exit))

write_cfg("mode=count")
mo, mg = memory(microvm_cmd(os.path.join(tmp, "m.sock")))
print("microvm: VMM memory beyond guest RAM: %.2f MiB (guest RAM touched: %.2f MiB; target <= 5 MiB)" % (mo / 1024, mg / 1024))
if qemu:
    qo, qg = memory(qemu_cmd("mode=count"))
    print("qemu -M microvm: VMM memory beyond guest RAM: %.2f MiB (guest RAM touched: %.2f MiB)" % (qo / 1024, qg / 1024))
    if mo:
        print("ratio memory overhead qemu/microvm: %.1fx" % (qo / mo))
PY
