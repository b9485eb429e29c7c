/* SPDX-License-Identifier: MIT */
/*
 * Fuzzes what a control-socket server does with a connection's bytes before its handler runs:
 * request framing (ctl_request_frame()), then on each framed request the head parse and the
 * target split the server performs, request after request as pipelined input is consumed.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "libcommon/ctlsock.h"
#include "libcommon/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data;
	size_t left = size;

	/* At most a few requests: pipelined input is consumed one request at a time. */
	for (int i = 0; i < 8 && left > 0; i++) {
		struct ctl_frame f;
		struct http_request_head h;
		char *head, *path = NULL, *query = NULL;
		int r = ctl_request_frame(p, left, &f);

		if (r <= 0) {
			/* Every refusal names an HTTP error status and a message. */
			if (r < 0 && (f.status < 400 || f.status > 599 || !f.fault))
				abort();
			break;
		}
		if (f.head_len == 0 || f.head_len > CTL_MAX_HEAD || f.body_len > CTL_MAX_BODY ||
		    f.head_len + f.body_len > left || memchr(p + f.head_len, '\0', f.body_len))
			abort();
		head = malloc(f.head_len + 1);
		if (!head)
			return 0;
		memcpy(head, p, f.head_len);
		head[f.head_len] = '\0';
		/* The frame accepted this head, so the server's second parse must too. */
		if (http_request_parse(head, f.head_len, &h) < 0)
			abort();
		if (http_target_split(h.target, &path, &query) == 0 && path[0] != '/')
			abort();
		free(path);
		free(query);
		free(head);
		p += f.head_len + f.body_len;
		left -= f.head_len + f.body_len;
	}
	return 0;
}
