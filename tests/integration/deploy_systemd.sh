#!/bin/bash
# SPDX-License-Identifier: MIT
#
# The systemd units under a real systemd: boots a throwaway container (systemd-nspawn on an
# overlay of this machine's root, private network) into which `make install` was done, and checks
# that k2i and middlecon run under their units as meant: the k2i user, exactly the capabilities
# of the unit, no_new_privs, a seccomp filter; the BPF event source through the unit's
# system-call filter (and, as a control, not without its `bpf` line); HTTPS with the first-run
# certificates; middlecon's socket in /run/k2i surviving a restart of k2i; and the exposure
# scores systemd reports for the running units.
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || skip_all "needs root (systemd-nspawn, overlay mounts)"
command -v systemd-nspawn >/dev/null ||
	skip_all "systemd-nspawn is not installed (Debian package systemd-container)"
grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null
grep -qw overlay /proc/filesystems || skip_all "no overlay file system"
[ -x /lib/systemd/systemd ] || skip_all "systemd is not installed"
command -v jq >/dev/null || skip_all "jq is not installed"
case $B in
*/asan | */fuzz) skip_all "runs the installed release binaries only (sanitizer runtimes and the units' seccomp filters do not mix)" ;;
esac

NS=$T_TMP/ns
ROOT=$NS/root
NSPAWN_PID=
ns_cleanup() {
	if [ -n "$NSPAWN_PID" ] && kill -0 "$NSPAWN_PID" 2>/dev/null; then
		kill -TERM "$NSPAWN_PID"
		for _ in $(seq 200); do
			kill -0 "$NSPAWN_PID" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$NSPAWN_PID" 2>/dev/null
	fi
	mountpoint -q "$ROOT" && umount -l "$ROOT"
	mountpoint -q "$NS/up" && umount -l "$NS/up"
}
trap 'ns_cleanup; cleanup' EXIT

# A writable view of this machine's root whose changes live in a tmpfs and vanish at the end.
mkdir -p "$ROOT" "$NS/up"
mount -t tmpfs -o mode=0755 tmpfs "$NS/up" || skip_all "cannot mount a tmpfs"
mkdir -p "$NS/up/u" "$NS/up/w"
mount -t overlay overlay -o "lowerdir=/,upperdir=$NS/up/u,workdir=$NS/up/w" "$ROOT" ||
	skip_all "cannot mount an overlay of /"

# A clean slate for what make install and the units create, then the install itself.
rm -rf "$ROOT/etc/k2i" "$ROOT/var/lib/k2i" "$ROOT/usr/lib/systemd/system/k2i.service" \
	"$ROOT/usr/lib/systemd/system/middlecon.service"
# As in deploy.sh: if another component's binary is not built, install the deployment's own.
INSTALL=(make --no-print-directory -s -o all BUILD="$B" install DESTDIR="$ROOT" PREFIX=/usr)
if "${INSTALL[@]}" >"$NS/install.log" 2>&1 ||
	{ grep -q "cannot stat '$B/bin/" "$NS/install.log" &&
		echo "# not every binary of the tree is built; installing the deployment's only" &&
		"${INSTALL[@]}" BINS="$(printf "$B/bin/%s " k2i k2ps middlecon mcctl k2i-certs)" \
			>"$NS/install.log" 2>&1; }; then
	ok "make install into the container's root"
else
	not_ok "make install into the container's root"
	sed 's/^/#   /' "$NS/install.log" | tail -n 20
	done_testing
	exit
fi
# Boot only what this test needs: the two units, enabled as `systemctl enable` would.
W=$ROOT/etc/systemd/system/multi-user.target.wants
mkdir -p "$W"
find "$W" -mindepth 1 -maxdepth 1 -exec rm -f {} +
ln -s /usr/lib/systemd/system/k2i.service "$W/k2i.service"
ln -s /usr/lib/systemd/system/middlecon.service "$W/middlecon.service"

# The container may hand k2i the capabilities of its unit (its own bounding set is nspawn's
# default otherwise) and may let bpf(2) through nspawn's own seccomp filter; the units are the
# ones that restrict k2i and middlecon from there.
systemd-nspawn -D "$ROOT" --boot --machine="k2itest$$" --private-network --register=no \
	--keep-unit --link-journal=no --console=read-only \
	--capability=CAP_BPF,CAP_PERFMON,CAP_NET_ADMIN,CAP_SYS_PTRACE,CAP_DAC_READ_SEARCH \
	--system-call-filter='bpf perf_event_open' >"$NS/console.log" 2>&1 &
NSPAWN_PID=$!
INIT=
for _ in $(seq 300); do
	INIT=$(pgrep -P "$NSPAWN_PID" | head -n 1)
	[ -n "$INIT" ] && [ "$(cat "/proc/$INIT/comm" 2>/dev/null)" = systemd ] && break
	INIT=
	kill -0 "$NSPAWN_PID" 2>/dev/null || break
	sleep 0.1
done
if [ -z "$INIT" ]; then
	not_ok "the container boots"
	sed 's/^/#   /' "$NS/console.log" | tail -n 20
	done_testing
	exit
