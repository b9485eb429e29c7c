/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "k2i/procinfo.h"
#include "tests/unit/proc_fixture.h"

#define ID64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define ID64B "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
#define F(x) PROC_FIELD_BIT(PROC_FIELD_##x)

static const char stat_line[] =
	"1234 (bash) S 1000 1234 1234 34819 1300 4194560 2000 10 3 0 150 50 0 0 20 -5 3 0 "
	"98765 123456789 2560 18446744073709551615 94000000000000 94000000004096 "
	"140737488347136 0 0 0 65536 3686404 1266761467 1 0 0 17 1 0 0 0 0 0 94000000010000 "
	"94000000011000 94000000012000 140737488349000 140737488350000 140737488351000 "
	"140737488352000 0\n";

static void test_parse_stat_basic(void **state)
{
	struct proc_stat st;

	assert_int_equal(proc_parse_stat(stat_line, strlen(stat_line), &st), 0);
	assert_int_equal(st.pid, 1234);
	assert_int_equal(st.comm_len, 4);
	assert_memory_equal(st.comm, "bash", 4);
	assert_int_equal(st.state, 'S');
	assert_int_equal(st.ppid, 1000);
	assert_int_equal(st.tty_nr, 34819);
	assert_int_equal(st.flags, 4194560);
	assert_int_equal(st.utime, 150);
	assert_int_equal(st.stime, 50);
	assert_int_equal(st.nice, -5);
	assert_int_equal(st.num_threads, 3);
	assert_int_equal(st.start_ticks, 98765);
	assert_int_equal(st.vsize, 123456789);
	assert_int_equal(st.rss, 2560);
	assert_true(st.start_code == 94000000000000ULL);
	assert_true(st.end_code == 94000000004096ULL);
	assert_true(st.start_stack == 140737488347136ULL);
	assert_true(st.arg_start == 140737488349000ULL);
	assert_true(st.arg_end == 140737488350000ULL);

	/* Only up to rss (field 24), as very old kernels print: the rest reads as 0. */
	{
		static const char short_line[] =
			"7 (init) R 0 7 7 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 5 6 7";

		assert_int_equal(proc_parse_stat(short_line, strlen(short_line), &st), 0);
		assert_int_equal(st.rss, 7);
		assert_int_equal(st.start_code, 0);
		assert_int_equal(st.arg_end, 0);
	}
}

static void test_parse_stat_tricky_comm(void **state)
{
	/* comm may hold spaces, parentheses and newlines: it ends at the LAST ')'. */
	static const char line[] = "42 (a) (b\nc) R 1 42 42 0 -1 0 0 0 0 0 7 3 0 0 20 0 1 0 "
				   "500 4096 1 0 0 0 0";
	static const char empty[] = "43 () S 1 43 43 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 9 0 0";
	static const char parens[] = "44 ())) S 1 44 44 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 9 0 0";
	struct proc_stat st;

	assert_int_equal(proc_parse_stat(line, strlen(line), &st), 0);
	assert_int_equal(st.comm_len, strlen("a) (b\nc"));
	assert_memory_equal(st.comm, "a) (b\nc", st.comm_len);
	assert_int_equal(st.state, 'R');
	assert_int_equal(st.utime, 7);
	assert_int_equal(st.start_ticks, 500);

	assert_int_equal(proc_parse_stat(empty, strlen(empty), &st), 0);
	assert_int_equal(st.comm_len, 0);
	assert_int_equal(proc_parse_stat(parens, strlen(parens), &st), 0);
	assert_int_equal(st.comm_len, 2); /* "(" + "))" + ")" */
	assert_memory_equal(st.comm, "))", 2);
}

static void test_parse_stat_malformed(void **state)
{
	static const char *const bad[] = {
		"",
		"1234",
		"1234 (bash",
		"1234 bash) S",
		"1234 (bash) S",
		"1234 (bash) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19", /* ends early */
		"x (bash) S 1 1 1 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 5 6 7",
		"-1 (bash) S 1 1 1 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 5 6 7",
		"1 2 (bash) S 1 1 1 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 5 6 7",
		"1 (bash) SS 1 1 1 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 5 6 7",
		"1 (bash) S x 1 1 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 5 6 7",
		"1 (bash) S 1 1 1 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 99999999999999999999 6 7",
		"1 (bash) S 1 1 1 0 -1 0 0 0 0 0 -1 2 0 0 20 0 1 0 5 6 7",
		"1 (bash) S 1 1 1 0 -1 0 0 0 0 0 1 2 0 0 20 9999999999 1 0 5 6 7",
		"1 (bash) S 1 1 1 0 -1 0 0 0 0 0 1 2 0 0 20 0 -3 0 5 6 7",
		"1 (bash) S 1 1 1 0 -1 4294967296 0 0 0 0 1 2 0 0 20 0 1 0 5 6 7",
	};
	struct proc_stat st = { .pid = 99 };

	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		int r = proc_parse_stat(bad[i], strlen(bad[i]), &st);

		if (r != -EBADMSG)
			fail_msg("accepted bad stat #%zu '%s' (%d)", i, bad[i], r);
	}
	assert_int_equal(st.pid, 99); /* untouched on failure */

	/* The length bounds the parse: a valid line cut short is rejected, bytes after ignored. */
	assert_int_equal(proc_parse_stat(stat_line, 60, &st), -EBADMSG);
}

static void test_parse_status(void **state)
{
	static const char status[] =
		"Name:\tbash\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t1234\n"
		"Pid:\t1235\nPPid:\t1\nUid:\t1000\t1001\t1002\t1003\n"
		"Gid:\t100\t101\t102\t103\nGroups:\t4 24\n";
	struct proc_status st;

	assert_int_equal(proc_parse_status(status, strlen(status), &st), 0);
	assert_true(st.has_uid && st.has_gid && st.has_tgid);
	assert_int_equal(st.uid, 1001); /* the effective one */
	assert_int_equal(st.gid, 101);
	assert_int_equal(st.tgid, 1234);

	assert_int_equal(proc_parse_status("Name:\tx\n", 8, &st), 0);
	assert_false(st.has_uid || st.has_gid || st.has_tgid);
	assert_int_equal(proc_parse_status("Uid:\tabc\t1\n", 11, &st), -EBADMSG);
	assert_int_equal(proc_parse_status("Uid:\t1000\n", 10, &st), -EBADMSG);
	assert_int_equal(proc_parse_status("Gid:\t1\t4294967296\n", 18, &st), -EBADMSG);
	assert_int_equal(proc_parse_status("Tgid:\t-4\n", 9, &st), -EBADMSG);
	/* "Uidx:" is another key, not Uid. */
	assert_int_equal(proc_parse_status("Uidx:\tz\n", 8, &st), 0);
	assert_false(st.has_uid);
}

static void test_parse_cgroup(void **state)
{
	static const char v2[] = "0::/user.slice/user-1000.slice/session-3.scope\n";
	static const char hybrid[] =
		"12:memory:/docker/abc\n1:name=systemd:/system.slice/x\n0::/\n";
	static const char v1[] = "4:memory:/m\n3:cpu,cpuacct:/c\n1:name=systemd:/system.slice/s\n";
	static const char v1_plain[] = "4:memory:/m\n3:cpu:/c\n";
	static const char colon[] = "0::/a:b:c\n";
	const char *p;
	size_t n;

	assert_int_equal(proc_parse_cgroup(v2, strlen(v2), &p, &n), 0);
	assert_int_equal(n, strlen("/user.slice/user-1000.slice/session-3.scope"));
	assert_memory_equal(p, "/user.slice/user-1000.slice/session-3.scope", n);
	assert_int_equal(proc_parse_cgroup(hybrid, strlen(hybrid), &p, &n), 0);
	assert_int_equal(n, 1);
	assert_memory_equal(p, "/", 1);
	assert_int_equal(proc_parse_cgroup(v1, strlen(v1), &p, &n), 0);
	assert_int_equal(n, strlen("/system.slice/s"));
	assert_memory_equal(p, "/system.slice/s", n);
	assert_int_equal(proc_parse_cgroup(v1_plain, strlen(v1_plain), &p, &n), 0);
	assert_int_equal(n, 2);
	assert_memory_equal(p, "/m", 2);
	assert_int_equal(proc_parse_cgroup(colon, strlen(colon), &p, &n), 0);
	assert_int_equal(n, 6);
	assert_memory_equal(p, "/a:b:c", 6);
	assert_int_equal(proc_parse_cgroup("", 0, &p, &n), -ENODATA);
	assert_int_equal(proc_parse_cgroup("garbage\n:x\n", 11, &p, &n), -ENODATA);
}

