/* SPDX-License-Identifier: MIT */
/* The sandbox policy: parsing, path-prefix decisions, network rules, the filter. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#include <cmocka.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>

#include "libcommon/cleanup.h"
#include "sandbox/syscall/policy.h"

static int parse(struct policy *p, const char *text, char **err)
{
	return policy_parse_string(p, "test", text, strlen(text), err);
}

static void test_defaults(void **state)
{
	struct policy p;
	assert_int_equal(policy_init(&p), 0);
	assert_int_equal(policy_access_for(&p, "/usr/bin/ls"), POLICY_RO);
	assert_int_equal(policy_access_for(&p, "/"), POLICY_RO);
	assert_int_equal(policy_access_for(&p, "/tmp"), POLICY_RW);
	assert_int_equal(policy_access_for(&p, "/tmp/a/b"), POLICY_RW);
	assert_int_equal(policy_access_for(&p, "/tmpx"), POLICY_RO);
	assert_int_equal(policy_access_for(&p, "/root"), POLICY_HIDE);
	assert_int_equal(policy_access_for(&p, "/root/.bashrc"), POLICY_HIDE);
	assert_int_equal(policy_access_for(&p, "/home/alice/.ssh/id_ed25519"), POLICY_HIDE);
	assert_int_equal(policy_access_for(&p, "/home/alice/notes"), POLICY_RO);
	assert_int_equal(policy_access_for(&p, "/etc/shadow"), POLICY_HIDE);
	assert_int_equal(policy_access_for(&p, "/etc/passwd"), POLICY_RO);
	assert_int_equal(policy_access_for(&p, "/proc/12/oom_score_adj"), POLICY_RW);
	assert_int_equal(policy_access_for(&p, "/proc/sys/kernel/hostname"), POLICY_RO);
	assert_int_equal(policy_access_for(&p, "/proc/1/mem"), POLICY_HIDE);
	assert_int_equal(policy_access_for(&p, "/proc/12/task/13/mem"), POLICY_HIDE);
	assert_int_equal(policy_access_for(&p, "/proc/12/task/13/comm"), POLICY_RW);
	assert_true(policy_exec_for(&p, "/usr/bin/ls"));
	assert_true(policy_exec_for(&p, "/tmp/a.out"));
	assert_false(policy_exec_for(&p, "/etc/passwd"));
	assert_false(policy_exec_for(&p, "/dev/shm/x"));
	assert_int_equal(p.net, POLICY_NET_NONE);
	assert_true(p.rlimit_set[POLICY_RLIMIT_CORE]);
	policy_done(&p);
}

static void test_specificity_and_order(void **state)
{
	struct policy p;
	assert_int_equal(policy_init(&p), 0);
	assert_int_equal(parse(&p,
			       "# a comment\n"
			       "\n"
			       "rw /srv\n"
			       "ro /srv/data\n"
			       "hide /srv/data/keys\n"
			       "rw /srv/data/keys/public\n"
			       "noexec /tmp\n"
			       "exec /srv/bin\n",
			       NULL),
			 0);
	assert_int_equal(policy_access_for(&p, "/srv/x"), POLICY_RW);
	assert_int_equal(policy_access_for(&p, "/srv/data/x"), POLICY_RO);
	assert_int_equal(policy_access_for(&p, "/srv/data/keys/k"), POLICY_HIDE);
	assert_int_equal(policy_access_for(&p, "/srv/data/keys/public/k"), POLICY_RW);
	/* A prefix covers whole components only. */
	assert_int_equal(policy_access_for(&p, "/srv/database"), POLICY_RW);
	assert_false(policy_exec_for(&p, "/tmp/a.out"));
	assert_true(policy_exec_for(&p, "/srv/bin/tool"));
	/* Same specificity: the later rule wins. */
	assert_int_equal(parse(&p, "ro /srv\n", NULL), 0);
	assert_int_equal(policy_access_for(&p, "/srv/x"), POLICY_RO);
	policy_done(&p);
}

static void test_globs(void **state)
{
	struct policy p = {};
	assert_int_equal(parse(&p, "ro /\nhide /home/*/.ssh\nhide /var/lib/[ab]?\n", NULL), 0);
	assert_int_equal(policy_access_for(&p, "/home/bob/.ssh"), POLICY_HIDE);
	assert_int_equal(policy_access_for(&p, "/home/bob/.ssh/config"), POLICY_HIDE);
	/* "*" matches one component, never a '/'. */
	assert_int_equal(policy_access_for(&p, "/home/a/b/.ssh"), POLICY_RO);
	assert_int_equal(policy_access_for(&p, "/var/lib/ax"), POLICY_HIDE);
	assert_int_equal(policy_access_for(&p, "/var/lib/cx"), POLICY_RO);
	/* No rule at all: hidden. */
	struct policy empty = {};
	assert_int_equal(policy_access_for(&empty, "/etc/passwd"), POLICY_HIDE);
	assert_false(policy_exec_for(&empty, "/usr/bin/ls"));
	policy_done(&p);
}

