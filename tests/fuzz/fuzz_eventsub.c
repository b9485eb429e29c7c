/* SPDX-License-Identifier: MIT */
/*
 * Feeds arbitrary GET /v1/events parameters to event_sub_new(): the input is split into lines,
 * each "key=value" (a line without '=' is a key with an empty value, as the query parser gives),
 * the first line being the Accept header. A rejection must come with a message.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "k2i/events.h"

#define MAX_PARAMS 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *keys[MAX_PARAMS], *values[MAX_PARAMS], *accept = NULL;
	struct event_sub *s = NULL;
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
		if (!accept) {
			accept = p;
		} else {
			eq = strchr(p, '=');
			if (eq)
				*eq = '\0';
			keys[n] = p;
			values[n] = eq ? eq + 1 : "";
			n++;
		}
		if (!eol)
			break;
		p = eol + 1;
	}

	r = event_sub_new(keys, values, n, accept, &s, &err);
	if (r == 0) {
		if (err || !s)
			abort();
		(void)event_format_content_type(event_sub_format(s));
		event_sub_free(s);
	} else if (r == -EINVAL) {
		if (!err || s)
			abort();
		free(err);
	} else if (r != -ENOMEM) {
		abort();
	}
	free(buf);
	return 0;
}
