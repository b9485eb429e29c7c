/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "libcommon/strutil.h"

static void test_safe_atou64(void **state)
{
	uint64_t v = 7;

	assert_int_equal(safe_atou64("0", &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(safe_atou64("18446744073709551615", &v), 0);
	assert_true(v == UINT64_MAX);
	assert_int_equal(safe_atou64("18446744073709551616", &v), -ERANGE);
	assert_int_equal(safe_atou64("", &v), -EINVAL);
	assert_int_equal(safe_atou64(" 1", &v), -EINVAL);
	assert_int_equal(safe_atou64("1 ", &v), -EINVAL);
	assert_int_equal(safe_atou64("-1", &v), -EINVAL);
	assert_int_equal(safe_atou64("+1", &v), -EINVAL);
	assert_int_equal(safe_atou64("0x10", &v), -EINVAL);
	assert_true(v == UINT64_MAX); /* untouched on failure */
}

static void test_safe_atou32_range(void **state)
{
	uint32_t v = 0;

	assert_int_equal(safe_atou32("4294967295", &v), 0);
	assert_int_equal(v, 4294967295u);
	assert_int_equal(safe_atou32("4294967296", &v), -ERANGE);
	assert_int_equal(safe_atou32_range("5", 1, 10, &v), 0);
	assert_int_equal(v, 5);
	assert_int_equal(safe_atou32_range("0", 1, 10, &v), -ERANGE);
	assert_int_equal(safe_atou32_range("11", 1, 10, &v), -ERANGE);
}

static void test_safe_atoi(void **state)
{
	int64_t v;
	int i;

	assert_int_equal(safe_atoi64("-9223372036854775808", &v), 0);
	assert_true(v == INT64_MIN);
	assert_int_equal(safe_atoi64("9223372036854775807", &v), 0);
	assert_true(v == INT64_MAX);
	assert_int_equal(safe_atoi64("9223372036854775808", &v), -ERANGE);
	assert_int_equal(safe_atoi64("-9223372036854775809", &v), -ERANGE);
	assert_int_equal(safe_atoi64("-", &v), -EINVAL);
	assert_int_equal(safe_atoi("-20", &i), 0);
	assert_int_equal(i, -20);
	assert_int_equal(safe_atoi("2147483648", &i), -ERANGE);
}

static void test_prefix_suffix(void **state)
{
	assert_string_equal(startswith("/v1/proc/12", "/v1/proc/"), "12");
	assert_null(startswith("/v1/pro", "/v1/proc/"));
	assert_true(endswith("node.pem", ".pem"));
	assert_false(endswith("pem", "node.pem"));
}

static void test_strv(void **state)
{
	char **l = NULL, **c = NULL;
	char *j = NULL;

	assert_int_equal(strv_split(",a,,b c,", ", ", &l), 0);
	assert_int_equal(strv_length(l), 3);
	assert_string_equal(l[0], "a");
	assert_string_equal(l[2], "c");
	assert_true(strv_contains(l, "b"));
	assert_false(strv_contains(l, "d"));
	assert_int_equal(strv_extend(&l, "d"), 0);
	assert_int_equal(strv_copy(l, &c), 0);
	assert_int_equal(strv_join(c, "+", &j), 0);
	assert_string_equal(j, "a+b+c+d");
	free(j);
	strv_free(c);
	strv_free(l);

	assert_int_equal(strv_split("", ",", &l), 0);
	assert_non_null(l);
	assert_int_equal(strv_length(l), 0);
	strv_free(l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_safe_atou64), cmocka_unit_test(test_safe_atou32_range),
		cmocka_unit_test(test_safe_atoi),   cmocka_unit_test(test_prefix_suffix),
		cmocka_unit_test(test_strv),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
