/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "libcommon/cleanup.h"
#include "libcommon/http.h"

static int parse(const char *text, struct http_request_head *h, char **keep)
{
	*keep = strdup(text);
	assert_non_null(*keep);
	return http_request_parse(*keep, strlen(text), h);
}

static void test_request_ok(void **state)
{
	_cleanup_free_ char *buf = NULL;
	struct http_request_head h;

	assert_int_equal(
		parse("GET /v1/proc?pid=1 HTTP/1.1\r\nHost: x\r\n"
		      "Authorization:  Bearer abc  \r\nConnection: keep-alive, Upgrade\r\n\r\n",
		      &h, &buf),
		0);
	assert_string_equal(h.method, "GET");
	assert_string_equal(h.target, "/v1/proc?pid=1");
	assert_int_equal(h.version_minor, 1);
	assert_int_equal(h.n_headers, 3);
	assert_string_equal(http_header_get(&h, "authorization"), "Bearer abc");
	assert_null(http_header_get(&h, "cookie"));
	assert_true(h.keep_alive);
	assert_int_equal(h.content_length, -1);
}

static void test_keep_alive_rules(void **state)
{
	struct http_request_head h;
	char *b = NULL;

	assert_int_equal(parse("GET / HTTP/1.1\r\nConnection: Close\r\n\r\n", &h, &b), 0);
	assert_false(h.keep_alive);
	free(b);
	assert_int_equal(parse("GET / HTTP/1.0\r\n\r\n", &h, &b), 0);
	assert_false(h.keep_alive);
	free(b);
	assert_int_equal(parse("GET / HTTP/1.0\nConnection: keep-alive\n\n", &h, &b), 0);
	assert_true(h.keep_alive);
	free(b);
}

static void expect(const char *text, int code)
{
	_cleanup_free_ char *buf = NULL;
	struct http_request_head h;

	if (parse(text, &h, &buf) != code)
		fail_msg("'%s' did not give %d", text, code);
}

static void test_request_errors(void **state)
{
	expect("GET / HTTP/2.0\r\n\r\n", -EPROTONOSUPPORT);
	expect("GET / HTTX/1.1\r\n\r\n", -EBADMSG);
	expect("GET /\r\n\r\n", -EBADMSG);
	expect("G(T / HTTP/1.1\r\n\r\n", -EBADMSG);
	expect(" / HTTP/1.1\r\n\r\n", -EBADMSG);
	expect("GET / HTTP/1.1\r\nNo colon\r\n\r\n", -EBADMSG);
	expect("GET / HTTP/1.1\r\n: empty\r\n\r\n", -EBADMSG);
	expect("GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n", -EBADMSG);
	expect("GET / HTTP/1.1\r\nBad Name: b\r\n\r\n", -EBADMSG);
	expect("GET / HTTP/1.1\r\nA: b\x01\r\n\r\n", -EBADMSG);
	expect("GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", -EBADMSG);
	expect("GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", -EBADMSG);
	expect("GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
	       -EBADMSG);
	expect("GET / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", -EBADMSG);
	expect("GET / HTTP/1.1\r\nA: b\r\n", -EBADMSG);
	expect("GET / HTTP/1.1\r\n\r\nextra", -EBADMSG);
}

static void test_too_many_headers(void **state)
{
	_cleanup_free_ char *text = NULL;
	size_t n = 0, cap = 65536;

	text = malloc(cap);
	n += (size_t)snprintf(text, cap, "GET / HTTP/1.1\r\n");
	for (int i = 0; i <= HTTP_MAX_HEADERS; i++)
		n += (size_t)snprintf(text + n, cap - n, "X-%d: v\r\n", i);
	snprintf(text + n, cap - n, "\r\n");
	expect(text, -E2BIG);
}

static void test_query(void **state)
{
	struct http_query q;

	assert_int_equal(http_query_parse("pid=1,2&&user=r%6Fot&match=a+b%2Bc&flag", &q), 0);
	assert_int_equal(q.n, 4);
	assert_string_equal(q.keys[0], "pid");
	assert_string_equal(q.values[0], "1,2");
	assert_string_equal(q.values[1], "root");
	assert_string_equal(q.values[2], "a b+c");
	assert_string_equal(q.keys[3], "flag");
	assert_string_equal(q.values[3], "");
	http_query_done(&q);

	assert_int_equal(http_query_parse("a=%zz", &q), -EINVAL);
	assert_int_equal(q.n, 0);
	assert_int_equal(http_query_parse("a=%4", &q), -EINVAL);
	assert_int_equal(http_query_parse("a=%00", &q), -EINVAL);
	{
		char big[HTTP_MAX_QUERY_PARAMS * 4 + 8] = "";

		for (int i = 0; i <= HTTP_MAX_QUERY_PARAMS; i++)
			strcat(big, "a=1&");
		assert_int_equal(http_query_parse(big, &q), -E2BIG);
	}
}

static void test_target(void **state)
{
	char *path = NULL, *query = NULL;

	assert_int_equal(http_target_split("/v1/proc/cmd/a%20b?x=1", &path, &query), 0);
	assert_string_equal(path, "/v1/proc/cmd/a b");
	assert_string_equal(query, "x=1");
	free(path);
	free(query);
	assert_int_equal(http_target_split("/healthz", &path, &query), 0);
	assert_null(query);
	free(path);
	assert_int_equal(http_target_split("http://h/x", &path, &query), -EINVAL);
	assert_int_equal(http_target_split("/v1/../etc", &path, &query), -EINVAL);
	assert_int_equal(http_target_split("/v1/%2e%2e/etc", &path, &query), -EINVAL);
	assert_int_equal(http_target_split("/v1/.", &path, &query), -EINVAL);
	assert_int_equal(http_target_split("/a%00", &path, &query), -EINVAL);
	assert_string_equal(http_status_reason(404), "Not Found");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_request_ok),     cmocka_unit_test(test_keep_alive_rules),
		cmocka_unit_test(test_request_errors), cmocka_unit_test(test_too_many_headers),
		cmocka_unit_test(test_query),	       cmocka_unit_test(test_target),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
