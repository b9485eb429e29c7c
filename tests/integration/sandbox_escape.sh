#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Escape attempts against sandbox run; every one must fail. The attempts are made by
# tests/integration/sbx_escape.c, run inside the sandbox; it prints "ESCAPED" and exits 3 if
# an attempt worked.
. "$(dirname "$0")/lib.sh"
need jq /usr/bin/python3

SBX=$TOP/$B/bin/sandbox
ESC=$TOP/$B/tests/sbx_escape
RUN=$T_TMP/run
[ -x "$SBX" ] && [ -x "$ESC" ] || skip_all "sandbox or sbx_escape is not built"
"$SBX" run --rundir "$RUN" -- /bin/true 2>/dev/null || skip_all "the sandbox cannot start here"

D=$T_TMP/data
mkdir -p "$D/private"
echo SECRET >"$D/secret"
echo KEY >"$D/private/key"
echo OK >"$D/ok"
echo RO >"$D/ro.txt"
AUDIT=$T_TMP/audit.log
# The helper is mounted at /t (executable); /data is writable except the hidden and read-only
# parts.
BASE=(--rundir "$RUN" --ro-bind "$(dirname "$ESC")" /t --exec /t --bind "$D" /data
	--hide /data/secret --hide /data/private --hide /tmp/late
	--ro-bind "$D/ro.txt" /data/ro.txt --audit-log "$AUDIT")

# attempt DESCRIPTION [SANDBOX OPTIONS...] -- HELPER ARGS...: one TAP line; the attempt must be
# refused ("BLOCKED", exit 0), and never print ESCAPED.
attempt() {
	local desc=$1 opts=() out rc
	shift
	while [ "$1" != "--" ]; do
		opts+=("$1")
		shift
	done
	shift
	out=$(timeout 60 "$SBX" run "${BASE[@]}" "${opts[@]}" -- /t/sbx_escape "$@" 2>&1)
	rc=$?
	if [ "$rc" -eq 0 ] && grep -q "^BLOCKED" <<<"$out" && ! grep -q ESCAPED <<<"$out"; then
		ok "$desc"
	else
		not_ok "$desc"
		echo "# exit $rc: $out" | head -n 5
	fi
}

# Sanity: the allowed file is readable, so the refusals below are the policy's doing.
out=$(timeout 30 "$SBX" run "${BASE[@]}" -- /t/sbx_escape open /data/ok)
check "the allowed file is readable" grep -q "ESCAPED /data/ok" <<<"$out"

attempt "open a hidden file directly" -- open /data/secret
attempt "open a file in a hidden directory" -- open /data/private/key
attempt "open a hidden file through .." -- open /tmp/../data/./secret
attempt "open a hidden file through a symlink" -- symlink /data/secret /tmp/link
attempt "open a hidden file through a relative symlink" -- symlink ../data/private/key /tmp/rel
attempt "open a hidden file through /proc/self/root" -- open /proc/self/root/data/secret
attempt "open a hidden file through /proc/1/root" -- open /proc/1/root/data/secret
attempt "reopen a hidden file's O_PATH descriptor via /proc/self/fd" -- opath /data/secret
attempt "reopen a read-only file's O_PATH descriptor for writing" -- opath-write /data/ro.txt
attempt "write a read-only bind" -- write /data/ro.txt
attempt "write a read-only system file" -- write /etc/passwd
attempt "create a file at a hidden path" -- write /tmp/late
attempt "write the init's memory through /proc/1/mem" -- write /proc/1/mem
attempt "write its own memory through /proc/self/mem" -- write /proc/self/mem
attempt "io_uring_setup" -- io_uring
attempt "ptrace the sandbox's init" -- ptrace 1
# The supervisor is the process that exec's into sandbox: its pid is this shell's $$.
out=$(bash -c 'exec "$0" run "${@:1:$#-2}" -- /t/sbx_escape ptrace $$' "$SBX" "${BASE[@]}" x x 2>&1)
if grep -q "^BLOCKED" <<<"$out" && ! grep -q ESCAPED <<<"$out"; then ok "ptrace the supervisor"; else
	not_ok "ptrace the supervisor"
	echo "# $out"
fi
out=$(bash -c 'exec "$0" run "${@:1:$#-2}" -- /t/sbx_escape kill $$' "$SBX" "${BASE[@]}" x x 2>&1)
check "the supervisor is invisible (kill -0 fails)" grep -q "BLOCKED signal: ESRCH" <<<"$out"
attempt "mount, fsopen, open_tree" -- mount
attempt "unshare and clone with namespace flags" -- unshare
attempt "bpf" -- bpf
attempt "connect outside with --net none" -- connect 192.0.2.1 80

