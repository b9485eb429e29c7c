/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * A table-driven "key = value" configuration parser (valkey's src/config.c, scaled down).
 *
 * Each program describes its struct <bin>_config with a table of conf_item: the key, the type,
 * the offset of the member, and for numbers the accepted range. The same table parses the file,
 * applies command-line overrides (conf_set), prints the effective configuration and frees the
 * strings. File syntax: one "key = value" per line, '#' starts a comment line, blank lines are
 * ignored, a value may be double-quoted (with \" and \\ escapes) to keep leading or trailing
 * blanks or a '#'. A CONF_STRV key may be repeated; its values are split on commas and
 * blanks, and the first occurrence in a file replaces the built-in default list.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum conf_type {
	CONF_STRING, /* char *, malloc'ed */
	CONF_STRV, /* char **, a strv (libcommon/strutil.h) */
	CONF_U32, /* uint32_t within [min, max] */
	CONF_BOOL, /* bool: yes/no, true/false, on/off, 1/0 */
	CONF_LOG_LEVEL, /* int, a syslog level parsed by log_level_from_string() */
	_CONF_TYPE_MAX,
};

struct conf_item {
	const char *key;
	enum conf_type type;
	size_t offset;
	uint32_t min, max; /* CONF_U32 only */
	bool secret; /* never printed by conf_format_value() */
	const char *help;
};

#define CONF_ITEM(k, t, s, member, lo, hi, sec, h)                                                \
	{                                                                                         \
		.key = (k), .type = (t), .offset = offsetof(s, member), .min = (lo), .max = (hi), \
		.secret = (sec), .help = (h)                                                      \
	}

/* Returns the item named @key, or NULL. */
const struct conf_item *conf_find(const struct conf_item *table, size_t n, const char *key);

/*
 * Sets @key to the textual @value in @cfg. @replace_list chooses, for CONF_STRV, whether the
 * value replaces the current list or is appended to it. Returns 0, -ENOENT (unknown key),
 * -EINVAL (malformed value), -ERANGE (number out of range) or -ENOMEM.
 */
int conf_set(const struct conf_item *table, size_t n, void *cfg, const char *key, const char *value,
	     bool replace_list);

/*
 * Parses @len bytes of @text. @name is used in messages only. On the first bad line, returns
 * -EINVAL/-ERANGE/-ENOENT/-ENOMEM and, if @ret_error is not NULL, a malloc'ed message
 * "name:line: …" in *ret_error. Earlier lines stay applied.
 */
int conf_parse_string(const struct conf_item *table, size_t n, void *cfg, const char *name,
		      const char *text, size_t len, char **ret_error);

/* As conf_parse_string() for a file (at most 1 MiB). -ENOENT if the file does not exist. */
int conf_parse_file(const struct conf_item *table, size_t n, void *cfg, const char *path,
		    char **ret_error);

/*
 * Formats the current value of @item as text ("a,b" for lists, "yes"/"no", level names).
 * Returns 0 and a malloc'ed string in *ret, or -ENOMEM. Secrets come out as "(hidden)".
 */
int conf_format_value(const struct conf_item *item, const void *cfg, char **ret);

/* Frees every string and list the table owns in @cfg and resets them to NULL. */
void conf_done(const struct conf_item *table, size_t n, void *cfg);