static void test_container_id(void **state)
{
	static const struct {
		const char *path;
		const char *id; /* NULL: none */
	} cases[] = {
		/* docker, cgroupfs and systemd drivers */
		{ "/docker/" ID64, ID64 },
		{ "/system.slice/docker-" ID64 ".scope", ID64 },
		/* containerd (CRI) under kubepods, systemd driver */
		{ "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234.slice/"
		  "cri-containerd-" ID64 ".scope",
		  ID64 },
		/* kubepods, cgroupfs driver */
		{ "/kubepods/besteffort/pod0f1e2d3c-aaaa-bbbb-cccc-123456789abc/" ID64, ID64 },
		/* CRI-O and its conmon, which is not inside the container */
		{ "/kubepods.slice/kubepods-pod1.slice/crio-" ID64 ".scope", ID64 },
		{ "/kubepods.slice/kubepods-pod1.slice/crio-conmon-" ID64 ".scope", NULL },
		/* podman: systemd scope with a sub-cgroup, and cgroupfs */
		{ "/machine.slice/libpod-" ID64 ".scope/container", ID64 },
		{ "/libpod_parent/libpod-" ID64, ID64 },
		{ "/machine.slice/libpod-conmon-" ID64 ".scope", NULL },
		/* docker in docker: the innermost */
		{ "/docker/" ID64 "/docker/" ID64B, ID64B },
		{ "/user.slice/user-1000.slice/session-3.scope", NULL },
		{ "/", NULL },
		{ "", NULL },
		{ "/docker/" ID64 "0", NULL }, /* 65 digits */
		{ "/docker/0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
		  NULL },
		{ "/system.slice/docker-" ID64 ".service", NULL },
	};

	for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
		const char *id = NULL;
		int r = proc_container_id(cases[i].path, strlen(cases[i].path), &id);

		if (cases[i].id) {
			if (r != 0)
				fail_msg("no container id in '%s'", cases[i].path);
			assert_memory_equal(id, cases[i].id, 64);
		} else if (r != -ENOENT) {
			fail_msg("container id found in '%s'", cases[i].path);
		}
	}
}

static void test_field_names(void **state)
{
	static const char *const names[] = {
		"key",	"pid",	       "tid",	      "ppid",	      "uid",	"user",
		"gid",	"state",       "comm",	      "cmdline",      "exe",	"threads",
		"nice", "cpu_percent", "cpu_time_ms", "rss_kb",	      "vsz_kb", "mem_percent",
		"tty",	"start_time",  "cgroup",      "container_id", "ns",	"instance",
	};

	assert_int_equal(ELEMENTSOF(names), _PROC_FIELD_MAX);
	for (int f = 0; f < _PROC_FIELD_MAX; f++) {
		assert_string_equal(proc_field_to_string(f), names[f]);
		assert_int_equal(proc_field_from_string(names[f]), f);
	}
	assert_int_equal(proc_field_from_string("cpu"), -EINVAL);
	assert_int_equal(proc_field_from_string(""), -EINVAL);
	assert_int_equal(proc_field_from_string(NULL), -EINVAL);
	assert_null(proc_field_to_string(-1));
	assert_null(proc_field_to_string(_PROC_FIELD_MAX));
	assert_true(PROC_FIELDS_ALL == (UINT64_C(1) << _PROC_FIELD_MAX) - 1);
}

/*
 * The fixture tree of the scan tests:
 *   1  init, a normal process with tty pts/3, ns links, exe, docker cgroup
 *   2  kthreadd, a kernel thread: PF_KTHREAD, empty cmdline, no exe
 *   3  a zombie: state Z, empty cmdline
 *   4  vanished mid-scan: the directory is there, its files are not
 *   5  comm "a) (b\nc"
 *   6  a 100 KiB command line
 *   self -> 1, "abc", "sys": not processes
 */
struct scan_fixture {
	char *root;
	struct proc_scanner *s;
	struct fx_clock clock;
	char *big_cmdline;
};

static struct fx_proc fx_init = {
	.pid = 1,
	.ppid = 0,
	.comm = "init",
	.state = 'S',
	.tty_nr = (136 << 8) | 3,
	.utime = 150,
	.stime = 50,
	.start = 12345,
	.vsize = 100 * 1024 * 1024,
	.rss = 2560,
	.nice = -5,
	.threads = 2,
	.uid = 0,
	.gid = 0,
	.cmdline = "/sbin/init\0splash\0",
	.cmdline_len = 18,
	.cgroup = "0::/system.slice/docker-" ID64 ".scope\n",
	.exe = "/usr/lib/systemd/systemd",
	.ns = true,
	.start_code = 94000000000000ULL,
};

static struct fx_proc fx_kthread = {
	.pid = 2,
	.ppid = 0,
	.comm = "kthreadd",
	.state = 'S',
	.flags = 0x00208040,
	.start = 12346,
	.uid = 0,
	.gid = 0,
	.cmdline = "",
	.cmdline_len = 0,
	.cgroup = "0::/\n",
};

static struct fx_proc fx_zombie = {
	.pid = 3,
	.ppid = 1,
	.comm = "defunct",
	.state = 'Z',
	.utime = 3,
	.start = 20000,
	.uid = 4000123,
	.gid = 4000123,
	.cmdline = "",
	.cmdline_len = 0,
	.cgroup = "0::/z\n",
};

static struct fx_proc fx_tricky = {
	.pid = 5,
	.ppid = 1,
	.comm = "a) (b\nc",
	.state = 'R',
	.tty_nr = (4 << 8) | 64,
	.utime = 10,
	.start = 30000,
	.uid = 1000,
	.gid = 100,
	.cmdline = "./weird\0--flag=a b\0",
	.cmdline_len = 19,
	.cgroup = "1:name=systemd:/user.slice\n0::/user.slice/user-1000.slice\n",
	.exe = "/home/u/weird (deleted)",
};

static int scan_setup(void **state)
{
	struct scan_fixture *f = calloc(1, sizeof(*f));
	struct fx_proc big = {
		.pid = 6,
		.ppid = 1,
		.comm = "java",
		.state = 'S',
		.start = 40000,
		.uid = 1000,
		.gid = 100,
		.cgroup = "0::/system.slice/app.service\n",
		.exe = "/usr/bin/java",
	};
	size_t n = 100 * 1024;

	assert_non_null(f);
	f->root = fx_new_root();
	fx_add_proc(f->root, &fx_init);
	fx_add_proc(f->root, &fx_kthread);
	fx_add_proc(f->root, &fx_zombie);
	{
		char *p = fx_path("%s/4", f->root);

		fx_mkdir_p(p);
		free(p);
		p = fx_path("%s/abc", f->root);
		fx_mkdir_p(p);
		free(p);
	}
	fx_add_proc(f->root, &fx_tricky);
	f->big_cmdline = malloc(n);
	assert_non_null(f->big_cmdline);
	for (size_t i = 0; i < n; i++)
		f->big_cmdline[i] = i % 100 == 99 ? '\0' : (char)('a' + i % 26);
	big.cmdline = f->big_cmdline;
	big.cmdline_len = n;
	fx_add_proc(f->root, &big);
	fx_symlink(f->root, "self", "1");

	assert_int_equal(proc_scanner_new(f->root, &f->s), 0);
	f->clock = (struct fx_clock){ .realtime_ns = (FX_BTIME + 1000) * 1000000000ULL,
				      .monotonic_ns = 5000000000000ULL,
				      .boottime_ns = 1000000000000ULL };
	proc_scanner_set_clock(f->s, fx_clock_cb, &f->clock);
	*state = f;
	return 0;
}

static int scan_teardown(void **state)
{
	struct scan_fixture *f = *state;

	proc_scanner_free(f->s);
	fx_rm_rf(f->root);
	free(f->root);
	free(f->big_cmdline);
	free(f);
	return 0;
}

static const struct proc_entry *find_entry(const struct proc_snapshot *snap, pid_t pid, pid_t tid)
{
	for (size_t i = 0; i < snap->count; i++)
		if (snap->entries[i].pid == pid && snap->entries[i].tid == tid)
			return &snap->entries[i];
	return NULL;
}

static json_t *entry_json(const struct proc_snapshot *snap, pid_t pid, uint64_t fields)
{
	json_t *o = NULL;

	for (size_t i = 0; i < snap->count; i++)
		if (snap->entries[i].pid == pid) {
			assert_int_equal(proc_entry_to_json(snap, i, fields, NULL, &o), 0);
			return o;
		}
	fail_msg("no entry for pid %d", (int)pid);
	return NULL;
}

/* The start time the fixture's btime and @ticks give, as the scanner formats it. */
static void expected_start_time(unsigned long long ticks, char *buf, size_t size)
{
	long hz = sysconf(_SC_CLK_TCK);
	time_t t = (time_t)(FX_BTIME + ticks / (unsigned long long)hz);
	struct tm tm;

	gmtime_r(&t, &tm);
	snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%02uZ", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		 (unsigned)(ticks % (unsigned long long)hz * 100 / (unsigned long long)hz));
}

