#!/bin/bash
# SPDX-License-Identifier: MIT
#
# sandbox run: real programs give the same output inside as outside (shell pipelines, python3
# file I/O, gcc, tar), exit statuses, rootless runs, cgroup limits, the control socket, the
# instance record and the audit log.
. "$(dirname "$0")/lib.sh"
need curl jq gcc tar /usr/bin/python3

SBX=$TOP/$B/bin/sandbox
RUN=$T_TMP/run
[ -x "$SBX" ] || skip_all "$SBX is not built"
# sb ARGS... -- PROG...: sandbox with a private rundir, bounded in time.
sb() {
	timeout 60 "$SBX" run --rundir "$RUN" "$@"
}

if ! out=$(sb -- /bin/true 2>&1); then
	skip_all "the sandbox cannot start here: $out"
fi

# --- default policy, same output inside and outside ---------------------------------------
check_eq "echo with no policy" "hi" "$(sb -- /bin/sh -c 'echo hi')"

pipeline='printf "pear\napple\nfig\napple\n" | sort | uniq -c | sort -rn | tr a-z A-Z | head -n 2'
check_eq "shell pipeline output as outside" "$(/bin/sh -c "$pipeline")" \
	"$(sb -- /bin/sh -c "$pipeline")"

cat >"$T_TMP/files.py" <<'EOF'
import hashlib, json, os, sys
d = sys.argv[1]
os.makedirs(d + "/sub", exist_ok=True)
with open(d + "/sub/data.json", "w") as f:
    json.dump({"n": list(range(50)), "s": "x" * 1000}, f)
os.rename(d + "/sub/data.json", d + "/sub/moved.json")
with open(d + "/sub/moved.json") as f:
    data = json.load(f)
with open(d + "/sub/moved.json", "a") as f:
    f.write("\n")
os.symlink("moved.json", d + "/sub/link")
print(sum(data["n"]), len(data["s"]), os.path.getsize(d + "/sub/link"),
      hashlib.sha256(open(d + "/sub/link", "rb").read()).hexdigest()[:16],
      sorted(os.listdir(d + "/sub")))
os.unlink(d + "/sub/link")
os.unlink(d + "/sub/moved.json")
os.rmdir(d + "/sub")
print(os.path.exists(d + "/sub"))
EOF
mkdir -p "$T_TMP/py"
check_eq "python3 file I/O in /tmp as outside" \
	"$(/usr/bin/python3 "$T_TMP/files.py" "$T_TMP/py")" \
	"$(sb --ro-bind "$T_TMP/files.py" /opt/files.py -- /usr/bin/python3 /opt/files.py /tmp/py)"

cat >"$T_TMP/prog.c" <<'EOF'
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv)
{
	FILE *f = fopen(argv[1], "w");
	if (!f)
		return 1;
	for (int i = 0; i < 1000; i++)
		fprintf(f, "%d\n", i * i);
	fclose(f);
	f = fopen(argv[1], "r");
	long sum = 0, v;
	while (fscanf(f, "%ld", &v) == 1)
		sum += v;
	printf("sum=%ld\n", sum);
	return 0;
}
EOF
gcc -O2 -o "$T_TMP/prog" "$T_TMP/prog.c" && outside=$("$T_TMP/prog" "$T_TMP/prog.out")
check_eq "gcc compiles and runs a C program in /tmp" "$outside" \
	"$(sb --ro-bind "$T_TMP/prog.c" /opt/prog.c -- /bin/sh -c \
		'cd /tmp && gcc -O2 -o prog /opt/prog.c && ./prog /tmp/prog.out')"

mkdir -p "$T_TMP/tree/a/b" "$T_TMP/tree/c"
seq 1 5000 >"$T_TMP/tree/a/b/numbers"
echo hello >"$T_TMP/tree/c/hello"
ln -s ../c/hello "$T_TMP/tree/a/link"
chmod 640 "$T_TMP/tree/c/hello"
tar -C "$T_TMP" -czf "$T_TMP/tree.tgz" tree
mkdir -p "$T_TMP/untar"
tar -C "$T_TMP/untar" -xzf "$T_TMP/tree.tgz"
listing='cd "$0" && find . -printf "%p %y %m %l\n" | sort && cat tree/a/b/numbers | md5sum'
check_eq "tar extracts into /tmp as outside" "$(/bin/sh -c "$listing" "$T_TMP/untar")" \
	"$(sb --ro-bind "$T_TMP/tree.tgz" /opt/tree.tgz -- /bin/sh -c \
		"mkdir /tmp/untar && tar -C /tmp/untar -xzf /opt/tree.tgz && $listing" /tmp/untar)"

