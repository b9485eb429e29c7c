/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include <cmocka.h>

#include "libcommon/cleanup.h"
#include "libcommon/conf.h"
#include "libcommon/strutil.h"

struct cfg {
	char *name;
	char **listen;
	uint32_t limit;
	bool flag;
	int level;
	char *token;
};

static const struct conf_item table[] = {
	CONF_ITEM("name", CONF_STRING, struct cfg, name, 0, 0, false, "a name"),
	CONF_ITEM("listen", CONF_STRV, struct cfg, listen, 0, 0, false, "addresses"),
	CONF_ITEM("limit", CONF_U32, struct cfg, limit, 1, 100, false, "a limit"),
	CONF_ITEM("flag", CONF_BOOL, struct cfg, flag, 0, 0, false, "a flag"),
	CONF_ITEM("log_level", CONF_LOG_LEVEL, struct cfg, level, 0, 0, false, "level"),
	CONF_ITEM("token", CONF_STRING, struct cfg, token, 0, 0, true, "secret"),
};

static void cfg_init(struct cfg *c)
{
	*c = (struct cfg){ .limit = 10, .level = LOG_INFO };
	assert_int_equal(strv_extend(&c->listen, "[::]:9400"), 0);
}

static int parse(struct cfg *c, const char *text, char **err)
{
	return conf_parse_string(table, ELEMENTSOF(table), c, "t.conf", text, strlen(text), err);
}

static void test_parse_ok(void **state)
{
	struct cfg c;
	_cleanup_free_ char *err = NULL;
	_cleanup_free_ char *v = NULL;
	_cleanup_free_ char *t = NULL;

	cfg_init(&c);
	assert_int_equal(parse(&c,
			       "# comment\n"
			       "\n"
			       "  name = \"  spaced # not a comment \\\" \"  \n"
			       "listen = 127.0.0.1:1\n"
			       "listen = [::1]:2, 10.0.0.1:3\n"
			       "limit=100\n"
			       "flag = yes\n"
			       "log_level = debug\n"
			       "token = s3cret",
			       &err),
			 0);
	assert_null(err);
	assert_string_equal(c.name, "  spaced # not a comment \" ");
	/* The file's first 'listen' replaced the default; the second appended. */
	assert_int_equal(strv_length(c.listen), 3);
	assert_string_equal(c.listen[0], "127.0.0.1:1");
	assert_string_equal(c.listen[2], "10.0.0.1:3");
	assert_int_equal(c.limit, 100);
	assert_true(c.flag);
	assert_int_equal(c.level, LOG_DEBUG);
	assert_int_equal(conf_format_value(conf_find(table, ELEMENTSOF(table), "listen"), &c, &v),
			 0);
	assert_string_equal(v, "127.0.0.1:1,[::1]:2,10.0.0.1:3");
	assert_int_equal(conf_format_value(conf_find(table, ELEMENTSOF(table), "token"), &c, &t),
			 0);
	assert_string_equal(t, "(hidden)");
	conf_done(table, ELEMENTSOF(table), &c);
	assert_null(c.name);
	assert_null(c.listen);
}

static void expect_error(const char *text, int code, const char *msg)
{
	struct cfg c;
	_cleanup_free_ char *err = NULL;

	cfg_init(&c);
	assert_int_equal(parse(&c, text, &err), code);
	assert_non_null(err);
	if (!strstr(err, msg))
		fail_msg("message '%s' lacks '%s'", err, msg);
	conf_done(table, ELEMENTSOF(table), &c);
}

static void test_parse_errors(void **state)
{
	expect_error("limit = 0\n", -ERANGE, "t.conf:1: 'limit': number out of range");
	expect_error("\nlimit = 101\n", -ERANGE, "t.conf:2:");
	expect_error("limit = ten\n", -EINVAL, "expected a number");
	expect_error("limit = -1\n", -EINVAL, "expected a number");
	expect_error("flag = maybe\n", -EINVAL, "expected yes or no");
	expect_error("nosuch = 1\n", -ENOENT, "'nosuch': unknown key");
	expect_error("just words\n", -EINVAL, "expected 'key = value'");
	expect_error("name = \"open\n", -EINVAL, "unterminated");
	expect_error("name = \"a\" b\n", -EINVAL, "unterminated");
	expect_error("log_level = loud\n", -EINVAL, "log level");
}

static void test_conf_set_override(void **state)
{
	struct cfg c;

	cfg_init(&c);
	assert_int_equal(conf_set(table, ELEMENTSOF(table), &c, "listen", "a:1", false), 0);
	assert_int_equal(strv_length(c.listen), 2);
	assert_int_equal(conf_set(table, ELEMENTSOF(table), &c, "listen", "b:2", true), 0);
	assert_int_equal(strv_length(c.listen), 1);
	assert_int_equal(conf_set(table, ELEMENTSOF(table), &c, "limit", "4294967296", true),
			 -ERANGE);
	assert_int_equal(c.limit, 10);
	assert_int_equal(conf_set(table, ELEMENTSOF(table), &c, "x", "1", true), -ENOENT);
	conf_done(table, ELEMENTSOF(table), &c);
}

static void test_missing_file(void **state)
{
	struct cfg c;
	char *err = NULL;

	cfg_init(&c);
	assert_int_equal(
		conf_parse_file(table, ELEMENTSOF(table), &c, "/nonexistent/k2i.conf", &err),
		-ENOENT);
	assert_null(err);
	conf_done(table, ELEMENTSOF(table), &c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_ok),
		cmocka_unit_test(test_parse_errors),
		cmocka_unit_test(test_conf_set_override),
		cmocka_unit_test(test_missing_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
