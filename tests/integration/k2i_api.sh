#!/bin/bash
# SPDX-License-Identifier: MIT
#
# k2i over real TLS: every route with curl --http2, curl --http1.1 and nghttp; mutual TLS and
# bearer tokens; bad requests; /v1/proc against ps; /metrics against promtool.
. "$(dirname "$0")/lib.sh"
need curl jq nghttp openssl promtool ps

k2i_start main || { not_ok "k2i starts"; done_testing; exit 1; }
ok "k2i starts and generates its TLS material"
for f in ca.pem ca.key node.pem node.key client.pem client.key; do
	[ -s "$K2I_STATE/$f" ] || not_ok "generated $f"
done
check_eq "private keys are mode 0600" "600 600 600" \
	"$(stat -c %a "$K2I_STATE/ca.key" "$K2I_STATE/node.key" "$K2I_STATE/client.key" | xargs)"

# --- Protocols -----------------------------------------------------------------------------
check_eq "HTTP/2 negotiated by ALPN (curl --http2)" "2 200" \
	"$(kcurl --http2 -o /dev/null -w '%{http_version} %{http_code}' "$K2I_URL/v1/proc")"
check_eq "HTTP/1.1 when the client asks for it (curl --http1.1)" "1.1 200" \
	"$(kcurl --http1.1 -o /dev/null -w '%{http_version} %{http_code}' "$K2I_URL/v1/proc")"
check_eq "HTTP/1.1 without ALPN" "1.1 200" \
	"$(kcurl --no-alpn -o /dev/null -w '%{http_version} %{http_code}' "$K2I_URL/healthz")"
check_eq "HTTP/1.1 keep-alive reuses one connection" "1 0" \
	"$(kcurl --http1.1 -o /dev/null -o /dev/null -w '%{num_connects} ' "$K2I_URL/v1/host" \
		"$K2I_URL/v1/host" | xargs)"
out=$(nghttp -n -s --cert "$K2I_STATE/client.pem" --key "$K2I_STATE/client.key" \
	"$K2I_URL/v1/host" "$K2I_URL/v1/proc/self" "$K2I_URL/healthz" 2>&1)
check_eq "nghttp: three concurrent streams on one h2 connection" "3" \
	"$(grep -c -E '^ +[0-9]+ +.* /(v1|healthz)' <<<"$out")"
body=$(nghttp --cert "$K2I_STATE/client.pem" --key "$K2I_STATE/client.key" "$K2I_URL/v1/host")
check_eq "nghttp: /v1/host body" "$(hostname)" "$(jq -r .hostname <<<"$body")"
check "no plaintext HTTP on the TLS port" \
	bash -c "! curl -s --max-time 5 http://127.0.0.1:$K2I_PORT/healthz | grep -q ok"
check "TLS 1.1 is refused" \
	bash -c "! curl -s --max-time 5 --cacert $K2I_STATE/ca.pem --tlsv1.1 --tls-max 1.1 $K2I_URL/healthz"

# --- Every route ---------------------------------------------------------------------------
for proto in --http2 --http1.1; do
	for path in / /v1/ /v1/hello /v1/proc /v1/proc/1 /v1/proc/pid/1 /v1/proc/cmd/k2i \
		/v1/proc/self /v1/k2i /v1/host /v1/config /metrics /healthz; do
		check_eq "GET $path ($proto) is 200" "200" "$(status_of $proto "$K2I_URL$path")"
	done
done

proc=$(kcurl "$K2I_URL/v1/proc")
check_eq "/v1/proc envelope: host name" "$(hostname)" "$(jq -r .host.name <<<"$proc")"
check_eq "/v1/proc envelope: boot id" "$(cat /proc/sys/kernel/random/boot_id)" \
	"$(jq -r .host.boot_id <<<"$proc")"
check_eq "/v1/proc envelope: count matches the list" "$(jq '.processes | length' <<<"$proc")" \
	"$(jq .count <<<"$proc")"