static void test_scan_fixture(void **state)
{
	struct scan_fixture *f = *state;
	_cleanup_(proc_snapshot_unrefp) struct proc_snapshot *snap = NULL;
	long hz = sysconf(_SC_CLK_TCK), page_kb = sysconf(_SC_PAGESIZE) / 1024;
	const struct proc_entry *e;
	json_auto_t *o = NULL;
	json_t *v;
	char buf[128];

	assert_string_equal(proc_scanner_boot_id(f->s), FX_BOOT_ID);
	assert_int_equal(proc_scanner_scan(f->s, PROC_FIELDS_ALL, false, &snap), 0);
	assert_int_equal(proc_snapshot_count(snap), 5); /* 1 2 3 5 6: not 4, abc, self, sys */
	assert_true(snap->fields == PROC_FIELDS_ALL);
	assert_false(snap->threads);
	assert_true(snap->realtime_ns == f->clock.realtime_ns);
	assert_true(snap->monotonic_ns == f->clock.monotonic_ns);
	for (size_t i = 1; i < snap->count; i++)
		assert_true(snap->entries[i - 1].pid < snap->entries[i].pid);

	/* init: every field. */
	e = find_entry(snap, 1, 1);
	assert_non_null(e);
	assert_string_equal(e->comm, "init");
	assert_string_equal(e->user, "root");
	assert_false(e->kernel_thread);
	o = entry_json(snap, 1, PROC_FIELDS_ALL);
	assert_int_equal(json_object_size(o), _PROC_FIELD_MAX - 1); /* all but tid */
	assert_null(json_object_get(o, "tid"));
	assert_null(json_object_get(o, "cmdline_truncated"));
	snprintf(buf, sizeof(buf), "%s:12345:1", FX_BOOT_ID);
	assert_string_equal(json_string_value(json_object_get(o, "key")), buf);
	assert_int_equal(json_integer_value(json_object_get(o, "pid")), 1);
	assert_int_equal(json_integer_value(json_object_get(o, "ppid")), 0);
	assert_int_equal(json_integer_value(json_object_get(o, "uid")), 0);
	assert_string_equal(json_string_value(json_object_get(o, "user")), "root");
	assert_int_equal(json_integer_value(json_object_get(o, "gid")), 0);
	assert_string_equal(json_string_value(json_object_get(o, "state")), "S");
	assert_string_equal(json_string_value(json_object_get(o, "comm")), "init");
	v = json_object_get(o, "cmdline");
	assert_int_equal(json_array_size(v), 2);
	assert_string_equal(json_string_value(json_array_get(v, 0)), "/sbin/init");
	assert_string_equal(json_string_value(json_array_get(v, 1)), "splash");
	assert_string_equal(json_string_value(json_object_get(o, "exe")),
			    "/usr/lib/systemd/systemd");
	assert_int_equal(json_integer_value(json_object_get(o, "threads")), 2);
	assert_int_equal(json_integer_value(json_object_get(o, "nice")), -5);
	assert_int_equal(json_integer_value(json_object_get(o, "cpu_time_ms")), 200 * 1000 / hz);
	assert_int_equal(json_integer_value(json_object_get(o, "rss_kb")), 2560 * page_kb);
	assert_int_equal(json_integer_value(json_object_get(o, "vsz_kb")), 100 * 1024);
	assert_true(json_real_value(json_object_get(o, "mem_percent")) ==
		    (double)(int64_t)(2560.0 * page_kb * 100 / FX_MEM_TOTAL_KB * 100 + 0.5) / 100);
	assert_string_equal(json_string_value(json_object_get(o, "tty")), "pts/3");
	expected_start_time(12345, buf, sizeof(buf));
	assert_string_equal(json_string_value(json_object_get(o, "start_time")), buf);
	assert_string_equal(json_string_value(json_object_get(o, "cgroup")),
			    "/system.slice/docker-" ID64 ".scope");
	assert_string_equal(json_string_value(json_object_get(o, "container_id")), ID64);
	v = json_object_get(o, "ns");
	assert_int_equal(json_object_size(v), 4); /* those that exist */
	assert_int_equal(json_integer_value(json_object_get(v, "net")), 4026531993);
	assert_int_equal(json_integer_value(json_object_get(v, "pid")), 4026531836);
	assert_int_equal(json_integer_value(json_object_get(v, "mnt")), 4026531841);
	assert_int_equal(json_integer_value(json_object_get(v, "user")), 4026531837);
	assert_null(json_object_get(v, "uts"));
	assert_true(json_is_null(json_object_get(o, "instance")));
	json_decref(TAKE_PTR(o));

	/* The kernel thread: no arguments, no exe, no namespaces readable. */
	e = find_entry(snap, 2, 2);
	assert_non_null(e);
	assert_true(e->kernel_thread);
	o = entry_json(snap, 2, PROC_FIELDS_ALL);
	assert_int_equal(json_array_size(json_object_get(o, "cmdline")), 0);
	assert_true(json_is_null(json_object_get(o, "exe")));
	assert_true(json_is_null(json_object_get(o, "ns")));
	assert_true(json_is_null(json_object_get(o, "tty")));
	assert_true(json_is_null(json_object_get(o, "container_id")));
	assert_string_equal(json_string_value(json_object_get(o, "cgroup")), "/");
	json_decref(TAKE_PTR(o));

	/* The zombie, of a user without a name: the number stands in. */
	o = entry_json(snap, 3, PROC_FIELDS_ALL);
	assert_string_equal(json_string_value(json_object_get(o, "state")), "Z");
	assert_int_equal(json_array_size(json_object_get(o, "cmdline")), 0);
	assert_true(json_is_null(json_object_get(o, "exe")));
	assert_int_equal(json_integer_value(json_object_get(o, "uid")), 4000123);
	assert_string_equal(json_string_value(json_object_get(o, "user")), "4000123");
	json_decref(TAKE_PTR(o));

	/* comm with a ") (" and a newline, ttyS0, the v2 line of a hybrid cgroup file. */
	o = entry_json(snap, 5, PROC_FIELDS_ALL);
	assert_string_equal(json_string_value(json_object_get(o, "comm")), "a) (b\nc");
	assert_string_equal(json_string_value(json_object_get(o, "state")), "R");
	assert_string_equal(json_string_value(json_object_get(o, "tty")), "ttyS0");
	assert_string_equal(json_string_value(json_array_get(json_object_get(o, "cmdline"), 1)),
			    "--flag=a b");
	assert_string_equal(json_string_value(json_object_get(o, "exe")),
			    "/home/u/weird (deleted)");
	assert_string_equal(json_string_value(json_object_get(o, "cgroup")),
			    "/user.slice/user-1000.slice");
	assert_int_equal(json_integer_value(json_object_get(o, "gid")), 100);
	json_decref(TAKE_PTR(o));

	/* The huge command line is cut at 4096 bytes and flagged. */
	e = find_entry(snap, 6, 6);
	assert_non_null(e);
	assert_true(e->cmdline_truncated);
	assert_int_equal(e->cmdline_len, 4096 + 1);
	o = entry_json(snap, 6, F(CMDLINE) | F(PID));
	assert_int_equal(json_object_size(o), 3);
	assert_true(json_is_true(json_object_get(o, "cmdline_truncated")));
	v = json_object_get(o, "cmdline");
	assert_int_equal(json_array_size(v), 41); /* 40 arguments of 99 bytes, then a cut one */
	assert_int_equal(json_string_length(json_array_get(v, 0)), 99);
	assert_int_equal(json_string_length(json_array_get(v, 40)), 4096 - 40 * 100);

	/* Out of range and fields the snapshot lacks. */
	assert_int_equal(proc_entry_to_json(snap, 5, F(PID), NULL, &o), -EINVAL);
}

static void test_scan_selective_fields(void **state)
{
	struct scan_fixture *f = *state;
	_cleanup_(proc_snapshot_unrefp) struct proc_snapshot *snap = NULL;
	const uint64_t fields = F(PID) | F(COMM) | F(STATE);
	struct fx_proc stat_only = {
		.pid = 7, .ppid = 1, .comm = "lean", .start = 50000, .no_status = true
	};
	json_auto_t *o = NULL;
	json_t *junk = NULL;
	const char *key;
	json_t *v;

	/* A process with nothing but stat: only the requested files are read. */
	fx_add_proc(f->root, &stat_only);
	assert_int_equal(proc_scanner_scan(f->s, fields, false, &snap), 0);
	assert_non_null(find_entry(snap, 7, 7));
	assert_int_equal(snap->count, 6);
	assert_int_equal(proc_entry_to_json(snap, 0, fields, NULL, &o), 0);
	assert_int_equal(json_object_size(o), 3);
	json_object_foreach(o, key, v) assert_true(
		strcmp(key, "pid") == 0 || strcmp(key, "comm") == 0 || strcmp(key, "state") == 0);
	assert_int_equal(proc_entry_to_json(snap, 0, fields | F(CMDLINE), NULL, &junk), -EINVAL);
	assert_int_equal(proc_entry_to_json(snap, 0, fields | F(UID), NULL, &junk), -EINVAL);
	/* tid and instance need nothing; tid is left out of a process view. */
	json_decref(TAKE_PTR(o));
	assert_int_equal(proc_entry_to_json(snap, 0, F(TID) | F(INSTANCE), NULL, &o), 0);
	assert_int_equal(json_object_size(o), 1);
	assert_int_equal(proc_entry_to_json(snap, snap->count, fields, NULL, &junk), -EINVAL);
	snap = proc_snapshot_unref(snap);

	/* Needing its cmdline or status, it counts as vanished. */
	assert_int_equal(proc_scanner_scan(f->s, fields | F(CMDLINE), false, &snap), 0);
	assert_null(find_entry(snap, 7, 7));
	snap = proc_snapshot_unref(snap);
	assert_int_equal(proc_scanner_scan(f->s, fields | F(UID), false, &snap), 0);
	assert_null(find_entry(snap, 7, 7));

	assert_int_equal(proc_scanner_scan(f->s, PROC_FIELDS_ALL + 1, false, &snap), -EINVAL);
}

static void set_ticks(struct scan_fixture *f, struct fx_proc *p, unsigned long long utime)
{
	p->utime = utime;
	fx_add_proc(f->root, p);
}

