/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "libcommon/cleanup.h"
#include "middlecon/acl.h"

DEFINE_CLEANUP_FUNC(struct acl, acl_free)

static void add_ok(struct acl *a, const char *key, const char *value)
{
	_cleanup_free_ char *err = NULL;
	int r = acl_add(a, key, value, &err);

	if (r < 0)
		fail_msg("%s = %s: %s", key, value, err ? err : "?");
}

static char *add_err(struct acl *a, const char *key, const char *value)
{
	char *err = NULL;

	assert_int_equal(acl_add(a, key, value, &err), -EINVAL);
	assert_non_null(err);
	return err;
}

static void test_parse_errors(void **state)
{
	_cleanup_(acl_freep) struct acl *a = acl_new();
	const char *bad[] = {
		"",
		"vm.",
		"vm. uid=",
		"vm. pid=1",
		"vm.* uid=0",
		"vm. uid=no-such-user-xyz",
		"vm. gid=no-such-group-xyz",
		"vm. uid=-1",
		"vm.# uid=0",
	};

	assert_non_null(a);
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		_cleanup_free_ char *err = add_err(a, "allow_call", bad[i]);
	}
	{
		_cleanup_free_ char *err = add_err(a, "deny_register", "x uid=no-such-user-xyz");

		assert_non_null(strstr(err, "unknown user 'no-such-user-xyz'"));
	}
	assert_int_equal(acl_add(a, "allow_everything", "x uid=0", NULL), -ENOENT);
	assert_true(acl_is_key("allow_register"));
	assert_true(acl_is_key("deny_call"));
	assert_false(acl_is_key("acl_default"));
	assert_int_equal(acl_n_rules(a), 0);
}

static void test_parse_names(void **state)
{
	_cleanup_(acl_freep) struct acl *a = acl_new();
	_cleanup_free_ char *out = NULL;
	size_t len = 0;
	FILE *f;

	assert_non_null(a);
	/* root and nobody exist on every Debian system; numbers need no lookup. */
	add_ok(a, "allow_register", "vm. uid=root,gid=0 uid=4242");
	add_ok(a, "deny_call", "> *");
	add_ok(a, "allow_call", "vm.pub uid=nobody");
	assert_int_equal(acl_n_rules(a), 3);
	f = open_memstream(&out, &len);
	assert_non_null(f);
	acl_print(a, f);
	fclose(f);
	assert_string_equal(out, "allow_register = vm. uid=0 gid=0 uid=4242\n"
				 "deny_call = > *\n"
				 "allow_call = vm.pub uid=65534\n");
}

static void test_longest_prefix(void **state)
{
	_cleanup_(acl_freep) struct acl *a = acl_new();
	const char *p = NULL;

	assert_non_null(a);
	add_ok(a, "allow_register", "vm. uid=1000");
	add_ok(a, "allow_register", "vm.open. *");
	add_ok(a, "deny_register", "vm.open.secret uid=1000");

	/* An allow rule makes the prefix an allowlist. */
	assert_true(acl_check(a, ACL_REGISTER, "vm.a.pause", false, 1000, 1000, &p));
	assert_string_equal(p, "vm.");
	assert_false(acl_check(a, ACL_REGISTER, "vm.a.pause", false, 1001, 1001, &p));
	assert_string_equal(p, "vm.");
	/* The longest prefix wins over a shorter one in both directions. */
	assert_true(acl_check(a, ACL_REGISTER, "vm.open.x", false, 1001, 1001, &p));
	assert_string_equal(p, "vm.open.");
	assert_false(acl_check(a, ACL_REGISTER, "vm.open.secret", false, 1000, 1000, &p));
	/* A deny-only prefix that does not name the peer falls through to the shorter one. */
	assert_true(acl_check(a, ACL_REGISTER, "vm.open.secret", false, 1001, 1001, &p));
	assert_string_equal(p, "vm.open.");
	/* Other ops and uncovered names: the default, allow unless set otherwise. */
	assert_true(acl_check(a, ACL_CALL, "vm.a.pause", false, 1001, 1001, &p));
	assert_null(p);
	assert_true(acl_check(a, ACL_REGISTER, "vmx.a", false, 1001, 1001, &p));
	acl_set_default(a, false);
	assert_false(acl_check(a, ACL_REGISTER, "vmx.a", false, 1001, 1001, &p));
	assert_null(p);
}

static void test_root(void **state)
{
	_cleanup_(acl_freep) struct acl *a = acl_new();

	assert_non_null(a);
	acl_set_default(a, false);
	add_ok(a, "allow_call", "vm. uid=1000");
	add_ok(a, "deny_call", "vm.nope uid=0");
	/* Root passes the default and allowlists, but not a deny rule that names it. */
	assert_true(acl_check(a, ACL_CALL, "other", false, 0, 0, NULL));
	assert_true(acl_check(a, ACL_CALL, "vm.x", false, 0, 0, NULL));
	assert_false(acl_check(a, ACL_CALL, "vm.nope", false, 0, 0, NULL));
	assert_false(acl_check(a, ACL_CALL, "other", false, 1000, 1000, NULL));
}

static void test_gid_and_any(void **state)
{
	_cleanup_(acl_freep) struct acl *a = acl_new();

	assert_non_null(a);
	add_ok(a, "allow_call", "kvm. gid=108");
	add_ok(a, "deny_call", "pub. *");
	add_ok(a, "allow_call", "all. *");
	assert_true(acl_check(a, ACL_CALL, "kvm.x", false, 1000, 108, NULL));
	assert_false(acl_check(a, ACL_CALL, "kvm.x", false, 108, 1000, NULL));
	assert_false(acl_check(a, ACL_CALL, "pub.x", false, 0, 0, NULL));
	assert_true(acl_check(a, ACL_CALL, "all.x", false, 31337, 31337, NULL));
}

static void test_wildcard_patterns(void **state)
{
	_cleanup_(acl_freep) struct acl *a = acl_new();
	const char *p = NULL;

	assert_non_null(a);
	add_ok(a, "allow_register", "vm.secret. uid=0");
	add_ok(a, "allow_register", "open. *");
	/* A wildcard that could reach vm.secret.* needs what vm.secret. asks. */
	assert_false(acl_check(a, ACL_REGISTER, ">", true, 1000, 1000, &p));
	assert_string_equal(p, "vm.secret.");
	assert_false(acl_check(a, ACL_REGISTER, "vm.>", true, 1000, 1000, NULL));
	assert_false(acl_check(a, ACL_REGISTER, "*.secret.x", true, 1000, 1000, NULL));
	assert_true(acl_check(a, ACL_REGISTER, "vm.secret.>", true, 0, 0, NULL));
	assert_true(acl_check(a, ACL_REGISTER, "open.>", true, 1000, 1000, NULL));
	assert_true(acl_check(a, ACL_REGISTER, "other.*.x", true, 1000, 1000, NULL));
	/* The same string without pattern semantics is just a name. */
	assert_true(acl_check(a, ACL_REGISTER, "vm.public", true, 1000, 1000, NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_errors),   cmocka_unit_test(test_parse_names),
		cmocka_unit_test(test_longest_prefix), cmocka_unit_test(test_root),
		cmocka_unit_test(test_gid_and_any),    cmocka_unit_test(test_wildcard_patterns),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
