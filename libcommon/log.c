/* SPDX-License-Identifier: MIT */
#include "libcommon/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static int log_max_level = LOG_INFO;

static const char *const level_names[] = {
	[LOG_EMERG] = "emerg", [LOG_ALERT] = "alert",	  [LOG_CRIT] = "crit",
	[LOG_ERR] = "err",     [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice",
	[LOG_INFO] = "info",   [LOG_DEBUG] = "debug",
};

int log_get_max_level(void)
{
	return log_max_level;
}

void log_set_max_level(int level)
{
	if (level < LOG_EMERG)
		level = LOG_EMERG;
	if (level > LOG_DEBUG)
		level = LOG_DEBUG;
	log_max_level = level;
}

int log_level_from_string(const char *s)
{
	if (!s || !*s)
		return -EINVAL;
	if (s[0] >= '0' && s[0] <= '7' && s[1] == '\0')
		return s[0] - '0';
	for (int i = LOG_EMERG; i <= LOG_DEBUG; i++)
		if (strcasecmp(s, level_names[i]) == 0)
			return i;
	if (strcasecmp(s, "warn") == 0)
		return LOG_WARNING;
	if (strcasecmp(s, "error") == 0)
		return LOG_ERR;
	return -EINVAL;
}

const char *log_level_to_string(int level)
{
	if (level < LOG_EMERG || level > LOG_DEBUG)
		return "unknown";
	return level_names[level];
}

int log_internal(int level, int error, const char *file, int line, const char *func,
		 const char *format, ...)
{
	/* One line is assembled in a bounded buffer and written with one write(2), so lines from
	 * several processes sharing stderr never interleave. Longer messages are truncated. */
	char buf[2048];
	size_t n = 0;
	int saved_errno = errno;
	bool journal = getenv("JOURNAL_STREAM") != NULL;
	va_list ap;
	int r;

	if (journal) {
		r = snprintf(buf, sizeof(buf), "<%d>", level);
	} else {
		struct timespec ts;
		struct tm tm;

		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		r = snprintf(buf, sizeof(buf),
			     "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s[%d] %s: ", tm.tm_year + 1900,
			     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
			     ts.tv_nsec / 1000000, program_invocation_short_name, (int)getpid(),
			     log_level_to_string(level));
	}
	if (r > 0)
		n = (size_t)r < sizeof(buf) ? (size_t)r : sizeof(buf) - 1;
	if (log_max_level >= LOG_DEBUG && file)
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "(%s:%d %s) ", file, line, func);
	if (n >= sizeof(buf))
		n = sizeof(buf) - 1;

	errno = error;
	va_start(ap, format);
	r = vsnprintf(buf + n, sizeof(buf) - n, format, ap);
	va_end(ap);
	if (r > 0)
		n += (size_t)r;
	if (n >= sizeof(buf) - 1)
		n = sizeof(buf) - 2;
	buf[n++] = '\n';

	/* Best effort: there is nowhere to report a failed log write. */
	for (size_t off = 0; off < n;) {
		ssize_t w = write(STDERR_FILENO, buf + off, n - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		off += (size_t)w;
	}

	errno = saved_errno;
	return -error;
}
