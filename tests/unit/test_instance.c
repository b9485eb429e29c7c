/* SPDX-License-Identifier: MIT */
/* The instance registry (libcommon/instance.c) in a temporary rundir. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "libcommon/cleanup.h"
#include "libcommon/fdutil.h"
#include "libcommon/instance.h"

static char rundir[64];

static int setup(void **state)
{
	snprintf(rundir, sizeof(rundir), "/tmp/test_instance.XXXXXX");
	return mkdtemp(rundir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", rundir);
	return system(cmd) == 0 ? 0 : -1;
}

static void make_record(struct instance_record *rec, const char *id, pid_t pid)
{
	char *sock = NULL;

	memset(rec, 0, sizeof(*rec));
	snprintf(rec->id, sizeof(rec->id), "%s", id);
	rec->kind = INSTANCE_VM;
	rec->pid = pid;
	assert_int_equal(instance_pid_start(pid, &rec->pid_start), 0);
	assert_int_equal(instance_paths(rundir, id, NULL, NULL, &sock), 0);
	rec->api_socket = sock;
	rec->started_at_ns = 1795410000123456789ull; /* 2026-11-23T05:00:00.123456789Z */
}

/* A pid that certainly does not exist any more: a reaped child's. */
static pid_t dead_pid(void)
{
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0)
		_exit(0);
	assert_int_equal(waitpid(pid, NULL, 0), pid);
	return pid;
}

static void test_ids(void **state)
{
	char id[INSTANCE_ID_MAX + 1], id2[INSTANCE_ID_MAX + 1];
	char long_id[INSTANCE_ID_MAX + 2];

	assert_true(instance_id_valid("abc"));
	assert_true(instance_id_valid("A_b-9"));
	assert_false(instance_id_valid(""));
	assert_false(instance_id_valid(NULL));
	assert_false(instance_id_valid("-abc"));
	assert_false(instance_id_valid("a/b"));
	assert_false(instance_id_valid(".."));
	assert_false(instance_id_valid("a.json"));
	assert_false(instance_id_valid("a b"));
	memset(long_id, 'a', sizeof(long_id));
	long_id[INSTANCE_ID_MAX] = '\0';
	assert_true(instance_id_valid(long_id));
	long_id[INSTANCE_ID_MAX] = 'a';
	long_id[INSTANCE_ID_MAX + 1] = '\0';
	assert_false(instance_id_valid(long_id));

	assert_int_equal(instance_id_new(id), 0);
	assert_int_equal(strlen(id), 16);
	assert_int_equal(strspn(id, "0123456789abcdef"), 16);
	assert_true(instance_id_valid(id));
	assert_int_equal(instance_id_new(id2), 0);
	assert_string_not_equal(id, id2);
}

static void test_kinds_and_paths(void **state)
{
	enum instance_kind k;
	char *dir = NULL, *json = NULL, *sock = NULL;

	assert_string_equal(instance_kind_to_string(INSTANCE_VM), "vm");
	assert_string_equal(instance_kind_to_string(INSTANCE_SANDBOX), "sandbox");
	assert_int_equal(instance_kind_from_string("sandbox", &k), 0);
	assert_int_equal(k, INSTANCE_SANDBOX);
	assert_int_equal(instance_kind_from_string("vm", &k), 0);
	assert_int_equal(k, INSTANCE_VM);
	assert_int_equal(instance_kind_from_string("VM", &k), -EINVAL);

	assert_int_equal(instance_paths("/run/k2i", "abc", &dir, &json, &sock), 0);
	assert_string_equal(dir, "/run/k2i/instances");
	assert_string_equal(json, "/run/k2i/instances/abc.json");
	assert_string_equal(sock, "/run/k2i/instances/abc.sock");
	free(dir);
	free(json);
	free(sock);
	dir = NULL;
	assert_int_equal(instance_paths("/run/k2i", "../x", &dir, NULL, NULL), -EINVAL);
	assert_null(dir);
}