# The race: a second thread flips the path buffer between an allowed and a hidden file while
# the first opens it. Every open that succeeds must be the allowed file.
out=$(timeout 60 "$SBX" run "${BASE[@]}" -- /t/sbx_escape race /data/ok /data/secret 3 2>&1)
rc=$?
opens=$(sed -n 's/^opens \([0-9]*\) refused \([0-9]*\) leaks \([0-9]*\)$/\1 \2 \3/p' <<<"$out")
set -- $opens
if [ "$rc" -eq 0 ] && [ "${3:-1}" -eq 0 ] && [ "${1:-0}" -gt 100 ] && [ "${2:-0}" -gt 100 ]; then
	ok "racing the path buffer never opens the hidden file ($out)"
else
	not_ok "racing the path buffer never opens the hidden file"
	echo "# exit $rc: $out"
fi

# The x32 ABI and other architectures kill the process (SIGSYS: 128+31).
timeout 30 "$SBX" run "${BASE[@]}" -- /t/sbx_escape x32 >/dev/null 2>&1
check_eq "an x32 syscall kills the process" 159 $?

# Binaries outside the exec paths: refused at execve (audited) and by the noexec mount.
attempt "exec a binary copied to a noexec /tmp" --noexec /tmp -- exec /bin/sh -c \
	'cp /t/sbx_escape /tmp/e && /t/sbx_escape exec /tmp/e open /data/ok'
out=$(timeout 30 "$SBX" run "${BASE[@]}" --noexec /tmp -- /bin/sh -c \
	'cp /bin/true /tmp/true && /lib64/ld-linux-x86-64.so.2 /tmp/true && echo ESCAPED' 2>&1)
if ! grep -q ESCAPED <<<"$out"; then ok "run a noexec binary through the dynamic loader"; else
	not_ok "run a noexec binary through the dynamic loader"
fi
attempt "exec a binary from a non-exec bind" -- exec /data/ok

# Network: with the host's network, only the listed address and port are reachable.
PORTS=$T_TMP/ports
/usr/bin/python3 -c '
import socket, sys, time
ss = []
for _ in range(2):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(16); ss.append(s)
open(sys.argv[1], "w").write(" ".join(str(s.getsockname()[1]) for s in ss) + "\n")
time.sleep(120)' "$PORTS" &
T_PIDS+=($!)
for _ in $(seq 1 100); do [ -s "$PORTS" ] && break; sleep 0.05; done
read -r P1 P2 <"$PORTS"
out=$(timeout 30 "$SBX" run "${BASE[@]}" --net host --allow-connect "127.0.0.1 $P1" -- \
	/t/sbx_escape connect 127.0.0.1 "$P1")
check "connect to the allowed address works" grep -q "ESCAPED connect" <<<"$out"
attempt "connect to a forbidden port" --net host --allow-connect "127.0.0.1 $P1" -- \
	connect 127.0.0.1 "$P2"
attempt "connect anywhere with --net host and no rule" --net host -- connect 127.0.0.1 "$P1"

# Sends that name a destination are judged like connect: UDP datagrams to a local receiver
# with one allowed port and one forbidden, AF_UNIX datagrams to a socket file under a
# read-only bind (writing to a socket ignores MS_RDONLY, so only the policy stops it) and to
# an abstract name in the host's namespace.
RECV=$T_TMP/received
USOCK=$T_TMP/usock
mkdir -p "$USOCK"
ABSTRACT=sbx-escape-$$
/usr/bin/python3 -c '
import os, select, socket, sys
out, udir, abstract = sys.argv[1], sys.argv[2], sys.argv[3]
socks = {}
for tag in ("U1", "U2"):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); socks[s] = tag
u = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); u.bind(udir + "/d.sock"); socks[u] = "UNIX"
a = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); a.bind("\0" + abstract); socks[a] = "ABSTRACT"
ports = [s.getsockname()[1] for s, t in socks.items() if t.startswith("U") and t != "UNIX"]
with open(out + ".ports", "w") as f:
    f.write(" ".join(map(str, ports)) + "\n")
log = open(out, "a", buffering=1)
while True:
    for s in select.select(list(socks), [], [], 120)[0]:
        log.write("%s %s\n" % (socks[s], s.recv(65536).decode(errors="replace")))
