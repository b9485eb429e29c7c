#!/bin/bash
# SPDX-License-Identifier: MIT
#
# k2i reports the host's supervised instances: /v1/sandboxes and /v1/vms from the instance
# records and control sockets of real launchers, "instance": {kind, id} on their processes, how
# an instance ended (its exit code, or the signal that killed its launcher), stale records
# cleaned, bad ids refused; and k2ps --sandboxes / --vms over them.
. "$(dirname "$0")/lib.sh"

[ -x "$B/bin/sandbox" ] || skip_all "no $B/bin/sandbox"
RUN=$T_TMP/run
mkdir -p "$RUN"
k2i_start k2i --rundir "$RUN"

# get PATH: the JSON body of an authenticated GET.
get() { kcurl "$K2I_URL$1"; }
sbx_state() { get "/v1/sandboxes/$1" | jq -r .state; }

# A sandbox that runs until we let it end, and one that is killed.
mkdir "$T_TMP/s1"
"$B/bin/sandbox" run --rundir "$RUN" --id s1 --bind "$T_TMP/s1" /work -- \
	/bin/sh -c 'while [ ! -e /work/go ]; do sleep 0.05; done; exit 7' >"$T_TMP/s1.out" 2>&1 &
S1=$!
"$B/bin/sandbox" run --rundir "$RUN" --id s2 -- /bin/sleep 60 >"$T_TMP/s2.out" 2>&1 &
S2=$!
T_PIDS+=("$S1" "$S2")
check "s1 is reported running" wait_until 100 eval '[ "$(sbx_state s1)" = running ]'
check "s2 is reported running" wait_until 100 eval '[ "$(sbx_state s2)" = running ]'

j=$(get /v1/sandboxes)
check_eq "the list names both" "s1 s2" "$(jq -r '[.sandboxes[].id] | sort | join(" ")' <<<"$j")"
check_eq "count" 2 "$(jq .count <<<"$j")"
check_eq "the record's pid is the launcher" "$S1" \
	"$(jq -r '.sandboxes[] | select(.id == "s1") | .pid' <<<"$j")"
check "the control socket's answer is included" \
	jq -e '.sandboxes[] | select(.id == "s1") | .info.kind == "sandbox"' <<<"$j"
check_eq "/v1/vms: none" 0 "$(get /v1/vms | jq .count)"
check_eq "an unknown id: 404" 404 "$(status_of "$K2I_URL/v1/sandboxes/nope")"
check_eq "a malformed id: 400" 400 "$(status_of "$K2I_URL/v1/sandboxes/bad%21id")"
check_eq "a sandbox under /v1/vms: 404" 404 "$(status_of "$K2I_URL/v1/vms/s1")"

# Processes carry their instance: the launcher and everything under it.
procs=$(get "/v1/proc?fields=pid,ppid,comm,instance")
check_eq "the launcher's process is tagged" '{"kind":"sandbox","id":"s1"}' \
	"$(jq -c ".processes[] | select(.pid == $S1) | .instance" <<<"$procs")"
sleep_pid=$(jq -r '.processes[] | select(.comm == "sleep" and .instance.id == "s2") | .pid' <<<"$procs")
check "the sandboxed program (sleep) is tagged s2" [ -n "$sleep_pid" ]
check_eq "/v1/proc/PID tags it too" '{"kind":"sandbox","id":"s2"}' \
	"$(get "/v1/proc/$sleep_pid?fields=pid,instance" | jq -c .instance)"
check_eq "k2i itself is in no instance" null "$(get "/v1/proc/$K2I_PID" | jq -c .instance)"
check_eq "the processes of the two instances, and no others" "s1 s2" \
	"$(jq -r '[.processes[] | select(.instance != null) | .instance.id] | unique | join(" ")' <<<"$procs")"

# The instance= filter.
check_eq "instance=sandbox/s2 keeps s2's processes only" "s2" \
	"$(get "/v1/proc?instance=sandbox/s2&fields=pid,instance" | jq -r '[.processes[].instance.id] | unique | join(" ")')"
check "...the sleep among them" eval "get '/v1/proc?instance=sandbox/s2&fields=pid' | jq -e '.processes[] | select(.pid == $sleep_pid)' >/dev/null"
check_eq "instance=any: both" "s1 s2" \
	"$(get "/v1/proc?instance=any&fields=pid,instance" | jq -r '[.processes[].instance.id] | unique | join(" ")')"
