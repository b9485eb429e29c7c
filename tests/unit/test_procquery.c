/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "k2i/procinfo.h"
#include "k2i/procquery.h"
#include "tests/unit/proc_fixture.h"

#define F(x) PROC_FIELD_BIT(PROC_FIELD_##x)
#define ID64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
/* Users without names on any test machine, so "user" shows the number. */
#define U1 4000123
#define U2 4000124

/*
 * The process table of these tests. cpu_percent is each one's lifetime average (first scan):
 * utime / (1000 s of fixture boot time - start) with start 0 for all but 201.
 */
static const struct fx_proc procs[] = {
	{ .pid = 1,
	  .ppid = 0,
	  .comm = "init",
	  .state = 'S',
	  .utime = 300,
	  .rss = 1000,
	  .uid = 0,
	  .cmdline = "/sbin/init\0splash\0",
	  .cmdline_len = 18,
	  .cgroup = "0::/init.scope\n" },
	{ .pid = 2,
	  .ppid = 0,
	  .comm = "kthreadd",
	  .state = 'S',
	  .flags = 0x00208040,
	  .uid = 0,
	  .cmdline = "",
	  .cgroup = "0::/\n" },
	{ .pid = 100,
	  .ppid = 1,
	  .comm = "sshd",
	  .state = 'S',
	  .utime = 100,
	  .rss = 2000,
	  .uid = 0,
	  .cmdline = "/usr/sbin/sshd\0-D\0",
	  .cmdline_len = 18,
	  .cgroup = "0::/system.slice/ssh.service\n",
	  .start = 100 },
	{ .pid = 200,
	  .ppid = 100,
	  .comm = "bash",
	  .state = 'S',
	  .utime = 100,
	  .rss = 700,
	  .uid = U1,
	  .tty_nr = (136 << 8) | 1,
	  .cmdline = "-bash\0",
	  .cmdline_len = 6,
	  .cgroup = "0::/user.slice/user-4000123.slice/session-1.scope\n",
	  .start = 200 },
	{ .pid = 201,
	  .ppid = 200,
	  .comm = "python3",
	  .state = 'R',
	  .utime = 90000,
	  .rss = 500000,
	  .uid = U1,
	  .threads = 2,
	  .cmdline = "python3\0/home/u/train.py\0--epochs\0"
		     "10\0",
	  .cmdline_len = 37,
	  .cgroup = "0::/user.slice/user-4000123.slice/session-1.scope\n",
	  .start = 300 },
	{ .pid = 300,
	  .ppid = 1,
	  .comm = "nginx",
	  .state = 'R',
	  .utime = 100,
	  .rss = 3000,
	  .uid = U2,
	  .cmdline = "nginx: worker process\0\0\0\0",
	  .cmdline_len = 25,
	  .cgroup = "0::/system.slice/docker-" ID64 ".scope\n",
	  .start = 400 },
	{ .pid = 301,
	  .ppid = 1,
	  .comm = "nginx",
	  .state = 'S',
	  .utime = 50,
	  .rss = 3000,
	  .uid = U2,
	  .cmdline = "nginx: master process /usr/sbin/nginx\0",
	  .cmdline_len = 38,
	  .cgroup = "0::/system.slice/docker-" ID64 ".scope\n",
	  .start = 400 },
	{ .pid = 400,
	  .ppid = 200,
	  .comm = "defunct",
	  .state = 'Z',
	  .utime = 1,
	  .uid = U1,
	  .cmdline = "",
	  .cgroup = "0::/user.slice\n",
	  .start = 500 },
};