# --- exit status --------------------------------------------------------------------------
sb -- /bin/sh -c 'exit 42'
check_eq "exit status is the program's" 42 $?
sb -- /bin/sh -c 'kill -TERM $$'
check_eq "a signal gives 128+N" 143 $?
sb -- /nonexistent/program 2>/dev/null
check_eq "a missing program gives 127" 127 $?
"$SBX" run 2>/dev/null
check_eq "usage error gives 2" 2 $?

# --- the view ------------------------------------------------------------------------------
check_eq "hostname is private" "sandbox" "$(sb -- /bin/hostname)"
check "/etc/shadow is hidden" sh -c "! $(printf %q "$SBX") run --rundir $RUN -- /bin/cat /etc/shadow 2>/dev/null"
check_eq "host /tmp is not visible" "" "$(touch /tmp/sbx-host-marker.$$; sb -- /bin/ls /tmp; rm -f /tmp/sbx-host-marker.$$)"
check_eq "/usr is read-only" "fail" "$(sb -- /bin/sh -c 'touch /usr/x 2>/dev/null && echo ok || echo fail')"
check_eq "capabilities are all dropped" "0000000000000000 0000000000000000 0000000000000000" \
	"$(sb -- /bin/sh -c 'grep -E "^Cap(Eff|Prm|Bnd)" /proc/self/status | cut -f2 | tr "\n" " " | sed "s/ $//"')"
check_eq "no_new_privs is set" "1" "$(sb -- /bin/sh -c 'grep ^NoNewPrivs /proc/self/status | cut -f2')"
check_eq "seccomp filter is on" "2" "$(sb -- /bin/sh -c 'grep ^Seccomp: /proc/self/status | cut -f2')"
check_eq "PID namespace: the program is pid 2" "2" "$(sb -- /bin/sh -c 'echo $$')"
check_eq "--setenv/--clearenv/--chdir" "v /tmp" \
	"$(sb --clearenv --setenv PATH /usr/bin:/bin --setenv K v --chdir /tmp -- /bin/sh -c 'echo $K $(pwd)')"
check_eq "rlimit from a policy file" "77" \
	"$(echo 'rlimit nofile 77' >"$T_TMP/nofile.policy"; sb --policy "$T_TMP/nofile.policy" -- /bin/sh -c 'ulimit -n')"
check_eq "loopback works with --net none" "pong" \
	"$(sb -- /usr/bin/python3 -c '
import socket, threading
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1)
def serve():
    c, _ = s.accept(); c.sendall(c.recv(4).replace(b"i", b"o")); c.close()
threading.Thread(target=serve).start()
c = socket.create_connection(s.getsockname()); c.sendall(b"ping"); print(c.recv(4).decode())')"
check_eq "AF_UNIX bind and connect by path, refused on a read-only path" \
	"UNIX 13" "$(sb -- /usr/bin/python3 -c '
import socket, threading
s = socket.socket(socket.AF_UNIX); s.bind("/tmp/s.sock"); s.listen(1)
def serve():
    c, _ = s.accept(); c.sendall(c.recv(4).upper()); c.close()
threading.Thread(target=serve).start()
c = socket.socket(socket.AF_UNIX); c.connect("/tmp/s.sock"); c.sendall(b"unix")
r = c.recv(4).decode()
try:
    socket.socket(socket.AF_UNIX).connect("/etc/passwd"); e = 0
except OSError as x:
    e = x.errno
print(r, e)')"
# sendmsg is performed by the supervisor: descriptors passed with SCM_RIGHTS are the
# program's own, over a socketpair and to a datagram socket named by path.
check_eq "SCM_RIGHTS over a socketpair and to an AF_UNIX datagram address" \
	"fds through-pipe dgram in-a-file" "$(sb -- /usr/bin/python3 -c '
import array, os, socket
a, b = socket.socketpair()
r, w = os.pipe()
socket.send_fds(a, [b"fds"], [r])
msg, fds, _, _ = socket.recv_fds(b, 16, 4)
os.write(w, b"through-pipe"); os.close(w)
out = [msg.decode(), os.read(fds[0], 64).decode()]
with open("/tmp/f", "w") as f:
    f.write("in-a-file")
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.bind("/tmp/fd.sock")
c = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
with open("/tmp/f", "rb") as f:
    # (Python 3.11 send_fds() drops its address argument: sendmsg directly.)
    c.sendmsg([b"dgram"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [f.fileno()]))],
              0, "/tmp/fd.sock")
msg, fds, _, _ = socket.recv_fds(s, 16, 4)
out += [msg.decode(), os.read(fds[0], 64).decode()]
print(*out)')"
# A blocking sendmsg on a full datagram socket waits in the supervisor's event loop: other
# trapped calls (opens) of the same sandbox go on meanwhile, and it completes once the
# receiver makes room.
check_eq "a blocking send on a full socket does not stall the supervisor" \
	"blocked True opens True sent True" "$(sb -- /usr/bin/python3 -c '