check "/v1/proc objects carry every documented field" jq -e '.processes[] | select(.pid == 1) |
	has("key") and has("pid") and has("ppid") and has("uid") and has("user") and has("gid")
	and has("state") and has("comm") and has("cmdline") and has("exe") and has("threads")
	and has("nice") and has("cpu_percent") and has("cpu_time_ms") and has("rss_kb")
	and has("vsz_kb") and has("mem_percent") and has("tty") and has("start_time")
	and has("cgroup") and has("container_id") and has("ns") and has("instance")
	and (has("environ") | not)' <<<"$proc"
check "key is boot id + start ticks + pid" jq -e --arg b "$(cat /proc/sys/kernel/random/boot_id)" \
	'.processes[0].key | test("^" + $b + ":[0-9]+:[0-9]+$")' <<<"$proc"
check "start_time is RFC 3339" jq -e \
	'.processes[0].start_time | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?Z$")' \
	<<<"$proc"
self=$(kcurl "$K2I_URL/v1/proc/self")
check_eq "/v1/proc/self is k2i" "$K2I_PID k2i" "$(jq -r '"\(.pid) \(.comm)"' <<<"$self")"
check_eq "/v1/k2i is k2i (the original route)" "$K2I_PID" "$(kcurl "$K2I_URL/v1/k2i" | jq .pid)"
check_eq "/v1/proc/{pid}" "$K2I_PID" "$(kcurl "$K2I_URL/v1/proc/$K2I_PID" | jq .pid)"
check_eq "/v1/proc/pid/{pid}" "$K2I_PID" "$(kcurl "$K2I_URL/v1/proc/pid/$K2I_PID" | jq .pid)"
check "/v1/proc/cmd/{comm} lists k2i (substring match)" jq -e --argjson p "$K2I_PID" \
	'[.processes[].pid] | index($p) != null' <<<"$(kcurl "$K2I_URL/v1/proc/cmd/2i")"
check "/v1/host has kernel, load, cpus, memory" jq -e \
	'.kernel.release and (.load | length == 3) and .cpus >= 1 and .memory.total_kb > 0' \
	<<<"$(kcurl "$K2I_URL/v1/host")"
check "/v1/config shows the effective listen address and no secrets" jq -e \
	'.listen == ["127.0.0.1:0"] and .scan_max_age_ms == 1000' \
	<<<"$(kcurl "$K2I_URL/v1/config")"
check_eq "/healthz" "ok" "$(kcurl "$K2I_URL/healthz" | jq -r .status)"

# --- Filters -------------------------------------------------------------------------------
sleep 300 &
SLEEPER=$!
T_PIDS+=("$SLEEPER")
sleep 1.2 # past scan_max_age_ms, so the next request rescans /proc
f=$(kcurl "$K2I_URL/v1/proc?pid=$SLEEPER,1&fields=pid,comm")
check_eq "pid filter and fields" "[{\"pid\":1,\"comm\":\"$(cat /proc/1/comm)\"},{\"pid\":$SLEEPER,\"comm\":\"sleep\"}]" \
	"$(jq -c .processes <<<"$f")"
check "comm filter" jq -e --argjson p "$SLEEPER" '[.processes[].pid] | index($p) != null' \
	<<<"$(kcurl "$K2I_URL/v1/proc?comm=sleep&fields=pid")"
check "match filter (cmdline substring)" jq -e --argjson p "$SLEEPER" \
	'[.processes[].pid] == [$p] or ([.processes[].pid] | index($p) != null)' \
	<<<"$(kcurl "$K2I_URL/v1/proc?match=sleep%20300&fields=pid")"
check "user filter" jq -e '.count > 0 and all(.processes[]; .user == "root")' \
	<<<"$(kcurl "$K2I_URL/v1/proc?user=root&fields=pid,user")"
check "state filter" jq -e 'all(.processes[]; .state == "S")' \
	<<<"$(kcurl "$K2I_URL/v1/proc?state=S&fields=pid,state")"
check "sort=-rss and limit" jq -e '.count == 3 and .processes[0].rss_kb >= .processes[1].rss_kb
	and .processes[1].rss_kb >= .processes[2].rss_kb' \
	<<<"$(kcurl "$K2I_URL/v1/proc?sort=-rss&limit=3&fields=pid,rss_kb")"
