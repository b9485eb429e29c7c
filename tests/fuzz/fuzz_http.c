/* SPDX-License-Identifier: MIT */
/*
 * Fuzzes everything k2i does with request bytes before routing: the HTTP/1.1 head parser, the
 * request-target split and the query-string decoder, on one input.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "libcommon/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct http_request_head h;
	char *buf = malloc(size + 1);
	char *path = NULL, *query = NULL;

	if (!buf)
		return 0;
	memcpy(buf, data, size);
	buf[size] = '\0';
	if (http_request_parse(buf, size, &h) == 0) {
		(void)http_header_get(&h, "authorization");
		if (http_target_split(h.target, &path, &query) == 0 && query) {
			struct http_query q;

			if (http_query_parse(query, &q) == 0)
				http_query_done(&q);
		}
	}
	free(path);
	free(query);
	/* The target and query decoders also see raw bytes, as an h2 :path does. */
	memcpy(buf, data, size);
	buf[size] = '\0';
	path = query = NULL;
	if (http_target_split(buf, &path, &query) == 0 && query) {
		struct http_query q;

		if (http_query_parse(query, &q) == 0)
			http_query_done(&q);
	}
	free(path);
	free(query);
	free(buf);
	return 0;
}