fi
E=(nsenter -t "$INIT" -a)
in_ct() { timeout 30 "${E[@]}" "$@"; }
units_active() { [ "$(in_ct systemctl is-active k2i.service middlecon.service 2>/dev/null | paste -sd ' ')" = "active active" ]; }
healthy() { in_ct curl -sk --max-time 2 https://localhost:9400/healthz 2>/dev/null | grep -q '"ok"'; }
for _ in $(seq 600); do
	units_active && healthy && break
	kill -0 "$NSPAWN_PID" 2>/dev/null || break
	sleep 0.1
done
check "k2i.service and middlecon.service are active" units_active
check "k2i answers /healthz over HTTPS" healthy

# status FIELD PID: one line of /proc/PID/status in the container.
status() { in_ct awk -v f="$1:" '$1 == f { $1 = ""; sub(/^ /, ""); print }' "/proc/$2/status"; }
K2I=$(in_ct systemctl show -p MainPID --value k2i.service)
MC=$(in_ct systemctl show -p MainPID --value middlecon.service)
UID_K2I=$(in_ct id -u k2i)
check "sysusers.d created the user k2i" test -n "$UID_K2I"
check_eq "k2i runs as k2i" "$UID_K2I" "$(status Uid "$K2I" | awk '{ print $1 }')"
check_eq "middlecon runs as k2i" "$UID_K2I" "$(status Uid "$MC" | awk '{ print $1 }')"
# CAP_DAC_READ_SEARCH (2), CAP_NET_ADMIN (12), CAP_SYS_PTRACE (19), CAP_PERFMON (38), CAP_BPF (39).
check_eq "k2i holds exactly its five capabilities (effective, ambient, bounding)" \
	"000000c000081004 000000c000081004 000000c000081004" \
	"$(status CapEff "$K2I") $(status CapAmb "$K2I") $(status CapBnd "$K2I")"
check_eq "middlecon holds none" "0000000000000000 0000000000000000" \
	"$(status CapEff "$MC") $(status CapBnd "$MC")"
check_eq "both have no_new_privs and a seccomp filter" "1 2 1 2" \
	"$(status NoNewPrivs "$K2I") $(status Seccomp "$K2I") $(status NoNewPrivs "$MC") $(status Seccomp "$MC")"

S=/var/lib/k2i
KC=(curl -sS --max-time 10 --cacert "$S/ca.pem" --cert "$S/client.pem" --key "$S/client.key")
event_source() { in_ct "${KC[@]}" https://localhost:9400/v1/host 2>/dev/null | jq -r .event_source; }
check_eq "first-run TLS material in the StateDirectory, owned by k2i, mode 0700" "$UID_K2I 700" \
	"$(in_ct stat -c '%u %a' $S)"
if [ -r /sys/kernel/btf/vmlinux ]; then
	check_eq "k2i loads BPF through the unit's system-call filter and capabilities" bpf \
		"$(event_source)"
	# Control: the same unit without its `SystemCallFilter=bpf` line.
	D=$ROOT/etc/systemd/system/k2i.service.d
	mkdir -p "$D"
	printf '[Service]\nSystemCallFilter=\nSystemCallFilter=@system-service\nSystemCallFilter=~@privileged\n' \
		>"$D/no-bpf.conf"
	in_ct systemctl daemon-reload && in_ct systemctl restart k2i.service
	for _ in $(seq 100); do healthy && break; sleep 0.1; done
	SRC=$(event_source)
	check "control: without that line bpf(2) is refused (event source '$SRC')" \
		test -n "$SRC" -a "$SRC" != bpf
	rm -f "$D/no-bpf.conf"
	in_ct systemctl daemon-reload
else
	skip "k2i loads BPF under its unit" "no /sys/kernel/btf/vmlinux"
fi

# k2i reads a root process's exe (CAP_SYS_PTRACE) through ProtectSystem, PrivateDevices, ...
SLEEPER=$(in_ct sh -c 'sleep 30 >/dev/null 2>&1 & echo $!')
check_eq "k2i reads the exe of a root process" /usr/bin/sleep \
	"$(in_ct "${KC[@]}" "https://localhost:9400/v1/proc/$SLEEPER?fields=exe" 2>/dev/null | jq -r .exe)"

check_eq "/run/k2i is owned by k2i, mode 0755" "$UID_K2I 755" "$(in_ct stat -c '%u %a' /run/k2i)"
check_eq "middlecon's socket is /run/k2i/middlecon.sock, mode 0666" "socket 666" \
	"$(in_ct stat -c '%F %a' /run/k2i/middlecon.sock)"
check_eq "a request through middlecon under its unit" HELLO \
	"$(in_ct sh -c 'mcctl serve deploy.echo -- tr a-z A-Z >/dev/null 2>&1 &
		for i in 1 2 3 4 5 6 7 8 9 10; do
			mcctl -t 2000 call deploy.echo hello 2>/dev/null && exit; sleep 0.2
		done')"
in_ct systemctl restart k2i.service
for _ in $(seq 100); do healthy && break; sleep 0.1; done
check "a restart of k2i leaves middlecon's socket in /run/k2i (RuntimeDirectoryPreserve)" \
	in_ct test -S /run/k2i/middlecon.sock
check_eq "... and middlecon keeps serving" HELLO \
	"$(in_ct mcctl -t 2000 call deploy.echo hello 2>/dev/null)"

for unit in k2i:3.0 middlecon:1.5; do
	name=${unit%%:*} max=${unit##*:}
	score=$(in_ct systemd-analyze security "$name.service" 2>&1 |
		sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
	echo "# systemd-analyze security (running): $name.service exposure $score"
	check "running $name.service exposure level ${score:-?} <= $max" \
		awk -v s="${score:-99}" -v m="$max" 'BEGIN { exit !(s <= m) }'
done
check "the units logged no failure" bash -c \
	"! timeout 30 nsenter -t $INIT -a journalctl -u k2i.service -u middlecon.service -p err --no-pager -q | grep -q ."

done_testing