' "$RECV" "$USOCK" "$ABSTRACT" &
T_PIDS+=($!)
for _ in $(seq 1 100); do [ -s "$RECV.ports" ] && break; sleep 0.05; done
read -r U1 U2 <"$RECV.ports"
touch "$RECV"
# received TAG PAYLOAD: whether the receiver got PAYLOAD on TAG (within a second).
received() {
	for _ in $(seq 1 20); do
		grep -qx "$1 $2" "$RECV" && return 0
		sleep 0.05
	done
	return 1
}
UDP=(--net host --allow-connect "127.0.0.1 $U1")
for how in sendto sendmsg; do
	out=$(timeout 30 "$SBX" run "${BASE[@]}" "${UDP[@]}" -- /t/sbx_escape "udp-$how" 127.0.0.1 \
		"$U1" "ok-$how")
	check "UDP $how to the allowed port is delivered" received U1 "ok-$how"
	attempt "UDP $how to a forbidden port" "${UDP[@]}" -- "udp-$how" 127.0.0.1 "$U2" "bad-$how"
	check "UDP $how to a forbidden port: nothing arrived" sh -c "! grep -q 'bad-$how' '$RECV'"
done
attempt "sendmmsg with one forbidden address of two" "${UDP[@]}" -- sendmmsg 127.0.0.1 "$U1" "$U2"
check "sendmmsg refused as a whole: neither datagram arrived" sh -c "! grep -q mmsg '$RECV'"
out=$(timeout 30 "$SBX" run "${BASE[@]}" --net host --allow-connect "127.0.0.1 $U1" \
	--allow-connect "127.0.0.1 $U2" -- /t/sbx_escape sendmmsg 127.0.0.1 "$U1" "$U2")
check "sendmmsg to two allowed ports sends both, msg_len set" grep -q "sent 2, msg_len 6 6" <<<"$out"
attempt "TCP Fast Open to a forbidden port" --net host --allow-connect "127.0.0.1 $P1" -- \
	fastopen 127.0.0.1 "$P2"
out=$(timeout 30 "$SBX" run "${BASE[@]}" --net host --allow-connect "127.0.0.1 $P1" -- \
	/t/sbx_escape fastopen 127.0.0.1 "$P1")
check "TCP Fast Open to the allowed port connects and sends" grep -q "ESCAPED fast open" <<<"$out"
for how in sendto sendmsg; do
	attempt "AF_UNIX datagram ($how) to a socket under a read-only bind" \
		--ro-bind "$USOCK" /usock -- "unix-$how" /usock/d.sock "ro-$how"
	out=$(timeout 30 "$SBX" run "${BASE[@]}" --bind "$USOCK" /usock -- /t/sbx_escape \
		"unix-$how" /usock/d.sock "rw-$how")
	check "AF_UNIX datagram ($how) to a writable socket is delivered" received UNIX "rw-$how"
	attempt "abstract-name datagram ($how) with --net host" --net host -- "unix-$how" \
		"@$ABSTRACT" "abstract-$how"
done
check "nothing reached the read-only or abstract sockets" sh -c "! grep -q -e '^UNIX ro-' -e '^ABSTRACT' '$RECV'"
attempt "an overlong AF_UNIX name (connect, sendto) is EINVAL" -- unix-long
attempt "SCM_CREDENTIALS forwarded by the supervisor" -- creds
attempt "netlink multicast sent with the supervisor's credentials" --net host -- netlink-multicast

# Every refusal above that the supervisor made is in the audit log.
check "audit log records the hidden open" jq -e -s \
	'map(select(.detail == "/data/secret" and .reason == "hidden path")) | length >= 3' "$AUDIT"
check "audit log records the refused exec" jq -e -s \
	'map(select(.syscall == "execve" and .reason == "binary not in an exec path")) | length >= 1' "$AUDIT"
check "audit log records the refused connect" jq -e -s \
	"map(select(.syscall == \"connect\" and .detail == \"127.0.0.1:$P2\")) | length == 1" "$AUDIT"
check "audit log records the refused sendto, sendmsg and sendmmsg" jq -e -s \
	"[\"sendto\", \"sendmsg\", \"sendmmsg\"] - map(select(.detail == \"127.0.0.1:$U2\" and .reason == \"destination address not allowed\") | .syscall) == []" "$AUDIT"
check "audit log records the read-only socket, the abstract name and SCM_CREDENTIALS" jq -e -s \
	'(map(select(.reason == "socket path not writable" and .detail == "/usock/d.sock")) | length == 2) and (map(select(.reason == "abstract socket in the host namespace" and (.detail | startswith("@sbx-escape-")))) | length == 2) and (map(select(.reason == "SCM_CREDENTIALS cannot be forwarded" and .errno == 1)) | length == 1)' "$AUDIT"
check "audit log records the magic link" jq -e -s \
	'map(select(.reason == "magic link or symlink loop")) | length >= 2' "$AUDIT"

done_testing