static void test_canonical(void **state)
{
	assert_true(policy_path_is_canonical("/"));
	assert_true(policy_path_is_canonical("/a/b.c/..d"));
	assert_false(policy_path_is_canonical(""));
	assert_false(policy_path_is_canonical("a/b"));
	assert_false(policy_path_is_canonical("/a/"));
	assert_false(policy_path_is_canonical("/a//b"));
	assert_false(policy_path_is_canonical("/a/./b"));
	assert_false(policy_path_is_canonical("/a/../b"));
	assert_false(policy_path_is_canonical("/.."));
	struct policy p = {};
	/* Non-canonical input paths are never matched by prefix: they are hidden. */
	assert_int_equal(parse(&p, "rw /\n", NULL), 0);
	assert_int_equal(policy_access_for(&p, "/tmp/../etc"), POLICY_HIDE);
	policy_done(&p);
}

static void test_errors(void **state)
{
	static const char *const bad[] = {
		"ro",
		"ro relative/path",
		"ro /a/../b",
		"ro /a b",
		"hide /x/",
		"frobnicate /x",
		"bind /a",
		"bind /a /",
		"tmpfs /",
		"net maybe",
		"memory 12",
		"memory lots",
		"pids 0",
		"pids 99999999",
		"cpu 0",
		"cpu 1.234",
		"cpu 5000000%",
		"allow-connect 1.2.3.4",
		"allow-connect 1.2.3.4 70000",
		"allow-connect 1.2.3.4/33 80",
		"allow-connect nothost 80",
		"allow-bind ::1 9-3",
		"rlimit nofile",
		"rlimit bogus 1",
		"rlimit nofile -1",
		"rootfs rel",
	};
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		struct policy p = {};
		char *err = NULL;
		int r = parse(&p, bad[i], &err);
		if (r != -EINVAL)
			fail_msg("'%s' gave %d", bad[i], r);
		assert_non_null(err);
		assert_non_null(strstr(err, "test:1: "));
		free(err);
		policy_done(&p);
	}
	/* The line number of the first bad line is reported; earlier lines stay applied. */
	struct policy p = {};
	char *err = NULL;
	assert_int_equal(parse(&p, "rw /a\nro /b\nnope\nrw /c\n", &err), -EINVAL);
	assert_string_equal(err, "test:3: unknown directive");
	assert_int_equal(policy_access_for(&p, "/b"), POLICY_RO);
	assert_int_equal(policy_access_for(&p, "/c"), POLICY_HIDE);
	free(err);
	/* NUL bytes are refused. */
	assert_int_equal(policy_parse_string(&p, "t", "rw /a\0b", 7, NULL), -EINVAL);
	policy_done(&p);
}

static void test_settings(void **state)
{
	struct policy p;
	assert_int_equal(policy_init(&p), 0);
	assert_int_equal(parse(&p,
			       "net host\nmemory 256M\npids 64\ncpu 1.5\nrlimit nofile 1024\n"
			       "rlimit as unlimited\nrootfs /srv/root\n"
			       "ro-bind /opt /opt\nbind /srv/w /w\ntmpfs /scratch\n",
			       NULL),
			 0);
	assert_int_equal(p.net, POLICY_NET_HOST);
	assert_int_equal(p.memory_max, 256ULL << 20);
	assert_int_equal(p.pids_max, 64);
	assert_int_equal(p.cpu_max_pct, 150);
	assert_true(p.rlimit_set[POLICY_RLIMIT_NOFILE]);
	assert_int_equal(p.rlimits[POLICY_RLIMIT_NOFILE], 1024);
	assert_int_equal(p.rlimits[POLICY_RLIMIT_AS], UINT64_MAX);
	assert_string_equal(p.rootfs, "/srv/root");
	assert_int_equal(p.n_mounts, 3);
	assert_int_equal(p.mounts[1].kind, POLICY_MOUNT_BIND);
	assert_string_equal(p.mounts[1].source, "/srv/w");
	/* Mounts set the access of their destination. */
	assert_int_equal(policy_access_for(&p, "/opt/x"), POLICY_RO);
	assert_int_equal(policy_access_for(&p, "/w/x"), POLICY_RW);
	assert_int_equal(policy_access_for(&p, "/scratch"), POLICY_RW);
	assert_int_equal(parse(&p, "cpu 50%\n", NULL), 0);
	assert_int_equal(p.cpu_max_pct, 50);
	policy_done(&p);
}