struct fixture {
	char *root;
	struct proc_scanner *s;
	struct fx_clock clock;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->root = fx_new_root();
	for (size_t i = 0; i < ELEMENTSOF(procs); i++)
		fx_add_proc(f->root, &procs[i]);
	fx_add_thread(f->root, &procs[4], 201, "python3", 40000, 300);
	fx_add_thread(f->root, &procs[4], 202, "pt_data", 50000, 301);
	assert_int_equal(proc_scanner_new(f->root, &f->s), 0);
	f->clock = (struct fx_clock){ .realtime_ns = (FX_BTIME + 1000) * 1000000000ULL,
				      .monotonic_ns = 7000000000000ULL,
				      .boottime_ns = 1000000000000ULL };
	proc_scanner_set_clock(f->s, fx_clock_cb, &f->clock);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	proc_scanner_free(f->s);
	fx_rm_rf(f->root);
	free(f->root);
	free(f);
	return 0;
}

/* Splits "a=1&b=2" into parameters (a part without '=' has a NULL value). */
struct params {
	char *buf;
	const char *keys[32];
	const char *values[32];
	size_t n;
};

static void params_split(struct params *p, const char *qs)
{
	char *save = NULL;

	memset(p, 0, sizeof(*p));
	p->buf = strdup(qs);
	assert_non_null(p->buf);
	for (char *part = strtok_r(p->buf, "&", &save); part; part = strtok_r(NULL, "&", &save)) {
		char *eq = strchr(part, '=');

		assert_true(p->n < 32);
		if (eq)
			*eq = '\0';
		p->keys[p->n] = part;
		p->values[p->n] = eq ? eq + 1 : NULL;
		p->n++;
	}
}

static struct proc_query *parse_ok(const char *qs)
{
	struct proc_query *q = NULL;
	char *err = NULL;
	struct params p;
	int r;

	params_split(&p, qs);
	r = proc_query_parse(p.keys, p.values, p.n, &q, &err);
	if (r < 0)
		fail_msg("'%s' rejected: %s", qs, err ? err : "(no message)");
	assert_null(err);
	free(p.buf);
	return q;
}

/*
 * Runs @qs over a fresh scan of the fixture (a threads view if the query asks) and returns the
 * result as "pid,pid,..." ("pid/tid" in a threads view), after checking that the text path
 * gives the same objects.
 */
static char *run(struct fixture *f, const char *qs, const char *comm_substring, json_t **ret)
{
	_cleanup_(proc_query_freep) struct proc_query *q = parse_ok(qs);
	_cleanup_(proc_snapshot_unrefp) struct proc_snapshot *snap = NULL;
	json_auto_t *a = NULL;
	json_auto_t *b = NULL;
	char *text = NULL, *out = NULL;
	size_t len = 0, count = 0, i;
	size_t size = 0;
	FILE *m = open_memstream(&out, &size);
	json_t *o;

	assert_int_equal(proc_scanner_scan(
				 f->s, proc_query_needed_fields(q) | (comm_substring ? F(COMM) : 0),
				 proc_query_threads(q), &snap),
			 0);
	assert_int_equal(proc_query_run(q, snap, comm_substring, NULL, &a), 0);
	assert_int_equal(proc_query_run_text(q, snap, comm_substring, NULL, &text, &len, &count),
			 0);
	b = json_loadb(text, len, 0, NULL);
	assert_non_null(b);
	assert_true(json_equal(a, b));
	assert_int_equal(count, json_array_size(a));
	free(text);

	json_array_foreach(a, i, o)
	{
		json_t *pid = json_object_get(o, "pid"), *tid = json_object_get(o, "tid");

		if (!pid) /* fields= without pid */
			continue;
		fprintf(m, "%s%lld", i ? "," : "", json_integer_value(pid));
		if (tid)
			fprintf(m, "/%lld", json_integer_value(tid));
	}
	fclose(m);
	if (ret)
		*ret = json_incref(a);
	return out;
}

#define assert_run(f, qs, expected)                                                          \
	do {                                                                                 \
		char *_got = run(f, qs, NULL, NULL);                                         \
		if (strcmp(_got, expected) != 0)                                             \
			fail_msg("query '%s': got '%s', expected '%s'", qs, _got, expected); \
		free(_got);                                                                  \
	} while (0)