import socket, threading, time
a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
n = 0
while True:
    try:
        a.sendmsg([b"fill"], [], socket.MSG_DONTWAIT); n += 1
    except BlockingIOError:
        break
done = []
t = threading.Thread(target=lambda: done.append(a.sendmsg([b"last"])))
t.start(); time.sleep(0.3)
blocked = not done
t0 = time.monotonic()
for i in range(50):
    open("/etc/passwd").close()
opens = time.monotonic() - t0 < 2 and not done
b.settimeout(5)
got = [b.recv(16) for i in range(n + 1)]
t.join(5)
print("blocked", blocked, "opens", opens, "sent", done == [4] and got[-1] == b"last")')"
out=$(sb --ro-bind "$TOP/$B/tests" /t --exec /t -- /t/sbx_escape sigpipe)
check_eq "EPIPE from sendmsg raises SIGPIPE once, never with MSG_NOSIGNAL" "OK sigpipe 1" "$out"
# glibc (getaddrinfo with AI_ADDRCONFIG) and iproute2 ask the kernel over netlink with an
# explicit kernel address: sent by the supervisor.
check_eq "getaddrinfo with AI_ADDRCONFIG" "127.0.0.1" "$(sb -- /usr/bin/python3 -c '
import socket
print(*sorted({a[4][0] for a in socket.getaddrinfo("localhost", 80, flags=socket.AI_ADDRCONFIG)}))')"
if IP=$(command -v ip); then
	check "netlink dump of the sandbox's addresses (ip addr)" grep -q "inet 127.0.0.1/8" \
		<<<"$(sb -- "$IP" -o -4 addr show dev lo)"
else
	skip "netlink dump of the sandbox's addresses (ip addr)" "iproute2 is not installed"
fi
check_eq "a FIFO opened before its other end, both ways" "viafifo first" \
	"$(sb -- /bin/sh -c 'mkfifo /tmp/ff; (sleep 0.2; cat /tmp/ff) & echo viafifo >/tmp/ff; wait
		(echo first >/tmp/ff) & sleep 0.2; cat /tmp/ff; wait' | tr '\n' ' ' | sed 's/ $//')"
check_eq "/dev/stdin reads a pipe" "ABC" "$(echo abc | sb -- /bin/sh -c 'cat /dev/stdin | tr a-z A-Z')"

# --- a given root ----------------------------------------------------------------------------
R=$T_TMP/rootfs
mkdir -p "$R/bin" "$R/etc" "$R/data"
cp "$TOP/$B/tests/sbx_escape" "$R/bin/"
echo pub >"$R/data/pub"
echo secret >"$R/etc/secret"
out=$(sb --rootfs "$R" --hide /etc/secret -- /bin/sbx_escape open /data/pub)
check "--rootfs runs a binary of the given root" grep -q "read 4 bytes: pub" <<<"$out"
out=$(sb --rootfs "$R" --hide /etc/secret -- /bin/sbx_escape open /etc/secret)
check "--rootfs with a hidden file" grep -q "BLOCKED" <<<"$out"
check_eq "--rootfs: the host's /usr is not there" "BLOCKED" \
	"$(sb --rootfs "$R" -- /bin/sbx_escape open /usr/bin/env | cut -d' ' -f1)"

# --- policy check ----------------------------------------------------------------------------
printf 'net host\nhide /srv/keys\nallow-connect 10.0.0.0/8 443\n' >"$T_TMP/good.policy"
check "--check-policy accepts a valid file" sh -c \
	"$(printf %q "$SBX") --check-policy $T_TMP/good.policy | grep -qx 'allow-connect 10.0.0.0/8 443'"
printf 'ro /a\nrw relative\n' >"$T_TMP/bad.policy"
msg=$("$SBX" --check-policy "$T_TMP/bad.policy" 2>&1)
rc=$?
check_eq "--check-policy refuses a bad file" 1 "$rc"
check "--check-policy names the bad line" grep -q "bad.policy:2: path must be absolute" <<<"$msg"

# --- rootless ------------------------------------------------------------------------------
if [ "$(id -u)" -ne 0 ]; then
	skip "rootless run" "this whole script already runs rootless (uid $(id -u))"
elif ! command -v setpriv >/dev/null; then
	skip "rootless run" "setpriv is not installed"
else
	chmod 711 "$T_TMP"
	mkdir -m 755 "$T_TMP/bin"
	cp "$SBX" "$T_TMP/bin/sandbox"
	rl=$(cd / && timeout 30 setpriv --reuid=65534 --regid=65534 --clear-groups \
		env -u XDG_RUNTIME_DIR "$T_TMP/bin/sandbox" run -- \
		/bin/sh -c 'id -u; echo data >/tmp/f && cat /tmp/f; grep ^CapEff /proc/self/status | cut -f2' 2>&1)
	if grep -q "user namespaces" <<<"$rl"; then
		skip "rootless run" "user namespaces are not allowed for uid 65534: $rl"
	else
		check_eq "rootless run as uid 65534" "65534 data 0000000000000000" "$(echo $rl)"
	fi
	rm -rf "/tmp/k2i-65534/instances" 2>/dev/null
