/* SPDX-License-Identifier: MIT */
/*
 * The /proc poll source of k2i/proctrace.c against crafted /proc trees (proc_fixture.h): what it
 * reports between two scans, and that processes vanishing while a scan reads them are skipped,
 * wherever they fall in the listing.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/event.h>

#include "k2i/proctrace.h"
#include "libcommon/cleanup.h"
#include "proc_fixture.h"

#define PF_FORKNOEXEC 0x40u

struct seen {
	struct proc_event ev[16];
	size_t n;
};

static void on_event(const struct proc_event *ev, void *userdata)
{
	struct seen *s = userdata;

	assert_true(s->n < sizeof(s->ev) / sizeof(s->ev[0]));
	s->ev[s->n++] = *ev;
}

static size_t count(const struct seen *s, enum proc_event_type type, pid_t pid)
{
	size_t n = 0;

	for (size_t i = 0; i < s->n; i++)
		n += s->ev[i].type == type && s->ev[i].pid == pid;
	return n;
}

/* An empty directory root/NAME: a process that exited while the scan read it. */
static void add_vanished(const char *root, const char *name)
{
	_cleanup_free_ char *path = fx_path("%s/%s", root, name);

	fx_mkdir_p(path);
}

/* Starts the poll source on @root, scanning every 10 ms. */
static struct proctrace *poll_new(struct event_base *base, const char *root, struct seen *s)
{
	struct proctrace_options o;
	struct proctrace *t = NULL;

	proctrace_options_init(&o);
	o.no_bpf = true;
	o.no_netlink = true;
	o.poll_interval_ms = 10;
	o.proc_root = root;
	assert_int_equal(proctrace_new(base, &o, on_event, s, &t), 0);
	assert_int_equal(proctrace_source(t), PROCTRACE_SOURCE_POLL);
	return t;
}

/* Runs @base through a few scans. */
static void run_scans(struct event_base *base)
{
	const struct timeval tv = { 0, 45 * 1000 };

	assert_int_equal(event_base_loopexit(base, &tv), 0);
	assert_int_equal(event_base_dispatch(base), 0);
}

/*
 * Directories whose stat cannot be read are processes that exited between the listing and the
 * read. With nothing readable after them, the end of the listing must still be the end, not
 * the ENOENT of the last read (k2i failed to start when the newest process died at that moment).
 */
static void test_vanished_at_end_of_listing(void **state)
{
	_cleanup_free_ char *root = fx_new_root();
	struct event_base *base = event_base_new();
	struct proctrace *t;
	struct seen s = {};

	(void)state;
	assert_non_null(base);
	add_vanished(root, "4000");
	add_vanished(root, "4001");
	t = poll_new(base, root, &s);
	run_scans(base);
	assert_int_equal(s.n, 0);

	/* One that reads, then ones that vanished: still a clean scan, and the one is new. */
	fx_add_proc(root, &(struct fx_proc){ .pid = 30, .ppid = 1, .comm = "late", .start = 9 });
	run_scans(base);
	assert_int_equal(count(&s, PROC_EVENT_FORK, 30), 1);
	assert_int_equal(count(&s, PROC_EVENT_EXEC, 30), 1);
	assert_int_equal(s.n, 2);

	proctrace_free(t);
	event_base_free(base);
	fx_rm_rf(root);
}

/* What the differences between two scans are reported as. */
static void test_scan_differences(void **state)
{
	_cleanup_free_ char *root = fx_new_root();
	struct event_base *base = event_base_new();
	struct proctrace *t;
	struct seen s = {};

	(void)state;
	assert_non_null(base);
	fx_add_proc(root, &(struct fx_proc){ .pid = 1, .comm = "init", .start = 1 });
	fx_add_proc(root, &(struct fx_proc){ .pid = 10, .ppid = 1, .comm = "old", .start = 5 });
	fx_add_proc(root, &(struct fx_proc){ .pid = 11, .ppid = 1, .comm = "dies", .start = 6 });
	fx_add_proc(root, &(struct fx_proc){ .pid = 12, .ppid = 1, .comm = "reused", .start = 7 });
	t = poll_new(base, root, &s);
	run_scans(base);
	assert_int_equal(s.n, 0); /* the first scan is the baseline */

	/* 20 forks without exec; 10 execs (new name); 11 is a zombie; 12 is another process. */
	fx_add_proc(
		root,
		&(struct fx_proc){
			.pid = 20, .ppid = 10, .comm = "old", .start = 8, .flags = PF_FORKNOEXEC });
	fx_add_proc(root, &(struct fx_proc){ .pid = 10, .ppid = 1, .comm = "new", .start = 5 });
	fx_add_proc(root, &(struct fx_proc){
				  .pid = 11, .ppid = 1, .comm = "dies", .start = 6, .state = 'Z' });
	fx_add_proc(root, &(struct fx_proc){ .pid = 12, .ppid = 1, .comm = "other", .start = 9 });
	add_vanished(root, "9999");
	run_scans(base);
	assert_int_equal(count(&s, PROC_EVENT_FORK, 20), 1);
	assert_int_equal(count(&s, PROC_EVENT_EXEC, 20), 0);
	assert_int_equal(count(&s, PROC_EVENT_EXEC, 10), 1);
	assert_int_equal(count(&s, PROC_EVENT_EXIT, 11), 1);
	assert_int_equal(count(&s, PROC_EVENT_EXIT, 12), 1);
	assert_int_equal(count(&s, PROC_EVENT_FORK, 12), 1);
	assert_int_equal(count(&s, PROC_EVENT_EXEC, 12), 1);
	assert_int_equal(count(&s, PROC_EVENT_FORK, 9999), 0);
	assert_int_equal(s.n, 6);

	/* The zombie is reaped: its exit was already told. 20 is gone without being a zombie. */
	fx_remove(root, "11");
	fx_remove(root, "20");
	s.n = 0;
	run_scans(base);
	assert_int_equal(count(&s, PROC_EVENT_EXIT, 20), 1);
	assert_int_equal(s.n, 1);

	proctrace_free(t);
	event_base_free(base);
	fx_rm_rf(root);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vanished_at_end_of_listing),
		cmocka_unit_test(test_scan_differences),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