static void test_no_filters(void **state)
{
	struct fixture *f = *state;
	_cleanup_(proc_query_freep) struct proc_query *q = NULL;
	_cleanup_(proc_snapshot_unrefp) struct proc_snapshot *snap = NULL;
	json_auto_t *a = NULL;
	char *err = NULL;

	/* Zero parameters and NULL: everything, all fields, in pid order. */
	assert_int_equal(proc_query_parse(NULL, NULL, 0, &q, &err), 0);
	assert_true(proc_query_output_fields(q) == PROC_FIELDS_ALL);
	assert_true(proc_query_needed_fields(q) == PROC_FIELDS_ALL);
	assert_false(proc_query_threads(q));
	assert_true(proc_query_output_fields(NULL) == PROC_FIELDS_ALL);
	assert_true(proc_query_needed_fields(NULL) == PROC_FIELDS_ALL);
	assert_false(proc_query_threads(NULL));
	assert_int_equal(proc_scanner_scan(f->s, PROC_FIELDS_ALL, false, &snap), 0);
	assert_int_equal(proc_query_run(NULL, snap, NULL, NULL, &a), 0);
	assert_int_equal(json_array_size(a), ELEMENTSOF(procs));
	assert_int_equal(json_object_size(json_array_get(a, 0)), _PROC_FIELD_MAX - 1);
	assert_run(f, "", "1,2,100,200,201,300,301,400");
	assert_null(proc_query_free(NULL));
}

static void test_filters(void **state)
{
	struct fixture *f = *state;

	assert_run(f, "pid=300,1", "1,300");
	assert_run(f, "pid=300&pid=2", "2,300"); /* repeated: merged */
	assert_run(f, "pid=999", "");
	assert_run(f, "user=root", "1,2,100");
	assert_run(f, "user=0,4000124", "1,2,100,300,301");
	assert_run(f, "user=4000123&state=R", "201");
	assert_run(f, "comm=nginx", "300,301");
	assert_run(f, "comm=bash,sshd", "100,200");
	assert_run(f, "comm=ngin", "");
	/* match: across arguments joined with spaces; comm for kernel threads and zombies. */
	assert_run(f, "match=train.py --epochs", "201");
	assert_run(f, "match=nginx", "300,301");
	assert_run(f, "match=worker process", "300");
	assert_run(f, "match=kthread", "2");
	assert_run(f, "match=defunct", "400");
	assert_run(f, "match=/sbin/", "1,100,301");
	assert_run(f, "cgroup=/system.slice", "100,300,301");
	assert_run(f, "cgroup=/system.slice/docker-", "300,301");
	assert_run(f, "cgroup=/user.slice/user-4000123.slice/", "200,201");
	assert_run(f, "cgroup=/", "1,2,100,200,201,300,301,400");
	assert_run(f, "state=R", "201,300");
	assert_run(f, "state=R,Z", "201,300,400");
	assert_run(f, "state=RZ", "201,300,400");
	assert_run(f, "state=D", "");
	/* Everything at once (AND). */
	assert_run(f, "user=4000124&comm=nginx&state=S&match=master&cgroup=/system", "301");
}

static void test_comm_substring(void **state)
{
	struct fixture *f = *state;
	char *got;

	got = run(f, "", "ngi", NULL);
	assert_string_equal(got, "300,301");
	free(got);
	got = run(f, "state=S", "h", NULL); /* sshd, bash, kthreadd */
	assert_string_equal(got, "2,100,200");
	free(got);
}