static void test_pid_start(void **state)
{
	uint64_t start = 0;

	assert_int_equal(instance_pid_start(getpid(), &start), 0);
	assert_true(start > 0);
	assert_int_equal(instance_pid_start(dead_pid(), &start), -ESRCH);
	assert_int_equal(instance_pid_start(0, &start), -ESRCH);
}

static void test_round_trip(void **state)
{
	struct instance_record rec, back;
	_cleanup_free_ char *json = NULL;
	_cleanup_free_ char *text = NULL;
	struct instance_record *list = NULL;
	size_t n = 99;
	struct stat st;
	json_t *o;

	/* No directory yet: an empty list. */
	assert_int_equal(instance_list(rundir, &list, &n), 0);
	assert_int_equal(n, 0);
	instance_records_free(list, n);

	make_record(&rec, "vm1", getpid());
	assert_int_equal(instance_write(rundir, &rec), 0);
	assert_int_equal(instance_paths(rundir, "vm1", NULL, &json, NULL), 0);
	assert_int_equal(stat(json, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0644);

	/* The documented format, field by field. */
	assert_int_equal(read_full_file_at(AT_FDCWD, json, 65536, &text, NULL), 0);
	o = json_loads(text, 0, NULL);
	assert_non_null(o);
	assert_string_equal(json_string_value(json_object_get(o, "id")), "vm1");
	assert_string_equal(json_string_value(json_object_get(o, "kind")), "vm");
	assert_int_equal(json_integer_value(json_object_get(o, "pid")), getpid());
	assert_true(json_is_string(json_object_get(o, "pid_start")));
	assert_string_equal(json_string_value(json_object_get(o, "api_socket")), rec.api_socket);
	assert_string_equal(json_string_value(json_object_get(o, "started_at")),
			    "2026-11-23T05:00:00.123Z");
	json_decref(o);

	assert_int_equal(instance_read(json, &back), 0);
	assert_string_equal(back.id, "vm1");
	assert_int_equal(back.kind, INSTANCE_VM);
	assert_int_equal(back.pid, getpid());
	assert_int_equal(back.pid_start, rec.pid_start);
	assert_string_equal(back.api_socket, rec.api_socket);
	/* Milliseconds survive; finer digits are not written. */
	assert_int_equal(back.started_at_ns, 1795410000123000000ull);
	assert_true(instance_alive(&back));
	instance_record_done(&back);

	assert_int_equal(instance_list(rundir, &list, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(list[0].id, "vm1");
	instance_records_free(list, n);

	assert_int_equal(instance_remove(rundir, "vm1"), 0);
	assert_int_equal(stat(json, &st), -1);
	/* Missing files are not an error. */
	assert_int_equal(instance_remove(rundir, "vm1"), 0);
	assert_int_equal(instance_list(rundir, &list, &n), 0);
	assert_int_equal(n, 0);
	instance_records_free(list, n);
	instance_record_done(&rec);
}

static void test_live_duplicate_and_stale(void **state)
{
	struct instance_record rec, other, back;
	_cleanup_free_ char *json = NULL;

	make_record(&rec, "dup", getpid());
	assert_int_equal(instance_write(rundir, &rec), 0);
	/* Our own process is alive: a second writer of the id is refused. */
	make_record(&other, "dup", getpid());
	other.kind = INSTANCE_SANDBOX;
	assert_int_equal(instance_write(rundir, &other), -EEXIST);
	assert_int_equal(instance_paths(rundir, "dup", NULL, &json, NULL), 0);
	assert_int_equal(instance_read(json, &back), 0);
	assert_int_equal(back.kind, INSTANCE_VM);
	instance_record_done(&back);

	/* Same pid but another start time: a reused pid, so the record is stale. */
	rec.pid_start += 1;
	assert_int_equal(instance_write(rundir, &rec), -EEXIST); /* the live record still stands */
	assert_int_equal(instance_remove(rundir, "dup"), 0);
	assert_int_equal(instance_write(rundir, &rec), 0);
	assert_int_equal(instance_read(json, &back), 0);
	assert_false(instance_alive(&back));
	instance_record_done(&back);
	assert_int_equal(instance_write(rundir, &other), 0);
	assert_int_equal(instance_read(json, &back), 0);
	assert_int_equal(back.kind, INSTANCE_SANDBOX);
	assert_true(instance_alive(&back));
	instance_record_done(&back);
	assert_int_equal(instance_remove(rundir, "dup"), 0);

	/* A dead pid's record is replaced too. */
	rec.pid = dead_pid();
	assert_int_equal(instance_write(rundir, &rec), 0);
	assert_int_equal(instance_write(rundir, &other), 0);
	assert_int_equal(instance_remove(rundir, "dup"), 0);

	instance_record_done(&rec);
	instance_record_done(&other);
}

static void test_bad_records(void **state)
{
	struct instance_record rec, back, *list = NULL;
	_cleanup_free_ char *text = NULL;
	char path[160];
	size_t n = 0;
	static const char *const bad[] = {
		"not json",
		"[]",
		"{\"id\":\"x\"}",
		"{\"id\":\"../x\",\"kind\":\"vm\",\"pid\":1,\"pid_start\":\"1\",\"api_socket\":\"/s\","
		"\"started_at\":\"2026-11-22T05:00:00.123Z\"}",
		"{\"id\":\"x\",\"kind\":\"vm\",\"pid\":1,\"pid_start\":\"-1\",\"api_socket\":\"/s\","
		"\"started_at\":\"2026-11-22T05:00:00.123Z\"}",
		"{\"id\":\"x\",\"kind\":\"vm\",\"pid\":1,\"pid_start\":\"1\",\"api_socket\":\"/s\","
		"\"started_at\":\"yesterday\"}",
		"{\"id\":\"x\",\"kind\":\"pod\",\"pid\":1,\"pid_start\":\"1\",\"api_socket\":\"/s\","
		"\"started_at\":\"2026-11-22T05:00:00Z\"}",
	};

	/* Bad ids are refused everywhere. */
	make_record(&rec, "good", getpid());
	memcpy(rec.id, "../evil", 8);
	assert_int_equal(instance_write(rundir, &rec), -EINVAL);
	assert_int_equal(instance_remove(rundir, "a/b"), -EINVAL);
	memcpy(rec.id, "good", 5);
	assert_int_equal(instance_write(rundir, &rec), 0);

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(path, sizeof(path), "%s/instances/bad%zu.json", rundir, i);
		assert_int_equal(write_file_atomic(path, bad[i], strlen(bad[i]), 0644, 0), 0);
		assert_int_equal(instance_read(path, &back), -EBADMSG);
	}
	/* A valid record under another file name is not listed either. */
	snprintf(path, sizeof(path), "%s/instances/good.json", rundir);
	assert_int_equal(read_full_file_at(AT_FDCWD, path, 65536, &text, NULL), 0);
	snprintf(path, sizeof(path), "%s/instances/alias.json", rundir);
	assert_int_equal(write_file_atomic(path, text, strlen(text), 0644, 0), 0);
	assert_int_equal(instance_read(path, &back), 0);
	instance_record_done(&back);
	snprintf(path, sizeof(path), "%s/instances/missing.json", rundir);
	assert_int_equal(instance_read(path, &back), -ENOENT);

	/* A FIFO would block a reader that opened it: never opened. */
	snprintf(path, sizeof(path), "%s/instances/fifo.json", rundir);
	assert_int_equal(mkfifo(path, 0600), 0);

	assert_int_equal(instance_list(rundir, &list, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(list[0].id, "good");
	instance_records_free(list, n);

	assert_int_equal(instance_remove(rundir, "good"), 0);
	instance_record_done(&rec);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ids),
		cmocka_unit_test(test_kinds_and_paths),
		cmocka_unit_test(test_pid_start),
		cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_live_duplicate_and_stale, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_records, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
