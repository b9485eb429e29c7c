/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "libcommon/cleanup.h"
#include "libcommon/netaddr.h"

/* Splits @spec and checks the host (NULL for every address) and port. */
static void split_ok(const char *spec, const char *def, const char *host, const char *port)
{
	_cleanup_free_ char *h = NULL;
	_cleanup_free_ char *p = NULL;

	assert_int_equal(netaddr_split(spec, def, &h, &p), 0);
	if (host)
		assert_string_equal(h, host);
	else
		assert_null(h);
	assert_string_equal(p, port);
}

static void test_split(void **state)
{
	split_ok("10.0.0.1:9400", NULL, "10.0.0.1", "9400");
	split_ok(":9400", NULL, NULL, "9400");
	split_ok("[::1]:443", NULL, "::1", "443");
	split_ok("host.example:1", NULL, "host.example", "1");
	split_ok("127.0.0.1:0", NULL, "127.0.0.1", "0");
	/* With a default port, the port may be left out. */
	split_ok("hostb", "9401", "hostb", "9401");
	split_ok("hostb:7", "9401", "hostb", "7");
	split_ok("[fe80::1]", "9401", "fe80::1", "9401");
	split_ok("fe80::1", "9401", "fe80::1", "9401");
	split_ok("0.0.0.0", "9401", "0.0.0.0", "9401");
}

static void test_split_errors(void **state)
{
	const char *bad[] = { "",  "host",  "host:",  "host:x", "host:65536", "host:123456",
			      ":", "[::1]", "[::1]x", "[]:1",	"[::1:80",    "::1" };
	const char *bad_default[] = { "", "host:", "host:-1", "[]", "[::1]:", ":" };
	char *h = (char *)"untouched", *p = (char *)"untouched";

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (netaddr_split(bad[i], NULL, &h, &p) != -EINVAL)
			fail_msg("'%s' was accepted", bad[i]);
		assert_string_equal(h, "untouched");
	}
	for (size_t i = 0; i < sizeof(bad_default) / sizeof(bad_default[0]); i++)
		if (netaddr_split(bad_default[i], "9401", &h, &p) != -EINVAL)
			fail_msg("'%s' was accepted with a default port", bad_default[i]);
}

static void test_listen(void **state)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);
	char addr[64];
	int fd = -1;

	/* Port 0: an ephemeral port, reported back. */
	assert_int_equal(netaddr_listen_tcp("127.0.0.1", "0", 4, &fd, addr, sizeof(addr)), 0);
	assert_true(fd >= 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	assert_true(ntohs(sa.sin_port) > 0);
	assert_int_equal(strncmp(addr, "127.0.0.1:", 10), 0);
	assert_int_equal(atoi(addr + 10), ntohs(sa.sin_port));
	close(fd);
	assert_int_equal(netaddr_listen_tcp("no-such-host.invalid", "0", 4, &fd, NULL, 0),
			 -EADDRNOTAVAIL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_split),
		cmocka_unit_test(test_split_errors),
		cmocka_unit_test(test_listen),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