static void test_sort(void **state)
{
	struct fixture *f = *state;

	/*
	 * Lifetime CPU%: 201 (90 %) > 1 (0.3 %) > 300 > 200 > 100 (1 s of CPU each, the later
	 * started the higher) > 301 > 400 > 2 (none).
	 */
	assert_run(f, "sort=-cpu", "201,1,300,200,100,301,400,2");
	assert_run(f, "sort=cpu", "2,400,301,100,200,300,1,201");
	assert_run(f, "sort=-cpu_percent&limit=3", "201,1,300");
	assert_run(f, "sort=comm", "200,400,1,2,300,301,201,100");
	assert_run(f, "sort=-comm", "100,201,300,301,2,1,400,200");
	assert_run(f, "sort=-rss", "201,300,301,100,1,200,2,400");
	assert_run(f, "sort=rss_kb,-pid", "400,2,200,1,100,301,300,201");
	assert_run(f, "sort=-pid", "400,301,300,201,200,100,2,1");
	/* Ties by pid, ascending whatever the direction of the keys. */
	assert_run(f, "sort=ppid,-start", "1,2,300,301,100,200,400,201");
	assert_run(f, "sort=-time", "201,1,100,200,300,301,400,2");
	assert_run(f, "sort=user,-vsz,comm", "200,400,201,300,301,1,2,100");
	assert_run(f, "sort=+uid,mem&limit=4", "2,1,100,400");
	assert_run(f, "sort=threads,nice,gid,tid", "1,2,100,200,300,301,400,201");
	assert_run(f, "limit=2", "1,2");
	assert_run(f, "limit=1000000", "1,2,100,200,201,300,301,400");
}

static void test_fields(void **state)
{
	struct fixture *f = *state;
	_cleanup_(proc_query_freep) struct proc_query *q = parse_ok("fields=comm,pid&fields=user");
	json_auto_t *a = NULL;
	const char *key;
	json_t *v;
	char *got;

	assert_true(proc_query_output_fields(q) == (F(COMM) | F(PID) | F(USER)));
	/* user= reads uid, match= cmdline and comm, sort= its keys. */
	assert_true(proc_query_needed_fields(q) == (F(COMM) | F(PID) | F(USER)));
	q = proc_query_free(q);
	q = parse_ok("fields=pid&user=root&match=x&cgroup=/&state=R&sort=user,-cpu&comm=a");
	assert_true(proc_query_needed_fields(q) ==
		    (F(PID) | F(UID) | F(CMDLINE) | F(COMM) | F(CGROUP) | F(STATE) | F(USER) |
		     F(CPU_PERCENT)));
	assert_true(proc_query_output_fields(q) == F(PID));
	q = proc_query_free(q);

	got = run(f, "fields=pid,comm,user,tty&pid=200", NULL, &a);
	assert_string_equal(got, "200");
	free(got);
	json_object_foreach(json_array_get(a, 0), key, v)
		assert_true(strcmp(key, "pid") == 0 || strcmp(key, "comm") == 0 ||
			    strcmp(key, "user") == 0 || strcmp(key, "tty") == 0);
	assert_int_equal(json_object_size(json_array_get(a, 0)), 4);
	assert_string_equal(json_string_value(json_object_get(json_array_get(a, 0), "user")),
			    "4000123");
	assert_string_equal(json_string_value(json_object_get(json_array_get(a, 0), "tty")),
			    "pts/1");
	json_decref(TAKE_PTR(a));

	/* Fields without pid: objects without it; the filters still apply. */
	got = run(f, "fields=comm&user=root", NULL, &a);
	free(got);
	assert_int_equal(json_array_size(a), 3);
	assert_int_equal(json_object_size(json_array_get(a, 0)), 1);
	assert_string_equal(json_string_value(json_object_get(json_array_get(a, 2), "comm")),
			    "sshd");
}

static void test_threads(void **state)
{
	struct fixture *f = *state;
	_cleanup_(proc_query_freep) struct proc_query *q = parse_ok("threads=1");

	assert_true(proc_query_threads(q));
	q = proc_query_free(q);
	q = parse_ok("threads=false");
	assert_false(proc_query_threads(q));
	q = proc_query_free(q);
	q = parse_ok("threads=true");
	assert_true(proc_query_threads(q));

	/* pid= selects every thread of the process. */
	assert_run(f, "threads=1&pid=201", "201/201,201/202");
	assert_run(f, "threads=1&sort=-cpu", "201/202,201/201");
	assert_run(f, "threads=1&comm=pt_data&fields=pid,tid,comm", "201/202");
	assert_run(f, "threads=0&pid=201", "201");
}

