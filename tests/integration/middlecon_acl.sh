#!/bin/bash
# SPDX-License-Identifier: MIT
#
# middlecon's ACL over the real socket: a relay with rules for a protected prefix; a client
# running as nobody (setpriv) is DENIED there for register, call, subscribe and publish and
# allowed on an open prefix; root is allowed by the rules. Also --check-config's errors.
. "$(dirname "$0")/lib.sh"

MC=$B/tests/mc_client
[ -x "$B/bin/middlecon" ] && [ -x "$MC" ] || skip_all "build middlecon and mc_client first"
[ "$(id -u)" = 0 ] || skip_all "needs root to run a client as another uid"
need setpriv
NOBODY=(setpriv --reuid=65534 --regid=65534 --clear-groups)
"${NOBODY[@]}" true 2>/dev/null || skip_all "setpriv cannot switch to uid 65534"

# The socket is 0666 and its directory 0755; nobody must also be able to reach them.
chmod 0755 "$T_TMP"
CONF=$T_TMP/middlecon.conf
cat >"$CONF" <<'CONF'
# vm.* is for root only; open.* for anyone; "$sys" needs no rule (the default is allow).
acl_default = allow
allow_register = vm. uid=root
allow_call = vm. uid=0,gid=0
deny_call = vm.public.stats uid=0
allow_register = open. *
CONF

check "--check-config accepts the rules" "$B/bin/middlecon" --config "$CONF" --check-config \
	--rundir "$T_TMP/run" --state-dir "$T_TMP/state"
out=$("$B/bin/middlecon" --config "$CONF" --check-config --rundir "$T_TMP/run" --state-dir "$T_TMP/state")
check "--check-config prints the rules with numeric ids" grep -qx 'allow_call = vm. uid=0 gid=0' <<<"$out"
check "--check-config prints acl_default" grep -qx 'acl_default = allow' <<<"$out"

bad_conf() {
	printf '%s\n' "$@" >"$T_TMP/bad.conf"
	"$B/bin/middlecon" --config "$T_TMP/bad.conf" --check-config --rundir "$T_TMP/run" \
		--state-dir "$T_TMP/state" 2>&1 >/dev/null
}
out=$(bad_conf '# comment' 'allow_call = vm. uid=no-such-user-xyz')
check "unknown user: error with file and line" grep -q "bad.conf:2: allow_call: unknown user 'no-such-user-xyz'" <<<"$out"
out=$(bad_conf 'allow_register = vm.' )
check "rule without principal is an error" grep -q "bad.conf:1: allow_register: .*prefix and at least one principal" <<<"$out"
out=$(bad_conf 'deny_call = vm. pid=3')
check "unknown principal kind is an error" grep -q "invalid principal 'pid=3'" <<<"$out"
out=$(bad_conf 'acl_default = maybe')
check "acl_default must be allow or deny" grep -q "acl_default must be 'allow' or 'deny'" <<<"$out"

mc_start "$CONF"

mc() { timeout 10 "$MC" -s "$SOCK" "$@"; }
mc_nobody() { timeout 10 "${NOBODY[@]}" "$MC" -s "$SOCK" "$@"; }

serve_bg() {
	local out=$1
	shift
	"$@" >"$out" &
	SRV_PID=$!
	T_PIDS+=("$SRV_PID")
	for _ in $(seq 1 100); do
		grep -q '^ready' "$out" 2>/dev/null && return 0
		sleep 0.02
	done
	return 1
}

check_eq "nobody can connect and PING" PONG "$(mc_nobody ping)"

# Register.
check_eq "nobody: REGISTER on the protected prefix is DENIED" "register DENIED" \
	"$(mc_nobody serve vm.x.pause)"
check_eq "nobody: a wildcard reaching the protected prefix is DENIED" "register DENIED" \
	"$(mc_nobody serve '>')"
check_eq "nobody: '*.x.pause' could reach vm.x.pause, DENIED" "register DENIED" \
	"$(mc_nobody serve '*.x.pause')"
serve_bg "$T_TMP/open.out" "${NOBODY[@]}" "$MC" -s "$SOCK" serve open.echo
check "nobody: REGISTER on the open prefix is allowed" grep -q '^ready' "$T_TMP/open.out"
serve_bg "$T_TMP/vm.out" "$MC" -s "$SOCK" serve 'vm.*.pause' --reply paused
check "root: REGISTER on the protected prefix is allowed" grep -q '^ready' "$T_TMP/vm.out"

# Call.
out=$(mc_nobody call vm.abc.pause x)
check_eq "nobody: REQUEST on the protected prefix is DENIED" DENIED "$(cut -d' ' -f1 <<<"$out")"
check "the DENIED reply names the rule" grep -q "uid 65534 gid 65534 may not call 'vm.abc.pause' (ACL rule for 'vm.')" <<<"$out"
check_eq "nobody: REQUEST on the open prefix is allowed" "OK hi" "$(mc_nobody call open.echo hi)"
check "the responder sees uid 65534" grep -q "^request hi uid=65534 node=$(hostname)\$" "$T_TMP/open.out"
check_eq "root: REQUEST on the protected prefix is allowed" "OK paused" "$(mc call vm.abc.pause x)"
check_eq "root: a deny rule naming uid 0 refuses root" DENIED "$(mc call vm.public.stats x | cut -d' ' -f1)"
check_eq "root: calls the open prefix" "OK hi" "$(mc call open.echo hi)"

# Subscribe and publish are governed by the call rules.
check_eq "nobody: SUBSCRIBE on the protected prefix is DENIED" "subscribe DENIED" \
	"$(mc_nobody sub 'vm.>' --count 1)"
check_eq "nobody: PUBLISH on the protected prefix is DENIED" DENIED "$(mc_nobody pub vm.ev x)"
check "nobody: PUBLISH elsewhere is accepted" mc_nobody pub open.ev x

out=$(mc call '$sys.stats' x)
check "\$sys.stats counts DENIED" grep -q '"DENIED":[1-9]' <<<"$out"
check "daemon still running" kill -0 "$MC_PID"

# acl_default = deny: nobody is refused where no rule speaks, root is not.
kill -TERM "$MC_PID"
wait "$MC_PID"
check_eq "exit status 0 on SIGTERM" 0 "$?"
printf 'acl_default = deny\nallow_call = open. *\n' >"$T_TMP/deny.conf"
"$B/bin/middlecon" --config "$T_TMP/deny.conf" --rundir "$RUN" --state-dir "$T_TMP/state" \
	2>>"$LOG" &
MC_PID=$!
T_PIDS+=("$MC_PID")
for _ in $(seq 1 100); do
	[ -S "$SOCK" ] && break
	sleep 0.05
done
check_eq "acl_default=deny: nobody's REQUEST elsewhere is DENIED" DENIED \
	"$(mc_nobody call other.x x | cut -d' ' -f1)"
check "acl_default=deny: the reply names acl_default" grep -q '(acl_default)' <<<"$(mc_nobody call other.x x)"
check_eq "acl_default=deny: nobody's REQUEST on an allowed prefix passes the ACL" NO_RESPONDERS \
	"$(mc_nobody call open.x x | cut -d' ' -f1)"
check_eq "acl_default=deny: root is still allowed" NO_RESPONDERS "$(mc call other.x x | cut -d' ' -f1)"
kill -TERM "$MC_PID"
wait "$MC_PID"
check "no sanitizer report" test -z "$(grep -E 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$LOG")"
done_testing