check_eq "instance=vm: none" 0 "$(get "/v1/proc?instance=vm&fields=pid" | jq .count)"
check_eq "instance=bogus: 400" 400 "$(status_of "$K2I_URL/v1/proc?instance=bogus")"
check_eq "instance=vm/: 400" 400 "$(status_of "$K2I_URL/v1/proc?instance=vm/")"
"$B/bin/k2ps" --ca "$K2I_STATE/ca.pem" --cert "$K2I_STATE/client.pem" --key "$K2I_STATE/client.key" \
	-H "127.0.0.1:$K2I_PORT" --instance sandbox/s2 -o pid,instance,comm --no-headers >"$T_TMP/k2ps-i.out"
check "k2ps --instance sandbox/s2 -o pid,instance,comm lists the sleep" \
	grep -E -q "^ *$sleep_pid +sandbox/s2 +sleep\$" "$T_TMP/k2ps-i.out"
check_eq "...and nothing outside s2" "" "$(grep -v 'sandbox/s2' "$T_TMP/k2ps-i.out")"

# k2ps lists them.
"$B/bin/k2ps" --ca "$K2I_STATE/ca.pem" --cert "$K2I_STATE/client.pem" --key "$K2I_STATE/client.key" \
	-H "127.0.0.1:$K2I_PORT" --sandboxes >"$T_TMP/k2ps.out"
check "k2ps --sandboxes lists s1 running" grep -E -q "^127\.0\.0\.1:$K2I_PORT +sandbox +s1 +running +$S1 " "$T_TMP/k2ps.out"
check "k2ps --sandboxes lists s2" grep -E -q " s2 +running " "$T_TMP/k2ps.out"

# s1 ends by itself with status 7; s2's launcher is killed outright.
touch "$T_TMP/s1/go"
wait "$S1"
check_eq "s1's launcher exits with its program's status" 7 "$?"
check "s1 is reported exited" wait_until 50 eval '[ "$(sbx_state s1)" = exited ]'
check_eq "...with exit code 7" 7 "$(get /v1/sandboxes/s1 | jq .exit_code)"
kill -9 "$S2"
wait "$S2" 2>/dev/null
check "s2 is reported exited" wait_until 50 eval '[ "$(sbx_state s2)" = exited ]'
check_eq "...killed by signal 9" 9 "$(get /v1/sandboxes/s2 | jq .signal)"
check "s2's stale record is removed" wait_until 50 eval "[ ! -e '$RUN/instances/s2.json' ]"
check "s2's stale socket is removed" [ ! -e "$RUN/instances/s2.sock" ]
check "the sandboxed sleep died with its launcher" wait_until 50 eval "! kill -0 $sleep_pid 2>/dev/null"
"$B/bin/k2ps" --ca "$K2I_STATE/ca.pem" --cert "$K2I_STATE/client.pem" --key "$K2I_STATE/client.key" \
	-H "127.0.0.1:$K2I_PORT" --sandboxes >"$T_TMP/k2ps2.out"
check "k2ps shows how s2 ended" grep -E -q " s2 +exited .* signal 9$" "$T_TMP/k2ps2.out"

# The id s1 runs again: its live run is what /v1/sandboxes/s1 shows, not the ended one.
"$B/bin/sandbox" run --rundir "$RUN" --id s1 -- /bin/sleep 60 >"$T_TMP/s1b.out" 2>&1 &
S1B=$!
T_PIDS+=("$S1B")
check "s1's second run is reported running, not its first run's exit" \
	wait_until 100 eval '[ "$(sbx_state s1)" = running ]'
check_eq "...with the new launcher's pid" "$S1B" "$(get /v1/sandboxes/s1 | jq .pid)"
check_eq "the list holds both runs of s1" "exited running" \
	"$(get /v1/sandboxes | jq -r '[.sandboxes[] | select(.id == "s1") | .state] | sort | join(" ")')"
kill "$S1B"
wait "$S1B" 2>/dev/null
check "s1's second run is reported exited" wait_until 50 eval '[ "$(sbx_state s1)" = exited ]'

# A record left by a launcher that died while k2i was not watching: cleaned when seen.
/bin/true &
dead=$!
wait "$dead"
cat >"$RUN/instances/ghost.json" <<EOF
{"id": "ghost", "kind": "sandbox", "pid": $dead, "pid_start": "1",
 "api_socket": "$RUN/instances/ghost.sock", "started_at": "2026-01-01T00:00:00.000Z"}
EOF
check "a record whose launcher is dead is not listed" \
	wait_until 50 eval "! get /v1/sandboxes | jq -e '.sandboxes[] | select(.id == \"ghost\")' >/dev/null"