static void test_run_needs_fields(void **state)
{
	struct fixture *f = *state;
	_cleanup_(proc_query_freep) struct proc_query *q = parse_ok("user=root&fields=pid");
	_cleanup_(proc_snapshot_unrefp) struct proc_snapshot *snap = NULL;
	json_t *a = NULL;
	char *text = NULL;
	size_t len;

	assert_int_equal(proc_scanner_scan(f->s, F(PID), false, &snap), 0);
	assert_int_equal(proc_query_run(q, snap, NULL, NULL, &a), -EINVAL);
	assert_int_equal(proc_query_run_text(q, snap, NULL, NULL, &text, &len, NULL), -EINVAL);
	assert_int_equal(proc_query_run(NULL, snap, NULL, NULL, &a), -EINVAL); /* all fields */
	assert_int_equal(proc_query_run(NULL, snap, "x", NULL, &a), -EINVAL); /* comm */
	assert_null(a);
	assert_null(text);
}

/* Parses @qs, expects -EINVAL and exactly @message. */
static void expect_error(const char *qs, const char *message)
{
	struct proc_query *q = NULL;
	char *err = NULL;
	struct params p;

	params_split(&p, qs);
	assert_int_equal(proc_query_parse(p.keys, p.values, p.n, &q, &err), -EINVAL);
	assert_null(q);
	if (!err || strcmp(err, message) != 0)
		fail_msg("query '%s': got message '%s', expected '%s'", qs, err, message);
	free(err);
	/* Without a place for the message, the same verdict. */
	assert_int_equal(proc_query_parse(p.keys, p.values, p.n, &q, NULL), -EINVAL);
	free(p.buf);
}

