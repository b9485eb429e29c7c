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

/* A local caller with this uid and gid. */
#define SUBJ(u, g) (&(struct acl_subject){ .uid = (u), .gid = (g) })
/* A caller relayed by the peer node @n, which asserts uid @u and gid @g. */
#define REMOTE(n, u, g) (&(struct acl_subject){ .uid = (u), .gid = (g), .node = (n) })

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
	assert_true(acl_check(a, ACL_REGISTER, "vm.a.pause", false, SUBJ(1000, 1000), &p));
	assert_string_equal(p, "vm.");
	assert_false(acl_check(a, ACL_REGISTER, "vm.a.pause", false, SUBJ(1001, 1001), &p));
	assert_string_equal(p, "vm.");
	/* The longest prefix wins over a shorter one in both directions. */
	assert_true(acl_check(a, ACL_REGISTER, "vm.open.x", false, SUBJ(1001, 1001), &p));
	assert_string_equal(p, "vm.open.");
	assert_false(acl_check(a, ACL_REGISTER, "vm.open.secret", false, SUBJ(1000, 1000), &p));
	/* A deny-only prefix that does not name the peer falls through to the shorter one. */
	assert_true(acl_check(a, ACL_REGISTER, "vm.open.secret", false, SUBJ(1001, 1001), &p));
	assert_string_equal(p, "vm.open.");
	/* Other ops and uncovered names: the default, allow unless set otherwise. */
	assert_true(acl_check(a, ACL_CALL, "vm.a.pause", false, SUBJ(1001, 1001), &p));
	assert_null(p);
	assert_true(acl_check(a, ACL_REGISTER, "vmx.a", false, SUBJ(1001, 1001), &p));
	acl_set_default(a, false);
	assert_false(acl_check(a, ACL_REGISTER, "vmx.a", false, SUBJ(1001, 1001), &p));
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
	assert_true(acl_check(a, ACL_CALL, "other", false, SUBJ(0, 0), NULL));
	assert_true(acl_check(a, ACL_CALL, "vm.x", false, SUBJ(0, 0), NULL));
	assert_false(acl_check(a, ACL_CALL, "vm.nope", false, SUBJ(0, 0), NULL));
	assert_false(acl_check(a, ACL_CALL, "other", false, SUBJ(1000, 1000), NULL));
}

static void test_gid_and_any(void **state)
{
	_cleanup_(acl_freep) struct acl *a = acl_new();

	assert_non_null(a);
	add_ok(a, "allow_call", "kvm. gid=108");
	add_ok(a, "deny_call", "pub. *");
	add_ok(a, "allow_call", "all. *");
	assert_true(acl_check(a, ACL_CALL, "kvm.x", false, SUBJ(1000, 108), NULL));
	assert_false(acl_check(a, ACL_CALL, "kvm.x", false, SUBJ(108, 1000), NULL));
	assert_false(acl_check(a, ACL_CALL, "pub.x", false, SUBJ(0, 0), NULL));
	assert_true(acl_check(a, ACL_CALL, "all.x", false, SUBJ(31337, 31337), NULL));
}

static void test_wildcard_patterns(void **state)
{
	_cleanup_(acl_freep) struct acl *a = acl_new();
	const char *p = NULL;

	assert_non_null(a);
	add_ok(a, "allow_register", "vm.secret. uid=0");
	add_ok(a, "allow_register", "open. *");
	/* A wildcard that could reach vm.secret.* needs what vm.secret. asks. */
	assert_false(acl_check(a, ACL_REGISTER, ">", true, SUBJ(1000, 1000), &p));
	assert_string_equal(p, "vm.secret.");
	assert_false(acl_check(a, ACL_REGISTER, "vm.>", true, SUBJ(1000, 1000), NULL));
	assert_false(acl_check(a, ACL_REGISTER, "*.secret.x", true, SUBJ(1000, 1000), NULL));
	assert_true(acl_check(a, ACL_REGISTER, "vm.secret.>", true, SUBJ(0, 0), NULL));
	assert_true(acl_check(a, ACL_REGISTER, "open.>", true, SUBJ(1000, 1000), NULL));
	assert_true(acl_check(a, ACL_REGISTER, "other.*.x", true, SUBJ(1000, 1000), NULL));
	/* The same string without pattern semantics is just a name. */
	assert_true(acl_check(a, ACL_REGISTER, "vm.public", true, SUBJ(1000, 1000), NULL));
}

/* Remote callers: node= principals, asserted ids, and no exemption for a remote root. */
static void test_remote(void **state)
{
	_cleanup_(acl_freep) struct acl *a = acl_new();
	_cleanup_free_ char *err = NULL;
	const char *p = NULL;

	add_ok(a, "allow_call", "vm. node=hostb uid=1000");
	add_ok(a, "deny_call", "vm.secret. node=hostb");
	add_ok(a, "allow_register", "svc. node=hostc");
	assert_true(acl_check(a, ACL_CALL, "vm.a", false, REMOTE("hostb", 5, 5), &p));
	assert_string_equal(p, "vm.");
	/* The asserted uid counts for a remote caller too... */
	assert_true(acl_check(a, ACL_CALL, "vm.a", false, REMOTE("hostc", 1000, 5), NULL));
	assert_false(acl_check(a, ACL_CALL, "vm.a", false, REMOTE("hostc", 1001, 5), NULL));
	/* ...but root only when the kernel says so. */
	assert_false(acl_check(a, ACL_CALL, "vm.a", false, REMOTE("hostc", 0, 0), NULL));
	assert_true(acl_check(a, ACL_CALL, "vm.a", false, SUBJ(0, 0), NULL));
	/* A local caller is never a node. */
	assert_false(acl_check(a, ACL_CALL, "vm.a", false, SUBJ(5, 5), NULL));
	assert_false(acl_check(a, ACL_CALL, "vm.secret.x", false, REMOTE("hostb", 5, 5), NULL));
	assert_true(acl_check(a, ACL_REGISTER, "svc.>", true,
			      REMOTE("hostc", ACL_ID_UNKNOWN, ACL_ID_UNKNOWN), NULL));
	assert_false(acl_check(a, ACL_REGISTER, "svc.>", true,
			       REMOTE("hostb", ACL_ID_UNKNOWN, ACL_ID_UNKNOWN), NULL));
	/* The default applies to remote callers alike. */
	assert_true(acl_check(a, ACL_CALL, "other", false, REMOTE("hostb", 5, 5), NULL));
	acl_set_default(a, false);
	assert_false(acl_check(a, ACL_CALL, "other", false, REMOTE("hostb", 0, 0), NULL));
	assert_true(acl_check(a, ACL_CALL, "other", false, SUBJ(0, 0), NULL));
	err = add_err(a, "allow_call", "x. node=");
	assert_non_null(strstr(err, "invalid node name"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_errors),
		cmocka_unit_test(test_remote),
		cmocka_unit_test(test_parse_names),
		cmocka_unit_test(test_longest_prefix),
		cmocka_unit_test(test_root),
		cmocka_unit_test(test_gid_and_any),
		cmocka_unit_test(test_wildcard_patterns),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