check "...and is removed" [ ! -e "$RUN/instances/ghost.json" ]
check "no record is left behind" eval "[ -z \"\$(ls '$RUN/instances')\" ]"
# Launchers that accept connections (through the backlog) and never answer: six "vms" whose
# control sockets are held by one process that never accepts. Their sockets are asked at
# once, not one after another, and k2i's loop goes on serving other requests meanwhile.
python3 -c '
import socket, sys, time
socks = []
for i in range(1, 7):
    s = socket.socket(socket.AF_UNIX)
    s.bind(sys.argv[1] + "/instances/hung%d.sock" % i)
    s.listen(8)
    socks.append(s)
print("ready", flush=True)
time.sleep(120)
' "$RUN" >"$T_TMP/hung.out" &
HUNG=$!
T_PIDS+=("$HUNG")
wait_until 50 grep -q ready "$T_TMP/hung.out"
for i in 1 2 3 4 5 6; do
	cat >"$RUN/instances/hung$i.json.tmp" <<EOF
{"id": "hung$i", "kind": "vm", "pid": $HUNG, "pid_start": "0",
 "api_socket": "$RUN/instances/hung$i.sock", "started_at": "2026-01-01T00:00:00.000Z"}
EOF
	mv "$RUN/instances/hung$i.json.tmp" "$RUN/instances/hung$i.json"
done
check_eq "six hung vms are listed" 6 "$(get /v1/vms | jq .count)"
ms() { echo $(($(date +%s%N) / 1000000)); }
for proto in --http1.1 --http2; do
	t0=$(ms)
	(
		kcurl "$proto" "$K2I_URL/v1/vms" >"$T_TMP/hung-vms.json"
		ms >"$T_TMP/hung-vms.end"
	) &
	lister=$!
	sleep 0.05
	kcurl "$proto" "$K2I_URL/v1/hello" >/dev/null
	hello_end=$(ms)
	wait "$lister"
	vms_end=$(cat "$T_TMP/hung-vms.end")
	check "$proto: /v1/hello is answered while /v1/vms waits for hung launchers" \
		[ "$hello_end" -lt "$vms_end" ]
	check_eq "$proto: each hung launcher timed out on its own (all asked at once)" \
		"6 control socket: Connection timed out" \
		"$(jq -r '[.vms[] | select(.state == "unknown") | .error] | "\(length) \(unique | join(","))"' \
			"$T_TMP/hung-vms.json")"
	check "$proto: ...within about one timeout, not six ($((vms_end - t0)) ms)" \
		[ $((vms_end - t0)) -lt 600 ]
	check_eq "$proto: one hung vm by id" "unknown" \
		"$(kcurl "$proto" "$K2I_URL/v1/vms/hung3" | jq -r .state)"
done
# HTTP/1.1 pipelining: requests behind a deferred answer wait for it, and come back in order.
pipelined=$(python3 - "$K2I_STATE" "$K2I_PORT" <<'EOF'
import socket, ssl, sys
state, port = sys.argv[1], int(sys.argv[2])
ctx = ssl.create_default_context(cafile=state + "/ca.pem")
ctx.load_cert_chain(state + "/client.pem", state + "/client.key")
c = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=20),
                    server_hostname="localhost")
c.sendall(b"GET /v1/vms HTTP/1.1\r\nHost: x\r\n\r\n"
          b"GET /v1/hello HTTP/1.1\r\nHost: x\r\n\r\n"
          b"GET /v1/vms/hung2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
data = b""
while True:
    d = c.recv(65536)
    if not d:
        break
    data += d
bodies = [l for l in data.decode().split("\r\n") if l.startswith("{")]
print(" ".join(b[:b.index(":")].strip('{"') for b in bodies))
EOF
)
check_eq "three pipelined requests, the first and last deferred: answered in order" \
	"host message id" "$pipelined"
# Clients that leave while their answer is being waited for.
for proto in --http1.1 --http2; do
	kcurl "$proto" --max-time 0.05 "$K2I_URL/v1/vms" >/dev/null 2>&1
done
check_eq "k2i answers after clients left mid-wait" 6 "$(get /v1/vms | jq .count)"
kill "$HUNG"
wait "$HUNG" 2>/dev/null
check "the hung vms are reported exited once their launcher is gone" wait_until 50 eval \
	"get /v1/vms | jq -e '[.vms[] | select(.state == \"exited\")] | length == 6' >/dev/null"
check "...and their records and sockets are removed" eval "[ -z \"\$(ls '$RUN/instances')\" ]"
check "k2i is still running" kill -0 "$K2I_PID"
done_testing
