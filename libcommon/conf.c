/* SPDX-License-Identifier: MIT */
#include "libcommon/conf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "libcommon/cleanup.h"
#include "libcommon/fdutil.h"
#include "libcommon/log.h"
#include "libcommon/strutil.h"

#define CONF_FILE_MAX (1024 * 1024)
#define CONF_LINE_MAX 8192

const struct conf_item *conf_find(const struct conf_item *table, size_t n, const char *key)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(table[i].key, key) == 0)
			return &table[i];
	return NULL;
}

static int parse_bool(const char *v, bool *ret)
{
	static const char *const yes[] = { "1", "yes", "true", "on" };
	static const char *const no[] = { "0", "no", "false", "off" };

	for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
		if (strcasecmp(v, yes[i]) == 0) {
			*ret = true;
			return 0;
		}
		if (strcasecmp(v, no[i]) == 0) {
			*ret = false;
			return 0;
		}
	}
	return -EINVAL;
}

int conf_set(const struct conf_item *table, size_t n, void *cfg, const char *key, const char *value,
	     bool replace_list)
{
	const struct conf_item *item = conf_find(table, n, key);
	char *p;
	int r;

	if (!item)
		return -ENOENT;
	p = (char *)cfg + item->offset;

	switch (item->type) {
	case CONF_STRING: {
		char *s = strdup(value);

		if (!s)
			return -ENOMEM;
		free(*(char **)p);
		*(char **)p = s;
		return 0;
	}
	case CONF_STRV: {
		char **pieces = NULL;
		char ***list = (char ***)p;

		r = strv_split(value, ", \t", &pieces);
		if (r < 0)
			return r;
		if (replace_list) {
			strv_free(*list);
			*list = TAKE_PTR(pieces);
			return 0;
		}
		STRV_FOREACH (s, pieces) {
			r = strv_extend(list, *s);
			if (r < 0)
				break;
		}
		strv_free(pieces);
		return r < 0 ? r : 0;
	}
	case CONF_U32: {
		uint32_t v;

		r = safe_atou32(value, &v);
		if (r < 0)
			return r;
		if (v < item->min || v > item->max)
			return -ERANGE;
		*(uint32_t *)p = v;
		return 0;
	}
	case CONF_BOOL:
		return parse_bool(value, (bool *)p);
	case CONF_LOG_LEVEL:
		r = log_level_from_string(value);
		if (r < 0)
			return r;
		*(int *)p = r;
		return 0;
	default:
		return -EINVAL;
	}
}

/* Unquotes a "…" value in place. Returns 0 or -EINVAL for a missing closing quote. */
static int unquote(char *v)
{
	char *w = v;

	if (*v != '"')
		return 0;
	for (char *s = v + 1; *s; s++) {
		if (*s == '\\' && (s[1] == '"' || s[1] == '\\')) {
			*w++ = *++s;
		} else if (*s == '"') {
			if (*skip_blanks(s + 1) != '\0')
				return -EINVAL;
			*w = '\0';
			return 0;
		} else {
			*w++ = *s;
		}
	}
	return -EINVAL;
}

/* Stores a formatted message in *ret (if @ret is not NULL); on OOM *ret stays NULL. */
static void conf_error(char **ret, const char *format, ...) __attribute__((format(printf, 2, 3)));
static void conf_error(char **ret, const char *format, ...)
{
	va_list ap;

	if (!ret)
		return;
	va_start(ap, format);
	if (vasprintf(ret, format, ap) < 0)
		*ret = NULL;
	va_end(ap);
}

static const char *conf_error_hint(const struct conf_item *item, int r)
{
	if (r == -ENOENT)
		return "unknown key";
	if (r == -ENOMEM)
		return "out of memory";
	switch (item ? item->type : _CONF_TYPE_MAX) {
	case CONF_U32:
		return r == -ERANGE ? "number out of range" : "expected a number";
	case CONF_BOOL:
		return "expected yes or no";
	case CONF_LOG_LEVEL:
		return "expected a log level (err, warning, notice, info, debug)";
	default:
		return "invalid value";
	}
}

