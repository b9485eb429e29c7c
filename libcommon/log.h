/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Logging to stderr with syslog levels.
 *
 * Lines carry an sd-daemon "<N>" prefix when stderr is connected to the journal (JOURNAL_STREAM is
 * set), otherwise a UTC timestamp and the level name. The threshold is the one piece of mutable
 * global state the project allows besides arg_* variables.
 *
 * The log_*_errno(r, ...) forms log with errno set to |r| (so "%m" prints its text) and evaluate to
 * -|r|, so a failure is one statement: "return log_err_errno(r, \"Failed to open '%s': %m\", p);".
 */

#include <stdlib.h>
#include <syslog.h>

/* Returns the current threshold (LOG_EMERG..LOG_DEBUG). */
int log_get_max_level(void);

/* Sets the threshold; values outside LOG_EMERG..LOG_DEBUG are clamped. */
void log_set_max_level(int level);

/*
 * Parses a level name ("debug", "info", "notice", "warning"/"warn", "err"/"error", "crit",
 * "alert", "emerg") or a number 0..7. Returns the level, or -EINVAL.
 */
int log_level_from_string(const char *s);

/* Returns the canonical name of @level ("debug", "info", …); never NULL. */
const char *log_level_to_string(int level);

/*
 * Formats and writes one log line in a single write(2). @error is an errno value of either sign
 * (0 for none); errno is set to |error| before formatting so "%m" works. Returns -|error|.
 * Callers use the macros below, which skip formatting when the level is filtered out.
 */
int log_internal(int level, int error, const char *file, int line, const char *func,
		 const char *format, ...) __attribute__((format(printf, 6, 7)));

#define log_full_errno(level, error, ...)                                                     \
	({                                                                                    \
		int _level = (level), _e = (error);                                           \
		_e = _e < 0 ? -_e : _e;                                                       \
		log_get_max_level() >= _level ?                                               \
			log_internal(_level, _e, __FILE__, __LINE__, __func__, __VA_ARGS__) : \
			-_e;                                                                  \
	})

#define log_full(level, ...) (void)log_full_errno(level, 0, __VA_ARGS__)

#define log_debug(...) log_full(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_full(LOG_INFO, __VA_ARGS__)
#define log_notice(...) log_full(LOG_NOTICE, __VA_ARGS__)
#define log_warn(...) log_full(LOG_WARNING, __VA_ARGS__)
#define log_err(...) log_full(LOG_ERR, __VA_ARGS__)

#define log_debug_errno(error, ...) log_full_errno(LOG_DEBUG, error, __VA_ARGS__)
#define log_info_errno(error, ...) log_full_errno(LOG_INFO, error, __VA_ARGS__)
#define log_notice_errno(error, ...) log_full_errno(LOG_NOTICE, error, __VA_ARGS__)
#define log_warn_errno(error, ...) log_full_errno(LOG_WARNING, error, __VA_ARGS__)
#define log_err_errno(error, ...) log_full_errno(LOG_ERR, error, __VA_ARGS__)

/* Logs an allocation failure at LOG_ERR and evaluates to -ENOMEM. */
#define log_oom() log_err_errno(ENOMEM, "Out of memory.")