fi

# --- cgroup limits -------------------------------------------------------------------------
if cg=$(sb --pids 32 -- /bin/true 2>&1); then
	out=$(sb --pids 32 -- /bin/sh -c 'for i in $(seq 1 100); do sleep 2 & done 2>&1; wait' 2>&1)
	check "--pids makes a fork bomb fail" grep -q -i -E "fork|resource" <<<"$out"
	sb --memory 32M -- /usr/bin/python3 -c 'b = bytearray(256 << 20); print(len(b))' >/dev/null 2>&1
	check_eq "--memory kills a program above the limit" 137 $?
else
	skip "--pids fork bomb" "no cgroup v2 limits here: $(echo "$cg" | sed 's/.*err: //' | head -n1)"
	skip "--memory limit" "no cgroup v2 limits here"
fi

# --- control socket, instance record, audit log ----------------------------------------------
AUDIT=$T_TMP/audit.log
"$SBX" run --rundir "$RUN" --id ctl-1 --audit-log "$AUDIT" -- \
	/bin/sh -c 'cat /etc/shadow 2>/dev/null; echo x 2>/dev/null >>/etc/passwd; exec sleep 60' &
SPID=$!
T_PIDS+=("$SPID")
SOCK=$RUN/instances/ctl-1.sock
for _ in $(seq 1 100); do
	[ -S "$SOCK" ] && curl -s --unix-socket "$SOCK" http://x/ | jq -e '.last_denied | length >= 1' >/dev/null 2>&1 && break
	sleep 0.05
done
check "instance record written" jq -e '.kind == "sandbox" and .id == "ctl-1"' "$RUN/instances/ctl-1.json"
state=$(curl -s --max-time 5 --unix-socket "$SOCK" http://x/)
check "GET / reports a running sandbox" jq -e '.id == "ctl-1" and .kind == "sandbox" and .state == "running" and (.pid | type) == "number" and .exit_status == null and (.started_at | test("Z$"))' <<<"$state"
check "GET / counts trapped, allowed and denied calls" jq -e '.counters.openat.trapped >= 1 and .counters.openat.allowed >= 1 and .counters.openat.denied >= 1 and .totals.trapped == (.totals.allowed + .totals.denied)' <<<"$state"
check "GET / lists the denied open with its path" jq -e '.last_denied[0].syscall == "openat" and .last_denied[0].detail == "/etc/shadow" and .last_denied[0].errno == 13 and (.last_denied[0].args | length) == 6' <<<"$state"
code=$(curl -s -o "$T_TMP/bad.json" -w '%{http_code}' --max-time 5 --unix-socket "$SOCK" -X PUT \
	http://x/actions -d '{"action_type":"Explode"}')
check_eq "PUT /actions with a bad action is 400" 400 "$code"
check "400 carries a fault_message" jq -e '.fault_message | test("Explode")' "$T_TMP/bad.json"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 --unix-socket "$SOCK" -X PUT \
	http://x/actions -d 'not json')
check_eq "PUT /actions with malformed JSON is 400" 400 "$code"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 --unix-socket "$SOCK" -X PUT \
	http://x/actions -d '{"action_type":"Kill"}')
check_eq "PUT /actions Kill is 204" 204 "$code"
timeout 10 tail --pid="$SPID" -f /dev/null
wait "$SPID"
check_eq "killed sandbox exits with 137" 137 $?
check "record and socket removed on exit" test ! -e "$RUN/instances/ctl-1.json" -a ! -e "$SOCK"
check_eq "audit log has one line per denial" 2 "$(wc -l <"$AUDIT")"
check "audit line names syscall, path and reason" jq -e -s \
	'.[0].syscall == "openat" and .[0].detail == "/etc/shadow" and .[0].reason == "hidden path" and .[0].id == "ctl-1" and .[1].detail == "/etc/passwd" and .[1].reason == "read-only path"' "$AUDIT"

"$SBX" run --rundir "$RUN" --id ctl-2 -- /bin/sleep 60 &
SPID=$!
T_PIDS+=("$SPID")
for _ in $(seq 1 100); do [ -S "$RUN/instances/ctl-2.sock" ] && break; sleep 0.05; done
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 --unix-socket "$RUN/instances/ctl-2.sock" \
	-X PUT http://x/actions -d '{"action_type":"SendSignal","signal":15}')
check_eq "PUT /actions SendSignal is 204" 204 "$code"
timeout 10 tail --pid="$SPID" -f /dev/null
wait "$SPID"
check_eq "SIGTERM reaches the program (143)" 143 $?

done_testing