mycg=$(sed -n 's/^0:://p' /proc/self/cgroup)
check "cgroup prefix filter" jq -e --arg c "$mycg" \
	'.count > 0 and all(.processes[]; .cgroup | startswith($c))' \
	<<<"$(kcurl "$K2I_URL/v1/proc?cgroup=$mycg&fields=pid,cgroup")"
check "threads=1 lists threads with tid" jq -e 'all(.processes[]; has("tid"))' \
	<<<"$(kcurl "$K2I_URL/v1/proc?threads=1&fields=pid,tid")"

# A process's cmdline is cached for proc_cache_ttl_ms, but an exec must show at once.
bash -c 'sleep 1.5; exec sleep 302' &
EXECER=$!
T_PIDS+=("$EXECER")
sleep 0.3
check_eq "cmdline before exec" "bash -c sleep 1.5; exec sleep 302" \
	"$(kcurl "$K2I_URL/v1/proc/$EXECER?fields=cmdline" | jq -r '.cmdline | join(" ")')"
sleep 2.5
check_eq "cmdline after exec (cache invalidated by the exec)" "sleep 302" \
	"$(kcurl "$K2I_URL/v1/proc?pid=$EXECER&fields=cmdline" | jq -r '.processes[0].cmdline | join(" ")')"

# --- Agreement with ps ---------------------------------------------------------------------
# A kworker's name carries the workqueue it last ran ("kworker/u8:2-events"), which changes at any
# time: compare kworkers by the name before the '-'. k2i itself is running while it scans.
# Kernel threads (children of kthreadd, pid 2) wake up at any moment, so their state is not
# compared.
norm() {
	sed -E 's#^ *##; s#^([0-9]+ [0-9]+ [^ ]+ [A-Za-z] kworker/[^-]*)-.*#\1#' |
		awk '$1 == 2 || $2 == 2 { $4 = "-" } { print }'
}
ps_snap() { ps -eo pid=,ppid=,user:64=,stat=,comm= | awk '{ $4 = substr($4, 1, 1); print }' | norm | sort; }
ps_snap >"$T_TMP/ps1"
kcurl "$K2I_URL/v1/proc?fields=pid,ppid,user,state,comm" |
	jq -r '.processes[] | "\(.pid) \(.ppid) \(.user) \(.state) \(.comm)"' | norm | sort >"$T_TMP/k2i"
ps_snap >"$T_TMP/ps2"
# Processes that look the same in two ps runs around the k2i request are stable: each must
# appear in k2i's answer identically.
comm -12 "$T_TMP/ps1" "$T_TMP/ps2" | grep -v -E "^$K2I_PID | (ps|curl|jq|sort|awk|sed)$" >"$T_TMP/stable"
missing=$(comm -23 "$T_TMP/stable" "$T_TMP/k2i")
check_eq "/v1/proc agrees with ps -eo pid,ppid,user,stat,comm ($(wc -l <"$T_TMP/stable") processes)" "" "$missing"

# --- Authentication ------------------------------------------------------------------------
s=$(curl -s --cacert "$K2I_STATE/ca.pem" -o "$T_TMP/noauth" -w '%{http_code}' "$K2I_URL/v1/proc")
check_eq "no client certificate: 401" "401" "$s"
check "401 body is a JSON error" jq -e '.error.code == 401 and (.error.message | length > 0)' "$T_TMP/noauth"
check_eq "no client certificate: /healthz still answers" "200" \
	"$(curl -s --cacert "$K2I_STATE/ca.pem" -o /dev/null -w '%{http_code}' "$K2I_URL/healthz")"
mkdir -p "$T_TMP/other"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=evil \
	-keyout "$T_TMP/other/key.pem" -out "$T_TMP/other/cert.pem" 2>/dev/null
s=$(curl -s --cacert "$K2I_STATE/ca.pem" --cert "$T_TMP/other/cert.pem" --key "$T_TMP/other/key.pem" \
	-o "$T_TMP/wrong" -w '%{http_code}' "$K2I_URL/v1/proc")
check_eq "client certificate from another CA: 403" "403" "$s"
check "403 body is a JSON error" jq -e '.error.code == 403' "$T_TMP/wrong"
s=$(curl -s --http2 --cacert "$K2I_STATE/ca.pem" -o /dev/null -w '%{http_code}' "$K2I_URL/v1/host")
check_eq "no client certificate over h2: 401" "401" "$s"

