/* SPDX-License-Identifier: MIT */
/* libmiddlecon's pure parts: name patterns and status names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "middlecon/libmiddlecon.h"

static void test_match_exact(void **state)
{
	assert_true(mc_name_match("vm.abc", "vm.abc"));
	assert_false(mc_name_match("vm.abc", "vm.abd"));
	assert_false(mc_name_match("vm.abc", "vm.abc.pause"));
	assert_false(mc_name_match("vm.abc.pause", "vm.abc"));
	assert_false(mc_name_match("vm", "vmx"));
	assert_false(mc_name_match("vm", ""));
}

static void test_match_star(void **state)
{
	assert_true(mc_name_match("vm.*", "vm.abc"));
	assert_false(mc_name_match("vm.*", "vm.abc.pause"));
	assert_false(mc_name_match("vm.*", "vm"));
	assert_true(mc_name_match("*.abc.*", "vm.abc.pause"));
	assert_false(mc_name_match("vm.*", "vm."));
	assert_true(mc_name_match("*", "x"));
}

static void test_match_gt(void **state)
{
	assert_true(mc_name_match("vm.>", "vm.abc"));
	assert_true(mc_name_match("vm.>", "vm.abc.pause"));
	assert_false(mc_name_match("vm.>", "vm"));
	assert_true(mc_name_match(">", "a.b.c"));
	/* `>` anywhere but last is not a wildcard that matches. */
	assert_false(mc_name_match("vm.>.x", "vm.a.x"));
	assert_true(mc_name_match("$sys.>", "$sys.list"));
}

static void test_status_names(void **state)
{
	assert_string_equal(mc_status_to_string(MC_STATUS_OK), "OK");
	assert_string_equal(mc_status_to_string(MC_STATUS_NO_RESPONDERS), "NO_RESPONDERS");
	assert_string_equal(mc_status_to_string(MC_STATUS_CANCELLED), "CANCELLED");
	assert_null(mc_status_to_string(_MC_STATUS_MAX));
	assert_null(mc_status_to_string(-1));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_match_exact),
		cmocka_unit_test(test_match_star),
		cmocka_unit_test(test_match_gt),
		cmocka_unit_test(test_status_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