static double cpu_of(struct scan_fixture *f, pid_t pid)
{
	_cleanup_(proc_snapshot_unrefp) struct proc_snapshot *snap = NULL;
	const struct proc_entry *e;

	assert_int_equal(proc_scanner_scan(f->s, F(PID) | F(CPU_PERCENT), false, &snap), 0);
	e = find_entry(snap, pid, pid);
	if (!e)
		return -1;
	return e->cpu_percent;
}

static void test_cpu_percent(void **state)
{
	struct scan_fixture *f = *state;
	long hz = sysconf(_SC_CLK_TCK);
	/* Started 100 s before the fixture clock's boot time. */
	struct fx_proc p = { .pid = 10,
			     .ppid = 1,
			     .comm = "busy",
			     .state = 'R',
			     .start = (unsigned long long)(1000 - 100) * hz,
			     .cmdline = "busy",
			     .cmdline_len = 5 };

	set_ticks(f, &p, 5 * hz); /* 5 s of CPU in 100 s */

	/* First sight: the lifetime average; still so while no baseline is 1 s old. */
	assert_float_equal(cpu_of(f, 10), 5.0, 1e-9);
	assert_float_equal(cpu_of(f, 10), 5.0, 1e-9);
	set_ticks(f, &p, 5 * hz + hz / 10);
	fx_clock_advance(&f->clock, 0.5);
	assert_float_equal(cpu_of(f, 10),
			   5.1 / (f->clock.boottime_ns / 1e9 - (double)p.start / hz) * 100, 1e-6);
	fx_clock_advance(&f->clock, -0.5);
	set_ticks(f, &p, 5 * hz);

	/* 2 s of CPU in 4 s: 50 %. */
	set_ticks(f, &p, 7 * hz);
	fx_clock_advance(&f->clock, 4);
	assert_float_equal(cpu_of(f, 10), 50.0, 1e-9);

	/*
	 * 0.5 s later, the newest baseline is younger than the 1 s minimum: measured from the
	 * older one (4.5 s, 2.1 s of CPU), and not replaced.
	 */
	set_ticks(f, &p, 7 * hz + hz / 10);
	fx_clock_advance(&f->clock, 0.5);
	assert_float_equal(cpu_of(f, 10), 2.1 / 4.5 * 100, 1e-6);

	/* 1.5 s after the newest baseline: from it (0.1 s in 1.5 s), and it is replaced. */
	fx_clock_advance(&f->clock, 1.0);
	assert_float_equal(cpu_of(f, 10), 0.1 / 1.5 * 100, 1e-6);

	/* Over 100 % for a process with several busy threads. */
	set_ticks(f, &p, 7 * hz + hz / 10 + 3 * hz);
	fx_clock_advance(&f->clock, 1.0);
	assert_float_equal(cpu_of(f, 10), 300.0, 1e-6);

	/* With no minimum interval every scan measures from the previous one. */
	proc_scanner_set_cpu_min_interval(f->s, 0);
	set_ticks(f, &p, 7 * hz + hz / 10 + 3 * hz + hz / 10);
	fx_clock_advance(&f->clock, 0.2);
	assert_float_equal(cpu_of(f, 10), 50.0, 1e-6);
	fx_clock_advance(&f->clock, 0.2);
	assert_float_equal(cpu_of(f, 10), 0.0, 1e-9);

	/* Gone for a scan, its baseline is dropped: back, it is new again (lifetime). */
	fx_remove(f->root, "10");
	assert_true(cpu_of(f, 10) < 0);
	set_ticks(f, &p, 5 * hz);
	fx_clock_advance(&f->clock, 10);
	assert_float_equal(cpu_of(f, 10),
			   5.0 / (f->clock.boottime_ns / 1e9 - (double)p.start / hz) * 100, 1e-6);

	/* A reused PID (another start time) is another process. */
	p.start += hz;
	set_ticks(f, &p, 0);
	fx_clock_advance(&f->clock, 1);
	assert_float_equal(cpu_of(f, 10), 0.0, 1e-9);
}

static json_t *scan_one(struct scan_fixture *f, pid_t pid, uint64_t fields)
{
	_cleanup_(proc_snapshot_unrefp) struct proc_snapshot *snap = NULL;

	assert_int_equal(proc_scanner_scan(f->s, fields, false, &snap), 0);
	return entry_json(snap, pid, fields);
}

static const char *first_arg(json_t *o)
{
	return json_string_value(json_array_get(json_object_get(o, "cmdline"), 0));
}

static void test_cache(void **state)
{
	struct scan_fixture *f = *state;
	struct fx_proc p = { .pid = 11,
			     .ppid = 1,
			     .comm = "svc",
			     .start = 60000,
			     .cmdline = "one",
			     .cmdline_len = 4,
			     .cgroup = "0::/a\n",
			     .exe = "/bin/one",
			     .start_code = 1000 };
	json_auto_t *o = NULL;

	fx_add_proc(f->root, &p);
	o = scan_one(f, 11, PROC_FIELDS_ALL);
	assert_string_equal(first_arg(o), "one");
	json_decref(TAKE_PTR(o));

	/* Rewritten without exec (same stat): the cached values stand within the TTL. */
	p.cmdline = "two";
	p.cgroup = "0::/b\n";
	fx_add_proc(f->root, &p);
	fx_clock_advance(&f->clock, 1);
	o = scan_one(f, 11, PROC_FIELDS_ALL);
	assert_string_equal(first_arg(o), "one");
	assert_string_equal(json_string_value(json_object_get(o, "cgroup")), "/a");
	json_decref(TAKE_PTR(o));

	/* Asking for fewer fields uses the cache too; for more, everything is read again. */
	o = scan_one(f, 11, F(PID) | F(CMDLINE));
	assert_string_equal(first_arg(o), "one");
	json_decref(TAKE_PTR(o));

	/* exec: a new comm, or new code addresses, are seen at once. */
	p.comm = "svc2";
	fx_add_proc(f->root, &p);
	o = scan_one(f, 11, PROC_FIELDS_ALL);
	assert_string_equal(first_arg(o), "two");
	assert_string_equal(json_string_value(json_object_get(o, "cgroup")), "/b");
	json_decref(TAKE_PTR(o));
	p.cmdline = "three";
	p.cmdline_len = 6;
	p.start_code = 2000;
	fx_add_proc(f->root, &p);
	o = scan_one(f, 11, PROC_FIELDS_ALL);
	assert_string_equal(first_arg(o), "three");
	json_decref(TAKE_PTR(o));

	/* After the TTL (10 s) the values are read again. */
	p.cmdline = "four";
	p.cmdline_len = 5;
	fx_add_proc(f->root, &p);
	fx_clock_advance(&f->clock, 5);
	o = scan_one(f, 11, PROC_FIELDS_ALL);
	assert_string_equal(first_arg(o), "three");
	json_decref(TAKE_PTR(o));
	fx_clock_advance(&f->clock, 6);
	o = scan_one(f, 11, PROC_FIELDS_ALL);
	assert_string_equal(first_arg(o), "four");
	json_decref(TAKE_PTR(o));

	/* A changed cmdline cap, and TTL 0, drop the cache. */
	assert_int_equal(proc_scanner_set_cmdline_max(f->s, 2), 0);
	o = scan_one(f, 11, PROC_FIELDS_ALL);
	assert_string_equal(first_arg(o), "fo");
	assert_true(json_is_true(json_object_get(o, "cmdline_truncated")));
	json_decref(TAKE_PTR(o));
	assert_int_equal(proc_scanner_set_cmdline_max(f->s, 0), -ERANGE);
	assert_int_equal(proc_scanner_set_cmdline_max(f->s, 16 * 1024 * 1024 + 1), -ERANGE);
	assert_int_equal(proc_scanner_set_cmdline_max(f->s, 4096), 0);
	proc_scanner_set_cache_ttl(f->s, 0);
	p.cmdline = "five";
	fx_add_proc(f->root, &p);
	o = scan_one(f, 11, PROC_FIELDS_ALL);
	assert_string_equal(first_arg(o), "five");
	json_decref(TAKE_PTR(o));
	p.cmdline = "six";
	p.cmdline_len = 4;
	fx_add_proc(f->root, &p);
	o = scan_one(f, 11, PROC_FIELDS_ALL);
	assert_string_equal(first_arg(o), "six");
}

