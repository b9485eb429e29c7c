/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "k2i/events.h"
#include "libcommon/cleanup.h"

/* A transport that keeps what it is sent in memory, and "sends" nothing until told to. */
struct sink {
	char buf[65536];
	size_t len;
	bool finished;
};

static size_t sink_queued(void *ctx)
{
	return ((struct sink *)ctx)->len;
}

static int sink_write(void *ctx, const char *data, size_t len)
{
	struct sink *k = ctx;

	if (k->len + len > sizeof(k->buf))
		return -ENOMEM;
	memcpy(k->buf + k->len, data, len);
	k->len += len;
	return 0;
}

static void sink_finish(void *ctx, const char *data, size_t len)
{
	struct sink *k = ctx;

	k->len = 0; /* what was queued is dropped; the error line goes out alone */
	assert_int_equal(sink_write(ctx, data, len), 0);
	k->finished = true;
}

static const struct event_sub_ops sink_ops = { sink_queued, sink_write, sink_finish };

static struct event_sub *sub(const char *const *kv, size_t n, const char *accept)
{
	const char *keys[8], *values[8];
	struct event_sub *s = NULL;
	char *err = NULL;

	for (size_t i = 0; i < n; i++) {
		keys[i] = kv[2 * i];
		values[i] = kv[2 * i + 1];
	}
	assert_int_equal(event_sub_new(keys, values, n, accept, &s, &err), 0);
	assert_null(err);
	return s;
}

static void publish(struct event_hub *h, enum event_type t, const char *comm, uid_t uid,
		    uint64_t cg)
{
	char json[128];
	struct event_item it = { .type = t, .comm = comm, .uid = uid, .cgroup_id = cg };

	it.json_len = (size_t)snprintf(json, sizeof(json), "{\"type\":\"%s\",\"comm\":\"%s\"}",
				       event_type_to_string(t), comm);
	it.json = json;
	event_hub_publish(h, &it);
}

static void test_filters_and_formats(void **state)
{
	struct event_hub *h = NULL;
	struct sink all = { 0 }, execs = { 0 }, sse = { 0 }, uid = { 0 }, cg = { 0 };
	const char *f_exec[] = { "type", "exec,exit", "comm", "true" };
	const char *f_uid[] = { "uid", "1000" };
	const char *f_cg[] = { "cgroup", "42,43" };
	struct event_sub *s_all, *s_exec, *s_sse, *s_uid, *s_cg;

	assert_int_equal(event_hub_new(4, 4096, &h), 0);
	s_all = sub(NULL, 0, NULL);
	s_exec = sub(f_exec, 2, NULL);
	s_sse = sub(NULL, 0, "text/event-stream, */*");
	s_uid = sub(f_uid, 1, NULL);
	s_cg = sub(f_cg, 1, NULL);
	assert_int_equal(event_sub_format(s_sse), EVENT_FORMAT_SSE);
	assert_string_equal(event_format_content_type(EVENT_FORMAT_NDJSON), "application/x-ndjson");
	event_hub_attach(h, s_all, &sink_ops, &all);
	event_hub_attach(h, s_exec, &sink_ops, &execs);
	event_hub_attach(h, s_sse, &sink_ops, &sse);
	event_hub_attach(h, s_uid, &sink_ops, &uid);
	event_hub_attach(h, s_cg, &sink_ops, &cg);

	publish(h, EVENT_FORK, "sh", 0, 1);
	publish(h, EVENT_EXEC, "true", 1000, 43);
	publish(h, EVENT_EXIT, "true", 1000, 43);

	all.buf[all.len] = '\0';
	assert_string_equal(all.buf, "{\"type\":\"fork\",\"comm\":\"sh\"}\n"
				     "{\"type\":\"exec\",\"comm\":\"true\"}\n"
				     "{\"type\":\"exit\",\"comm\":\"true\"}\n");
	execs.buf[execs.len] = '\0';
	assert_string_equal(execs.buf, "{\"type\":\"exec\",\"comm\":\"true\"}\n"
				       "{\"type\":\"exit\",\"comm\":\"true\"}\n");
	sse.buf[sse.len] = '\0';
	assert_non_null(
		strstr(sse.buf, "event: fork\ndata: {\"type\":\"fork\",\"comm\":\"sh\"}\n\n"));
	assert_int_equal(uid.len, execs.len);
	assert_int_equal(cg.len, execs.len);

	/* A detached (freed) stream receives nothing more, and the others go on. */
	event_sub_free(s_exec);
	publish(h, EVENT_EXEC, "true", 0, 0);
	{
		struct event_hub_stats st;

		event_hub_stats(h, &st);
		assert_int_equal(st.published, 4);
		assert_int_equal(st.streams, 4);
	}
	event_sub_free(s_all);
	event_sub_free(s_sse);
	event_sub_free(s_uid);
	event_sub_free(s_cg);
	event_hub_free(h);
}

