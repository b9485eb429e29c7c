/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * HTTP/1.1 request-head parsing and the URL pieces every HTTP front end here shares (k2i's
 * HTTPS server for h1 and h2, and later the control sockets of the launchers). Pure functions
 * over caller buffers: no I/O, no allocation beyond what each function documents.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HTTP_MAX_HEADERS 64
#define HTTP_MAX_QUERY_PARAMS 64

struct http_header {
	const char *name; /* points into the head's buffer; NUL-terminated */
	const char *value;
};

/*
 * A parsed request head. All strings point into the buffer the caller passed to
 * http_request_parse(), which is modified in place and must outlive the struct.
 */
struct http_request_head {
	const char *method;
	const char *target; /* request-target as sent: "/v1/proc?pid=1" */
	int version_minor; /* HTTP/1.<minor>: 0 or 1 */
	struct http_header headers[HTTP_MAX_HEADERS];
	size_t n_headers;
	int64_t content_length; /* -1 when absent */
	bool chunked; /* Transfer-Encoding ends in chunked */
	bool keep_alive; /* per version default and the Connection header */
};

/*
 * Parses a request head: the request line and header lines, ending with an empty line. @buf
 * holds exactly @len bytes up to and including the final CRLF CRLF (bare LF line ends are
 * accepted too) and is rewritten in place. Returns 0, -EBADMSG (malformed: the caller answers
 * 400), -E2BIG (more than HTTP_MAX_HEADERS headers: 431), -EPROTONOSUPPORT (not HTTP/1.0 or
 * HTTP/1.1: 505). Obsolete line folding, NUL bytes, control characters in values, a header name
 * that is not a token, conflicting Content-Length headers and Content-Length together with
 * Transfer-Encoding are all -EBADMSG (request smuggling defences, RFC 9112 §6.3).
 */
int http_request_parse(char *buf, size_t len, struct http_request_head *ret);

/* Returns the value of the first header named @name (case-insensitive), or NULL. Borrowed. */
const char *http_header_get(const struct http_request_head *h, const char *name);

/*
 * Decodes %XX escapes of @len bytes at @s (and '+' as a space if @plus_is_space) into a new
 * NUL-terminated string in *ret (caller frees). Returns 0, -EINVAL for a malformed escape or an
 * encoded NUL, or -ENOMEM.
 */
int http_percent_decode(const char *s, size_t len, bool plus_is_space, char **ret);

/* Decoded query parameters, in order of appearance. Keys and values are malloc'ed. */
struct http_query {
	char *keys[HTTP_MAX_QUERY_PARAMS];
	char *values[HTTP_MAX_QUERY_PARAMS];
	size_t n;
};

/*
 * Parses "a=1&b=x%20y" (without the '?') into @ret. A key without '=' gets the empty value; empty
 * pieces ("a=1&&b=2") are skipped. Returns 0, -EINVAL (bad escape), -E2BIG (more than
 * HTTP_MAX_QUERY_PARAMS parameters) or -ENOMEM. On failure @ret is left empty.
 */
int http_query_parse(const char *query, struct http_query *ret);

/* Frees the strings of @q and empties it. */
void http_query_done(struct http_query *q);

/*
 * Splits a request target into its decoded path and its raw query (after '?', or NULL). The
 * path must start with '/' and is returned percent-decoded; "." and ".." segments are refused
 * (-EINVAL), as are a decoded NUL and an absolute-form target. Returns 0 and malloc'ed strings.
 */
int http_target_split(const char *target, char **ret_path, char **ret_query);

/* Returns the reason phrase for @status ("Not Found"), or "Unknown". */
const char *http_status_reason(int status);