static void test_threads(void **state)
{
	struct scan_fixture *f = *state;
	_cleanup_(proc_snapshot_unrefp) struct proc_snapshot *snap = NULL;
	struct fx_proc p = { .pid = 20,
			     .ppid = 1,
			     .comm = "server",
			     .threads = 2,
			     .utime = 300,
			     .start = 70000,
			     .uid = 1000,
			     .gid = 100,
			     .cmdline = "server",
			     .cmdline_len = 7,
			     .cgroup = "0::/s\n" };
	const struct proc_entry *e;
	json_auto_t *o = NULL;

	fx_add_proc(f->root, &p);
	fx_add_thread(f->root, &p, 20, "server", 100, 70000);
	fx_add_thread(f->root, &p, 21, "worker", 200, 70050);

	assert_int_equal(proc_scanner_scan(f->s, PROC_FIELDS_ALL, true, &snap), 0);
	assert_true(snap->threads);
	e = find_entry(snap, 20, 20);
	assert_non_null(e);
	assert_int_equal(e->total_ticks, 100);
	e = find_entry(snap, 20, 21);
	assert_non_null(e);
	assert_string_equal(e->comm, "worker");
	assert_int_equal(e->total_ticks, 200);
	assert_int_equal(e->threads, 2);
	/* Directories without task/ (the fixture's others) contribute no thread. */
	assert_null(find_entry(snap, 1, 1));
	for (size_t i = 0; i < snap->count; i++)
		if (snap->entries[i].tid == 21)
			assert_int_equal(proc_entry_to_json(snap, i, PROC_FIELDS_ALL, NULL, &o), 0);
	assert_int_equal(json_integer_value(json_object_get(o, "pid")), 20);
	assert_int_equal(json_integer_value(json_object_get(o, "tid")), 21);
	assert_string_equal(json_string_value(json_object_get(o, "comm")), "worker");
	{
		char key[128];

		snprintf(key, sizeof(key), "%s:70050:21", FX_BOOT_ID);
		assert_string_equal(json_string_value(json_object_get(o, "key")), key);
	}
	json_decref(TAKE_PTR(o));
	snap = proc_snapshot_unref(snap);

	/* The process view has the process once, with its total. */
	assert_int_equal(proc_scanner_scan(f->s, PROC_FIELDS_ALL, false, &snap), 0);
	e = find_entry(snap, 20, 20);
	assert_non_null(e);
	assert_int_equal(e->total_ticks, 300);
	assert_null(find_entry(snap, 20, 21));
}

static void test_read_pid(void **state)
{
	struct scan_fixture *f = *state;
	_cleanup_(proc_snapshot_unrefp) struct proc_snapshot *snap = NULL;
	struct proc_snapshot *junk = NULL;
	struct fx_proc thread = { .pid = 31, .tgid = 30, .comm = "t", .start = 5 };

	assert_int_equal(proc_scanner_read_pid(f->s, 5, PROC_FIELDS_ALL, &snap), 0);
	assert_int_equal(proc_snapshot_count(snap), 1);
	assert_int_equal(snap->entries[0].pid, 5);
	assert_string_equal(snap->entries[0].comm, "a) (b\nc");
	assert_false(snap->threads);

	/* A reference outlives the scanner's next scans and a caller's unref. */
	assert_ptr_equal(proc_snapshot_ref(snap), snap);
	proc_snapshot_unref(snap);
	assert_int_equal(snap->entries[0].pid, 5);

	assert_int_equal(proc_scanner_read_pid(f->s, 999, PROC_FIELDS_ALL, &junk), -ENOENT);
	assert_int_equal(proc_scanner_read_pid(f->s, 4, PROC_FIELDS_ALL, &junk), -ENOENT);
	assert_int_equal(proc_scanner_read_pid(f->s, 0, PROC_FIELDS_ALL, &junk), -EINVAL);
	assert_int_equal(proc_scanner_read_pid(f->s, -3, PROC_FIELDS_ALL, &junk), -EINVAL);
	/* /proc/<tid> of a thread that is not its group's leader. */
	fx_add_proc(f->root, &thread);
	assert_int_equal(proc_scanner_read_pid(f->s, 31, PROC_FIELDS_ALL, &junk), -ENOENT);
	assert_null(junk);
	assert_null(proc_snapshot_ref(NULL));
	assert_null(proc_snapshot_unref(NULL));
}

static void test_host_info(void **state)
{
	struct scan_fixture *f = *state;
	json_auto_t *h = NULL;
	json_t *m, *l, *k;

	assert_int_equal(host_info_json(f->s, &h), 0);
	assert_non_null(json_string_value(json_object_get(h, "hostname")));
	assert_string_equal(json_string_value(json_object_get(h, "boot_id")), FX_BOOT_ID);
	k = json_object_get(h, "kernel");
	assert_string_equal(json_string_value(json_object_get(k, "sysname")), "Linux");
	assert_non_null(json_string_value(json_object_get(k, "release")));
	assert_non_null(json_string_value(json_object_get(k, "version")));
	assert_non_null(json_string_value(json_object_get(k, "machine")));
	assert_float_equal(json_real_value(json_object_get(h, "uptime_s")), 12345.67, 1e-9);
	l = json_object_get(h, "load");
	assert_int_equal(json_array_size(l), 3);
	assert_float_equal(json_real_value(json_array_get(l, 0)), 0.50, 1e-9);
	assert_float_equal(json_real_value(json_array_get(l, 2)), 0.10, 1e-9);
	assert_true(json_integer_value(json_object_get(h, "cpus")) >= 1);
	m = json_object_get(h, "memory");
	assert_int_equal(json_integer_value(json_object_get(m, "total_kb")), 1024000);
	assert_int_equal(json_integer_value(json_object_get(m, "free_kb")), 512000);
	assert_int_equal(json_integer_value(json_object_get(m, "available_kb")), 768000);
	assert_int_equal(json_integer_value(json_object_get(m, "swap_total_kb")), 204800);
	assert_int_equal(json_integer_value(json_object_get(m, "swap_free_kb")), 102400);
	assert_int_equal(json_integer_value(json_object_get(h, "processes")), 6); /* with 4 */

	/* An older kernel without MemAvailable: null. A broken loadavg: an error. */
	fx_writes(f->root, "meminfo", "MemTotal: 1 kB\nMemFree: 1 kB\n");
	json_decref(TAKE_PTR(h));
	assert_int_equal(host_info_json(f->s, &h), 0);
	assert_true(json_is_null(json_object_get(json_object_get(h, "memory"), "available_kb")));
	json_decref(TAKE_PTR(h));
	fx_writes(f->root, "loadavg", "0.5 x\n");
	assert_int_equal(host_info_json(f->s, &h), -EBADMSG);
}

static void test_scanner_new_errors(void **state)
{
	struct proc_scanner *s = NULL;
	char *root = fx_new_root();
	char *path;

	assert_int_equal(proc_scanner_new("/nonexistent/k2i/proc", &s), -ENOENT);
	fx_writes(root, "sys/kernel/random/boot_id", "not a uuid!\n");
	assert_int_equal(proc_scanner_new(root, &s), -EBADMSG);
	fx_writes(root, "sys/kernel/random/boot_id", FX_BOOT_ID);
	fx_writes(root, "stat", "cpu 1 2 3\n");
	assert_int_equal(proc_scanner_new(root, &s), -EBADMSG);
	fx_writes(root, "stat", "btime 1700000000");
	assert_int_equal(proc_scanner_new(root, &s), 0);
	assert_string_equal(proc_scanner_boot_id(s), FX_BOOT_ID);
	s = proc_scanner_free(s);
	fx_writes(root, "meminfo", "MemFree: 3 kB\n");
	assert_int_equal(proc_scanner_new(root, &s), -EBADMSG);
	path = fx_path("%s/sys/kernel/random/boot_id", root);
	unlink(path);
	free(path);
	assert_int_equal(proc_scanner_new(root, &s), -ENOENT);
	assert_null(s);
	assert_null(proc_scanner_free(NULL));
	fx_rm_rf(root);
	free(root);
}

/* The text writer gives, once parsed, exactly the objects proc_entry_to_json() builds. */
static void check_text_equals_json(const struct proc_snapshot *snap, uint64_t fields)
{
	for (size_t i = 0; i < snap->count; i++) {
		struct proc_text t = {};
		json_auto_t *a = NULL;
		json_auto_t *b = NULL;
		json_error_t err;

		assert_int_equal(proc_entry_to_json(snap, i, fields, NULL, &a), 0);
		assert_int_equal(proc_entry_to_text(snap, i, fields, NULL, &t), 0);
		b = json_loadb(t.data, t.len, JSON_ALLOW_NUL, &err);
		if (!b)
			fail_msg("entry %zu: unparsable text: %s: %.*s", i, err.text, (int)t.len,
				 t.data);
		if (!json_equal(a, b)) {
			char *x = json_dumps(a, JSON_COMPACT);

			fail_msg("entry %zu differs:\n%s\n%.*s", i, x, (int)t.len, t.data);
		}
		free(t.data);
	}
}

static void test_text_matches_json(void **state)
{
	struct scan_fixture *f = *state;
	_cleanup_(proc_snapshot_unrefp) struct proc_snapshot *snap = NULL;
	/* Bytes that are not UTF-8, controls, quotes and backslashes. */
	static const char odd_cmdline[] = "\xff\xfe\0tab\there\0q\"b\\s\0\x01\x1f\x7f\0"
					  "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\0"
					  "\xc0\xaf\xed\xa0\x80\xf4\x90\x80\x80\xe2\x82";
	struct fx_proc p = { .pid = 12,
			     .ppid = 1,
			     .comm = "\xe2\x82\xac\xff",
			     .start = 1,
			     .cmdline = odd_cmdline,
			     .cmdline_len = sizeof(odd_cmdline) - 1,
			     .cgroup = "0::/\xc3(\n",
			     .utime = 1234567,
			     .rss = 1 };
	struct fx_proc t = { .pid = 13, .ppid = 1, .comm = "mt", .threads = 2, .start = 2 };
	json_auto_t *o = NULL;

	fx_add_proc(f->root, &p);
	fx_add_proc(f->root, &t);
	fx_add_thread(f->root, &t, 13, "mt", 1, 2);
	fx_add_thread(f->root, &t, 14, "mt-io", 2, 3);

	assert_int_equal(proc_scanner_scan(f->s, PROC_FIELDS_ALL, false, &snap), 0);
	check_text_equals_json(snap, PROC_FIELDS_ALL);
	check_text_equals_json(snap, F(PID) | F(CMDLINE));
	check_text_equals_json(snap, F(NS) | F(TTY) | F(MEM_PERCENT));

	o = entry_json(snap, 12, F(COMM) | F(CMDLINE));
	assert_string_equal(json_string_value(json_object_get(o, "comm")),
			    "\xe2\x82\xac\xef\xbf\xbd");
	assert_string_equal(first_arg(o), "\xef\xbf\xbd\xef\xbf\xbd");
	snap = proc_snapshot_unref(snap);

	assert_int_equal(proc_scanner_scan(f->s, PROC_FIELDS_ALL, true, &snap), 0);
	check_text_equals_json(snap, PROC_FIELDS_ALL);
}