# --- Bad requests --------------------------------------------------------------------------
check_eq "unknown route: 404" "404" "$(status_of "$K2I_URL/nope")"
check "404 body is a JSON error" jq -e '.error.code == 404' <<<"$(kcurl "$K2I_URL/nope")"
check_eq "bad pid filter: 400" "400" "$(status_of "$K2I_URL/v1/proc?pid=abc")"
check "400 names the parameter" jq -e '.error.message | test("pid")' \
	<<<"$(kcurl "$K2I_URL/v1/proc?pid=abc")"
check_eq "unknown field: 400" "400" "$(status_of "$K2I_URL/v1/proc?fields=pid,nosuch")"
check_eq "unknown parameter: 400" "400" "$(status_of "$K2I_URL/v1/proc?bogus=1")"
check_eq "bad sort key: 400" "400" "$(status_of "$K2I_URL/v1/proc?sort=-nosuch")"
check_eq "limit out of range: 400" "400" "$(status_of "$K2I_URL/v1/proc?limit=0")"
check_eq "bad percent-escape: 400" "400" "$(status_of "$K2I_URL/v1/proc?match=%zz")"
check_eq "pid out of range: 400" "400" "$(status_of "$K2I_URL/v1/proc/99999999")"
check_eq "no such process: 404" "404" "$(status_of "$K2I_URL/v1/proc/4194303")"
check_eq "filter on a single-process route: 400" "400" "$(status_of "$K2I_URL/v1/proc/1?user=x")"
big=$(head -c 20000 /dev/zero | tr '\0' a)
check_eq "oversized header (h1): 400" "400" "$(status_of --http1.1 -H "X-Big: $big" "$K2I_URL/v1/host")"
check_eq "oversized header (h2): 400" "400" "$(status_of --http2 -H "X-Big: $big" "$K2I_URL/v1/host")"
check_eq "oversized query (h1): 400" "400" "$(status_of --http1.1 "$K2I_URL/v1/proc?match=$big")"
check_eq "oversized query (h2): 400" "400" "$(status_of --http2 "$K2I_URL/v1/proc?match=$big")"
check_eq "POST: 405" "405" "$(status_of -X POST "$K2I_URL/v1/proc")"
check "405 carries Allow" bash -c "curl -sS -D - -o /dev/null --cacert $K2I_STATE/ca.pem \
	--cert $K2I_STATE/client.pem --key $K2I_STATE/client.key -X DELETE $K2I_URL/v1/proc |
	grep -qi '^allow: GET, HEAD'"
check_eq "request body: 413" "413" "$(status_of --http1.1 -X PUT --data x "$K2I_URL/v1/proc")"
check_eq "dot segments: 400" "400" "$(status_of --path-as-is "$K2I_URL/v1/../v1/proc")"
check_eq "HEAD: 200, no body" "200 0" \
	"$(kcurl -I -o /dev/null -w '%{http_code} %{size_download}' "$K2I_URL/v1/host")"
raw=$(printf 'GARBAGE\r\n\r\n' | timeout 5 openssl s_client -quiet -connect 127.0.0.1:$K2I_PORT \
	-CAfile "$K2I_STATE/ca.pem" -cert "$K2I_STATE/client.pem" -key "$K2I_STATE/client.key" 2>/dev/null)
check "malformed request line: 400 JSON" grep -q '^HTTP/1.1 400' <<<"$raw"
raw=$(printf 'GET / HTTP/3.0\r\n\r\n' | timeout 5 openssl s_client -quiet -connect 127.0.0.1:$K2I_PORT \
	-CAfile "$K2I_STATE/ca.pem" -cert "$K2I_STATE/client.pem" -key "$K2I_STATE/client.key" 2>/dev/null)
check "unsupported HTTP version: 505" grep -q '^HTTP/1.1 505' <<<"$raw"

# --- Metrics -------------------------------------------------------------------------------
kcurl "$K2I_URL/metrics" >"$T_TMP/metrics"
check "/metrics passes promtool check metrics" promtool check metrics <"$T_TMP/metrics"
check "/metrics counts requests by route and code" \
	grep -q '^k2i_http_requests_total{route="proc",code="400",proto="' "$T_TMP/metrics"