int conf_parse_string(const struct conf_item *table, size_t n, void *cfg, const char *name,
		      const char *text, size_t len, char **ret_error)
{
	/* Tracks which list keys were seen, so the first occurrence replaces the default. */
	_cleanup_free_ bool *seen = calloc(n ? n : 1, sizeof(bool));
	unsigned lineno = 0;
	const char *p = text, *end = text + len;

	if (!seen)
		return -ENOMEM;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t l = nl ? (size_t)(nl - p) : (size_t)(end - p);
		_cleanup_free_ char *line = NULL;
		const struct conf_item *item;
		char *key, *value, *eq;
		int r;

		lineno++;
		if (l > CONF_LINE_MAX) {
			conf_error(ret_error, "%s:%u: line too long", name, lineno);
			return -EINVAL;
		}
		line = strndup(p, l);
		if (!line)
			return -ENOMEM;
		p += l + (nl ? 1 : 0);
		if (strlen(line) != l) {
			conf_error(ret_error, "%s:%u: NUL byte in line", name, lineno);
			return -EINVAL;
		}

		key = (char *)skip_blanks(strstrip_right(line));
		if (*key == '\0' || *key == '#')
			continue;
		eq = strchr(key, '=');
		if (!eq) {
			conf_error(ret_error, "%s:%u: expected 'key = value'", name, lineno);
			return -EINVAL;
		}
		*eq = '\0';
		strstrip_right(key);
		value = (char *)skip_blanks(eq + 1);
		if (unquote(value) < 0) {
			conf_error(ret_error, "%s:%u: unterminated quoted value", name, lineno);
			return -EINVAL;
		}
		item = conf_find(table, n, key);
		r = conf_set(table, n, cfg, key, value, item ? !seen[item - table] : true);
		if (r < 0) {
			conf_error(ret_error, "%s:%u: '%s': %s", name, lineno, key,
				   conf_error_hint(item, r));
			return r;
		}
		seen[item - table] = true;
	}
	return 0;
}

int conf_parse_file(const struct conf_item *table, size_t n, void *cfg, const char *path,
		    char **ret_error)
{
	_cleanup_free_ char *text = NULL;
	size_t len = 0;
	int r;

	r = read_full_file_at(AT_FDCWD, path, CONF_FILE_MAX, &text, &len);
	if (r < 0) {
		if (r != -ENOENT)
			conf_error(ret_error, "%s: %s", path, strerror(-r));
		return r;
	}
	return conf_parse_string(table, n, cfg, path, text, len, ret_error);
}

int conf_format_value(const struct conf_item *item, const void *cfg, char **ret)
{
	const char *p = (const char *)cfg + item->offset;
	char *s = NULL;
	int r = 0;

	if (item->secret) {
		s = strdup("(hidden)");
	} else {
		switch (item->type) {
		case CONF_STRING:
			s = strdup(*(char *const *)p ? *(char *const *)p : "");
			break;
		case CONF_STRV:
			r = strv_join(*(char **const *)p, ",", &s);
			break;
		case CONF_U32:
			r = asprintf(&s, "%u", *(const uint32_t *)p) < 0 ? -ENOMEM : 0;
			break;
		case CONF_BOOL:
			s = strdup(*(const bool *)p ? "yes" : "no");
			break;
		case CONF_LOG_LEVEL:
			s = strdup(log_level_to_string(*(const int *)p));
			break;
		default:
			return -EINVAL;
		}
	}
	if (r < 0 || !s)
		return -ENOMEM;
	*ret = s;
	return 0;
}

void conf_done(const struct conf_item *table, size_t n, void *cfg)
{
	for (size_t i = 0; i < n; i++) {
		char *p = (char *)cfg + table[i].offset;

		if (table[i].type == CONF_STRING) {
			free(*(char **)p);
			*(char **)p = NULL;
		} else if (table[i].type == CONF_STRV) {
			*(char ***)p = strv_free(*(char ***)p);
		}
	}
}
