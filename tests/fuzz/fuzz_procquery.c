/* SPDX-License-Identifier: MIT */
/*
 * Feeds arbitrary GET /v1/proc parameters to proc_query_parse(): the input is split into lines,
 * each "key=value" (a line without '=' is a key with no value). Checks that a rejection always
 * comes with a message of printable ASCII, as it is quoted into JSON and logs.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "k2i/procinfo.h"
#include "k2i/procquery.h"

#define MAX_PARAMS 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *keys[MAX_PARAMS], *values[MAX_PARAMS];
	struct proc_query *q = NULL;
	char *buf, *p, *end, *err = NULL;
	size_t n = 0;
	int r;

	if (size > 64 * 1024)
		return 0;
	buf = malloc(size + 1);
	if (!buf)
		return 0;
	memcpy(buf, data, size);
	buf[size] = '\0';
	for (p = buf, end = buf + size; p < end && n < MAX_PARAMS;) {
		char *eol = memchr(p, '\n', (size_t)(end - p));
		char *eq;

		if (eol)
			*eol = '\0';
		eq = strchr(p, '=');
		if (eq)
			*eq = '\0';
		keys[n] = p;
		values[n] = eq ? eq + 1 : NULL;
		n++;
		if (!eol)
			break;
		p = eol + 1;
	}

	r = proc_query_parse(keys, values, n, &q, &err);
	if (r == 0) {
		if (err)
			abort();
		if (proc_query_needed_fields(q) & ~PROC_FIELDS_ALL)
			abort();
		if ((proc_query_output_fields(q) & proc_query_needed_fields(q)) !=
		    proc_query_output_fields(q))
			abort();
		(void)proc_query_threads(q);
		proc_query_free(q);
	} else if (r == -EINVAL) {
		if (!err)
			abort();
		for (const char *c = err; *c; c++)
			if (*c < 0x20 || *c > 0x7e)
				abort();
		free(err);
	} else if (r != -ENOMEM) {
		abort();
	}
	free(buf);
	return 0;
}