static bool net_ok(const struct policy *p, bool bind, const char *addr, int port)
{
	struct sockaddr_storage ss = {};
	if (strchr(addr, ':')) {
		struct sockaddr_in6 *in6 = (void *)&ss;
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		assert_int_equal(inet_pton(AF_INET6, addr, &in6->sin6_addr), 1);
		return policy_net_allowed(p, bind, (void *)&ss, sizeof(*in6));
	}
	struct sockaddr_in *in = (void *)&ss;
	in->sin_family = AF_INET;
	in->sin_port = htons((uint16_t)port);
	assert_int_equal(inet_pton(AF_INET, addr, &in->sin_addr), 1);
	return policy_net_allowed(p, bind, (void *)&ss, sizeof(*in));
}

static void test_net(void **state)
{
	struct policy p;
	assert_int_equal(policy_init(&p), 0);
	/* net none: loopback is private, everything else refused. */
	assert_true(net_ok(&p, false, "127.0.0.1", 80));
	assert_true(net_ok(&p, false, "::1", 80));
	assert_false(net_ok(&p, false, "10.0.0.1", 80));
	assert_true(net_ok(&p, true, "0.0.0.0", 8080));
	assert_int_equal(parse(&p,
			       "net host\n"
			       "allow-connect 10.1.0.0/16 443\n"
			       "allow-connect ::ffff:0:0/96 53\n"
			       "allow-connect 192.168.1.5 8000-8010\n"
			       "allow-bind * 0\n",
			       NULL),
			 0);
	assert_false(net_ok(&p, false, "127.0.0.1", 80));
	assert_true(net_ok(&p, false, "10.1.200.3", 443));
	assert_false(net_ok(&p, false, "10.2.0.1", 443));
	assert_false(net_ok(&p, false, "10.1.0.1", 444));
	assert_true(net_ok(&p, false, "192.168.1.5", 8005));
	assert_false(net_ok(&p, false, "192.168.1.5", 8011));
	/* A v4-mapped IPv6 address is judged as IPv4. */
	assert_true(net_ok(&p, false, "::ffff:10.1.2.3", 443));
	assert_true(net_ok(&p, true, "0.0.0.0", 0));
	assert_false(net_ok(&p, true, "0.0.0.0", 80));
	/* Truncated addresses are refused. */
	struct sockaddr_in in = { .sin_family = AF_INET, .sin_port = htons(443) };
	inet_pton(AF_INET, "10.1.0.1", &in.sin_addr);
	assert_false(policy_net_allowed(&p, false, (void *)&in, sizeof(in) - 1));
	assert_false(policy_net_allowed(&p, false, (void *)&in, 1));
	policy_done(&p);
}

static void test_dump_roundtrip(void **state)
{
	struct policy p, q = {};
	char *text = NULL;
	size_t len = 0;
	assert_int_equal(policy_init(&p), 0);
	assert_int_equal(parse(&p, "net host\nallow-connect 10.0.0.0/8 1-2\nmemory 1G\n", NULL), 0);
	FILE *f = open_memstream(&text, &len);
	assert_non_null(f);
	policy_dump(&p, f);
	fclose(f);
	/* The dump is itself a valid policy with the same decisions. */
	assert_int_equal(policy_parse_string(&q, "dump", text, len, NULL), 0);
	assert_int_equal(q.net, POLICY_NET_HOST);
	assert_int_equal(q.memory_max, 1ULL << 30);
	assert_int_equal(policy_access_for(&q, "/etc/shadow"), POLICY_HIDE);
	assert_int_equal(policy_access_for(&q, "/tmp/x"), POLICY_RW);
	assert_true(net_ok(&q, false, "10.9.9.9", 2));
	free(text);
	policy_done(&p);
	policy_done(&q);
}

static void test_filter(void **state)
{
	struct policy p;
	void *prog = NULL;
	size_t len = 0;
	int nrs[64];
	assert_int_equal(policy_init(&p), 0);
	assert_int_equal(policy_build_filter(&p, &prog, &len), 0);
	assert_non_null(prog);
	assert_true(len > 20 && len < 4096);
	free(prog);
	size_t n = policy_notified_syscalls(nrs, ELEMENTSOF(nrs));
	assert_true(n >= 20 && n <= ELEMENTSOF(nrs));
	bool has_openat = false, has_close = false, has_sendto = false, has_sendmsg = false;
	for (size_t i = 0; i < n; i++) {
		has_openat |= nrs[i] == SYS_openat;
		has_close |= nrs[i] == SYS_close;
		has_sendto |= nrs[i] == SYS_sendto;
		has_sendmsg |= nrs[i] == SYS_sendmsg;
	}
	assert_true(has_openat);
	assert_true(has_sendto && has_sendmsg);
	assert_false(has_close); /* never notify non-restartable calls */
	policy_done(&p);
}