static void test_errors(void **state)
{
	static const char pid_why[] = "expected a comma-separated list of process IDs";
	char big[9100], msg[512];

	expect_error("foo=1", "unknown parameter 'foo' (known: pid, user, comm, match, cgroup, "
			      "state, sort, limit, fields, threads)");
	expect_error("pid=1&PID=2", "unknown parameter 'PID' (known: pid, user, comm, match, "
				    "cgroup, state, sort, limit, fields, threads)");
	expect_error("limit=1&limit=2", "parameter 'limit' may be given only once");
	expect_error("sort=pid&sort=comm", "parameter 'sort' may be given only once");
	expect_error("match=a&match=b", "parameter 'match' may be given only once");
	expect_error("cgroup=/a&cgroup=/b", "parameter 'cgroup' may be given only once");
	expect_error("threads=1&threads=1", "parameter 'threads' may be given only once");
	expect_error("pid=", "empty value for 'pid'");
	expect_error("threads", "empty value for 'threads'");

	snprintf(msg, sizeof(msg), "invalid value 'abc' for 'pid': %s", pid_why);
	expect_error("pid=abc", msg);
	snprintf(msg, sizeof(msg), "invalid value 'x' for 'pid': %s", pid_why);
	expect_error("pid=1,x", msg);
	snprintf(msg, sizeof(msg), "invalid value '0' for 'pid': %s", pid_why);
	expect_error("pid=0", msg);
	snprintf(msg, sizeof(msg), "invalid value '-1' for 'pid': %s", pid_why);
	expect_error("pid=-1", msg);
	snprintf(msg, sizeof(msg), "invalid value '2147483648' for 'pid': %s", pid_why);
	expect_error("pid=2147483648", msg);
	snprintf(msg, sizeof(msg), "invalid value ',' for 'pid': %s", pid_why);
	expect_error("pid=,", msg);

	expect_error("user=nosuchuser-k2i-test", "invalid value 'nosuchuser-k2i-test' for 'user': "
						 "no such user");
	expect_error("user=,", "invalid value ',' for 'user': expected a comma-separated list of "
			       "user names or uids");
	expect_error("comm=,,", "invalid value ',,' for 'comm': expected a comma-separated list "
				"of command names");
	expect_error("state=Q", "invalid value 'Q' for 'state': expected process state letters "
				"such as 'R,S' or 'RS' (one of RSDZTtXxKWPI)");
	expect_error("state=R,s", "invalid value 'R,s' for 'state': expected process state letters "
				  "such as 'R,S' or 'RS' (one of RSDZTtXxKWPI)");
	expect_error("state=,", "invalid value ',' for 'state': expected process state letters "
				"such as 'R,S' or 'RS' (one of RSDZTtXxKWPI)");
	expect_error("sort=cmdline", "invalid value 'cmdline' for 'sort': not a sortable field "
				     "(sortable: pid, tid, ppid, uid, gid, threads, nice, "
				     "cpu_percent, cpu_time_ms, rss_kb, vsz_kb, mem_percent, "
				     "start_time, comm, user)");
	expect_error("sort=-bogus", "invalid value '-bogus' for 'sort': unknown field (aliases: "
				    "cpu, mem, rss, vsz, time, start)");
	expect_error("sort=pid,pid,pid,pid,pid,pid,pid,pid,pid",
		     "invalid value 'pid,pid,pid,pid,pid,pid,pid,pid,pid' for 'sort': at most 8 "
		     "sort keys are allowed");
	expect_error("limit=0", "invalid value '0' for 'limit': expected a number from 1 to "
				"1000000");
	expect_error("limit=1000001", "invalid value '1000001' for 'limit': expected a number "
				      "from 1 to 1000000");
	expect_error("limit=ten", "invalid value 'ten' for 'limit': expected a number from 1 to "
				  "1000000");
	expect_error(
		"fields=pid,bogus",
		"invalid value 'bogus' for 'fields': unknown field (known: key, pid, tid, ppid, "
		"uid, user, gid, state, comm, cmdline, exe, threads, nice, cpu_percent, "
		"cpu_time_ms, rss_kb, vsz_kb, mem_percent, tty, start_time, cgroup, "
		"container_id, ns, instance)");
	expect_error("threads=yes", "invalid value 'yes' for 'threads': expected 0, 1, true or "
				    "false");

	/* Quoting: control and non-ASCII bytes escaped, long values cut. */
	snprintf(msg, sizeof(msg), "invalid value '\\x01a\\xff\\x5c' for 'pid': %s", pid_why);
	expect_error("pid=\x01"
		     "a\xff\\",
		     msg);
	memset(big, 'a', 100);
	big[100] = '\0';
	snprintf(msg, sizeof(msg),
		 "invalid value '%.64s...' for 'limit': expected a number from "
		 "1 to 1000000",
		 big);
	{
		char *qs = fx_path("limit=%s", big);

		expect_error(qs, msg);
		free(qs);
	}

	/* Over 8 KiB. */
	memcpy(big, "match=", 6);
	memset(big + 6, 'x', 9000);
	big[9006] = '\0';
	expect_error(big, "value for 'match' is too long (9000 bytes, at most 8192)");
}

static void test_parse_edge_cases(void **state)
{
	_cleanup_(proc_query_freep) struct proc_query *q = NULL;
	const char *keys[] = { "pid", "fields" };
	const char *values[] = { " 1, 2 ", "pid comm" };
	char *err = NULL;

	/* Spaces separate like commas (but in comm=); empty items are ignored. */
	assert_int_equal(proc_query_parse(keys, values, 2, &q, &err), 0);
	assert_true(proc_query_output_fields(q) == (F(PID) | F(COMM)));
	q = proc_query_free(q);
	/* NULL keys with parameters is the caller's bug. */
	assert_int_equal(proc_query_parse(NULL, values, 1, &q, &err), -EINVAL);
	assert_null(err);
	q = parse_ok("comm=my prog,other&state=R, S&sort=-cpu, pid");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_no_filters, setup, teardown),
		cmocka_unit_test_setup_teardown(test_filters, setup, teardown),
		cmocka_unit_test_setup_teardown(test_comm_substring, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sort, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fields, setup, teardown),
		cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
		cmocka_unit_test_setup_teardown(test_run_needs_fields, setup, teardown),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_parse_edge_cases),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
