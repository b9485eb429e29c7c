/* SPDX-License-Identifier: MIT */
#include "libcommon/strutil.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "libcommon/cleanup.h"

int safe_atou64(const char *s, uint64_t *ret)
{
	uint64_t v = 0;

	if (!s || !*s)
		return -EINVAL;
	for (const char *p = s; *p; p++) {
		unsigned d;

		if (*p < '0' || *p > '9')
			return -EINVAL;
		d = (unsigned)(*p - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -ERANGE;
		v = v * 10 + d;
	}
	*ret = v;
	return 0;
}

int safe_atou32(const char *s, uint32_t *ret)
{
	return safe_atou32_range(s, 0, UINT32_MAX, ret);
}

int safe_atou32_range(const char *s, uint32_t min, uint32_t max, uint32_t *ret)
{
	uint64_t v;
	int r;

	r = safe_atou64(s, &v);
	if (r < 0)
		return r;
	if (v < min || v > max)
		return -ERANGE;
	*ret = (uint32_t)v;
	return 0;
}

int safe_atoi64(const char *s, int64_t *ret)
{
	bool neg = false;
	uint64_t v;
	int r;

	if (s && *s == '-') {
		neg = true;
		s++;
	}
	r = safe_atou64(s, &v);
	if (r < 0)
		return r;
	if (neg) {
		if (v > (uint64_t)INT64_MAX + 1)
			return -ERANGE;
		*ret = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
	} else {
		if (v > INT64_MAX)
			return -ERANGE;
		*ret = (int64_t)v;
	}
	return 0;
}

int safe_atoi(const char *s, int *ret)
{
	int64_t v;
	int r;

	r = safe_atoi64(s, &v);
	if (r < 0)
		return r;
	if (v < INT_MIN || v > INT_MAX)
		return -ERANGE;
	*ret = (int)v;
	return 0;
}

const char *startswith(const char *s, const char *prefix)
{
	size_t n = strlen(prefix);

	return strncmp(s, prefix, n) == 0 ? s + n : NULL;
}

bool endswith(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);

	return a >= b && memcmp(s + a - b, suffix, b) == 0;
}

char **strv_free(char **l)
{
	STRV_FOREACH (s, l)
		free(*s);
	free(l);
	return NULL;
}

size_t strv_length(char *const *l)
{
	size_t n = 0;

	STRV_FOREACH (s, l)
		n++;
	return n;
}

bool strv_contains(char *const *l, const char *s)
{
	STRV_FOREACH (i, l)
		if (strcmp(*i, s) == 0)
			return true;
	return false;
}

int strv_extend(char ***l, const char *s)
{
	size_t n = strv_length(*l);
	char *copy = strdup(s);
	char **nl;

	if (!copy)
		return -ENOMEM;
	nl = reallocarray(*l, n + 2, sizeof(char *));
	if (!nl) {
		free(copy);
		return -ENOMEM;
	}
	nl[n] = copy;
	nl[n + 1] = NULL;
	*l = nl;
	return 0;
}

int strv_split(const char *s, const char *separators, char ***ret)
{
	char **l = calloc(1, sizeof(char *));
	const char *p = s;

	if (!l)
		return -ENOMEM;
	while (*p) {
		size_t n;

		p += strspn(p, separators);
		n = strcspn(p, separators);
		if (n == 0)
			break;
		{
			_cleanup_free_ char *piece = strndup(p, n);

			if (!piece || strv_extend(&l, piece) < 0) {
				strv_free(l);
				return -ENOMEM;
			}
		}
		p += n;
	}
	*ret = l;
	return 0;
}

int strv_copy(char *const *l, char ***ret)
{
	char **c = NULL;

	if (!l) {
		*ret = NULL;
		return 0;
	}
	c = calloc(1, sizeof(char *));
	if (!c)
		return -ENOMEM;
	STRV_FOREACH (s, l)
		if (strv_extend(&c, *s) < 0) {
			strv_free(c);
			return -ENOMEM;
		}
	*ret = c;
	return 0;
}

int strv_join(char *const *l, const char *sep, char **ret)
{
	size_t n = 1, k = strlen(sep);
	char *s, *p;

	STRV_FOREACH (i, l)
		n += strlen(*i) + k;
	s = malloc(n);
	if (!s)
		return -ENOMEM;
	p = s;
	STRV_FOREACH (i, l) {
		if (i != l)
			p = stpcpy(p, sep);
		p = stpcpy(p, *i);
	}
	*p = '\0';
	*ret = s;
	return 0;
}

char *strstrip_right(char *s)
{
	size_t n = strlen(s);

	while (n > 0 && isspace((unsigned char)s[n - 1]))
		s[--n] = '\0';
	return s;
}

const char *skip_blanks(const char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	return s;
}

int format_error(char *err, size_t errlen, int r, const char *fmt, ...)
{
	va_list ap;

	if (errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return r;
}
