/* SPDX-License-Identifier: MIT */
/* Fuzzes the table-driven config parser with arbitrary file contents. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "libcommon/cleanup.h"
#include "libcommon/conf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct cfg {
	char *s;
	char **l;
	uint32_t u;
	bool b;
	int level;
};

static const struct conf_item table[] = {
	CONF_ITEM("s", CONF_STRING, struct cfg, s, 0, 0, false, ""),
	CONF_ITEM("l", CONF_STRV, struct cfg, l, 0, 0, false, ""),
	CONF_ITEM("u", CONF_U32, struct cfg, u, 1, 65535, false, ""),
	CONF_ITEM("b", CONF_BOOL, struct cfg, b, 0, 0, false, ""),
	CONF_ITEM("log_level", CONF_LOG_LEVEL, struct cfg, level, 0, 0, false, ""),
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cfg c = { 0 };
	char *err = NULL;

	(void)conf_parse_string(table, ELEMENTSOF(table), &c, "fuzz", (const char *)data, size,
				&err);
	for (size_t i = 0; i < ELEMENTSOF(table); i++) {
		char *v = NULL;

		if (conf_format_value(&table[i], &c, &v) == 0)
			free(v);
	}
	free(err);
	conf_done(table, ELEMENTSOF(table), &c);
	return 0;
}