/* The JSON of every entry of @snap, as an array. */
static json_t *snap_json(const struct proc_snapshot *snap)
{
	json_t *a = json_array();

	assert_non_null(a);
	for (size_t i = 0; i < snap->count; i++) {
		json_t *o = NULL;

		assert_int_equal(proc_entry_to_json(snap, i, snap->fields, NULL, &o), 0);
		assert_int_equal(json_array_append_new(a, o), 0);
	}
	return a;
}

static void assert_json_equal(json_t *a, json_t *b)
{
	if (!json_equal(a, b)) {
		char *x = json_dumps(a, JSON_COMPACT), *y = json_dumps(b, JSON_COMPACT);

		fail_msg("JSON differs:\n%s\n%s", x, y);
	}
}

static void assert_sorted(const struct proc_snapshot *snap)
{
	for (size_t i = 1; i < snap->count; i++)
		assert_true(snap->entries[i - 1].pid < snap->entries[i].pid);
}

/* Asserts that @pid has the same JSON in @a and @b. */
static void assert_same_entry(const struct proc_snapshot *a, const struct proc_snapshot *b,
			      pid_t pid)
{
	json_auto_t *x = entry_json(a, pid, a->fields);
	json_auto_t *y = entry_json(b, pid, b->fields);

	assert_json_equal(x, y);
}

static const char *first_arg_of(const struct proc_snapshot *snap, pid_t pid)
{
	const struct proc_entry *e = find_entry(snap, pid, pid);

	assert_non_null(e);
	return e->cmdline;
}

/*
 * Against the fixture's 1 2 3 5 6 and a 9: 3 exits, 4 (listed, files gone), 8 (never there)
 * and 31 (a thread) are asked for, 5 rewrites its command line (no exec visible in stat), 6 is
 * reused by another process, 7 is new, 9 execs; 1 and 2 change in the tree but are not listed.
 */
static void test_patch(void **state)
{
	struct scan_fixture *f = *state;
	_cleanup_(proc_snapshot_unrefp) struct proc_snapshot *base = NULL;
	_cleanup_(proc_snapshot_unrefp) struct proc_snapshot *patched = NULL;
	_cleanup_(proc_snapshot_unrefp) struct proc_snapshot *scan = NULL;
	struct fx_proc svc = { .pid = 9,
			       .ppid = 1,
			       .comm = "svc",
			       .start = 45000,
			       .uid = 1000,
			       .gid = 100,
			       .cmdline = "svc\0",
			       .cmdline_len = 4,
			       .cgroup = "0::/svc\n",
			       .exe = "/usr/bin/svc",
			       .start_code = 7000 };
	struct fx_proc newbie = { .pid = 7,
				  .ppid = 9,
				  .comm = "newbie",
				  .start = 50000,
				  .uid = 0,
				  .gid = 0,
				  .cmdline = "newbie\0-v\0",
				  .cmdline_len = 10,
				  .cgroup = "0::/system.slice/docker-" ID64B ".scope\n",
				  .exe = "/usr/bin/newbie",
				  .ns = true };
	struct fx_proc reused = { .pid = 6,
				  .ppid = 1,
				  .comm = "java2",
				  .start = 55000,
				  .uid = 1000,
				  .gid = 100,
				  .cmdline = "java2\0",
				  .cmdline_len = 6 };
	/* /proc/<tid> of a thread that is not its group's leader: not a process. */
	struct fx_proc thread = { .pid = 31,
				  .tgid = 9,
				  .comm = "svc-io",
				  .start = 45001,
				  .cmdline = "svc\0",
				  .cmdline_len = 4,
				  .cgroup = "0::/svc\n",
				  .exe = "/usr/bin/svc" };
	struct fx_proc tricky = fx_tricky, init = fx_init;
	const pid_t gone[] = { 3, 6, 3, 0 };
	const pid_t changed[] = { 9, 7, 6, 5, 4, 8, 7, 3, -1, 31 };
	const pid_t want[] = { 1, 2, 5, 6, 7, 9 };
	/* What a scan reads again (not CPU, memory or times, which the clock moves). */
	const uint64_t read_fields = F(PID) | F(COMM) | F(CMDLINE) | F(EXE) | F(USER) | F(KEY);
	json_auto_t *before = NULL;
	json_auto_t *after = NULL;
	json_auto_t *o = NULL;
	const struct proc_entry *e;

	fx_add_proc(f->root, &svc);
	assert_int_equal(proc_scanner_scan(f->s, PROC_FIELDS_ALL, false, &base), 0);
	assert_int_equal(base->count, 6);
	before = snap_json(base);

	fx_remove(f->root, "3");
	tricky.cmdline = "./renamed\0";
	tricky.cmdline_len = 10;
	fx_add_proc(f->root, &tricky);
	fx_remove(f->root, "6");
	fx_add_proc(f->root, &reused);
	fx_add_proc(f->root, &newbie);
	fx_add_proc(f->root, &thread);
	svc.comm = "svc-new";
	svc.cmdline = "svc-new\0--fg\0";
	svc.cmdline_len = 13;
	svc.start_code = 8000;
	fx_add_proc(f->root, &svc);
	init.utime += 1000;
	init.cmdline = "/sbin/other\0";
	init.cmdline_len = 12;
	fx_add_proc(f->root, &init);
	fx_clock_advance(&f->clock, 2);

	/* A scan within the cache TTL still shows 5's old command line: stat did not change. */
	assert_int_equal(proc_scanner_scan(f->s, PROC_FIELDS_ALL, false, &scan), 0);
	assert_string_equal(first_arg_of(scan, 5), "./weird");

	assert_int_equal(proc_scanner_patch(f->s, base, gone, ELEMENTSOF(gone), changed,
					    ELEMENTSOF(changed), &patched),
			 0);
	assert_int_equal(patched->count, ELEMENTSOF(want));
	for (size_t i = 0; i < ELEMENTSOF(want); i++)
		assert_int_equal(patched->entries[i].pid, want[i]);
	assert_sorted(patched);
	assert_true(patched->fields == base->fields);
	assert_false(patched->threads);
	assert_true(patched->realtime_ns == base->realtime_ns);
	assert_true(patched->monotonic_ns == base->monotonic_ns);

	/* Not listed: as in the base, though the tree changed. */
	assert_same_entry(base, patched, 1);
	assert_same_entry(base, patched, 2);
	assert_string_equal(first_arg_of(patched, 1), "/sbin/init");

	/* Re-read, whatever the cache held. */
	assert_string_equal(first_arg_of(patched, 5), "./renamed");
	o = entry_json(patched, 9, PROC_FIELDS_ALL);
	assert_string_equal(json_string_value(json_object_get(o, "comm")), "svc-new");
	assert_int_equal(json_array_size(json_object_get(o, "cmdline")), 2);
	assert_string_equal(json_string_value(json_array_get(json_object_get(o, "cmdline"), 1)),
			    "--fg");
	json_decref(TAKE_PTR(o));

	/* The reused PID is the new process; the new one has every field. */
	e = find_entry(patched, 6, 6);
	assert_non_null(e);
	assert_string_equal(e->comm, "java2");
	assert_int_equal(e->start_ticks, 55000);
	assert_false(e->cmdline_truncated);
	e = find_entry(patched, 7, 7);
	assert_non_null(e);
	assert_int_equal(e->ppid, 9);
	assert_string_equal(e->user, "root");
	assert_string_equal(e->exe, "/usr/bin/newbie");
	assert_string_equal(e->container_id, ID64B);
	assert_true(e->ns[PROC_NS_NET] == 4026531993ULL);
	check_text_equals_json(patched, PROC_FIELDS_ALL);

	/* The base is untouched, and a scan now agrees with the re-read entries. */
	after = snap_json(base);
	assert_json_equal(before, after);
	json_decref(TAKE_PTR(after));
	scan = proc_snapshot_unref(scan);
	assert_int_equal(proc_scanner_scan(f->s, PROC_FIELDS_ALL, false, &scan), 0);
	for (pid_t pid = 5; pid <= 9; pid++)
		if (find_entry(patched, pid, pid)) {
			json_auto_t *x = entry_json(patched, pid, read_fields);
			json_auto_t *y = entry_json(scan, pid, read_fields);

			assert_json_equal(x, y);
		}

	/* Nothing to do: a copy. Empty lists may be NULL. */
	after = snap_json(patched);
	base = proc_snapshot_unref(base);
	base = TAKE_PTR(patched);
	assert_int_equal(proc_scanner_patch(f->s, base, NULL, 0, NULL, 0, &patched), 0);
	json_decref(before);
	before = snap_json(patched);
	assert_json_equal(before, after);
}

