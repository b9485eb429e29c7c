/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "libcommon/cleanup.h"
#include "libcommon/fdutil.h"
#include "libcommon/log.h"

/* Runs @fn with stderr redirected to a temporary file and returns what was written. */
static char *capture_stderr(void (*fn)(void))
{
	char path[] = "/tmp/test_log.XXXXXX";
	int fd = mkstemp(path), saved = dup(STDERR_FILENO);
	char *out = NULL;

	assert_true(fd >= 0 && saved >= 0);
	unlink(path);
	dup2(fd, STDERR_FILENO);
	fn();
	dup2(saved, STDERR_FILENO);
	close(saved);
	lseek(fd, 0, SEEK_SET);
	assert_int_equal(read_full_fd(fd, 65536, &out, NULL), 0);
	close(fd);
	return out;
}

static int errno_result;

static void log_some(void)
{
	log_set_max_level(LOG_INFO);
	log_debug("hidden %d", 1);
	log_info("shown %d", 2);
	errno_result = log_err_errno(-ENOENT, "open '%s': %m", "x");
}

static void test_levels_and_errno(void **state)
{
	_cleanup_free_ char *out = NULL;

	unsetenv("JOURNAL_STREAM");
	out = capture_stderr(log_some);
	assert_null(strstr(out, "hidden"));
	assert_non_null(strstr(out, "info: shown 2\n"));
	assert_non_null(strstr(out, "err: open 'x': No such file or directory\n"));
	assert_int_equal(errno_result, -ENOENT);
}

static void log_journal(void)
{
	log_warn("w");
}

static void test_journal_prefix(void **state)
{
	_cleanup_free_ char *out = NULL;

	setenv("JOURNAL_STREAM", "8:1234", 1);
	out = capture_stderr(log_journal);
	unsetenv("JOURNAL_STREAM");
	assert_string_equal(out, "<4>w\n");
}

static void test_level_names(void **state)
{
	assert_int_equal(log_level_from_string("debug"), LOG_DEBUG);
	assert_int_equal(log_level_from_string("WARN"), LOG_WARNING);
	assert_int_equal(log_level_from_string("error"), LOG_ERR);
	assert_int_equal(log_level_from_string("6"), LOG_INFO);
	assert_int_equal(log_level_from_string("8"), -EINVAL);
	assert_int_equal(log_level_from_string("loud"), -EINVAL);
	assert_string_equal(log_level_to_string(LOG_NOTICE), "notice");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_levels_and_errno),
		cmocka_unit_test(test_journal_prefix),
		cmocka_unit_test(test_level_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
