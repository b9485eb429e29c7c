/* SPDX-License-Identifier: MIT */
#pragma once

/* Range-checked number parsing and small string-vector helpers. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Parse a whole string as an unsigned decimal number (no sign, no leading or trailing blanks,
 * no empty string). Return 0 and store the value in *ret, or -EINVAL (not a number) or -ERANGE
 * (does not fit). *ret is untouched on failure.
 */
int safe_atou64(const char *s, uint64_t *ret);
int safe_atou32(const char *s, uint32_t *ret);

/* As safe_atou32(), but also -ERANGE unless min <= value <= max. */
int safe_atou32_range(const char *s, uint32_t min, uint32_t max, uint32_t *ret);

/* Signed decimal number with an optional leading '-'. */
int safe_atoi64(const char *s, int64_t *ret);
int safe_atoi(const char *s, int *ret);

/* Returns a pointer just past @prefix in @s if @s starts with it, else NULL. */
const char *startswith(const char *s, const char *prefix);

/* True if @s ends with @suffix. */
bool endswith(const char *s, const char *suffix);

/*
 * A string vector is a NULL-terminated array of malloc'ed strings, itself malloc'ed.
 * strv_free() accepts NULL and returns NULL.
 */
char **strv_free(char **l);
size_t strv_length(char *const *l);

/* For _cleanup_(strv_freep) char **l = NULL; */
static inline void strv_freep(char ***l)
{
	strv_free(*l);
}

bool strv_contains(char *const *l, const char *s);

/*
 * Appends a copy of @s to *l (which may be NULL). Returns 0 or -ENOMEM; *l is unchanged on
 * failure.
 */
int strv_extend(char ***l, const char *s);

/*
 * Splits @s at any of the characters in @separators, dropping empty pieces. Returns 0 and a new
 * vector in *ret (caller owns it; an input with no pieces gives an empty vector, not NULL), or
 * -ENOMEM.
 */
int strv_split(const char *s, const char *separators, char ***ret);

/* Duplicates a vector (NULL gives NULL). Returns 0 or -ENOMEM. */
int strv_copy(char *const *l, char ***ret);

/* Joins with @sep. Returns 0 and a new string in *ret, or -ENOMEM. */
int strv_join(char *const *l, const char *sep, char **ret);

#define STRV_FOREACH(s, l) for (char *const *s = (l); s && *s; s++)

/* Removes trailing whitespace in place and returns @s. */
char *strstrip_right(char *s);

/* Returns @s past any leading spaces and tabs. */
const char *skip_blanks(const char *s);

/*
 * Formats a message into @err (@errlen bytes, truncated, always NUL-terminated; nothing is
 * written when @errlen is 0) and returns @r: "return format_error(err, errlen, -EINVAL, ...)"
 * for functions that report a -errno and a human-readable reason.
 */
int format_error(char *err, size_t errlen, int r, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