/*
 * A patch outlives its base, and patches of patches stay valid when each earlier one is
 * dropped (ASan sees any string left pointing into freed memory).
 */
static void test_patch_lifetime(void **state)
{
	struct scan_fixture *f = *state;
	_cleanup_(proc_snapshot_unrefp) struct proc_snapshot *base = NULL;
	struct proc_snapshot *p1 = NULL, *p2 = NULL, *p3 = NULL;
	struct fx_proc a = { .pid = 40,
			     .ppid = 1,
			     .comm = "a",
			     .start = 100,
			     .cmdline = "a1",
			     .cmdline_len = 3,
			     .exe = "/bin/a",
			     .cgroup = "0::/a\n" };
	struct fx_proc b = { .pid = 41,
			     .ppid = 1,
			     .comm = "b",
			     .start = 101,
			     .cmdline = "b1",
			     .cmdline_len = 3,
			     .exe = "/bin/b",
			     .cgroup = "0::/b\n" };
	const pid_t pa = 40, pb = 41, p1_pid = 1;
	json_auto_t *want1 = NULL;
	json_auto_t *want3 = NULL;
	json_auto_t *got = NULL;

	fx_add_proc(f->root, &a);
	assert_int_equal(proc_scanner_scan(f->s, PROC_FIELDS_ALL, false, &base), 0);

	/* p1: 40 re-read (its strings in p1's arena), the rest in the base's. */
	a.comm = "a2";
	a.cmdline = "a2";
	fx_add_proc(f->root, &a);
	assert_int_equal(proc_scanner_patch(f->s, base, NULL, 0, &pa, 1, &p1), 0);
	want1 = snap_json(p1);
	base = proc_snapshot_unref(base);
	got = snap_json(p1);
	assert_json_equal(want1, got);
	json_decref(TAKE_PTR(got));

	/* p2 from p1: 1 gone, 41 new; 40's strings are copied out of p1, which then goes. */
	fx_add_proc(f->root, &b);
	assert_int_equal(proc_scanner_patch(f->s, p1, &p1_pid, 1, &pb, 1, &p2), 0);
	assert_null(find_entry(p2, 1, 1));
	assert_string_equal(find_entry(p2, 40, 40)->comm, "a2");
	assert_string_equal(find_entry(p2, 41, 41)->cmdline, "b1");
	p1 = proc_snapshot_unref(p1);

	/* p3 from p2 with another reference held elsewhere; both outlive p2's last user. */
	assert_int_equal(proc_scanner_patch(f->s, p2, NULL, 0, NULL, 0, &p3), 0);
	want3 = snap_json(p2);
	assert_ptr_equal(proc_snapshot_ref(p2), p2);
	proc_snapshot_unref(p2);
	p2 = proc_snapshot_unref(p2);
	got = snap_json(p3);
	assert_json_equal(want3, got);
	check_text_equals_json(p3, PROC_FIELDS_ALL);
	p3 = proc_snapshot_unref(p3);
}

static void test_patch_threads_view(void **state)
{
	struct scan_fixture *f = *state;
	_cleanup_(proc_snapshot_unrefp) struct proc_snapshot *base = NULL;
	struct proc_snapshot *junk = NULL;
	const pid_t pid = 1;

	assert_int_equal(proc_scanner_scan(f->s, F(PID) | F(TID), true, &base), 0);
	assert_int_equal(proc_scanner_patch(f->s, base, NULL, 0, &pid, 1, &junk), -EINVAL);
	assert_null(junk);
}

/* Re-reads sample CPU as a scan does; removed processes lose their baselines. */
static void test_patch_cpu(void **state)
{
	struct scan_fixture *f = *state;
	_cleanup_(proc_snapshot_unrefp) struct proc_snapshot *base = NULL;
	_cleanup_(proc_snapshot_unrefp) struct proc_snapshot *patched = NULL;
	long hz = sysconf(_SC_CLK_TCK);
	struct fx_proc p = { .pid = 10,
			     .ppid = 1,
			     .comm = "busy",
			     .state = 'R',
			     .start = (unsigned long long)(1000 - 100) * hz,
			     .cmdline = "busy",
			     .cmdline_len = 5 };
	/* 8 is new: it sorts before 10, whose baselines the patch must tell apart from its. */
	struct fx_proc newer = { .pid = 8, .ppid = 1, .comm = "newer", .start = 1 };
	const pid_t reread[] = { 10, 8 };
	/* A third of the table's 1024 slots, so probe runs of several slots. */
	enum { N = 300 };
	struct fx_proc many[N];
	pid_t every_third[(N + 2) / 3];

	set_ticks(f, &p, 5 * hz);
	for (int i = 0; i < N; i++) {
		many[i] = (struct fx_proc){ .pid = 1000 + i,
					    .ppid = 1,
					    .comm = "m",
					    .start = (unsigned long long)(1000 - 100) * hz + i,
					    .utime = (unsigned long long)hz };
		fx_add_proc(f->root, &many[i]);
		if (i % 3 == 0)
			every_third[i / 3] = many[i].pid;
	}
	assert_int_equal(proc_scanner_scan(f->s, F(PID) | F(CPU_PERCENT), false, &base), 0);
	assert_float_equal(find_entry(base, 10, 10)->cpu_percent, 5.0, 1e-9);

	/* 2 s of CPU in 4 s: 50 %, as a scan would say; the others keep the base's values. */
	set_ticks(f, &p, 7 * hz);
	fx_clock_advance(&f->clock, 4);
	fx_add_proc(f->root, &newer);
	assert_int_equal(
		proc_scanner_patch(f->s, base, NULL, 0, reread, ELEMENTSOF(reread), &patched), 0);
	assert_non_null(find_entry(patched, 8, 8));
	assert_float_equal(find_entry(patched, 10, 10)->cpu_percent, 50.0, 1e-9);
	assert_same_entry(base, patched, 1);
	assert_same_entry(base, patched, 1000);

	/* The re-read moved the baselines: 0.5 s later a scan measures from the older one. */
	set_ticks(f, &p, 7 * hz + hz / 10);
	fx_clock_advance(&f->clock, 0.5);
	assert_float_equal(cpu_of(f, 10), 2.1 / 4.5 * 100, 1e-6);
	patched = proc_snapshot_unref(patched);

	/*
	 * Removing a third of the others drops their baselines, and only theirs (the table
	 * closes the holes): a scan 2 s later measures 0.5 s of CPU for the rest, a lifetime
	 * average for those.
	 */
	base = proc_snapshot_unref(base);
	assert_int_equal(proc_scanner_scan(f->s, F(PID) | F(CPU_PERCENT), false, &base), 0);
	assert_int_equal(proc_scanner_patch(f->s, base, every_third, ELEMENTSOF(every_third), NULL,
					    0, &patched),
			 0);
	assert_int_equal(patched->count, base->count - ELEMENTSOF(every_third));
	assert_sorted(patched);
	for (int i = 0; i < N; i++) {
		many[i].utime = (unsigned long long)(hz + hz / 2);
		fx_add_proc(f->root, &many[i]);
	}
	fx_clock_advance(&f->clock, 2);
	base = proc_snapshot_unref(base);
	assert_int_equal(proc_scanner_scan(f->s, F(PID) | F(CPU_PERCENT), false, &base), 0);
	for (int i = 0; i < N; i++) {
		const struct proc_entry *e = find_entry(base, many[i].pid, many[i].pid);
		double lifetime =
			1.5 / (f->clock.boottime_ns / 1e9 - (double)many[i].start / hz) * 100;

		assert_non_null(e);
		assert_float_equal(e->cpu_percent, (i % 3 == 0 ? lifetime : 25.0), 1e-6);
	}
}

/*
 * The home slot of a process's CPU baselines in the scanner's table of 1024 slots: a copy of
 * hash_u64() and cpu_hash() in procinfo.c, so the next test can put a probe run across the end
 * of the table. Should they change, that test still passes but may lose the case it aims at.
 */
static size_t baseline_home(pid_t pid, uint64_t start)
{
	uint64_t x = ((uint64_t)(uint32_t)pid << 1) ^ start * UINT64_C(0x9e3779b97f4a7c15);

	x ^= x >> 33;
	x *= UINT64_C(0xff51afd7ed558ccd);
	x ^= x >> 33;
	x *= UINT64_C(0xc4ceb9fe1a85ec53);
	x ^= x >> 33;
	return (size_t)x & 1023;
}

/*
 * Dropping baselines from a probe run that wraps past the end of the table: processes whose
 * home is one of the last slots, then ones whose home is one of the first, so the first
 * group's run overflows into slots 0.. where the second's live. Removing some of the first
 * group must leave every other process findable.
 */