check "/metrics has scan durations" grep -q '^k2i_scan_duration_seconds_count [1-9]' "$T_TMP/metrics"
check "/metrics counts auth failures" grep -q '^k2i_auth_failures_total [1-9]' "$T_TMP/metrics"

# Requests within scan_max_age_ms (1 s by default) share one /proc walk.
hits0=$(kcurl "$K2I_URL/metrics" | sed -n 's/^k2i_scan_cache_hits_total //p')
kcurl -o /dev/null -o /dev/null -o /dev/null -o /dev/null -o /dev/null "$K2I_URL/v1/proc" \
	"$K2I_URL/v1/proc" "$K2I_URL/v1/proc" "$K2I_URL/v1/proc" "$K2I_URL/v1/proc"
hits1=$(kcurl "$K2I_URL/metrics" | sed -n 's/^k2i_scan_cache_hits_total //p')
check "a burst of requests shares one scan ($((hits1 - hits0)) of 5 from the cache)" \
	test $((hits1 - hits0)) -ge 3

check "k2i is still running after all of that" kill -0 "$K2I_PID"
check "k2i logged no error" bash -c "! grep -E ' (err|crit|alert|emerg):' $K2I_LOG"
kill -TERM "$K2I_PID"
wait "$K2I_PID"
check_eq "k2i exits 0 on SIGTERM" "0" "$?"
check "no sanitizer report (leaks, UB) in k2i's log" bash -c "! grep -q -i -E 'sanitizer|runtime error' $K2I_LOG"

# --- Bearer tokens -------------------------------------------------------------------------
printf '# tokens\nsecret-token-1\nsha256:%s\n' "$(printf 'token-two' | sha256sum | cut -c1-64)" \
	>"$T_TMP/tokens"
chmod 600 "$T_TMP/tokens"
k2i_start tok --token-file "$T_TMP/tokens" || not_ok "k2i starts with a token file"
s=$(curl -s --cacert "$K2I_STATE/ca.pem" -H 'Authorization: Bearer secret-token-1' -o /dev/null \
	-w '%{http_code}' "$K2I_URL/v1/proc/self")
check_eq "bearer token without client certificate: 200" "200" "$s"
s=$(curl -s --cacert "$K2I_STATE/ca.pem" -H 'Authorization: Bearer token-two' -o /dev/null \
	-w '%{http_code}' "$K2I_URL/v1/proc/self")
check_eq "bearer token stored as sha256: 200" "200" "$s"
s=$(curl -s --cacert "$K2I_STATE/ca.pem" -H 'Authorization: Bearer wrong' -D "$T_TMP/h" -o /dev/null \
	-w '%{http_code}' "$K2I_URL/v1/proc/self")
check_eq "wrong bearer token: 401" "401" "$s"
check "401 carries WWW-Authenticate" grep -qi '^www-authenticate: Bearer' "$T_TMP/h"
chmod 644 "$T_TMP/tokens"
check "a world-readable token file is refused at start-up" bash -c \
	"! timeout 5 $B/bin/k2i --state-dir $K2I_STATE --listen 127.0.0.1:0 --config /dev/null --token-file $T_TMP/tokens 2>/dev/null"

# --- Command line --------------------------------------------------------------------------
printf 'listen = 127.0.0.1:1\nscan_max_age_ms = 5\n' >"$T_TMP/good.conf"
check "--check-config accepts a good file" bash -c \
	"$B/bin/k2i --config $T_TMP/good.conf --check-config | grep -q '^scan_max_age_ms = 5$'"
printf 'listen = 127.0.0.1:1\nscan_max_age_ms = lots\n' >"$T_TMP/bad.conf"
out=$("$B/bin/k2i" --config "$T_TMP/bad.conf" --check-config 2>&1)
check_eq "--check-config rejects a bad file (exit 1)" "1" "$?"
check "... naming the line" grep -q 'bad.conf:2' <<<"$out"
check "the shipped deploy/k2i.conf passes --check-config" \
	"$B/bin/k2i" --config deploy/k2i.conf --check-config
"$B/bin/k2i" --no-such-flag >/dev/null 2>&1
check_eq "usage error exits 2" "2" "$?"

done_testing