/*
 * A classic-BPF interpreter for the instructions libseccomp emits (loads of seccomp_data
 * words, ALU AND, conditional jumps, returns), to run the real filter on crafted calls.
 * Anything else fails the test rather than being guessed at.
 */
static uint32_t run_filter(const struct sock_filter *f, size_t len, const struct seccomp_data *d)
{
	uint32_t acc = 0;
	for (size_t pc = 0; pc < len; pc++) {
		const struct sock_filter *i = &f[pc];
		bool jump;
		switch (i->code) {
		case BPF_LD | BPF_W | BPF_ABS:
			assert_true(i->k + 4 <= sizeof(*d) && i->k % 4 == 0);
			memcpy(&acc, (const char *)d + i->k, 4);
			continue;
		case BPF_ALU | BPF_AND | BPF_K:
			acc &= i->k;
			continue;
		case BPF_RET | BPF_K:
			return i->k;
		case BPF_JMP | BPF_JA:
			pc += i->k;
			continue;
		case BPF_JMP | BPF_JEQ | BPF_K:
			jump = acc == i->k;
			break;
		case BPF_JMP | BPF_JGT | BPF_K:
			jump = acc > i->k;
			break;
		case BPF_JMP | BPF_JGE | BPF_K:
			jump = acc >= i->k;
			break;
		case BPF_JMP | BPF_JSET | BPF_K:
			jump = (acc & i->k) != 0;
			break;
		default:
			fail_msg("unexpected BPF instruction %#x at %zu", i->code, pc);
			return 0;
		}
		pc += jump ? i->jt : i->jf;
	}
	fail_msg("the filter ran off its end");
	return 0;
}

static uint32_t verdict(const void *prog, size_t len, int nr, const uint64_t args[6])
{
	struct seccomp_data d = { .nr = nr, .arch = AUDIT_ARCH_X86_64 };
	if (args)
		memcpy(d.args, args, sizeof(d.args));
	return run_filter(prog, len, &d) & SECCOMP_RET_ACTION_FULL;
}

/* Sends: sendto is notified exactly when it names a destination (any of the 64 bits), sendmsg
 * and sendmmsg always; send() is sendto(NULL) on x86-64 and stays in the kernel. */
static void test_filter_sends(void **state)
{
	struct policy p;
	void *prog = NULL;
	size_t len = 0;
	const uint64_t no_addr[6] = { 3, 0x1000, 10, 0, 0, 0 };
	const uint64_t addr[6] = { 3, 0x1000, 10, 0, 0x7ffc12340000, 16 };
	const uint64_t addr_high[6] = { 3, 0x1000, 10, 0, 1ULL << 32, 16 };
	assert_int_equal(policy_init(&p), 0);
	for (int net = 0; net < 2; net++) {
		assert_int_equal(parse(&p, net ? "net host\n" : "net none\n", NULL), 0);
		assert_int_equal(policy_build_filter(&p, &prog, &len), 0);
		assert_int_equal(verdict(prog, len, SYS_sendto, no_addr), SECCOMP_RET_ALLOW);
		assert_int_equal(verdict(prog, len, SYS_sendto, addr), SECCOMP_RET_USER_NOTIF);
		assert_int_equal(verdict(prog, len, SYS_sendto, addr_high), SECCOMP_RET_USER_NOTIF);
		assert_int_equal(verdict(prog, len, SYS_sendmsg, no_addr), SECCOMP_RET_USER_NOTIF);
		assert_int_equal(verdict(prog, len, SYS_sendmmsg, no_addr), SECCOMP_RET_USER_NOTIF);
		assert_int_equal(verdict(prog, len, SYS_connect, no_addr), SECCOMP_RET_USER_NOTIF);
		assert_int_equal(verdict(prog, len, SYS_write, no_addr), SECCOMP_RET_ALLOW);
		assert_int_equal(verdict(prog, len, SYS_recvmsg, no_addr), SECCOMP_RET_ALLOW);
		assert_int_equal(verdict(prog, len, SYS_close, no_addr), SECCOMP_RET_ALLOW);
		assert_int_equal(verdict(prog, len, SYS_bpf, no_addr), SECCOMP_RET_ERRNO);
		free(prog);
		prog = NULL;
	}
	policy_done(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults), cmocka_unit_test(test_specificity_and_order),
		cmocka_unit_test(test_globs),	 cmocka_unit_test(test_canonical),
		cmocka_unit_test(test_errors),	 cmocka_unit_test(test_settings),
		cmocka_unit_test(test_net),	 cmocka_unit_test(test_dump_roundtrip),
		cmocka_unit_test(test_filter),	 cmocka_unit_test(test_filter_sends),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