static void test_patch_baselines_wrap(void **state)
{
	struct scan_fixture *f = *state;
	_cleanup_(proc_snapshot_unrefp) struct proc_snapshot *base = NULL;
	_cleanup_(proc_snapshot_unrefp) struct proc_snapshot *patched = NULL;
	long hz = sysconf(_SC_CLK_TCK);
	const unsigned long long start = (unsigned long long)(1000 - 100) * hz;
	enum { PER_GROUP = 8 };
	struct fx_proc procs[2 * PER_GROUP];
	pid_t gone[PER_GROUP];
	size_t n = 0, n_end = 0, n_gone = 0;

	for (pid_t pid = 1000; n < ELEMENTSOF(procs) && pid < 1000000; pid++) {
		size_t home = baseline_home(pid, start);
		bool at_end = home >= 1021, at_start = home <= 1;

		if ((at_end && n_end < PER_GROUP) || (at_start && n - n_end < PER_GROUP)) {
			procs[n++] = (struct fx_proc){ .pid = pid,
						       .ppid = 1,
						       .comm = at_end ? "end" : "start",
						       .start = start,
						       .utime = (unsigned long long)hz };
			if (at_end && n_end++ % 2 == 0)
				gone[n_gone++] = pid;
		}
	}
	assert_int_equal(n, ELEMENTSOF(procs));
	for (size_t i = 0; i < n; i++)
		fx_add_proc(f->root, &procs[i]);

	assert_int_equal(proc_scanner_scan(f->s, F(PID) | F(CPU_PERCENT), false, &base), 0);
	assert_int_equal(proc_scanner_patch(f->s, base, gone, n_gone, NULL, 0, &patched), 0);
	assert_int_equal(patched->count, base->count - n_gone);
	for (size_t i = 0; i < n; i++) {
		procs[i].utime = (unsigned long long)(hz + hz / 2);
		fx_add_proc(f->root, &procs[i]);
	}
	fx_clock_advance(&f->clock, 2);
	base = proc_snapshot_unref(base);
	assert_int_equal(proc_scanner_scan(f->s, F(PID) | F(CPU_PERCENT), false, &base), 0);
	for (size_t i = 0; i < n; i++) {
		const struct proc_entry *e = find_entry(base, procs[i].pid, procs[i].pid);
		bool was_gone = false;

		for (size_t k = 0; k < n_gone; k++)
			was_gone |= gone[k] == procs[i].pid;
		assert_non_null(e);
		if (was_gone)
			assert_true(e->cpu_percent < 2.0); /* lifetime: 1.5 s in 102 s */
		else
			assert_float_equal(e->cpu_percent, 25.0, 1e-6);
	}
}

/* The real /proc: a child appears when listed as changed, and goes when listed as gone. */
static void test_patch_real_proc(void **state)
{
	_cleanup_(proc_scanner_freep) struct proc_scanner *s = NULL;
	_cleanup_(proc_snapshot_unrefp) struct proc_snapshot *base = NULL;
	_cleanup_(proc_snapshot_unrefp) struct proc_snapshot *with = NULL;
	_cleanup_(proc_snapshot_unrefp) struct proc_snapshot *without = NULL;
	_cleanup_(proc_snapshot_unrefp) struct proc_snapshot *late = NULL;
	const uint64_t fields =
		F(PID) | F(PPID) | F(COMM) | F(CMDLINE) | F(USER) | F(EXE) | F(CPU_PERCENT);
	pid_t parent = getpid(), child;
	const struct proc_entry *e;

	assert_int_equal(proc_scanner_new("/proc", &s), 0);
	assert_int_equal(proc_scanner_scan(s, fields, false, &base), 0);
	child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		/* Dies with the test if it fails before killing us. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(0);
		for (;;)
			pause();
	}

	assert_int_equal(proc_scanner_patch(s, base, NULL, 0, &child, 1, &with), 0);
	e = find_entry(with, child, child);
	assert_non_null(e);
	assert_int_equal(e->ppid, parent);
	assert_string_equal(e->comm, find_entry(with, parent, parent)->comm);
	assert_int_equal(with->count, base->count + !find_entry(base, child, child));
	assert_sorted(with);
	assert_same_entry(base, with, parent);

	assert_int_equal(kill(child, SIGKILL), 0);
	assert_int_equal(waitpid(child, NULL, 0), child);
	assert_int_equal(proc_scanner_patch(s, with, &child, 1, NULL, 0, &without), 0);
	assert_null(find_entry(without, child, child));
	assert_int_equal(without->count, with->count - 1);
	assert_same_entry(with, without, parent);
	/* Listed as changed but already reaped: dropped too. */
	assert_int_equal(proc_scanner_patch(s, with, NULL, 0, &child, 1, &late), 0);
	assert_null(find_entry(late, child, child));
	check_text_equals_json(without, fields);
}

/* The real /proc: our own process, as the kernel reports it. */
static void test_real_proc(void **state)
{
	_cleanup_(proc_scanner_freep) struct proc_scanner *s = NULL;
	_cleanup_(proc_snapshot_unrefp) struct proc_snapshot *snap = NULL;
	_cleanup_(proc_snapshot_unrefp) struct proc_snapshot *fresh = NULL;
	const struct proc_entry *e, *e2;
	char comm[64] = "";
	FILE *f;

	assert_int_equal(proc_scanner_new("/proc", &s), 0);
	assert_int_equal(strlen(proc_scanner_boot_id(s)), 36);
	assert_int_equal(proc_scanner_scan(s, PROC_FIELDS_ALL, false, &snap), 0);
	assert_true(snap->count >= 2);
	e = find_entry(snap, getpid(), getpid());
	assert_non_null(e);
	assert_int_equal(e->ppid, getppid());
	assert_int_equal(e->uid, geteuid());
	assert_int_equal(e->gid, getegid());
	f = fopen("/proc/self/comm", "re");
	assert_non_null(f);
	assert_non_null(fgets(comm, sizeof(comm), f));
	fclose(f);
	comm[strcspn(comm, "\n")] = '\0';
	assert_string_equal(e->comm, comm);
	assert_true(e->cmdline_len > 0);
	assert_true(e->state == 'R');
	assert_non_null(e->exe);
	assert_non_null(e->cgroup);
	assert_true(e->ns[PROC_NS_PID] != 0);
	assert_true(e->rss_kb > 0);
	check_text_equals_json(snap, PROC_FIELDS_ALL);

	/* Read alone, and with the cache off: the same process. */
	proc_scanner_set_cache_ttl(s, 0);
	assert_int_equal(proc_scanner_read_pid(s, getpid(), PROC_FIELDS_ALL, &fresh), 0);
	e2 = &fresh->entries[0];
	assert_int_equal(e2->pid, getpid());
	assert_int_equal(e2->start_ticks, e->start_ticks);
	assert_int_equal(e2->cmdline_len, e->cmdline_len);
	assert_memory_equal(e2->cmdline, e->cmdline, e->cmdline_len);
	assert_string_equal(e2->exe, e->exe);
	assert_string_equal(e2->cgroup, e->cgroup);
	assert_memory_equal(e2->ns, e->ns, sizeof(e->ns));
	assert_string_equal(e2->user, e->user);
	fresh = proc_snapshot_unref(fresh);

	/* The threads view has our main thread. */
	assert_int_equal(proc_scanner_scan(s, F(PID) | F(TID) | F(COMM), true, &fresh), 0);
	assert_non_null(find_entry(fresh, getpid(), getpid()));
	fresh = proc_snapshot_unref(fresh);

	/* PID 1 is always there; a PID past pid_max never is. */
	assert_int_equal(proc_scanner_read_pid(s, 1, F(PID), &fresh), 0);
	fresh = proc_snapshot_unref(fresh);
	assert_int_equal(proc_scanner_read_pid(s, 0x7ffffff0, F(PID), &fresh), -ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_stat_basic),
		cmocka_unit_test(test_parse_stat_tricky_comm),
		cmocka_unit_test(test_parse_stat_malformed),
		cmocka_unit_test(test_parse_status),
		cmocka_unit_test(test_parse_cgroup),
		cmocka_unit_test(test_container_id),
		cmocka_unit_test(test_field_names),
		cmocka_unit_test_setup_teardown(test_scan_fixture, scan_setup, scan_teardown),
		cmocka_unit_test_setup_teardown(test_scan_selective_fields, scan_setup,
						scan_teardown),
		cmocka_unit_test_setup_teardown(test_cpu_percent, scan_setup, scan_teardown),
		cmocka_unit_test_setup_teardown(test_cache, scan_setup, scan_teardown),
		cmocka_unit_test_setup_teardown(test_threads, scan_setup, scan_teardown),
		cmocka_unit_test_setup_teardown(test_read_pid, scan_setup, scan_teardown),
		cmocka_unit_test_setup_teardown(test_host_info, scan_setup, scan_teardown),
		cmocka_unit_test(test_scanner_new_errors),
		cmocka_unit_test_setup_teardown(test_text_matches_json, scan_setup, scan_teardown),
		cmocka_unit_test(test_real_proc),
		cmocka_unit_test_setup_teardown(test_patch, scan_setup, scan_teardown),
		cmocka_unit_test_setup_teardown(test_patch_lifetime, scan_setup, scan_teardown),
		cmocka_unit_test_setup_teardown(test_patch_threads_view, scan_setup, scan_teardown),
		cmocka_unit_test_setup_teardown(test_patch_cpu, scan_setup, scan_teardown),
		cmocka_unit_test_setup_teardown(test_patch_baselines_wrap, scan_setup,
						scan_teardown),
		cmocka_unit_test(test_patch_real_proc),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