static void test_slow_stream_cut_off(void **state)
{
	struct event_hub *h = NULL;
	struct sink slow = { 0 }, fast = { 0 };
	struct event_sub *s_slow = sub(NULL, 0, NULL), *s_fast = sub(NULL, 0, NULL);
	struct event_hub_stats st;
	int i;

	assert_int_equal(event_hub_new(4, 2048, &h), 0);
	event_hub_attach(h, s_slow, &sink_ops, &slow);
	event_hub_attach(h, s_fast, &sink_ops, &fast);
	for (i = 0; i < 200 && !slow.finished; i++) {
		publish(h, EVENT_EXEC, "x", 0, 0);
		fast.len = 0; /* the fast client reads everything at once */
	}
	assert_true(slow.finished);
	assert_true(slow.len < 2048);
	slow.buf[slow.len] = '\0';
	assert_non_null(strstr(slow.buf, "\"code\":503"));
	assert_non_null(strstr(slow.buf, "client too slow"));
	/* After the cut-off the slow stream gets nothing more; the fast one keeps going. */
	slow.len = 0;
	publish(h, EVENT_EXEC, "x", 0, 0);
	assert_int_equal(slow.len, 0);
	assert_true(fast.len > 0);
	event_hub_stats(h, &st);
	assert_int_equal(st.streams_cut_off, 1);
	assert_int_equal(st.streams, 1);
	event_sub_free(s_slow);
	event_sub_free(s_fast);
	event_hub_free(h);
}

static void test_bad_filters(void **state)
{
	static const char *const cases[][3] = {
		{ "type", "spawn", "expected fork, exec or exit" },
		{ "uid", "root", "expected numeric uids" },
		{ "cgroup", "/no/such/cgroup/here", "no such cgroup" },
		{ "cgroup", "abc", "expected cgroup IDs" },
		{ "format", "xml", "expected ndjson or sse" },
		{ "color", "red", "unknown parameter 'color'" },
		{ "comm", ",", "expected a comma-separated list" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *k = cases[i][0], *v = cases[i][1];
		struct event_sub *s = NULL;
		_cleanup_free_ char *err = NULL;

		assert_int_equal(event_sub_new(&k, &v, 1, NULL, &s, &err), -EINVAL);
		assert_null(s);
		assert_non_null(err);
		if (!strstr(err, cases[i][2]))
			fail_msg("'%s' lacks '%s'", err, cases[i][2]);
	}
}

static void test_exits_ring(void **state)
{
	struct event_hub *h = NULL;
	json_auto_t *a = NULL;
	json_auto_t *b = NULL;
	json_auto_t *c = NULL;

	assert_int_equal(event_hub_new(3, 4096, &h), 0);
	for (int i = 1; i <= 5; i++) {
		struct event_exit e = {
			.pid = 100 + i,
			.ppid = 1,
			.comm = i == 5 ? "last" : "job",
			.cmdline = "job --n",
			.key = "b:1:1",
			.exit_code = i,
			.signal = i == 4 ? 9 : 0,
			.start_ns = 1700000000000000000ull,
			.end_ns = 1700000000000000000ull + (uint64_t)i * 1000000,
		};
		assert_int_equal(event_hub_record_exit(h, &e), 0);
	}
	assert_int_equal(event_hub_exits_json(h, 0, NULL, 0, &a), 0);
	assert_int_equal(json_array_size(a), 3); /* the oldest two were replaced */
	assert_int_equal(json_integer_value(json_object_get(json_array_get(a, 0), "pid")), 103);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(a, 0), "exit_code")), 3);
	assert_true(json_is_null(json_object_get(json_array_get(a, 1), "exit_code")));
	assert_int_equal(json_integer_value(json_object_get(json_array_get(a, 1), "signal")), 9);
	assert_true(json_real_value(json_object_get(json_array_get(a, 2), "duration_ms")) == 5.0);
	assert_string_equal(json_string_value(json_object_get(json_array_get(a, 2), "start_time")),
			    "2023-11-14T22:13:20.000Z");
	assert_int_equal(event_hub_exits_json(h, 0, NULL, 1, &b), 0);
	assert_int_equal(json_array_size(b), 1);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(b, 0), "pid")), 105);
	assert_int_equal(event_hub_exits_json(h, 0, "job", 0, &c), 0);
	assert_int_equal(json_array_size(c), 2);
	event_hub_free(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_filters_and_formats),
		cmocka_unit_test(test_slow_stream_cut_off),
		cmocka_unit_test(test_bad_filters),
		cmocka_unit_test(test_exits_ring),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
